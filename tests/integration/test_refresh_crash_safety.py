"""A refresher that dies at any step, or stalls past its lease, against the strict emulator and moto.

A crash is modelled as the process dying: from the crash point on, nothing more is sent, not even the
lease release in a `finally` (refresh_support.CallLog). Time is a manual_clock the services and the
emulator share.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Any

import pytest
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import Conflict, NeedsReauthorization
from refresh_support import (
    ACCESS_TOKEN_SECONDS,
    COMPANY_NAME,
    FENCE_SECONDS,
    LEASE_SECONDS,
    SKEW_SECONDS,
    CallLog,
    Crash,
    Stack,
    botocore_hook,
    manual_clock,
    new_session,
)

# What one refresh of a due connection does, adapter by adapter (`->`: the call returned).
REFRESH_SEQUENCE = [
    "store.acquire_lease",
    "store.acquire_lease ->",
    "vault.read",
    "vault.read ->",
    "identity.refresh",
    "identity.refresh ->",
    "vault.write",
    "vault.write ->",
    "store.save",  # the metadata, conditional on version and owner, releasing the lease in the same write
    "store.save ->",
]


def connected_and_due(stack: Stack) -> tuple[str, TokenSet]:
    connection_id = stack.connect().connection_id
    stack.clock.advance(ACCESS_TOKEN_SECONDS - 600)  # 10 minutes left: inside the 15-minute margin
    return connection_id, stack.token_set(connection_id)


def test_a_refresh_does_exactly_these_steps_and_nothing_between_intuit_and_the_vault(make_stack) -> None:
    """The one window that can lose a token (Intuit rotated it, we have not stored it yet) holds no I/O:
    the vault write is the very next call after Intuit answers, and the next request on the wire is the
    PutSecretValue."""
    stack = make_stack(manual_clock())
    connection_id, _ = connected_and_due(stack)
    log = CallLog()
    session = new_session()

    def note_aws_call(model: Any, **_: Any) -> None:
        log.note(f"aws {model.service_model.service_id} {model.name}")

    with botocore_hook(session, "before-call", note_aws_call):
        services = stack.services(log=log, session=session)
        assert services.lifecycle.refresh(connection_id).outcome.value == "refreshed"

    assert [e for e in log.entries if not e.startswith("aws ")] == REFRESH_SEQUENCE
    answered = log.entries.index("identity.refresh ->")
    assert log.entries[answered + 1 : answered + 3] == ["vault.write", "aws Secrets Manager PutSecretValue"]
    # And Intuit's call itself touches nothing else on the way.
    called = log.entries.index("identity.refresh")
    assert called + 1 == answered


def test_the_vault_write_is_retried_idempotently_when_its_answer_is_lost(make_stack) -> None:
    """Inside the window the write itself is retried (boto3's standard mode) with the same
    ClientRequestToken: a write that landed but whose answer was lost is not written twice."""
    stack = make_stack(manual_clock())
    connection_id, _ = connected_and_due(stack)
    session = new_session()
    sent_tokens: list[str] = []
    lost: list[bool] = []

    def record_token(request: Any, **_: Any) -> None:
        sent_tokens.append(json.loads(request.body)["ClientRequestToken"])

    def lose_first_answer(attempts: int, response: Any, **_: Any) -> float | None:
        if attempts == 1 and response is not None and response[0].status_code == 200 and not lost:
            lost.append(True)
            return 0  # "retry now", as if the connection dropped after Secrets Manager stored the version
        return None

    with (
        botocore_hook(session, "before-send.secrets-manager.PutSecretValue", record_token),
        botocore_hook(session, "needs-retry.secrets-manager.PutSecretValue", lose_first_answer),
    ):
        services = stack.services(session=session)
        assert services.lifecycle.refresh(connection_id).outcome.value == "refreshed"

    assert len(sent_tokens) == 2 and sent_tokens[0] == sent_tokens[1]
    client = new_session().client("secretsmanager")
    versions = client.list_secret_version_ids(SecretId=stack.settings.connection_secret_name(connection_id))
    assert len(versions["Versions"]) == 3  # created, connected, refreshed: the retry added nothing
    assert stack.secret_generation(connection_id) == stack.connection(connection_id).secret_generation == 2
    stack.assert_token_works_and_refreshes(connection_id)


# (crash point, what the next holder finds once the dead holder's lease has expired)
CRASH_POINTS = {
    "after taking the lease": (("store.acquire_lease", "after"), "refreshed"),
    "after reading the secret": (("vault.read", "after"), "refreshed"),
    "before calling Intuit": (("identity.refresh", "before"), "refreshed"),
    # Intuit rotated the refresh token and the new one died with the process: the only loss possible.
    "after Intuit answered, before storing": (("identity.refresh", "after"), "needs_reauthorization"),
    "before storing (same point)": (("vault.write", "before"), "needs_reauthorization"),
    # The secret is ahead of the metadata: the next holder reconciles from it, nothing to refresh.
    "after storing, before the metadata update": (("vault.write", "after"), "not_due"),
    # The lease goes back in the metadata write itself: crashing before it is crashing before the update.
    "before the metadata update and release": (("store.save", "before"), "not_due"),
    "after the metadata update and release": (("store.save", "after"), "not_due"),
}


@pytest.mark.parametrize("point", CRASH_POINTS, ids=list(CRASH_POINTS))
def test_a_crash_at_any_step_leaves_nothing_stuck_past_the_in_flight_window(make_stack, point: str) -> None:
    crash_at, next_outcome = CRASH_POINTS[point]
    stack = make_stack(manual_clock())
    connection_id, before = connected_and_due(stack)

    with pytest.raises(Crash):
        stack.services(log=CallLog(crash_at=crash_at)).lifecycle.refresh(connection_id)

    released = crash_at == ("store.save", "after")
    # Until the dead holder's call is certainly over at Intuit, others back off rather than send its token...
    assert stack.services().lifecycle.refresh(connection_id).outcome.value == ("not_due" if released else "busy")
    # ...while workflows keep getting a token that works (the old one still has 10 minutes).
    _, token = stack.services().lifecycle.valid_token(connection_id)
    assert stack.company_name(token.access_token) == COMPANY_NAME

    stack.clock.advance(LEASE_SECONDS + 1)
    if not released:
        assert stack.services().lifecycle.refresh(connection_id).outcome.value == "busy"  # lease gone, mark not
    stack.clock.advance(FENCE_SECONDS - LEASE_SECONDS - 1)
    services = stack.services()
    assert services.lifecycle.refresh(connection_id).outcome.value == next_outcome
    stack.assert_no_lease(connection_id)
    connection = stack.connection(connection_id)
    assert connection.secret_generation == stack.secret_generation(connection_id), "metadata behind its secret"

    if next_outcome == "needs_reauthorization":
        # The strict emulator saw the consumed refresh token again: the grant is gone, and we say so.
        assert connection.status.value == "needs_reauthorization"
        assert stack.token_set(connection_id).refresh_token == before.refresh_token
        assert services.events.detail_types == ["Connection Needs Reauthorization"]
        calls = stack.refresh_calls()
        assert stack.services().lifecycle.refresh(connection_id).outcome.value == "not_refreshable"
        with pytest.raises(NeedsReauthorization, match="reconnect"):
            stack.services().lifecycle.valid_token(connection_id)
        assert stack.refresh_calls() == calls == 2
        return

    assert connection.status.value == "connected"
    if next_outcome == "refreshed":
        assert stack.refresh_calls() == 1  # the dead holder never reached Intuit
    else:
        assert stack.token_set(connection_id).refresh_token != before.refresh_token  # its refresh was kept
        assert connection.access_token_expires_at and connection.access_token_expires_at > stack.clock.now() + 3000
    stack.assert_token_works_and_refreshes(connection_id)


def test_a_crash_before_releasing_an_unchanged_lease_clears_with_its_expiry(make_stack) -> None:
    """A holder that found nothing to do gives the lease back on its own; dying first leaves it to expire."""
    stack = make_stack(manual_clock())
    connection_id = stack.connect().connection_id  # fresh token: not due
    with pytest.raises(Crash):
        stack.services(log=CallLog(crash_at=("store.release_lease", "before"))).lifecycle.refresh(connection_id)
    assert stack.connection(connection_id).lease_is_held(stack.clock.now())

    stack.clock.advance(ACCESS_TOKEN_SECONDS - 600)
    assert not stack.connection(connection_id).lease_is_held(stack.clock.now())
    assert stack.services().lifecycle.refresh(connection_id).outcome.value == "refreshed"
    stack.assert_no_lease(connection_id)
    stack.assert_token_works_and_refreshes(connection_id)


# --- slow holders ---------------------------------------------------------------------------------------
class StalledIntuit:
    """Holds the first refresh call until released: a frozen container, a stalled connection.

    Released, the call goes on to the real Intuit client, or with `answer` returns that token set
    instead (a lenient provider that still honours the refresh token the other holder used).
    """

    def __init__(self, answer: TokenSet | None = None) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._answer = answer

    def wrap(self, identity: Any) -> Any:
        stall = self

        class Stalled:
            def __getattr__(self, name: str) -> Any:
                return getattr(identity, name)

            def refresh(
                self, credentials: Any, *, refresh_token: str, scopes: tuple[str, ...], **kwargs: Any
            ) -> TokenSet:
                stall.entered.set()
                assert stall.release.wait(30), "never released"
                if stall._answer is not None:
                    return stall._answer
                return identity.refresh(credentials, refresh_token=refresh_token, scopes=scopes, **kwargs)

        return Stalled()


def start_slow_holder(
    stack: Stack, connection_id: str, stall: StalledIntuit
) -> tuple[dict[str, Any], threading.Thread]:
    """Holder A takes the lease and stalls inside the Intuit call. Returns A's result (filled in once A
    is released and its thread joined) and A's thread."""
    result: dict[str, Any] = {}
    slow = stack.services(identity_wrapper=stall.wrap)

    def holder_a() -> None:
        try:
            result["outcome"] = slow.lifecycle.refresh(connection_id).outcome.value
        except Exception as error:
            result["error"] = error

    thread = threading.Thread(target=holder_a)
    thread.start()
    assert stall.entered.wait(10)
    return result, thread


