"""The admin API runs in a 30-second Lambda (template.yaml, AdminFunction). Whatever it spends first (waiting for
the connection's lease, waiting for another refresher), a refresh it sends must be answered and persisted before
Lambda stops the invocation: Intuit rotates the refresh token when it processes the call, and an answer nobody
reads is a grant lost (shared/INTUIT.md, strict reading). The lifecycle knows how (`not_after`): the admin API
must tell it when the invocation ends, as the token and test functions do. With 30 s it never has Intuit's whole
120 s: it hands each refresh to the refresh function (test_refresh_handoff.py) and waits while it can."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import responses
from fakes import FakeClock
from qbo_connect import intuit, runtime
from qbo_connect.runtime import build_services
from qbo_local.template import function_properties, load_template
from test_admin_api import admin_event, admin_function, call
from test_handlers import CONNECTION_ID, REALM, ROOT, LambdaContext, refresh_function, stack

__all__ = ["stack"]  # the fixture

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

ADMIN_FUNCTION = function_properties(load_template(ROOT / "template.yaml"), "AdminFunction")
ADMIN_TIMEOUT_SECONDS = ADMIN_FUNCTION["Timeout"]
HOUR = 3600.0
INTUIT_ANSWERS_AFTER_SECONDS = 6.0  # slow, well inside Intuit's 120 s and the admin's call deadline
OTHER_HOLDER = "lease-token-function-instance"


class LambdaTimedOut(BaseException):
    """Lambda stopped the invocation at its timeout: nothing after this point runs, no answer is read."""


class InvocationClock(FakeClock):
    """Fake time for one admin invocation. Another holder (a token function instance whose refresh attempts
    failed) gives the lease back at `free_at`; past `ends_at`, Lambda stops the admin invocation."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.free_at: float | None = None
        self.ends_at: float | None = None

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if self.free_at is not None and self.now() >= self.free_at:
            self.free_at = None
            runtime.services().store.release_lease(CONNECTION_ID, owner=OTHER_HOLDER)


def holds_intuits_newest_refresh_token(stack) -> bool:
    """Compared, never printed: a failing assertion must not show a token."""
    stored = runtime.services().vault.read(CONNECTION_ID).token_set
    return stored is not None and stored.refresh_token == stack.token_endpoint.issued[-1]["refresh_token"]


def on_invocation_time(stack, monkeypatch, function: dict) -> InvocationClock:
    """The stack with `function`'s own deadlines (template.yaml), on fake time three hours from now; Intuit's
    token endpoint processes each call at once (rotating) and answers INTUIT_ANSWERS_AFTER_SECONDS later, or
    never, if Lambda stopped the invocation first."""
    for name, value in function["Environment"]["Variables"].items():
        if name in {"QBO_REFRESH_CALL_DEADLINE_SECONDS", "QBO_VAULT_WRITE_DEADLINE_SECONDS"}:
            monkeypatch.setenv(name, value)
    clock = InvocationClock(time.time() + 3 * HOUR)  # nobody asked for a token: a stored one has expired
    monkeypatch.setattr(runtime, "_services", build_services(clock=clock))

    def slow_token_endpoint(request):
        answer = stack.token_endpoint(request)  # Intuit has processed the call: the old refresh token is spent
        clock.advance(INTUIT_ANSWERS_AFTER_SECONDS)
        if clock.ends_at is not None and clock.now() > clock.ends_at:
            raise LambdaTimedOut(f"Task timed out after {function['Timeout']:.2f} seconds")
        return answer

    stack.http.remove(responses.POST, intuit.TOKEN_URL)
    stack.http.add_callback(responses.POST, intuit.TOKEN_URL, callback=slow_token_endpoint)
    return clock


def held_by_another_until(clock: InvocationClock, seconds: float) -> None:
    """A token function instance (its refresh attempts failing: Intuit answers 503) holds the connection's
    lease and gives it back `seconds` from now."""
    lease_taken_by_another(clock.now())
    clock.free_at = clock.now() + seconds


def lease_taken_by_another(now: float) -> None:
    """Another refresher (OTHER_HOLDER) takes the connection's lease, marking its call in flight, as a refresh does."""
    services = runtime.services()
    services.store.acquire_lease(
        CONNECTION_ID,
        owner=OTHER_HOLDER,
        now=now,
        seconds=services.settings.lease_seconds,
        skew_seconds=services.settings.clock_skew_seconds,
        fence_until=now + services.settings.lease_seconds + intuit.REQUEST_TIME_LIMIT_SECONDS,
    )


@pytest.fixture
def admin_lambda(stack, monkeypatch):
    """An idle on-demand connection and the admin function's deadlines, three hours after consent."""
    stack.create_connection()
    stack.connect()
    assert call("PATCH", f"/connections/{CONNECTION_ID}", {"refresh_policy": "on_demand"})[0] == 200
    return stack, on_invocation_time(stack, monkeypatch, ADMIN_FUNCTION)


