"""The token lifecycle: refresh only when due, one refresher at a time, persist first, classify Intuit's answers."""

from __future__ import annotations

import threading

import pytest
from fakes import CLIENT_ID, DAY, FakeWorld
from qbo_connect import intuit
from qbo_connect.domain.connection import ConnectionStatus
from qbo_connect.domain.events import EventType
from qbo_connect.domain.lifecycle import UNREFRESHED_LOOK_SECONDS, RefreshOutcome, TokenLifecycle
from qbo_connect.errors import (
    Busy,
    IntuitUnavailable,
    InvalidClient,
    NeedsReauthorization,
    NotConnected,
    OutcomeUnknown,
    Throttled,
    VaultUnavailable,
)
from qbo_connect.refresh_runs import RefreshRuns

REALM = "9341453050000001"
# Intuit's access tokens live an hour; with the 15-minute margin a token is due 45 minutes after it was issued.
UNTIL_DUE = 3600 - 900 + 1


def _due(world: FakeWorld) -> None:
    world.clock.advance(UNTIL_DUE)


def test_a_connection_that_is_not_due_is_left_alone(world):
    connection = world.connected()
    world.clock.advance(UNTIL_DUE - 60)

    result = world.lifecycle.refresh(connection.connection_id)

    assert result.outcome is RefreshOutcome.NOT_DUE
    assert world.identity.refresh_calls == 0
    assert world.connection(connection.connection_id).lease_owner is None


def test_a_due_connection_is_refreshed_once_and_the_newest_token_set_is_stored(world):
    connection = world.connected()
    before = world.token_set(connection.connection_id)
    _due(world)

    result = world.lifecycle.refresh(connection.connection_id)

    stored = world.connection(connection.connection_id)
    token_set = world.token_set(connection.connection_id)
    assert result.outcome is RefreshOutcome.REFRESHED
    assert world.identity.refresh_calls == 1
    assert token_set.refresh_token == world.identity.current_refresh_token(REALM) != before.refresh_token
    assert world.identity.is_access_token_valid(token_set.access_token, REALM)
    assert token_set.expires_at == world.clock.now() + 3600
    assert stored.access_token_expires_at == token_set.expires_at
    assert stored.refresh_token_expires_at == token_set.refresh_token_expires_at
    assert stored.last_refreshed_at == world.clock.now()
    assert stored.secret_generation == world.vault.read(connection.connection_id).generation
    assert stored.lease_owner is None  # given back with the metadata write
    assert world.lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.NOT_DUE


def test_the_hard_expiry_survives_refresh_answers_that_leave_it_out(world):
    world.identity.hard_expiry_in_refresh = False
    connection = world.connected()
    hard = world.token_set(connection.connection_id).refresh_token_hard_expires_at
    _due(world)

    world.lifecycle.refresh(connection.connection_id)

    assert hard is not None
    assert world.token_set(connection.connection_id).refresh_token_hard_expires_at == hard
    assert world.connection(connection.connection_id).refresh_token_hard_expires_at == hard


def test_twenty_concurrent_refreshers_make_exactly_one_call_to_intuit(world):
    connection = world.connected()
    _due(world)
    threads = 20
    start = threading.Barrier(threads)
    others_done = threading.Semaphore(0)
    results = []
    results_lock = threading.Lock()

    def hold_the_call_until_the_others_tried() -> None:
        # Keep the one Intuit call in flight until every other thread has had its go at the lease.
        for _ in range(threads - 1):
            assert others_done.acquire(timeout=10)

    world.identity.before_refresh.append(hold_the_call_until_the_others_tried)

    def refresher() -> None:
        start.wait(timeout=10)
        result = world.lifecycle.refresh(connection.connection_id)
        with results_lock:
            results.append(result.outcome)
        if result.outcome is not RefreshOutcome.REFRESHED:
            others_done.release()

    workers = [threading.Thread(target=refresher) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=20)

    assert world.identity.refresh_calls == 1
    assert sorted(results) == sorted([RefreshOutcome.REFRESHED] + [RefreshOutcome.BUSY] * (threads - 1))
    token_set = world.token_set(connection.connection_id)
    assert token_set.refresh_token == world.identity.current_refresh_token(REALM)
    assert not world.identity.grant_revoked(REALM)


