"""A refresh is sent only by a caller that can see Intuit's answer through: the whole of Intuit's time limit
(120 s) and persisting after it. Intuit rotates the refresh token when it processes the call; a caller that stops
waiting sooner (a 60-second workflow, the 30-second admin API) drops an answer that may still come, and under the
strict reading (shared/INTUIT.md) the grant is then lost. A caller with less time hands the refresh to the refresh
function (Lambda Invoke, which goes on when the caller stops listening) and waits for it as long as it can.

Against moto and the strict emulator; Intuit's answers take virtual time (tests/virtual_time.py), nothing sleeps.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import boto3
import pytest
from qbo_connect.domain.admin_operations import ConnectionUpdate
from qbo_connect.domain.lifecycle import MIN_HANDOFF_WAIT_SECONDS
from qbo_connect.errors import Busy
from qbo_connect.invocation import work_deadline
from qbo_connect.runtime import build_services
from qbo_connect.settings import Settings
from qbo_connect.token_access import TokenAccess
from qbo_local.functions import LocalFunction
from qbo_local.lambda_service import LambdaServer, LambdaService
from refresh_support import COMPANY_NAME, MARGIN_SECONDS, OffsetClock, Stack, run_queued_checks
from test_handlers import LambdaContext
from virtual_time import SlowIntuit, VirtualClock

from chaos.soak import DelayedChecks

WORKFLOW_TIMEOUT_MILLIS = 60_000  # a workflow Lambda's timeout
REFRESH_FUNCTION_TIMEOUT_MILLIS = 360_000  # template.yaml: RefreshFunction's Timeout
# The service's own timings (settings.py's defaults), not the compressed ones of the other stack tests.
PRODUCTION_TIMINGS = {
    "refresh_call_deadline_seconds": 120.0,
    "lease_seconds": 200,
    "vault_write_deadline_seconds": 30.0,
    "clock_skew_seconds": 30.0,
}
INTUIT_ANSWERS_AFTER_SECONDS = 25.0  # Intuit's slow tail: within its 120 s, past a 60 s workflow's share
ADMIN_SECONDS_LEFT = 20.0  # the admin API's invocation, after its reads: less than Intuit takes


@pytest.fixture
def expired(make_stack) -> tuple[Stack, VirtualClock, str, DelayedChecks]:
    """An on-demand connection whose token expired a minute ago, on virtual time with the service's own timings, and
    the refresh queue its checks go to."""
    clock = VirtualClock(int(time.time()))
    stack = make_stack(clock, **PRODUCTION_TIMINGS)
    return stack, clock, on_demand_and_expired(stack), DelayedChecks(now=clock.now)


def on_demand_and_expired(stack: Stack) -> str:
    services = stack.services()
    connection_id = stack.connect(services).connection_id
    services.admin.update(connection_id, ConnectionUpdate(refresh_policy="on_demand"), actor="test")
    stack.clock.advance(stack.token_set(connection_id).expires_at - stack.clock.now() + 60)
    return connection_id


class RefreshFunctionInThread:
    """The refresh function behind Lambda's synchronous Invoke: a container of its own runs the handler's code on
    the payload with its own timeout, and goes on to the end when the caller stops waiting (as Lambda does)."""

    def __init__(self, stack: Stack, clock: VirtualClock, slow: float, checks: DelayedChecks) -> None:
        self._stack, self._clock, self._slow, self._checks = stack, clock, slow, checks
        self.payloads: list[dict[str, Any]] = []
        self.threads: list[threading.Thread] = []

    def refresh(self, payload: dict[str, Any], *, wait_seconds: float) -> dict[str, Any] | None:
        self.payloads.append(payload)
        services = self._stack.services(identity_wrapper=lambda real: SlowIntuit(real, self._clock, lambda: self._slow))
        services.refresh_queue = self._checks
        answer: list[dict[str, Any]] = []
        started = threading.Event()

        def run() -> None:
            with self._clock.member():
                started.set()
                context = LambdaContext(remaining_millis=REFRESH_FUNCTION_TIMEOUT_MILLIS)
                answer.append(services.refresh_runs.handle(dict(payload), context))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        started.wait()
        self.threads.append(thread)
        give_up_at = self._clock.now() + wait_seconds
        while not answer and self._clock.now() < give_up_at:
            self._clock.sleep(0.5)
        return answer[0] if answer else None

    def finish(self) -> None:
        for thread in self.threads:
            thread.join(60)


def workflow(stack: Stack, clock: VirtualClock, checks: DelayedChecks, handoff: Any = None) -> TokenAccess:
    """A workflow's Python client in a Lambda container of its own, Intuit's answers slow."""
    services = stack.services(
        identity_wrapper=lambda real: SlowIntuit(real, clock, lambda: INTUIT_ANSWERS_AFTER_SECONDS)
    )
    services.refresh_queue = checks
    services.refresh_handoff = handoff
    return TokenAccess(services.lifecycle, services.store, clock)


def ask_within_a_workflow(access: TokenAccess, connection_id: str, clock: VirtualClock) -> Any:
    with clock.member():
        context = LambdaContext(remaining_millis=WORKFLOW_TIMEOUT_MILLIS)
        try:
            return access.access(connection_id, not_after=work_deadline(context, clock.now()))
        except Busy as busy:
            return busy


def the_grant_survives(stack: Stack, connection_id: str, clock: VirtualClock, checks: DelayedChecks) -> None:
    """Whatever checks the service queued run when due; then the stored grant still refreshes at Intuit (strict
    rotation refuses any but the newest refresh token) and its access token reads the company."""
    run_queued_checks(stack, checks, clock)
    assert stack.connection(connection_id).status.value == "connected"
    clock.advance(max(0.0, stack.token_set(connection_id).expires_at - clock.now() - MARGIN_SECONDS + 1))
    with clock.member():
        assert stack.services().lifecycle.refresh(connection_id).outcome.value == "refreshed"
    assert stack.company_name(stack.token_set(connection_id).access_token) == COMPANY_NAME
    assert not stack.grant()["revoked"]


def test_a_short_workflow_hands_a_slow_refresh_to_the_refresh_function_and_keeps_the_grant(expired):
    stack, clock, connection_id, checks = expired
    refresh_function = RefreshFunctionInThread(stack, clock, INTUIT_ANSWERS_AFTER_SECONDS, checks)
    asked_at = clock.now()

    answer = ask_within_a_workflow(workflow(stack, clock, checks, refresh_function), connection_id, clock)
    refresh_function.finish()

    assert not isinstance(answer, Busy), answer
    assert answer.seconds_valid(clock.now()) >= 300
    assert clock.now() - asked_at < WORKFLOW_TIMEOUT_MILLIS / 1000, "answered after Lambda would have stopped it"
    assert refresh_function.payloads == [{"connection_id": connection_id, "force": False, "min_valid_seconds": 300}]
    assert stack.refresh_calls() == 1
    the_grant_survives(stack, connection_id, clock, checks)


def test_a_short_workflow_with_nowhere_to_hand_the_refresh_sends_nothing_and_says_so(expired):
    stack, clock, connection_id, checks = expired

    answer = ask_within_a_workflow(workflow(stack, clock, checks), connection_id, clock)

    assert isinstance(answer, Busy)
    assert "QBO_REFRESH_FUNCTION_NAME" in str(answer)
    assert stack.refresh_calls() == 0
    the_grant_survives(stack, connection_id, clock, checks)


def test_a_caller_that_stops_waiting_leaves_the_refresh_function_to_finish_and_store_it(expired):
    """The admin API's caller gives up first (Lambda stops it at 30 s): the refresh goes on in the refresh function, and the
    connection holds Intuit's new grant; the caller heard busy, not a lost grant."""
    stack, clock, connection_id, checks = expired
    refresh_function = RefreshFunctionInThread(stack, clock, INTUIT_ANSWERS_AFTER_SECONDS, checks)
    services = stack.services()
    services.refresh_handoff = refresh_function

    with clock.member():
        result = services.lifecycle.refresh(connection_id, force=True, not_after=clock.now() + ADMIN_SECONDS_LEFT)
    refresh_function.finish()

    assert result.outcome.value == "handed_off"
    assert "refresh function" in (result.message or "")
    assert stack.refresh_calls() == 1
    the_grant_survives(stack, connection_id, clock, checks)


