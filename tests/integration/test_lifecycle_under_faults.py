"""The token lifecycle under faults in their real shapes (issue 9), against the strict-rotation emulator.

Between the service and the emulator sits a socket-level fault proxy (qbo_local.faults.FaultProxy): it
delays or trickles Intuit's answer, or forwards the request (so Intuit rotates the token) and then drops
or resets the connection. Secrets Manager is moto behind StrictSecretsManager, which fails, throttles and
enforces the version quota as AWS does; the sealing key is moto's KMS. The services and the emulator
share a manual clock; the proxy's delays are real (short) time.

What must hold: a refresh token is never sent twice for one generation except the one check after an
unknown outcome; a rotation is never dropped; a lost answer is reported as needs_reauthorization once
the call is certainly over, never left looking connected.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from qbo_connect import intuit
from qbo_connect.adapters.secrets_vault import SecretsManagerVault
from qbo_connect.client import QuickBooksClient
from qbo_connect.errors import ErrorCode, QboConnectError
from qbo_connect.runtime import Services
from qbo_connect.token_access import MAX_MIN_VALID_SECONDS, TokenAccess
from qbo_local.faults import FaultProxy, ProxyFault, StrictSecretsManager
from refresh_support import (
    ACCESS_TOKEN_SECONDS,
    LEASE_SECONDS,
    REALM_ID,
    SKEW_SECONDS,
    Stack,
    manual_clock,
    new_session,
)

FAULT_401 = (Path(__file__).resolve().parents[1] / "fixtures" / "intuit" / "fault_401.json").read_bytes()
# When a call whose answer was lost is certainly over at Intuit, by anyone's clock.
IN_FLIGHT_WINDOW = intuit.REQUEST_TIME_LIMIT_SECONDS + SKEW_SECONDS + 1


@dataclasses.dataclass
class FaultyWorld:
    stack: Stack
    proxy: FaultProxy
    secrets: StrictSecretsManager
    settings: Any

    def services(self, *, clock: Any = None, **overrides: Any) -> Services:
        """A refresher whose Intuit calls go through the proxy and whose vault is as strict as AWS."""
        settings = dataclasses.replace(self.settings, **overrides)
        services = self.stack.services(settings=settings)
        if clock is not None:
            services.clock = clock
        services.vault = SecretsManagerVault(self.secrets, settings, clock=services.clock)
        return services

    def connected_and_due(self) -> str:
        connection_id = self.stack.connect().connection_id
        self.stack.clock.advance(ACCESS_TOKEN_SECONDS - 600)  # 10 minutes left: inside the margin
        return connection_id

    def wait_until_forwarded(self, count: int = 1) -> None:
        deadline = time.monotonic() + 10
        while self.proxy.forwarded_requests < count:
            assert time.monotonic() < deadline, "the refresh never reached Intuit"
            time.sleep(0.01)


@pytest.fixture
def world(make_stack: Callable[..., Stack]) -> Iterator[FaultyWorld]:
    stack = make_stack(manual_clock())
    upstream = urlsplit(stack.emulator_url)
    key = new_session().client("kms").create_key(Description="seals refused rotations")["KeyMetadata"]["Arn"]
    with FaultProxy(upstream.hostname or "127.0.0.1", upstream.port or 80) as proxy:
        settings = dataclasses.replace(
            stack.settings,
            token_url=proxy.url + urlsplit(intuit.TOKEN_URL).path,
            rotation_key_id=key,
        )
        secrets = StrictSecretsManager(new_session().client("secretsmanager"), clock=stack.clock.now)
        yield FaultyWorld(stack, proxy, secrets, settings)


def in_thread(call: Callable[[], Any]) -> tuple[dict[str, Any], threading.Thread]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except Exception as error:
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return result, thread


def assert_alive(world: FaultyWorld, connection_id: str) -> None:
    world.stack.assert_no_lease(connection_id)
    world.stack.assert_token_works_and_refreshes(connection_id)


# --- the answer outlives the lease ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        ProxyFault("delay", seconds=1.0),
        # Every read is short (a few bytes every 10 ms), the whole answer is not: no read timeout fires.
        ProxyFault("trickle", chunk_bytes=24, interval=0.01),
    ],
    ids=["delayed", "trickled"],
)
def test_an_answer_that_outlives_the_lease_is_not_joined_by_a_second_sender(world: FaultyWorld, fault) -> None:
    connection_id = world.connected_and_due()
    world.proxy.plan(fault)
    first, thread = in_thread(lambda: world.services().lifecycle.refresh(connection_id))
    world.wait_until_forwarded()
    world.stack.clock.advance(LEASE_SECONDS + SKEW_SECONDS + 1)  # the first holder's lease has expired

    second = world.services().lifecycle.refresh(connection_id)
    thread.join(30)

    assert second.outcome.value == "busy" and "lost in flight" in (second.message or "")
    assert first["value"].outcome.value == "refreshed", first
    assert world.stack.refresh_calls() == 1
    assert_alive(world, connection_id)


def test_a_slow_answer_within_intuit_s_limit_is_waited_for_not_abandoned_at_the_read_timeout(
    world: FaultyWorld,
) -> None:
    connection_id = world.connected_and_due()
    world.proxy.plan(ProxyFault("delay", seconds=1.5))

    result = world.services(read_timeout_seconds=0.5).lifecycle.refresh(connection_id)

    assert result.outcome.value == "refreshed", result
    assert world.stack.refresh_calls() == 1
    assert_alive(world, connection_id)


# --- the answer is lost -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["drop_after_forward", "reset_after_forward"])
def test_a_lost_answer_is_not_resent_until_the_call_is_over_then_reported_at_once(world: FaultyWorld, kind) -> None:
    connection_id = world.connected_and_due()
    world.proxy.plan(ProxyFault(kind))
    services = world.services()

    lost = services.lifecycle.refresh(connection_id)

    assert lost.outcome.value == "outcome_unknown", lost
    assert world.stack.refresh_calls() == 1  # processed by Intuit (rotated), and not sent again in this run
    assert world.stack.connection(connection_id).status.value == "connected"
    # Inside the window nobody sends the (perhaps consumed) refresh token.
    world.stack.clock.advance(IN_FLIGHT_WINDOW - 2)
    assert world.services().lifecycle.refresh(connection_id).outcome.value == "busy"
    assert world.stack.refresh_calls() == 1

    world.stack.clock.advance(2)
    checker = world.services()
    checked = checker.lifecycle.refresh(connection_id)

    # Strict rotation: the lost answer carried the only live refresh token. Said at once, and loudly.
    assert checked.outcome.value == "needs_reauthorization", checked
    assert world.stack.refresh_calls() == 2
    assert world.stack.connection(connection_id).status.value == "needs_reauthorization"
    assert checker.events.detail_types == ["Connection Needs Reauthorization"]


def test_an_answer_cut_by_the_whole_call_deadline_is_an_unknown_outcome(world: FaultyWorld) -> None:
    connection_id = world.connected_and_due()
    world.proxy.plan(ProxyFault("trickle", chunk_bytes=8, interval=0.05))  # about 10 s for the whole answer
    started = time.monotonic()

    result = world.services(refresh_call_deadline_seconds=1.0).lifecycle.refresh(connection_id)

    assert time.monotonic() - started < 5  # the deadline, not the per-read timeout, ended the call
    assert result.outcome.value == "outcome_unknown", result
    assert world.stack.refresh_calls() == 1
    stored = world.stack.connection(connection_id)
    assert stored.refresh_in_flight_until is not None and stored.lease_owner is None


class RefusesOneToken(requests.Session):
    """The accounting API as Intuit runs it, except that one access token was revoked early: a request
    bearing it gets Intuit's 401 AuthenticationFailed fault; every other goes to the emulator."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused
        self.refused_requests = 0

    def request(self, method, url, *args, headers=None, **kwargs):
        if (headers or {}).get("Authorization") == f"Bearer {self.refused}":
            self.refused_requests += 1
            answer = requests.Response()
            answer.status_code, answer.url, answer.encoding = 401, url, "utf-8"
            answer.headers.update({"Content-Type": "application/json", "intuit_tid": "1-test-refused"})
            answer._content = FAULT_401
            return answer
        return super().request(method, url, *args, headers=headers, **kwargs)