def test_invalid_grant_marks_the_connection_for_reauthorization_and_stops_refreshing(world):
    connection = world.connected()
    world.identity.revoke_grant(REALM)  # an administrator disconnected the app in QuickBooks
    _due(world)

    result = world.lifecycle.refresh(connection.connection_id)

    stored = world.connection(connection.connection_id)
    assert result.outcome is RefreshOutcome.NEEDS_REAUTHORIZATION
    assert stored.status is ConnectionStatus.NEEDS_REAUTHORIZATION
    assert stored.last_refresh_error == "needs_reauthorization"
    event = world.events.published[-1]
    assert event.detail_type == EventType.NEEDS_REAUTHORIZATION
    assert event.detail["connection_id"] == connection.connection_id
    assert event.detail["status"] == "needs_reauthorization"
    assert connection.connection_id not in world.lifecycle.due_connection_ids()

    world.clock.advance(DAY)
    again = world.lifecycle.refresh(connection.connection_id)

    assert again.outcome is RefreshOutcome.NOT_REFRESHABLE
    assert world.identity.refresh_calls == 1


def test_invalid_client_is_fixed_by_setting_the_current_client_secret(world):
    connection = world.connected()
    world.identity.rotate_client_secret("ABfakeclientid0123456789", "the-new-client-secret")
    _due(world)

    result = world.lifecycle.refresh(connection.connection_id)

    assert result.outcome is RefreshOutcome.INVALID_CLIENT
    assert world.connection(connection.connection_id).status is ConnectionStatus.INVALID_CLIENT
    assert world.events.published[-1].detail_type == EventType.INVALID_CLIENT
    with pytest.raises(InvalidClient, match=f"qbo-connect connections set-secret {connection.connection_id}"):
        world.lifecycle.valid_token(connection.connection_id)

    world.administration.set_client_secret(connection.connection_id, "the-new-client-secret")

    assert world.connection(connection.connection_id).status is ConnectionStatus.CONNECTED
    assert world.lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.REFRESHED
    _, token_set = world.lifecycle.valid_token(connection.connection_id)
    assert world.identity.is_access_token_valid(token_set.access_token, REALM)


@pytest.mark.parametrize("error", [IntuitUnavailable("HTTP 503"), Throttled("HTTP 429", retry_after=2)])
def test_transient_failures_are_retried_a_bounded_number_of_times_and_keep_the_connection(world, error):
    connection = world.connected()
    _due(world)
    world.identity.fail_next(world.timings.attempts, error)

    result = world.lifecycle.refresh(connection.connection_id)

    stored = world.connection(connection.connection_id)
    assert result.outcome is RefreshOutcome.TRANSIENT_FAILURE
    assert world.identity.refresh_calls == world.timings.attempts
    assert len(world.clock.sleeps) == world.timings.attempts - 1
    assert all(0 <= s <= world.timings.backoff_max_seconds for s in world.clock.sleeps)
    assert stored.status is ConnectionStatus.CONNECTED
    assert stored.consecutive_refresh_failures == 1
    assert stored.last_refresh_error == error.code.value
    assert world.events.published[-1].detail_type == EventType.REFRESH_FAILED
    assert world.events.published[-1].detail["consecutive_failures"] == 1
    assert connection.connection_id in world.lifecycle.due_connection_ids()


def test_a_retry_after_from_intuit_sets_the_wait_between_attempts(world):
    connection = world.connected()
    _due(world)
    world.identity.fail_next(2, Throttled("HTTP 429", retry_after=3))

    result = world.lifecycle.refresh(connection.connection_id)

    assert result.outcome is RefreshOutcome.REFRESHED
    assert world.clock.sleeps == [3, 3]
    assert world.identity.refresh_calls == 3


def test_consecutive_failed_runs_are_counted_and_the_next_success_announces_the_recovery(world):
    connection = world.connected()
    _due(world)
    for run in (1, 2):
        world.identity.fail_next(world.timings.attempts, IntuitUnavailable("timed out"))
        assert world.lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.TRANSIENT_FAILURE
        assert world.connection(connection.connection_id).consecutive_refresh_failures == run
        world.clock.advance(300)

    result = world.lifecycle.refresh(connection.connection_id)

    stored = world.connection(connection.connection_id)
    assert result.outcome is RefreshOutcome.RECOVERED
    assert stored.consecutive_refresh_failures == 0
    assert stored.last_refresh_error is None
    recovered = world.events.published[-1]
    assert recovered.detail_type == EventType.RECOVERED == "Connection Recovered"
    assert "2 failed runs" in recovered.detail["reason"]