def test_a_short_caller_hands_off_over_lambdas_invoke_api_to_a_refresh_function_that_refreshes(make_stack, monkeypatch):
    """The service's own hand-off (runtime's LambdaRefreshHandoff, boto3's lambda client) over real HTTP to the local stack's Invoke API,
    whose refresh function refreshes against moto and the strict emulator: a caller with 28 s left (the admin API)
    gets Intuit's new token, and the refresh was sent once, by the refresh function."""
    clock = OffsetClock()
    stack = make_stack(clock, **PRODUCTION_TIMINGS)
    connection_id = stack.connect().connection_id
    clock.advance(stack.token_set(connection_id).expires_at - clock.now() + 60)  # expired: due
    function = LocalFunction.from_handler("Refresh", stack.services().refresh_runs.handle, timeout_seconds=360)
    before = stack.token_set(connection_id)

    with LambdaServer(LambdaService([function])) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)  # as the local stack points its functions there
        caller = stack.services(settings=replace(stack.settings, refresh_function_name=function.spec.function_name))
        connection, token_set = caller.lifecycle.valid_token(connection_id, not_after=clock.now() + 28)

    assert stack.refresh_calls() == 1
    assert token_set.access_token != before.access_token and token_set.seconds_valid(clock.now()) > 3000
    assert connection.status.value == "connected"
    assert stack.company_name(token_set.access_token) == COMPANY_NAME


def test_the_real_adapter_reports_a_refresh_still_running_when_its_wait_ends_and_the_function_runs_on(monkeypatch):
    """boto3's read timeout over real HTTP to the local Invoke API: the caller hears the refresh is under way after
    its wait (about a second here), and the refresh function's invocation goes on to its end, as Lambda's does."""
    may_finish, finished = threading.Event(), threading.Event()

    def slow_refresh_function(event: dict, _context: Any) -> dict:
        may_finish.wait(30)
        finished.set()
        return {"connection_id": event["connection_id"], "outcome": "refreshed", "message": None}

    function = LocalFunction.from_handler("Refresh", slow_refresh_function, timeout_seconds=360)
    with LambdaServer(LambdaService([function])) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)
        session = boto3.Session(region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
        settings = Settings(table_name="connections", refresh_function_name=function.spec.function_name)
        handoff = build_services(settings, session=session).refresh_handoff

        answer = handoff.refresh({"connection_id": "qbc-0123456789ab"}, wait_seconds=MIN_HANDOFF_WAIT_SECONDS)
        may_finish.set()

        assert answer is None
        assert finished.wait(30), "the refresh function's invocation stopped with its caller"
