"""`python -m qbo_local up` in the background, as a person starts `make dev`: on free ports, with its own
discovery file, stopped as Ctrl+C stops it. What the tests and benchmarks that drive the whole local stack
over HTTP start (tests/integration/test_local_stack.py, tests/e2e, bench/webhook_answer.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 90
STOP_SECONDS = 30
FREE_PORTS = ("--port", "0", "--aws-port", "0", "--intuit-port", "0")


def stack_env(state_file: Path) -> dict[str, str]:
    """This environment, with the discovery file at `state_file` and never real Intuit's app keys."""
    env = {**os.environ, "QBO_CONNECT_LOCAL_STATE": str(state_file)}
    for name in ("QBO_INTUIT_CLIENT_ID", "QBO_INTUIT_CLIENT_SECRET"):
        env.pop(name, None)
    return env


@dataclass
class BackgroundStack:
    process: subprocess.Popen[bytes]
    state_file: Path
    ready_file: Path
    log_file: Path
    discovery: dict[str, Any]

    def env(self) -> dict[str, str]:
        """The environment in which the CLI and `qbo_local invoke` find this stack."""
        return stack_env(self.state_file)

    def log(self) -> str:
        """What the terminal shows."""
        return self.log_file.read_text(errors="replace")

    def function_log(self) -> str:
        """The functions' JSON lines, as CloudWatch Logs would hold them."""
        return Path(self.discovery["function_log"]).read_text(errors="replace")

    def all_logs(self) -> str:
        """The terminal's lines and the functions' JSON lines together: where a leaked secret would show."""
        return self.log() + self.function_log()

    def aws_client(self, service: str) -> Any:
        """A boto3 client of the stack's embedded AWS, as a test or a benchmark reads what the stack stored."""
        import boto3

        from qbo_local.config import FAKE_AWS_ACCESS_KEY_ID, FAKE_AWS_SECRET_ACCESS_KEY

        return boto3.client(
            service,
            endpoint_url=self.discovery["aws_endpoint_url"],
            region_name=self.discovery["region"],
            aws_access_key_id=FAKE_AWS_ACCESS_KEY_ID,
            aws_secret_access_key=FAKE_AWS_SECRET_ACCESS_KEY,
        )

    def cli(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The admin CLI as a user runs it (the installed `qbo-connect`); it finds this stack by itself."""
        return subprocess.run(  # noqa: S603 - our own command
            [str(Path(sys.executable).with_name("qbo-connect")), *args],
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            check=False,
        )

    def stop(self) -> int:
        """Stop it as Ctrl+C does (the whole process group); its exit code. Killed if it does not stop."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=STOP_SECONDS)


@contextmanager
def background_stack(folder: Path, *options: str, module: str = "qbo_local") -> Iterator[BackgroundStack]:
    """The stack started with `options` after the free ports (a later flag wins), its files under `folder`;
    stopped on the way out if the caller has not stopped it. `module` runs it (`python -m MODULE up`): the
    benchmarks' bench.patched_stack is qbo_local with their changes to moto."""
    state_file = folder / "state" / "local-stack.json"
    ready_file, log_file = folder / "ready.json", folder / "stack.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our interpreter and our module
            [sys.executable, "-m", module, "up", *FREE_PORTS, *options, "--ready-file", str(ready_file)],
            env=stack_env(state_file),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches the servers it starts
        )
    stack = BackgroundStack(process, state_file, ready_file, log_file, {})
    try:
        deadline = time.monotonic() + START_SECONDS
        while not ready_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the local stack did not start:\n{stack.log()[-4000:]}")
            time.sleep(0.2)  # a subprocess's readiness, polled within the deadline above
        stack.discovery = json.loads(ready_file.read_text())
        yield stack
    finally:
        stack.stop()
