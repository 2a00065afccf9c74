"""A Python workflow refreshes an on-demand connection in its own Lambda (token_access, under the lease). Its
timeout is the workflow's choice and part of it may be spent before a token is needed: a refresh it sends
must be answered and persisted before Lambda stops the invocation, or Intuit's rotation is lost with the
answer (shared/INTUIT.md, strict reading). The token and test functions tell the lifecycle when their
invocation ends (`not_after`); a workflow must be able to, and the example must do it."""

from __future__ import annotations

import importlib.util
import re
import time

import pytest
import responses
from qbo_connect import intuit, runtime
from qbo_connect.errors import Busy
from qbo_connect.runtime import build_services
from test_admin_api import call
from test_admin_refresh_deadline import HOUR, InvocationClock, LambdaTimedOut, holds_intuits_newest_refresh_token
from test_handlers import CONNECTION_ID, REALM, ROOT, LambdaContext, stack

__all__ = ["stack"]  # the fixture

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

_spec = importlib.util.spec_from_file_location("list_customers_example_app", ROOT / "examples/list_customers/app.py")
example_workflow = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example_workflow)
INTUIT_ANSWERS_AFTER_SECONDS = 25.0  # slow, inside Intuit's 120 s and the refresh call deadline


@pytest.fixture
def workflow(stack, monkeypatch):
    """An idle on-demand connection three hours after consent, Intuit's token endpoint slow, on fake time."""
    stack.create_connection()
    stack.connect()
    assert call("PATCH", f"/connections/{CONNECTION_ID}", {"refresh_policy": "on_demand"})[0] == 200
    clock = InvocationClock(time.time() + 3 * HOUR)
    monkeypatch.setattr(runtime, "_services", build_services(clock=clock))

    def slow_token_endpoint(request):
        answer = stack.token_endpoint(request)  # Intuit has processed the call: the old refresh token is spent
        clock.advance(INTUIT_ANSWERS_AFTER_SECONDS)
        if clock.ends_at is not None and clock.now() > clock.ends_at:
            raise LambdaTimedOut("Task timed out")
        return answer

    stack.http.remove(responses.POST, intuit.TOKEN_URL)
    stack.http.add_callback(responses.POST, intuit.TOKEN_URL, callback=slow_token_endpoint)
    stack.http.get(
        re.compile(re.escape(f"{intuit.SANDBOX_API_BASE_URL}/v3/company/{REALM}/query") + r".*"),
        json={"QueryResponse": {"Customer": [{"Id": "1", "DisplayName": "Amy's Bird Sanctuary"}]}},
    )
    return stack, clock


def test_a_workflow_with_little_time_left_sends_no_refresh_it_cannot_see_answered(workflow):
    """The example workflow (examples/list_customers/app.py) runs with 20 s of its invocation left (the
    workflow spent the rest on its own work first) and needs a token for an idle on-demand connection. Its
    refresh went out with a deadline of two minutes; Intuit rotates and answers 25 s later, after Lambda
    stopped the invocation. The service kept a spent refresh token: the company must reconnect. Now the workflow
    hands the refresh to the refresh function, which stores Intuit's answer after the workflow stopped waiting."""
    stack, clock = workflow
    clock.ends_at = clock.now() + 20

    with pytest.raises(Busy) as refused:
        example_workflow.handler({"connection_id": CONNECTION_ID}, LambdaContext(remaining_millis=20_000))
    assert "refresh function" in str(refused.value)
    clock.ends_at = None

    intact = holds_intuits_newest_refresh_token(stack)  # a bool: pytest would print the stack's values
    assert intact, (
        "Intuit rotated the refresh token in a call the workflow's invocation could not see answered: the "
        "service holds a spent refresh token"
    )


def test_a_workflow_with_time_enough_refreshes_and_lists(workflow):
    stack, _ = workflow
    sent_before = len(stack.token_endpoint.forms)

    listed = example_workflow.handler({"connection_id": CONNECTION_ID}, LambdaContext(remaining_millis=240_000))

    sent = len(stack.token_endpoint.forms) - sent_before  # a count: a failing assertion shows no form
    assert listed["count"] == 1 and sent == 1
    intact = holds_intuits_newest_refresh_token(stack)
    assert intact
