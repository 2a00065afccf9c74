"""A server the benchmarks start in a process of their own interpreter (moto, the Intuit emulator), on a free
loopback port, ready once it answers HTTP; stopped with it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`python ARGS PORT` (the port appended), ready when `ready_path` answers below 500."""

    def __init__(self, what: str, ready_path: str, *args: str) -> None:
        import requests

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._process = subprocess.Popen(  # noqa: S603 - our interpreter, our modules
            [sys.executable, *args, str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self._process.pid
        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                if requests.get(self.url + ready_path, timeout=1).status_code < 500:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{what} did not answer on {self.url} within {READY_SECONDS} s")
            time.sleep(0.05)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:  # moto's server waits for its request threads on SIGTERM
            self._process.kill()
            self._process.wait(5)
