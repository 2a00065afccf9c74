"""A Lambda cold start runs without Python's cyclic garbage collector until its first invocation has answered
(qbo_connect/cold_start.py says why); the collector is back, with the start-up objects frozen, after it, and
nowhere else is it touched. Each runs in a process of its own: the collector is process-wide."""

from __future__ import annotations

from pathlib import Path

import pytest
from function_process import run_in_function_process

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(path.parent.name for path in (ROOT / "functions").glob("*/app.py"))
IN_LAMBDA = {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.13"}  # Lambda sets it in the function's process

INVOCATIONS = """
import gc, json
from qbo_connect.cold_start import resume_collection_after_first_invocation

seen = {"after_import": gc.isenabled()}

@resume_collection_after_first_invocation
def handler(event, context):
    seen.setdefault("during_first", gc.isenabled())
    if event == "fail":
        raise RuntimeError("the first invocation failed")
    return "answered"

try:
    handler("fail", None)
except RuntimeError:
    pass
seen["after_first"] = gc.isenabled()
seen["frozen_after_first"] = gc.get_freeze_count()
seen["second_answer"] = handler("ok", None)
seen["frozen_after_second"] = gc.get_freeze_count()
print(json.dumps(seen))
"""


def test_in_lambda_the_collector_waits_for_the_end_of_the_first_invocation_even_a_failed_one():
    seen = run_in_function_process(INVOCATIONS, environment=IN_LAMBDA)

    assert seen["after_import"] is False
    assert seen["during_first"] is False
    assert seen["after_first"] is True  # resumed although the invocation raised
    assert seen["frozen_after_first"] > 1000  # the start-up objects: later collections skip them
    assert seen["second_answer"] == "answered"
    assert seen["frozen_after_second"] == seen["frozen_after_first"]  # once per container


def test_outside_lambda_the_collector_is_left_alone():
    """The CLI, the tests and the local stack import the same handlers into processes that may never invoke one."""
    seen = run_in_function_process(INVOCATIONS)

    assert seen["after_import"] is True
    assert seen["after_first"] is True
    assert seen["frozen_after_first"] == 0


IMPORT_ORDER = """
import gc, json, sys

class Recorder:
    order = []
    def find_spec(self, name, path=None, target=None):
        self.order.append(name)
        return None

sys.meta_path.insert(0, Recorder())
import app
order = Recorder.order
print(json.dumps({
    "paused": not gc.isenabled(),
    "first_of_ours": next(name for name in order if name.startswith("qbo_connect.")),
    "before_the_pause": [name for name in order[: order.index("qbo_connect.cold_start")] if "." not in name],
    "outermost": app.handler.__code__.co_qualname,  # functools.wraps copies __qualname__, not the code
}))
"""


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_pauses_the_collector_before_importing_anything_else(function):
    seen = run_in_function_process(IMPORT_ORDER, function=function, environment=IN_LAMBDA)

    assert seen["paused"] is True
    assert seen["first_of_ours"] == "qbo_connect.cold_start"
    assert not {"aws_lambda_powertools", "boto3", "botocore", "requests"} & set(seen["before_the_pause"])
    # Outermost: the collector resumes after Powertools has flushed the invocation's logs and metrics.
    assert seen["outermost"] == "resume_collection_after_first_invocation.<locals>.invoke"
