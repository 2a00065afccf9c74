"""The CLI's spinner: drawn with the elapsed time while waiting on a terminal, gone when done, absent otherwise."""

from __future__ import annotations

import io
import threading

from qbo_connect_cli.progress import waiting


class Terminal(io.StringIO):
    """A stream that says when something was drawn on it."""

    def __init__(self) -> None:
        super().__init__()
        self.drawn = threading.Event()

    def write(self, text: str) -> int:
        self.drawn.set()
        return super().write(text)


def test_the_spinner_names_the_wait_and_clears_its_line_when_done() -> None:
    terminal = Terminal()

    with waiting("Waiting for Intuit", enabled=True, stream=terminal, tick_seconds=0.01, show_after_seconds=0):
        assert terminal.drawn.wait(5)

    drawn = terminal.getvalue()
    assert "Waiting for Intuit (0 s)" in drawn
    assert drawn.endswith("\r" + " " * len(drawn.split("\r")[1]) + "\r")


def test_nothing_is_drawn_when_disabled_or_the_answer_is_quick() -> None:
    for enabled, show_after in ((False, 0), (True, 60)):
        stream = Terminal()
        with waiting(
            "Waiting for Intuit", enabled=enabled, stream=stream, tick_seconds=0.01, show_after_seconds=show_after
        ):
            assert not stream.drawn.wait(0.05)
        assert stream.getvalue() == ""