def test_switching_to_eager_after_waiting_for_the_lease_sends_no_refresh_the_invocation_cannot_see_answered(
    admin_lambda,
):
    """A token function instance holds the lease of an idle on-demand connection (its refresh attempts fail,
    Intuit answers 503) and gives it back 25 s later. Meanwhile an administrator switches the connection to
    eager from the console: the update waits for the lease, takes it with 5 s of its 30 left, finds the token
    expired and refreshes at once with the admin's 10 s call deadline. Intuit processes the refresh and answers
    6 s later; Lambda has stopped the invocation at 30 s. The rotated refresh token is nowhere: the next
    refresh sends the spent one and the company must reconnect."""
    stack, clock = admin_lambda
    services = runtime.services()
    held_by_another_until(clock, 25)
    clock.ends_at = clock.now() + ADMIN_TIMEOUT_SECONDS

    try:
        reply = admin_function.handler(
            admin_event("PATCH", f"/connections/{CONNECTION_ID}", {"refresh_policy": "eager"}),
            LambdaContext(remaining_millis=ADMIN_TIMEOUT_SECONDS * 1000),
        )
        status, answer = reply["statusCode"], json.loads(reply["body"])
    except LambdaTimedOut:
        status, answer = None, None
    clock.ends_at = None

    intact = holds_intuits_newest_refresh_token(stack)  # a bool: pytest would print the stack's values
    assert intact, (
        "Intuit rotated the refresh token in a call the admin invocation could not see answered: the service "
        "holds a spent refresh token"
    )
    assert status == 200 and answer["refresh_policy"] == "eager", answer

    # The schedule keeps the eager promise from its next sweep on.
    clock.advance(services.settings.refresh_period_seconds)
    refresh_function.handler({"action": "sweep"}, LambdaContext())
    secret = services.vault.read(CONNECTION_ID)
    assert secret.refresh_policy.value == "eager"
    assert secret.token_set.seconds_valid(clock.now()) > services.settings.refresh_margin_seconds
    intact = holds_intuits_newest_refresh_token(stack)
    assert intact


def test_the_consoles_refresh_of_an_idle_on_demand_connection_still_calls_intuit_with_a_second_gone(admin_lambda):
    """The other side of the same deadline: a refresh the admin API starts with its invocation barely begun
    (a second gone to the cold start's imports and the reads before it) must still be sent: by the refresh function
    it is handed to, answered within the admin's invocation."""
    stack, _ = admin_lambda
    sent_before = len(stack.token_endpoint.forms)

    reply = admin_function.handler(
        admin_event("POST", f"/connections/{CONNECTION_ID}/refresh", {}),
        LambdaContext(remaining_millis=(ADMIN_TIMEOUT_SECONDS - 1) * 1000),
    )

    answer = json.loads(reply["body"])
    assert reply["statusCode"] == 200 and answer["outcome"] == "refreshed", answer
    sent = len(stack.token_endpoint.forms) - sent_before  # a count: a failing assertion shows no form
    assert sent == 1
    intact = holds_intuits_newest_refresh_token(stack)
    assert intact


def test_importing_tokens_after_waiting_for_the_lease_does_not_spend_the_imported_refresh_token_unanswered(
    stack, monkeypatch
):
    """An administrator takes over a grant from another tool (POST .../import) while another holder has the
    connection's lease; it gives the lease back 25 s later. The import's one verifying refresh is sent with 5 s
    of the 30 left and the import's 8 s call deadline (an import has no stored grant to hand over); Intuit processes it (the imported refresh token is spent)
    and answers 6 s later, after Lambda stopped the invocation. The new refresh token is nowhere, the other
    tool's is spent: the company must reconnect. The import must instead refuse at once, change nothing and
    leave the imported token unused, so that trying again a moment later connects."""
    stack.create_connection()
    clock = on_invocation_time(stack, monkeypatch, ADMIN_FUNCTION)
    exported = "AB11-exported-" + secrets.token_urlsafe(24)
    stack.seen.add(exported)
    held_by_another_until(clock, 25)
    clock.ends_at = clock.now() + ADMIN_TIMEOUT_SECONDS
    body = {"refresh_token": exported, "realm_id": REALM}

    try:
        reply = admin_function.handler(
            admin_event("POST", f"/connections/{CONNECTION_ID}/import", body),
            LambdaContext(remaining_millis=ADMIN_TIMEOUT_SECONDS * 1000),
        )
        status, answer = reply["statusCode"], json.loads(reply["body"])
    except LambdaTimedOut:
        status, answer = None, None
    clock.ends_at = None

    spent = any(form.get("refresh_token") == exported for form in stack.token_endpoint.forms)
    assert not spent, "Intuit rotated the imported refresh token in a call the admin invocation could not see answered"
    assert status == 409 and answer["error"]["code"] == "busy", answer
    assert "try again" in answer["error"]["message"] and exported not in reply["body"]
    assert runtime.services().store.get(CONNECTION_ID).status.value == "not_connected"

    # A moment later, with the whole invocation ahead, the same import connects.
    status, imported = call("POST", f"/connections/{CONNECTION_ID}/import", body)
    assert status == 200 and imported["status"] == "connected", imported
    intact = holds_intuits_newest_refresh_token(stack)
    assert intact