@pytest.mark.parametrize("kind", ["drop_after_forward", "reset_after_forward"])
def test_a_forced_refresh_whose_answer_is_lost_tells_the_client_s_caller_to_retry_not_unauthorized(
    world: FaultyWorld, kind
) -> None:
    """A workflow's QuickBooksClient gets a 401 for a token revoked early and asks for one forced refresh.
    Intuit processes it (the refresh token rotates) and the answer is lost. Nothing new can be handed out
    until the call is certainly over and checked: the caller must hear that Intuit did not answer and to
    try again shortly, not `unauthorized` ("reconnect if it persists") after a retry with the refused token."""
    connection_id = world.stack.connect().connection_id
    world.stack.clock.advance(20 * 60)  # old enough for a forced refresh
    services = world.services()
    tokens = TokenAccess(services.lifecycle, services.store, world.stack.clock)
    session = RefusesOneToken(tokens.access_token(connection_id))
    client = QuickBooksClient(
        connection_id, tokens=tokens, settings=services.settings, session=session, sleep=lambda _seconds: None
    )
    world.proxy.plan(ProxyFault(kind))

    with pytest.raises(QboConnectError) as raised:
        client.get("CompanyInfo", REALM_ID)

    assert world.stack.refresh_calls() == 1  # Intuit processed the forced refresh; nothing was sent again
    assert raised.value.code is ErrorCode.INTUIT_UNAVAILABLE, f"{raised.value.code.value}: {raised.value.message}"
    assert "try again" in raised.value.message
    assert session.refused_requests == 1, "the refused token was sent again"


