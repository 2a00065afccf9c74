"""The refresh hand-off (TokenLifecycle._hand_off, LambdaRefreshHandoff), from an adversarial review: faults in their
real shape on the fakes. A Lambda synchronous invocation goes on after its caller stops waiting; a herd's other callers find the
refresh function busy with the first one's refresh; botocore's connect timeout comes before its read timeout."""

from __future__ import annotations

import io
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from fakes import FakeWorld
from qbo_connect.adapters.lambda_handoff import LambdaRefreshHandoff
from qbo_connect.domain.admin_operations import ConnectionUpdate
from qbo_connect.domain.lifecycle import MIN_HANDOFF_WAIT_SECONDS
from qbo_connect.errors import Busy, VaultUnavailable
from qbo_connect.runtime import build_services
from qbo_connect.settings import Settings

WORKFLOW_SECONDS = 58.0  # a 60 s workflow's work deadline
INTUIT_ANSWERS_AFTER = 25.0


class RefreshFunction:
    """The refresh function behind a synchronous Invoke, on the world's lease: a first invocation takes the lease
    and stores Intuit's answer `INTUIT_ANSWERS_AFTER` s later (whether or not its caller still waits); any other
    invocation meanwhile finds the lease held and answers busy at once, as lifecycle.refresh does."""

    def __init__(self, world: FakeWorld, connection_id: str) -> None:
        self.world, self.connection_id = world, connection_id
        self.payloads: list[dict[str, Any]] = []
        self.done_at: float | None = None
        self._holder: Any = None
        real_sleep = world.clock.sleep

        def sleep(seconds: float) -> None:  # the refresh function's own container goes on meanwhile
            real_sleep(seconds)
            self._maybe_finish()

        world.clock.sleep = sleep

    def refresh(self, payload: dict[str, Any], *, wait_seconds: float) -> dict[str, Any] | None:
        self.payloads.append(payload)
        if self._holder is None and self.done_at is None:
            now = self.world.clock.now()
            self._holder = self.world.store.acquire_lease(self.connection_id, owner="refresh-fn", now=now, seconds=200)
            self.done_at = now + INTUIT_ANSWERS_AFTER
            if wait_seconds < INTUIT_ANSWERS_AFTER:
                self.world.clock.sleep(wait_seconds)
                return None
            self.world.clock.sleep(INTUIT_ANSWERS_AFTER)
            return {"connection_id": self.connection_id, "outcome": "refreshed", "message": None}
        return {"connection_id": self.connection_id, "outcome": "busy", "message": "the lease is held"}

    def _maybe_finish(self) -> None:
        if self._holder is not None and self.done_at is not None and self.world.clock.now() >= self.done_at:
            holder, self._holder = self._holder, None
            self.world.store.release_lease(self.connection_id, owner=holder.lease_owner or "")
            assert self.world.lifecycle.refresh(self.connection_id, force=True).outcome.value == "refreshed"


def on_demand_and_expired(world: FakeWorld) -> str:
    connection = world.connected()
    world.admin.update(connection.connection_id, ConnectionUpdate(refresh_policy="on_demand"), actor="test")
    world.clock.advance(3600 + 60)
    return connection.connection_id


def test_a_herd_member_whose_hand_off_found_the_refresh_function_busy_gets_the_token_stored_in_its_time(world):
    """A herd's first workflow hands the refresh off; the refresh function stores Intuit's answer 25 s later. A
    second 60 s workflow asking at the same moment is answered busy by the refresh function (the lease is held). It
    should wait for the lease while it can still read the token and answer (until not_after minus
    AFTER_A_HANDOFF_SECONDS, ~50 s) and get the new token at 25 s, having invoked the refresh function once. It waits
    only until not_after - persist_seconds (18 s: the time a refresh of its own would need, though it sends none),
    then invokes the refresh function twice more in the same moment, each answered busy, and fails with Busy at 18 s,
    seven seconds before the token it needed is stored: the herd pays 3 invocations per caller and all but one fail."""
    connection_id = on_demand_and_expired(world)
    refresh_function = RefreshFunction(world, connection_id)
    now = world.clock.now()
    refresh_function.refresh({"connection_id": connection_id}, wait_seconds=0)  # the herd's first, timed out at once
    world.clock.advance(0)
    refresh_function.payloads.clear()
    assert world.clock.now() == now

    answer: Any
    try:
        answer = world.container(handoff=refresh_function).access(connection_id, not_after=now + WORKFLOW_SECONDS)
    except Busy as busy:
        answer = busy

    assert not isinstance(answer, Busy), (
        f"busy at t+{world.clock.now() - now:.0f} s (token stored at t+{INTUIT_ANSWERS_AFTER:.0f} s, "
        f"deadline t+{WORKFLOW_SECONDS:.0f} s) after {len(refresh_function.payloads)} invocations: {answer}"
    )
    assert len(refresh_function.payloads) <= 1  # none at all: the lease was seen held, and waited for