def test_a_holder_past_its_lease_is_not_joined_by_a_second_sender_under_strict_rotation(make_stack) -> None:
    """A's call outlives its lease. B finds the lease expired but A's in-flight mark unexpired, so B does
    not send the same refresh token (strict Intuit would revoke the grant); A's answer is kept."""
    stack = make_stack(manual_clock())
    connection_id, before = connected_and_due(stack)
    stall = StalledIntuit()
    result, thread = start_slow_holder(stack, connection_id, stall)
    stack.clock.advance(LEASE_SECONDS + SKEW_SECONDS + 1)

    refused = stack.services().lifecycle.refresh(connection_id)  # holder B
    stall.release.set()
    thread.join(30)

    assert refused.outcome.value == "busy" and "lost in flight" in (refused.message or "")
    assert result.get("outcome") == "refreshed", result
    assert stack.refresh_calls() == 1
    assert stack.token_set(connection_id).refresh_token != before.refresh_token
    connection = stack.connection(connection_id)
    assert connection.status.value == "connected" and connection.refresh_in_flight_until is None
    stack.assert_no_lease(connection_id)
    stack.assert_token_works_and_refreshes(connection_id)


def test_a_holder_stalled_past_the_in_flight_window_cannot_overwrite_the_newer_token_set(make_stack) -> None:
    """A's process stalls so long (a paused VM) that its call is certainly over at Intuit and B refreshes.
    A lenient provider still answers A late; A's write is refused by the vault's generation check
    (ClientRequestToken) instead of overwriting B's."""
    stack = make_stack(manual_clock())
    connection_id, before = connected_and_due(stack)
    late_answer = replace(before, access_token="late-access-token", refresh_token="late-refresh-token")
    stall = StalledIntuit(answer=late_answer)
    result, thread = start_slow_holder(stack, connection_id, stall)
    stack.clock.advance(FENCE_SECONDS)
    assert stack.services().lifecycle.refresh(connection_id).outcome.value == "refreshed"  # holder B
    newer = stack.token_set(connection_id)
    stall.release.set()
    thread.join(30)

    # Refused: either reported as an error to retry or as an outcome; never a write.
    assert isinstance(result.get("error"), Conflict) or result.get("outcome") in {"already_refreshed", "busy"}
    assert_newer_kept(stack, connection_id, newer)


