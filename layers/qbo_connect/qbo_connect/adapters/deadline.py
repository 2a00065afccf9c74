"""A deadline on a whole HTTP call, not on each socket read.

requests' read timeout bounds every read, so an answer trickled a few bytes at a time can outlive it
many times over. The call runs in a daemon thread and the caller stops waiting at the deadline; what
the thread still receives afterwards is dropped, exactly like an answer lost on the network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """The call did not finish within its deadline; whether the server processed it is unknown."""


def call_with_deadline(call: Callable[[], T], seconds: float) -> T:
    finished = threading.Event()
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:
            outcome["error"] = error
        finally:
            finished.set()

    threading.Thread(target=run, name="call-with-deadline", daemon=True).start()
    if not finished.wait(max(seconds, 0.0)):
        raise DeadlineExceeded(f"no answer within {seconds:.0f} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