def test_a_day_long_intuit_outage_announces_the_failure_streak_a_few_times_and_counts_every_run(world, emitted):
    """Intuit's token endpoint down for a day: the schedule fails 288 runs in a row. Subscribers of Connection
    Refresh Failed hear of it when it starts, when it becomes repeated (RefreshFailingRepeatedlyAlarm's level),
    then at 4, 8, 16, ... runs in a row (a handful a day), and Connection Recovered when it ends; one event a
    run would teach them to ignore it. The alarms' metrics still count every run."""
    connection = world.connected()
    _due(world)
    runs = 288  # a day of five-minute runs
    for _ in range(runs):
        world.identity.fail_next(world.timings.attempts, IntuitUnavailable("HTTP 503"))
        assert world.lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.TRANSIENT_FAILURE
        world.clock.advance(300)
    assert world.lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.RECOVERED

    failed = [
        e.detail["consecutive_failures"] for e in world.events.published if e.detail_type == EventType.REFRESH_FAILED
    ]
    assert failed == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert world.events.published[-1].detail_type == EventType.RECOVERED
    assert f"after {runs} failed runs" in world.events.published[-1].detail["reason"]
    # Every failed run is still a datapoint for the alarms.
    metrics = emitted()
    assert sum(v for _, v in metrics["RefreshTransientFailure"]) == runs
    assert sum(v for _, v in metrics["RefreshFailingRepeatedly"]) == runs - 1
    assert world.connection(connection.connection_id).consecutive_refresh_failures == 0


def test_a_crash_between_the_vault_write_and_the_metadata_is_reconciled_without_calling_intuit(world):
    connection = world.connected()
    _due(world)
    world.store.fail_next_save(RuntimeError("the process died here"))

    with pytest.raises(RuntimeError):
        world.lifecycle.refresh(connection.connection_id)

    saved_tokens = world.token_set(connection.connection_id)
    behind = world.connection(connection.connection_id)
    assert saved_tokens.refresh_token == world.identity.current_refresh_token(REALM)
    assert behind.access_token_expires_at < saved_tokens.expires_at
    # A real crash does not give the lease back: the next holder waits for it to expire.
    world.store.acquire_lease(connection.connection_id, owner="crashed", now=world.clock.now(), seconds=60)
    assert world.lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.BUSY
    world.clock.advance(60 + world.leases.skew_seconds)
    assert world.lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.BUSY  # within the allowance
    world.clock.advance(1)

    result = world.lifecycle.refresh(connection.connection_id)

    reconciled = world.connection(connection.connection_id)
    assert result.outcome is RefreshOutcome.NOT_DUE
    assert world.identity.refresh_calls == 1
    assert reconciled.access_token_expires_at == saved_tokens.expires_at
    assert reconciled.secret_generation == world.vault.read(connection.connection_id).generation
    assert reconciled.lease_owner is None
    assert not world.identity.grant_revoked(REALM)


def test_a_rotation_neither_the_vault_nor_the_key_takes_keeps_the_refresh_lease_until_it_runs_out(world):
    # Intuit rotated the refresh token and the new one exists only in this process: giving the lease back would
    # clear the in-flight mark, and the next refresher would send the consumed token (strict rotation: revoked).
    connection = world.connected()
    _due(world)
    world.vault.fail_next_writes(1, VaultUnavailable("Secrets Manager refused the write (ThrottlingException)"))
    world.sealer.fail_next(1, RuntimeError("KMS is down too"))

    with pytest.raises(VaultUnavailable):
        world.lifecycle.refresh(connection.connection_id)

    kept = world.connection(connection.connection_id)
    assert kept.lease_owner is not None and kept.refresh_in_flight_until is not None
    assert world.lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.BUSY
    assert world.identity.refresh_calls == 1


