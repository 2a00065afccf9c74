"""The disconnect page runs in a 30-second Lambda (template.yaml, AppPagesFunction) and tests every connection
of the company it names, one after another; a test refreshes a connection whose token has expired. Its URL is
public and one for every app of the deployment, so a connection it checks may well hold a live grant (the
company disconnected another app, or anyone opened the link). A refresh it sends must be answered and persisted
before Lambda stops the invocation, or the rotated refresh token is lost (shared/INTUIT.md, strict reading)."""

from __future__ import annotations

import pytest
from qbo_connect import runtime
from qbo_connect.domain.app_links import DISCONNECT_PATH
from qbo_local.sample_events import http_event
from qbo_local.template import function_properties, load_template
from test_admin_api import call
from test_admin_refresh_deadline import (
    LambdaTimedOut,
    held_by_another_until,
    holds_intuits_newest_refresh_token,
    on_invocation_time,
)
from test_handlers import CONNECTION_ID, REALM, ROOT, LambdaContext, _load_handler, stack

__all__ = ["stack"]  # the fixture

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

APP_PAGES_FUNCTION = function_properties(load_template(ROOT / "template.yaml"), "AppPagesFunction")
APP_PAGES_TIMEOUT_SECONDS = APP_PAGES_FUNCTION["Timeout"]
app_pages_function = _load_handler("app_pages")


@pytest.fixture
def app_pages_lambda(stack, monkeypatch):
    """An idle on-demand connection of the company and the app pages function's deadlines, three hours after
    consent: its access token has expired, so checking it refreshes first."""
    stack.create_connection()
    stack.connect()
    assert call("PATCH", f"/connections/{CONNECTION_ID}", {"refresh_policy": "on_demand"})[0] == 200
    return stack, on_invocation_time(stack, monkeypatch, APP_PAGES_FUNCTION)


def open_disconnect_page(remaining_seconds: float) -> dict:
    event = http_event("callback.json", DISCONNECT_PATH, {"realmId": REALM})
    return app_pages_function.handler(event, LambdaContext(remaining_millis=int(remaining_seconds * 1000)))


def test_the_disconnect_page_sends_no_refresh_the_invocation_cannot_see_answered(app_pages_lambda):
    """A token function instance holds the lease of the company's idle connection (its refresh attempts fail,
    Intuit answers 503) and gives it back 25 s later. Meanwhile someone opens the disconnect page for the
    company: the check waits for the lease, then refreshes the expired token with 5 s of its 30 left and a
    10 s call deadline. Intuit processes the refresh and answers 6 s later; Lambda has stopped the invocation.
    The rotated refresh token is nowhere: the next refresh sends the spent one and the company must reconnect."""
    stack, clock = app_pages_lambda
    held_by_another_until(clock, 25)
    clock.ends_at = clock.now() + APP_PAGES_TIMEOUT_SECONDS

    try:
        page = open_disconnect_page(APP_PAGES_TIMEOUT_SECONDS)
    except LambdaTimedOut:
        page = None
    clock.ends_at = None

    intact = holds_intuits_newest_refresh_token(stack)  # a bool: pytest would print the stack's values
    assert intact, (
        "Intuit rotated the refresh token in a call the disconnect page's invocation could not see answered: the "
        "service holds a spent refresh token"
    )
    assert page is not None and page["statusCode"] == 200
    assert runtime.services().store.get(CONNECTION_ID).status.value == "connected"


def test_the_disconnect_page_opened_with_a_second_gone_still_checks_and_refreshes(app_pages_lambda):
    """The other side of the same deadline: the page's check must still refresh an expired token when the
    invocation has barely begun (a second gone to the cold start's imports and the reads before it). The call
    deadline, the vault write deadline, the metadata write and the answer must fit the function's timeout."""
    stack, _ = app_pages_lambda
    sent_before = len(stack.token_endpoint.forms)

    page = open_disconnect_page(APP_PAGES_TIMEOUT_SECONDS - 1)

    assert page["statusCode"] == 200
    sent = len(stack.token_endpoint.forms) - sent_before  # counted, never printed: the forms hold tokens
    assert sent == 1
    connection = runtime.services().store.get(CONNECTION_ID)
    assert connection.status.value == "connected" and connection.last_test.ok, connection.last_test
    intact = holds_intuits_newest_refresh_token(stack)
    assert intact
