"""End-to-end fixtures: the local stack started as a user starts it, the CLI, and headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningStack:
    discovery: dict
    state_file: Path
    log_path: Path
    process: subprocess.Popen

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run the admin CLI as a user would; it finds the local stack by itself."""
        env = {**os.environ, "QBO_CONNECT_LOCAL_STATE": str(self.state_file)}
        return subprocess.run(
            [str(Path(sys.executable).with_name("qbo-connect")), *args],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )

    def logs(self) -> str:
        """The terminal's lines and the functions' JSON lines (the function log), together."""
        function_log = Path(self.discovery["function_log"])
        return self.log_path.read_text(errors="replace") + function_log.read_text(errors="replace")


@pytest.fixture(scope="module")
def local_stack() -> Iterator[RunningStack]:
    workdir = Path(tempfile.mkdtemp(prefix="qbo-e2e-"))
    state_file, ready_file, log_path = workdir / "local-stack.json", workdir / "ready.json", workdir / "stack.log"
    env = {**os.environ, "QBO_CONNECT_LOCAL_STATE": str(state_file)}
    for name in ("QBO_INTUIT_CLIENT_ID", "QBO_INTUIT_CLIENT_SECRET"):
        env.pop(name, None)  # always the emulator here, never real Intuit
    command = [
        sys.executable,
        "-m",
        "qbo_local",
        "up",
        "--port",
        str(_free_port()),
        "--aws-port",
        str(_free_port()),
        "--intuit-port",
        str(_free_port()),
        "--ready-file",
        str(ready_file),
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    deadline = time.monotonic() + 90
    while not ready_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the local stack did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)  # polling a subprocess's readiness: bounded by the deadline above
    stack = RunningStack(json.loads(ready_file.read_text()), state_file, log_path, process)
    try:
        yield stack
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install Debian's chromium and chromium-driver")
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="qbo-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