def test_a_caller_whose_hand_off_timed_out_is_not_told_that_nothing_was_sent(world):
    """A 30 s admin or app-pages caller (or a workflow) hands off; Intuit is slow, the wait runs out, and the
    refresh function goes on and stores the token. valid_token loops on, its later hand-offs are refused for lack of
    time, and the last message wins: the person hears "nothing was sent; try again with more time left", which is
    false (a refresh is under way and will be stored) and asks for what no 30 s caller can have."""
    connection_id = on_demand_and_expired(world)
    refresh_function = RefreshFunction(world, connection_id)
    access = world.container(handoff=refresh_function)
    now = world.clock.now()

    try:
        access.access(connection_id, not_after=now + 20.0)
        raise AssertionError("a token came although the refresh takes 25 s")
    except Busy as busy:
        message = busy.message

    assert len(refresh_function.payloads) == 1
    assert "nothing was sent" not in message and "more time left" not in message, message
    assert "refresh function" in message, message


class AnsweringClient:
    def invoke(self, **_request: Any) -> dict[str, Any]:
        return {"StatusCode": 200, "Payload": io.BytesIO(b'{"connection_id": "qbc-1", "outcome": "refreshed"}')}


class CountingFactory:
    """The adapter's Lambda clients, by the read timeout each was made with."""

    def __init__(self) -> None:
        self.made: list[float] = []

    def __call__(self, read_timeout: float) -> Any:
        self.made.append(read_timeout)
        return AnsweringClient()


def test_a_warm_container_does_not_keep_a_lambda_client_for_every_whole_second_a_caller_had_left():
    """Each hand-off's wait is what its invocation had left, so a warm token or test function (200 s, hand-offs
    with up to ~150 s to wait) sees a different whole second nearly every time: the adapter made and kept one
    boto3 client (its endpoint resolver, connection pool, ~MBs) per second seen, for the container's life."""
    factory = CountingFactory()
    handoff = LambdaRefreshHandoff(factory, "qbo-connect-refresh")
    for wait in range(1, 151):
        assert handoff.refresh({"connection_id": "qbc-1"}, wait_seconds=wait)["outcome"] == "refreshed"
    assert len(factory.made) <= 10, f"{len(factory.made)} Lambda clients kept by one container"


def test_the_hand_off_client_answers_within_the_wait_it_was_given_including_its_connect_timeout():
    """The caller leaves AFTER_A_HANDOFF_SECONDS (7.6 s) after `wait` to read the token and answer; botocore's
    connect timeout comes before the read timeout, so a slow connect (a SYN retransmitted, the Lambda endpoint under
    load) then a refresh answered late made the call last wait + 5 s: less than 3 s were left for two throttled AWS
    reads budgeted 3.3 s each, and the workflow Lambda was killed before answering."""
    settings = Settings(table_name="connections", refresh_function_name="qbo-connect-refresh")
    services = build_services(settings, session=boto3.Session(region_name="us-east-1"))
    made: list[Any] = []
    handoff = LambdaRefreshHandoff(
        lambda seconds: made.append(services.refresh_handoff._client_with_read_timeout(seconds)) or AnsweringClient(),
        "f",
    )
    for wait in (MIN_HANDOFF_WAIT_SECONDS, 3.5, 20, 150):
        handoff.refresh({"connection_id": "qbc-1"}, wait_seconds=wait)
        config = made[-1].meta.config
        assert config.connect_timeout + config.read_timeout <= wait, (
            f"connect {config.connect_timeout} s + read {config.read_timeout} s for a {wait} s wait"
        )


class FailingClient:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def invoke(self, **_request: Any) -> dict[str, Any]:
        raise self.error


def test_what_a_caller_hears_when_lambda_does_not_answer_the_hand_off():
    """An Invoke cut off after it was sent (a read timeout, a reset) may still run: the caller hears it is under way.
    One Lambda refused (throttled) says so, without claiming botocore retried it (one attempt) or that nothing
    changed; a deployment's mistake (the role may not invoke) is raised as it is."""

    def handoff(error: Exception) -> LambdaRefreshHandoff:
        return LambdaRefreshHandoff(lambda _seconds: FailingClient(error), "qbo-connect-refresh")

    payload = {"connection_id": "qbc-1"}
    sent = ReadTimeoutError(endpoint_url="https://lambda")
    reset = ConnectionClosedError(endpoint_url="https://lambda")
    assert handoff(sent).refresh(payload, wait_seconds=20) is None
    assert handoff(reset).refresh(payload, wait_seconds=20) is None
    throttled = ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, "Invoke")
    with pytest.raises(VaultUnavailable) as refused:
        handoff(throttled).refresh(payload, wait_seconds=20)
    assert "TooManyRequestsException" in refused.value.message and "retried" not in refused.value.message
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "Invoke")
    with pytest.raises(ClientError):
        handoff(denied).refresh(payload, wait_seconds=20)