def test_a_holder_whose_lease_expired_mid_call_is_not_joined_by_a_second_sender(world):
    # Strict rotation: had the second holder sent the same refresh token, Intuit would revoke the grant.
    connection = world.connected()
    _due(world)
    second = {}

    def second_holder_tries_after_the_lease() -> None:
        world.clock.advance(world.leases.lease_seconds + world.leases.skew_seconds + 1)
        second["result"] = world.lifecycle.refresh(connection.connection_id)

    world.identity.before_refresh.append(second_holder_tries_after_the_lease)

    slow = world.lifecycle.refresh(connection.connection_id)

    assert second["result"].outcome is RefreshOutcome.BUSY
    assert "lost in flight" in second["result"].message
    assert slow.outcome is RefreshOutcome.REFRESHED
    assert world.identity.refresh_calls == 1
    assert not world.identity.grant_revoked(REALM)
    stored = world.connection(connection.connection_id)
    assert stored.access_token_expires_at == world.token_set(connection.connection_id).expires_at
    assert stored.lease_owner is None and stored.refresh_in_flight_until is None


def test_a_fresh_token_is_handed_out_from_the_vault_without_calling_intuit(world):
    connection = world.connected()
    world.clock.advance(1000)

    returned_connection, token_set = world.lifecycle.valid_token(connection.connection_id, min_valid_seconds=300)

    assert token_set == world.token_set(connection.connection_id)
    assert returned_connection.connection_id == connection.connection_id
    assert world.identity.refresh_calls == 0


def test_a_token_too_short_for_the_caller_is_refreshed_first(world):
    connection = world.connected()
    world.clock.advance(3600 - 200)

    _, token_set = world.lifecycle.valid_token(connection.connection_id, min_valid_seconds=300)

    assert world.identity.refresh_calls == 1
    assert token_set.is_valid_for(3000, world.clock.now())


def test_valid_token_says_to_retry_when_intuit_is_down_and_the_token_is_short(world):
    connection = world.connected()
    world.clock.advance(3600 - 200)
    world.identity.fail_next(world.timings.attempts, IntuitUnavailable("HTTP 502"))

    with pytest.raises(IntuitUnavailable, match="try again shortly"):
        world.lifecycle.valid_token(connection.connection_id, min_valid_seconds=300)

    assert world.connection(connection.connection_id).status is ConnectionStatus.CONNECTED


def test_valid_token_on_a_new_connection_says_to_open_the_authorize_link(world):
    connection = world.create_connection()

    with pytest.raises(NotConnected, match=f"qbo-connect connections authorize-link {connection.connection_id}"):
        world.lifecycle.valid_token(connection.connection_id)

    assert world.identity.refresh_calls == 0


def test_valid_token_after_invalid_grant_says_an_administrator_must_reconnect(world):
    connection = world.connected()
    world.identity.revoke_grant(REALM)
    _due(world)
    world.lifecycle.refresh(connection.connection_id)

    with pytest.raises(NeedsReauthorization) as raised:
        world.lifecycle.valid_token(connection.connection_id)

    assert f"qbo-connect connections authorize-link {connection.connection_id}" in raised.value.message
    assert world.identity.refresh_calls == 1


def test_the_sweep_refreshes_only_connected_connections_that_are_due(world):
    due = world.connected("Due Books")
    world.clock.advance(1200)
    fresh = world.connected("Fresh Books", realm_id="1111")
    never = world.create_connection("Never Connected")
    world.clock.advance(UNTIL_DUE - 1200)

    summary = RefreshRuns(world.lifecycle, None, world.clock).sweep()

    assert world.lifecycle.due_connection_ids() == []
    assert summary == {"due": 1, "outcomes": {"refreshed": 1}}
    assert world.identity.refresh_calls == 1
    assert world.connection(due.connection_id).last_refreshed_at == world.clock.now()
    assert world.connection(fresh.connection_id).last_refreshed_at < world.clock.now()
    assert world.connection(never.connection_id).status is ConnectionStatus.NOT_CONNECTED


