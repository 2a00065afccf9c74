"""The schedule: what EventBridge Scheduler does on AWS, a thread that runs the refresh sweep."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from qbo_local.router import Invocable

log = logging.getLogger("qbo_local.scheduler")

SWEEP_EVENT = {"action": "sweep"}


def describe_sweep(result: Any) -> str:
    """One line with the outcome counts: "2 due: refreshed 1, busy 1"."""
    if not isinstance(result, dict) or not isinstance(result.get("due"), int):
        return f"unexpected answer {result!r}"
    outcomes = result.get("outcomes") or {}
    if not result["due"]:
        return "nothing due"
    counts = ", ".join(f"{outcome.replace('_', ' ')} {count}" for outcome, count in sorted(outcomes.items()))
    return f"{result['due']} due: {counts}" if counts else f"{result['due']} due"


class RefreshSchedule:
    """Invokes the refresh function with {"action": "sweep"} every `interval` seconds until stopped.

    The first run comes one interval after start, as a new schedule's does."""

    def __init__(self, function: Invocable, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the refresh interval must be greater than zero")
        self.function = function
        self.interval = interval
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Any:
        started = time.monotonic()
        try:
            result = self.function.invoke(dict(SWEEP_EVENT))
        except Exception:
            log.exception("Refresh sweep failed (the schedule tries again in %g s)", self.interval)
            return None
        finally:
            self.runs += 1
        log.info("Refresh sweep: %s (%.0f ms)", describe_sweep(result), (time.monotonic() - started) * 1000)
        return result

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def start(self) -> RefreshSchedule:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="refresh-schedule", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stops waiting at once; a sweep under way finishes first (bounded by `timeout`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
