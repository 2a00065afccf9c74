"""A spinner with the elapsed time while the CLI waits on something slow (Intuit), on a terminal only.

Nothing is drawn when stderr is not a terminal (pipes, CI, `--output json` scripts), so captured
output stays exactly what the command answers.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

FRAMES = "|/-\\"
# Below this a spinner would only flicker: a quick answer shows nothing.
SHOW_AFTER_SECONDS = 0.5


class Step:
    """What the spinner says is being waited for; `say` changes it while it spins."""

    def __init__(self, what: str) -> None:
        self.what = what

    def say(self, what: str) -> None:
        self.what = what


@contextmanager
def waiting(
    what: str,
    *,
    enabled: bool,
    stream: TextIO | None = None,
    tick_seconds: float = 0.1,
    show_after_seconds: float = SHOW_AFTER_SECONDS,
) -> Iterator[Step]:
    """`| Waiting for Intuit: reading the company's name (3 s)` on one line, cleared when done."""
    out = stream or sys.stderr
    step = Step(what)
    if not enabled:
        yield step
        return
    done = threading.Event()
    started = time.monotonic()
    width = 0

    def draw() -> None:
        nonlocal width
        for frame in itertools.cycle(FRAMES):
            if done.wait(tick_seconds):
                return
            elapsed = time.monotonic() - started
            if elapsed < show_after_seconds:
                continue
            line = f"{frame} {step.what} ({elapsed:.0f} s)"
            width = max(width, len(line))
            out.write("\r" + line.ljust(width))
            out.flush()

    spinner = threading.Thread(target=draw, name="cli-spinner", daemon=True)
    spinner.start()
    try:
        yield step
    finally:
        done.set()
        spinner.join()
        if width:
            out.write("\r" + " " * width + "\r")
            out.flush()


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()