def test_two_weeks_of_five_minute_sweeps_keep_a_valid_token_in_the_vault_with_strict_rotation(world):
    connection = world.connected()
    runs = RefreshRuns(world.lifecycle, None, world.clock)
    period = world.settings.refresh_period_seconds
    shortest = float("inf")

    for _ in range(int(14 * DAY / period)):
        world.clock.advance(period)
        runs.sweep()
        token_set = world.token_set(connection.connection_id)
        shortest = min(shortest, token_set.seconds_valid(world.clock.now()))
        assert world.identity.is_access_token_valid(token_set.access_token, REALM)

    assert shortest >= world.settings.refresh_margin_seconds - period
    # One refresh per ~45 minutes, never more: Intuit sees no tight loop.
    assert world.identity.refresh_calls == pytest.approx(14 * DAY / (UNTIL_DUE + period), rel=0.2)
    assert world.connection(connection.connection_id).status is ConnectionStatus.CONNECTED
    assert not world.identity.grant_revoked(REALM)


def test_the_approaching_end_of_the_grant_is_announced_once_per_threshold(world):
    world.identity.hard_seconds = 32 * DAY
    connection = world.connected()

    warnings = []
    while world.clock.now() < world.connection(connection.connection_id).refresh_token_hard_expires_at - DAY / 2:
        world.clock.advance(UNTIL_DUE)
        world.lifecycle.refresh(connection.connection_id)
        warnings += [e for e in world.events.published if e.detail_type == EventType.REAUTHORIZATION_DUE]
        world.events.published.clear()

    assert [w.detail["threshold_days"] for w in warnings] == [30, 7, 1]
    assert all(w.detail["expiry"] == "hard" for w in warnings)
    assert all("reconnect" in w.detail["reason"] for w in warnings)


def test_a_warning_about_a_stalled_rolling_expiry_does_not_use_up_the_hard_expirys_warnings(world):
    """Intuit has answered refreshes for weeks with the same refresh token and what is left of its life
    (intuit/oauth-pythonclient#17): its rolling expiry came within 30 days and was announced. Then Intuit
    rotates again and the grant's end moves out to its five-year hard expiry, 45 days away. When that comes
    within 30 days, a person must hear it too: it is another end, and this time only reconnecting helps."""
    world.identity.hard_seconds = 120 * DAY  # an old grant: its five years end 120 days after this consent
    connection = world.connected()
    consented_at = world.clock.now()
    world.identity.rotates_refresh_tokens = False

    warnings = []
    while world.clock.now() < consented_at + 119.5 * DAY:
        world.clock.advance(UNTIL_DUE)
        if world.clock.now() > consented_at + 75 * DAY:
            world.identity.rotates_refresh_tokens = True
        world.lifecycle.refresh(connection.connection_id)
        warnings += [e.detail for e in world.events.published if e.detail_type == EventType.REAUTHORIZATION_DUE]
        world.events.published.clear()

    assert world.connection(connection.connection_id).status is ConnectionStatus.CONNECTED
    assert [(w["threshold_days"], w["expiry"]) for w in warnings] == [
        (30, "rolling"),
        (30, "hard"),
        (7, "hard"),
        (1, "hard"),
    ]
    hard_thirty = warnings[1]
    assert 29 < hard_thirty["days_left"] <= 30


def _left_with_a_wrong_client_secret(world: FakeWorld) -> str:
    """The app's client secret was regenerated in Intuit's portal and nobody set it here: the connection's next
    refresh is refused (invalid_client) and nothing refreshes it any more."""
    connection_id = world.connected().connection_id
    world.identity.rotate_client_secret(CLIENT_ID, "the-new-client-secret")
    _due(world)
    assert world.lifecycle.refresh(connection_id).outcome is RefreshOutcome.INVALID_CLIENT
    world.events.published.clear()
    return connection_id