# --- Secrets Manager refuses the rotated token set --------------------------------------------------------
@pytest.mark.parametrize("code", ["InternalServiceError", "ThrottlingException"])
def test_a_vault_write_failing_a_few_times_is_retried_with_the_same_request_token(world: FaultyWorld, code) -> None:
    connection_id = world.connected_and_due()
    before = world.stack.token_set(connection_id)
    world.secrets.fail_next_puts(3, code)

    result = world.services().lifecycle.refresh(connection_id)

    assert result.outcome.value == "refreshed", result
    assert world.stack.token_set(connection_id).refresh_token != before.refresh_token
    assert world.stack.connection(connection_id).pending_rotation is None
    assert world.stack.refresh_calls() == 1
    assert_alive(world, connection_id)


@pytest.mark.parametrize(("code", "times"), [("ThrottlingException", 10_000), ("LimitExceededException", 1)])
def test_a_rotation_the_vault_keeps_refusing_is_sealed_on_the_item_and_written_later(
    world: FaultyWorld, code: str, times: int
) -> None:
    connection_id = world.connected_and_due()
    before = world.stack.token_set(connection_id)
    world.secrets.fail_next_puts(times, code)
    services = world.services()

    result = services.lifecycle.refresh(connection_id)

    assert result.outcome.value == "refreshed", result
    stored = world.stack.connection(connection_id)
    assert stored.pending_rotation is not None and before.refresh_token not in stored.pending_rotation
    assert world.stack.token_set(connection_id).refresh_token == before.refresh_token  # the vault is behind
    # Workflows get the new token from the sealed copy meanwhile.
    _, token_set = world.services().lifecycle.valid_token(connection_id)
    assert token_set.refresh_token != before.refresh_token
    assert world.stack.company_name(token_set.access_token) is not None

    world.secrets.clear_failures()  # Secrets Manager is healthy again
    assert world.services().lifecycle.refresh(connection_id).outcome.value == "not_due"

    assert world.stack.token_set(connection_id).refresh_token == token_set.refresh_token
    assert world.stack.connection(connection_id).pending_rotation is None
    assert world.stack.refresh_calls() == 1
    assert_alive(world, connection_id)


# --- clocks and deadlines ---------------------------------------------------------------------------------
class AheadClock:
    """Another machine's clock: the shared one plus an offset."""

    def __init__(self, clock: Any, offset: float) -> None:
        self._clock, self._offset = clock, offset

    def now(self) -> float:
        return self._clock.now() + self._offset

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)


def test_two_refreshers_whose_clocks_are_two_minutes_apart_do_not_both_send(world: FaultyWorld) -> None:
    connection_id = world.connected_and_due()
    world.proxy.plan(ProxyFault("delay", seconds=1.0))
    first, thread = in_thread(lambda: world.services().lifecycle.refresh(connection_id))
    world.wait_until_forwarded()

    # By this refresher's clock the first one's lease expired a minute ago.
    second = world.services(clock=AheadClock(world.stack.clock, 120)).lifecycle.refresh(connection_id)
    thread.join(30)

    assert second.outcome.value == "busy", second
    assert first["value"].outcome.value == "refreshed", first
    assert world.stack.refresh_calls() == 1
    assert_alive(world, connection_id)


def test_an_invocation_about_to_end_does_not_start_a_refresh_it_could_not_persist(world: FaultyWorld) -> None:
    connection_id = world.connected_and_due()

    class EndingSoon:
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 25_000  # persisting needs 20 s here; a call would get 3 s, below the shortest allowed

    answer = world.services().refresh_runs.handle({"connection_id": connection_id}, EndingSoon())

    assert answer["outcome"] == "busy" and "too little time" in answer["message"]
    assert world.stack.refresh_calls() == 0 and world.proxy.forwarded_requests == 0
    assert_alive(world, connection_id)


# --- Secrets Manager's version quota ----------------------------------------------------------------------
def test_a_day_of_greedy_workflows_stays_within_the_secret_s_version_quota(world: FaultyWorld) -> None:
    """Once a minute for 24 hours: a workflow asking for the longest validity allowed, and one that sees a
    401 every time and asks for a forced refresh. AWS keeps every version younger than a day and about
    100 in all; past that PutSecretValue fails after Intuit rotated."""
    connection_id = world.stack.connect().connection_id
    services = world.services()
    greedy = TokenAccess(services.lifecycle, services.store, world.stack.clock)
    rejecting = TokenAccess(services.lifecycle, services.store, world.stack.clock)
    secret_name = world.settings.connection_secret_name(connection_id)

    for _ in range(24 * 60):
        world.stack.clock.advance(60)
        greedy.access_token(connection_id, min_valid_seconds=MAX_MIN_VALID_SECONDS)
        rejecting.token_rejected(connection_id, rejecting.access_token(connection_id))

    versions = world.secrets.versions_created_within_a_day(secret_name)
    assert versions <= 85, versions  # the quota is 100; the schedule's own refreshes need ~32 a day
    assert world.stack.connection(connection_id).pending_rotation is None  # no write was ever refused
    assert_alive(world, connection_id)
