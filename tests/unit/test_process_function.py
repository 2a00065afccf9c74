"""A function instance in a process of its own: loaded once, invoked one at a time, its CPU time its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from qbo_local.functions import FunctionFailed, FunctionSpec, ProcessFunction

ROOT = Path(__file__).resolve().parents[2]

HANDLER = """
import os
import time

LOADED_AT = time.monotonic()  # module-level set-up runs once per instance, as Lambda's init does
invocations = 0


def handler(event, context):
    global invocations
    invocations += 1
    if event.get("fail"):
        raise ValueError("the event asked for a failure")
    spin_until = time.process_time() + event.get("cpu_seconds", 0)
    while time.process_time() < spin_until:
        pass
    return {"pid": os.getpid(), "invocations": invocations, "echo": event.get("echo"),
            "remaining_ms": context.get_remaining_time_in_millis()}
"""


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FunctionSpec:
    code = tmp_path / "demo"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    monkeypatch.syspath_prepend(str(code))  # the child gets the parent's sys.path, as spawn passes it
    return FunctionSpec("DemoFunction", code, "app.handler", timeout_seconds=30)


@pytest.fixture
def function(spec: FunctionSpec):
    instance = ProcessFunction(spec, root=ROOT)
    yield instance
    instance.close()


def test_each_instance_runs_in_its_own_process_and_keeps_its_module_state(function: ProcessFunction) -> None:
    first = function.invoke({"echo": "one"})
    second = function.invoke({"echo": "two"})
    other = function.another_container()
    try:
        elsewhere = other.invoke({})
    finally:
        other.close()

    assert first["pid"] == second["pid"] == function.pid != os.getpid()
    assert (first["echo"], second["invocations"]) == ("one", 2)
    assert 0 < second["remaining_ms"] <= 30_000
    assert elsewhere["pid"] != function.pid and elsewhere["invocations"] == 1
    assert function.call("os:getpid") == function.pid


def test_a_handlers_exception_is_raised_in_the_caller_and_the_instance_lives_on(function: ProcessFunction) -> None:
    with pytest.raises(FunctionFailed, match="ValueError: the event asked for a failure"):
        function.invoke({"fail": True})

    assert function.invoke({})["invocations"] == 2


def test_cpu_time_is_the_instances_own(function: ProcessFunction) -> None:
    before = function.cpu_seconds()

    function.invoke({"cpu_seconds": 0.3})

    assert function.cpu_seconds() - before >= 0.25


def test_a_handler_that_cannot_load_is_reported(tmp_path: Path) -> None:
    code = tmp_path / "broken"
    code.mkdir()
    (code / "app.py").write_text("raise ImportError('no such dependency')\n")

    with pytest.raises(FunctionFailed, match="no such dependency"):
        ProcessFunction(FunctionSpec("BrokenFunction", code, "app.handler"), root=ROOT)