@pytest.mark.parametrize(
    ("hard_days", "ends_by", "action"),
    [(5 * 365, "rolling", "set-secret"), (60, "hard", "authorize-link")],
    ids=["rolling-end", "hard-end"],
)
def test_a_connection_nobody_can_refresh_still_hears_its_grant_end_coming_at_every_mark(
    world, emitted, hard_days, ends_by, action
):
    """An invalid_client connection is not refreshed, so no refresh warns about its grant's end: the refresh
    token's rolling expiry (100 days after its last refresh) or Intuit's five-year one, whichever comes first.
    The person who must fix it hears it as from a refreshing connection: Connection Reauthorization Due within a
    sweep of the 30, 7 and 1 day marks, naming the end and what to do; GrantEndingSoon every day once within
    30 days (GrantsEndingSoonAlarm's period); and the connection's attention says it."""
    world.identity.hard_seconds = hard_days * DAY
    connection_id = _left_with_a_wrong_client_secret(world)
    end = world.connection(connection_id).grant_end
    assert end is not None and end.by == ends_by
    runs = RefreshRuns(world.lifecycle, None, world.clock)
    period = world.settings.refresh_period_seconds
    world.clock.advance(end.at - 31.5 * DAY - world.clock.now())
    emitted()

    ending_soon_days = []
    for day in range(31):  # each day's sweeps, until half a day before the end
        for _ in range(int(DAY // period)):
            world.clock.advance(period)
            runs.sweep()
        ending_soon_days.append(bool(emitted().get("GrantEndingSoon")))
        if day == 15:
            midway = (world.admin.show(connection_id)["attention"], int(end.days_left(world.clock.now())))

    assert ending_soon_days == [False] + [True] * 30
    warnings = [e.detail for e in world.events.published if e.detail_type == EventType.REAUTHORIZATION_DUE]
    assert [w["threshold_days"] for w in warnings] == [30, 7, 1]
    for warning in warnings:
        assert warning["expiry"] == ends_by and warning["status"] == "invalid_client"
        assert warning["grant_ends_at"] == int(end.at)
        assert warning["threshold_days"] - period / DAY < warning["days_left"] <= warning["threshold_days"]
        assert "set-secret" in warning["reason"] and action in warning["reason"], warning["reason"]
    attention, days_left = midway
    assert attention.startswith("invalid client") and f"in {days_left} days" in attention, attention
    assert world.connection(connection_id).status is ConnectionStatus.INVALID_CLIENT
    assert world.identity.refresh_calls == 1  # looking sends nothing to Intuit


def test_two_sweeps_looking_at_a_connection_nobody_refreshes_at_once_announce_its_mark_once(world, monkeypatch):
    """A retried sweep (or two Lambdas) reads the connection at the same moment as another that announces the
    30-day mark and records it first: the later one must not announce it again."""
    connection_id = _left_with_a_wrong_client_secret(world)
    world.clock.advance(world.connection(connection_id).grant_ends_at - 29.5 * DAY - world.clock.now())
    runs = RefreshRuns(world.lifecycle, None, world.clock)
    read = world.store.get
    raced: list[bool] = []

    def read_while_another_sweep_runs(cid: str):
        found = read(cid)
        if not raced:
            raced.append(True)
            runs.sweep()  # the other sweep reads the same connection after us and finishes first
        return found

    monkeypatch.setattr(world.store, "get", read_while_another_sweep_runs)
    runs.sweep()
    monkeypatch.undo()
    runs.sweep()  # and the next sweep, five minutes on

    warnings = [e.detail for e in world.events.published if e.detail_type == EventType.REAUTHORIZATION_DUE]
    assert [w["threshold_days"] for w in warnings] == [30]
    assert world.connection(connection_id).expiry_warnings_sent == ("30d",)


def test_aws_refusing_to_read_one_connection_nobody_refreshes_keeps_neither_the_others_nor_the_fan_out_waiting(
    world, monkeypatch
):
    """DynamoDB throttles the read of one invalid_client connection: the sweep still fans out what is due and
    warns the other connections nobody refreshes; the refused one is looked at again by the next sweep."""
    refused = _left_with_a_wrong_client_secret(world)
    world.identity.register_client(CLIENT_ID, world.client_secret)  # for the next two consents
    other = world.connected("Other Books", realm_id="9341453050000002").connection_id
    due = world.connected("Due Books", realm_id="9341453050000003").connection_id
    world.identity.rotate_client_secret(CLIENT_ID, "the-newer-client-secret")
    _due(world)
    assert world.lifecycle.refresh(other).outcome is RefreshOutcome.INVALID_CLIENT
    world.clock.advance(world.connection(other).grant_ends_at - 29.5 * DAY - world.clock.now())
    queue = RecordingQueue()
    runs = RefreshRuns(world.lifecycle, queue, world.clock)
    read = world.store.get

    def throttled_for_one(cid: str):
        if cid == refused:
            raise RuntimeError("ProvisionedThroughputExceededException")
        return read(cid)

    monkeypatch.setattr(world.store, "get", throttled_for_one)
    runs.sweep()
    monkeypatch.undo()
    warned = [
        e.detail["connection_id"] for e in world.events.published if e.detail_type == EventType.REAUTHORIZATION_DUE
    ]
    runs.sweep()
    warned_next = [
        e.detail["connection_id"] for e in world.events.published if e.detail_type == EventType.REAUTHORIZATION_DUE
    ]

    assert due in queue.sent[0][0]
    assert warned == [other]
    assert warned_next == [other, refused]


class RecordingQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[list[str], int]] = []

    def enqueue(self, connection_ids: list[str], *, delay_seconds: int = 0) -> int:
        self.sent.append((connection_ids, delay_seconds))
        return len(connection_ids)


def test_an_unknown_outcome_queues_one_check_for_when_the_call_is_certainly_over_and_nothing_before(world):
    queue = RecordingQueue()
    lifecycle = TokenLifecycle(
        world.store, world.vault, world.identity, world.events, world.clock, world.leases, world.timings, recheck=queue
    )
    connection = world.connected()
    _due(world)
    world.identity.fail_next(1, OutcomeUnknown("Intuit's token endpoint's answer was lost (ReadTimeout)"))

    result = lifecycle.refresh(connection.connection_id)

    window = intuit.REQUEST_TIME_LIMIT_SECONDS + world.leases.skew_seconds + 1
    assert result.outcome is RefreshOutcome.OUTCOME_UNKNOWN and "Intuit may have rotated" in result.message
    assert queue.sent == [([connection.connection_id], window)]
    assert world.events.detail_types[-1] == "Connection Refresh Failed"
    # A check that comes early (its clock behind the writer's) sends nothing and asks to come back.
    world.clock.advance(window - 60)
    assert lifecycle.refresh(connection.connection_id, requeue_if_in_flight=True).outcome is RefreshOutcome.BUSY
    assert queue.sent[-1] == ([connection.connection_id], 60)
    assert world.identity.refresh_calls == 1
    world.clock.advance(60)
    assert lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.RECOVERED
    assert world.identity.refresh_calls == 2


def test_token_requests_while_a_lost_answer_is_in_flight_queue_no_checks_of_their_own(world):
    """The check queued when the answer was lost stands: twenty workflows asking meanwhile add none (each
    would wake the refresh function for nothing) and each hears that a refresh is under way."""
    queue = RecordingQueue()
    lifecycle = TokenLifecycle(
        world.store, world.vault, world.identity, world.events, world.clock, world.leases, world.timings, recheck=queue
    )
    connection = world.connected()
    world.clock.advance(3600 + 1)  # the access token has expired: every request needs a refresh
    world.identity.fail_next(1, OutcomeUnknown("Intuit's token endpoint's answer was lost (ReadTimeout)"))
    assert lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.OUTCOME_UNKNOWN
    world.clock.advance(10)

    for _ in range(20):
        with pytest.raises(Busy):
            lifecycle.valid_token(connection.connection_id)

    assert len(queue.sent) == 1
    assert world.identity.refresh_calls == 1


@pytest.mark.parametrize("action", ["reset", "delete"])
def test_a_reset_or_delete_during_a_refresh_waits_its_turn_and_leaves_no_live_grant(world, action):
    connection = world.connected()
    _due(world)
    refused = []

    def administrator_acts_meanwhile() -> None:
        with pytest.raises(Busy) as raised:  # waits for the lease (30 s), then says to try again
            getattr(world.administration, action)(connection.connection_id)
        refused.append(str(raised.value))

    world.identity.before_refresh.append(administrator_acts_meanwhile)

    assert world.lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.REFRESHED
    assert refused and "try again" in refused[0]
    rotated = world.token_set(connection.connection_id).refresh_token
    getattr(world.administration, action)(connection.connection_id)  # now it goes through

    assert world.identity.revoked_tokens == [rotated]  # the newest token, the one Intuit knows as live
    assert world.identity.grant_revoked(REALM)
    assert world.identity.refresh_calls == 1


def _sibling_kept_its_grant(world, action, outcome, sibling) -> None:
    """Nothing was revoked, the outcome names the sibling, and the sibling still refreshes."""
    revocation = outcome.last_revocation if action == "reset" else outcome
    assert world.identity.revocation_calls == 0
    assert revocation == f"not revoked: connection {sibling.name!r} uses this app on the same company"
    _due(world)
    assert world.lifecycle.refresh(sibling.connection_id).outcome is RefreshOutcome.REFRESHED


@pytest.mark.parametrize("action", ["reset", "delete"])
def test_a_reset_or_delete_leaves_another_connection_to_the_same_company_working_and_says_why(world, action):
    # Intuit's revocation disconnects the app from the company: every connection to it would go too.
    connection = world.connected("Acme Books")
    sibling = world.connected("Acme Books reports")

    outcome = getattr(world.administration, action)(connection.connection_id)

    _sibling_kept_its_grant(world, action, outcome, sibling)


def _lag_the_realm_index(store) -> None:
    """DynamoDB's by-realm index is eventually consistent: from now on it answers with the items as they are now,
    while GetItem reads the table (the in-memory store's and moto's indexes never lag)."""
    seen = {c.connection_id: c for c in store.list()}

    def find_by_realm(realm_id, *, client_id=None):
        return [c for c in seen.values() if c.realm_id == realm_id and (client_id is None or c.client_id == client_id)]

    store.find_by_realm = find_by_realm


@pytest.mark.parametrize("action", ["reset", "delete"])
def test_a_reset_or_delete_reads_a_sibling_as_it_is_not_as_the_lagging_realm_index_still_shows_it(world, action):
    # The sibling is pinned to the company and was reset; a company administrator connects it again moments
    # before the reset, while the index still shows it not connected. A revocation would disconnect it.
    connection = world.connected("Acme Books")
    sibling = world.connected("Acme Books reports")
    world.administration.reset(sibling.connection_id)  # nothing revoked: Acme Books holds the app
    _lag_the_realm_index(world.store)
    world.connect(sibling.connection_id, realm_id=REALM)

    outcome = getattr(world.administration, action)(connection.connection_id)

    _sibling_kept_its_grant(world, action, outcome, sibling)


def test_a_sweep_short_of_time_looks_at_the_grants_nobody_refreshes_it_has_time_for_and_the_next_sweeps_the_rest(
    world, monkeypatch
):
    """Thousands of invalid_client connections (a client secret rotated at Intuit for a whole app) must not run a
    sweep past its invocation's end, where Lambda kills it: the look stops short of the end, and because each
    sweep looks in a new order, a few sweeps still reach every grant (its warnings are about days)."""
    world.identity.register_client(CLIENT_ID, world.client_secret)
    ids = [world.connected(f"Books {n}", realm_id=f"93414530500001{n:02d}").connection_id for n in range(12)]
    world.identity.rotate_client_secret(CLIENT_ID, "the-newer-client-secret")
    _due(world)
    for connection_id in ids:
        assert world.lifecycle.refresh(connection_id).outcome is RefreshOutcome.INVALID_CLIENT
    world.clock.advance(world.connection(ids[0]).grant_ends_at - 29.5 * DAY - world.clock.now())
    runs = RefreshRuns(world.lifecycle, RecordingQueue(), world.clock)
    read = world.store.get

    def slow_read(cid: str):
        world.clock.advance(1.0)  # a second per look: the invocation below has time for a few
        return read(cid)

    monkeypatch.setattr(world.store, "get", slow_read)
    warned_per_sweep = []
    for _ in range(40):  # each sweep looks at 4 or 5 of the 12, in a random order: all are reached (p > 1 - 1e-6)
        not_after = world.clock.now() + UNREFRESHED_LOOK_SECONDS + 4.0  # time for a few looks besides the reserve
        runs.sweep(not_after=not_after)
        assert world.clock.now() <= not_after, "the sweep ran past its invocation's end"
        warned_per_sweep.append(
            {
                e.detail["connection_id"]
                for e in world.events.published
                if e.detail_type == EventType.REAUTHORIZATION_DUE
            }
        )

    assert 0 < len(warned_per_sweep[0]) < len(ids)
    assert warned_per_sweep[-1] == set(ids)
