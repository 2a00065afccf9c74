"""How `make bench` runs a part (bench/__main__.py): a part that runs over its time is interrupted so that what it
started stops too. The webhook part's local stack runs in a session of its own; killed outright, the part left the
whole stack running, and every figure measured after it shared the machine with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from bench.__main__ import run_interruptibly

# Starts a stand-in for the local stack in a session of its own, writes down its pid, and stops it on the way out.
PART = """
import os, signal, subprocess, sys, time
stack = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(300)"],
    start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # a log of its own, as the stack's
)
open(sys.argv[1], "w").write(str(stack.pid))
try:
    time.sleep(300)
finally:
    os.killpg(stack.pid, signal.SIGTERM)
    stack.wait()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sigint", ["default", "ignored"], ids=["from a terminal", "as a background job"])
def test_a_part_over_its_time_stops_what_it_started(tmp_path, sigint):
    pid_file = tmp_path / "stack.pid"
    # A shell starts a background job (`make bench &`, CI) with SIGINT ignored, and its children inherit that.
    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    try:
        with open(os.devnull, "w") as stderr, pytest.raises(subprocess.TimeoutExpired):
            run_interruptibly([sys.executable, "-c", PART, str(pid_file)], dict(os.environ), stderr, timeout=3)
    finally:
        signal.signal(signal.SIGINT, inherited)

    assert not _alive(int(pid_file.read_text()))  # stopped, and reaped by the part before it returned