def assert_newer_kept(stack: Stack, connection_id: str, newer: TokenSet) -> None:
    stored = stack.token_set(connection_id)
    assert (stored.access_token, stored.refresh_token) == (newer.access_token, newer.refresh_token)
    connection = stack.connection(connection_id)
    assert connection.status.value == "connected" and connection.consecutive_refresh_failures == 0
    assert connection.secret_generation == stack.secret_generation(connection_id) == 2
    stack.assert_no_lease(connection_id)
    stack.assert_token_works_and_refreshes(connection_id)


def test_a_holder_whose_lease_ran_short_does_not_start_an_intuit_call(make_stack) -> None:
    """If reaching Intuit could outlive the lease (the secret read was slow), the holder stops before
    sending the refresh token: a call ending after another holder took over could rotate the token twice."""
    stack = make_stack(manual_clock())
    connection_id, before = connected_and_due(stack)
    log = CallLog()
    slow = stack.services(log=log)
    real_read = slow.vault.read

    def slow_read(connection_id: str) -> Any:
        stack.clock.advance(LEASE_SECONDS - 10)  # boto3 retrying a brown-out for most of the lease
        return real_read(connection_id)

    slow.vault.read = slow_read  # type: ignore[method-assign]

    result = slow.lifecycle.refresh(connection_id)
    assert result.outcome.value == "busy", result
    assert "identity.refresh" not in log.entries and stack.refresh_calls() == 0
    stack.assert_no_lease(connection_id)
    assert stack.connection(connection_id).status.value == "connected"
    assert stack.token_set(connection_id).refresh_token == before.refresh_token
    assert stack.services().lifecycle.refresh(connection_id).outcome.value == "refreshed"
    stack.assert_token_works_and_refreshes(connection_id)
