"""120 days of the refresh schedule on the in-memory fakes (tests/fakes.py), time from a fake clock.

The connection starts on an old grant whose five-year hard expiry falls 60 days in: the schedule must
keep every token a workflow reads valid for at least the margin minus one period, warn 30, 7 and 1 days
before the grant ends (once each), and once an administrator reconnects after the last warning, keep
the rolling refresh-token expiry moving for the rest of the run without warning again.
"""

from __future__ import annotations

import itertools
import random

import pytest
from fakes import DAY, FakeClock, FakeWorld, StrictIdentityProvider
from qbo_connect.domain.events import EventType
from qbo_connect.domain.grant_end import WARNING_DAYS
from qbo_connect.observability import logger
from qbo_connect.refresh_runs import RefreshRuns

REALM = "9341453050000001"
SIMULATED_DAYS = 120
OLD_GRANT_LEFT = 60 * DAY  # consented about five years ago
NEW_GRANT_LIFETIME = 5 * 365 * DAY
REACTION_TIME = 6 * 3600  # an administrator reconnects six hours after the last warning
SHORTEST_ACCESS_TOKEN = 3300


@pytest.fixture
def quiet_logs():
    """34,560 runs log a line each; keep warnings and errors only, restored afterwards."""
    level = logger.log_level
    logger.setLevel("WARNING")
    yield
    logger.setLevel(level)


def test_120_days_of_five_minute_runs_keep_tokens_valid_and_warn_before_the_grant_ends(quiet_logs) -> None:
    clock = FakeClock()
    identity = StrictIdentityProvider(clock, hard_seconds=OLD_GRANT_LEFT)
    world = FakeWorld(clock, identity)
    margin = world.settings.refresh_margin_seconds
    period = world.settings.refresh_period_seconds
    runs = RefreshRuns(world.lifecycle, None, world.clock)
    rng = random.Random(20261128)

    schedule_start = clock.now()
    clock.advance(rng.uniform(0, period))  # consent falls anywhere between two runs
    connection_id = world.connected(realm_id=REALM).connection_id
    first_grant_ends = world.connection(connection_id).refresh_token_hard_expires_at
    assert first_grant_ends == pytest.approx(clock.now() + OLD_GRANT_LEFT)

    shortest_read = float("inf")
    reads = 0
    rolling: list[tuple[float, float, float]] = []  # (refreshed at, rolling expiry, hard expiry)
    reconnect_at: float | None = None
    reconnected_at: float | None = None

    for run in range(1, int(SIMULATED_DAYS * DAY / period) + 1):
        run_at = schedule_start + run * period
        if reconnect_at is not None and reconnected_at is None and run_at > reconnect_at:
            clock.advance(reconnect_at - clock.now())
            identity.hard_seconds = NEW_GRANT_LIFETIME
            world.connect(connection_id, realm_id=REALM)
            reconnected_at = clock.now()
            assert world.connection(connection_id).expiry_warnings_sent == ()

        clock.advance(run_at - clock.now())
        # Intuit says an hour; the schedule must not depend on it: lifetimes vary, so refreshes fall
        # anywhere between runs and the reads below meet tokens at every age.
        identity.access_seconds = rng.uniform(SHORTEST_ACCESS_TOKEN, 3600)
        calls = identity.refresh_calls
        runs.sweep()
        if identity.refresh_calls != calls:
            connection = world.connection(connection_id)
            assert connection.refresh_token_expires_at and connection.refresh_token_hard_expires_at
            rolling.append((clock.now(), connection.refresh_token_expires_at, connection.refresh_token_hard_expires_at))
        if reconnect_at is None and any(
            e.detail_type == EventType.REAUTHORIZATION_DUE and e.detail["threshold_days"] == 1
            for e in world.events.published
        ):
            reconnect_at = clock.now() + REACTION_TIME + rng.uniform(0, period)

        # A workflow reads the token at a random moment before the next run: from the vault directly
        # (the public secret contract) or through the lifecycle; neither may need Intuit.
        clock.advance(rng.uniform(0, period - 1))
        calls = identity.refresh_calls
        if rng.random() < 0.75:
            token_set = world.token_set(connection_id)
            assert token_set is not None
        else:
            _, token_set = world.lifecycle.valid_token(connection_id)
        assert identity.refresh_calls == calls, "a workflow's read had to refresh"
        valid_for = token_set.seconds_valid(clock.now())
        assert valid_for >= margin - period, f"run {run}: a workflow read a token valid for only {valid_for:.0f} s"
        assert identity.is_access_token_valid(token_set.access_token, REALM)
        shortest_read = min(shortest_read, valid_for)
        reads += 1

    assert reads == SIMULATED_DAYS * DAY / period
    assert margin - period <= shortest_read < margin - period + 60  # the bound holds and is nearly reached
    assert world.connection(connection_id).status.value == "connected"
    assert not identity.grant_revoked(REALM)
    # One refresh per token lifetime less the margin (give or take a period), never a tight loop.
    simulated = SIMULATED_DAYS * DAY
    assert simulated / (3600 - margin + period) <= len(rolling) <= simulated / (SHORTEST_ACCESS_TOKEN - margin)

    # Warnings: 30, 7 and 1 days before the old grant's end, once each, soon after each threshold.
    warnings = [e.detail for e in world.events.published if e.detail_type == EventType.REAUTHORIZATION_DUE]
    assert [w["threshold_days"] for w in warnings] == list(WARNING_DAYS)
    for warning in warnings:
        assert warning["expiry"] == "hard" and abs(warning["grant_ends_at"] - first_grant_ends) <= 1
        assert warning["threshold_days"] - 1 / 24 < warning["days_left"] <= warning["threshold_days"]
    assert {e.detail_type for e in world.events.published} == {EventType.AUTHORIZED, EventType.REAUTHORIZATION_DUE}
    assert reconnected_at is not None and reconnected_at < first_grant_ends

    # The rolling expiry: capped by the old grant's end, then carried forward by every refresh.
    before = [(at, expires, hard) for at, expires, hard in rolling if at < reconnected_at]
    after = [(at, expires, hard) for at, expires, hard in rolling if at > reconnected_at]
    # (Intuit counts lifetimes in whole seconds: the end moves by less than one.)
    assert before and all(abs(expires - first_grant_ends) < 1 and expires == hard for _, expires, hard in before)
    assert len(after) > (SIMULATED_DAYS * DAY - (reconnected_at - schedule_start)) / 3600
    assert all(later[1] > earlier[1] for earlier, later in itertools.pairwise(after))
    assert all(expires == pytest.approx(at + identity.refresh_seconds) for at, expires, _ in after)


def test_120_days_on_demand_cost_about_a_write_a_day_and_every_request_gets_a_valid_token(quiet_logs) -> None:
    from qbo_connect.domain.admin_operations import ConnectionUpdate

    clock = FakeClock()
    identity = StrictIdentityProvider(clock, hard_seconds=NEW_GRANT_LIFETIME)
    world = FakeWorld(clock, identity)
    period = world.settings.refresh_period_seconds
    runs = RefreshRuns(world.lifecycle, None, world.clock)
    rng = random.Random(20261206)
    connection_id = world.connected(realm_id=REALM).connection_id
    world.admin.update(connection_id, ConnectionUpdate(refresh_policy="on_demand"), actor="admin@example.com")
    # A nightly job on most days, and now and then a request at any hour.
    job_days = {day for day in range(SIMULATED_DAYS) if rng.random() < 0.8}
    requests_at = sorted(
        [day * DAY + 2 * 3600 + rng.uniform(0, 600) for day in job_days]
        + [rng.uniform(0, SIMULATED_DAYS * DAY) for _ in range(40)]
    )
    start = clock.now()
    writes_before = world.vault.read(connection_id).generation
    refresh_gaps: list[float] = []
    last_refresh = world.connection(connection_id).last_refreshed_at

    for run in range(1, int(SIMULATED_DAYS * DAY / period) + 1):
        run_at = start + run * period
        while requests_at and start + requests_at[0] < run_at:
            clock.advance(start + requests_at.pop(0) - clock.now())
            calls = identity.refresh_calls
            _, token_set = world.lifecycle.valid_token(connection_id, min_valid_seconds=300)
            assert identity.refresh_calls - calls <= 1
            assert token_set.seconds_valid(clock.now()) >= 300
            assert identity.is_access_token_valid(token_set.access_token, REALM)
        clock.advance(run_at - clock.now())
        runs.sweep()
        refreshed = world.connection(connection_id).last_refreshed_at
        if refreshed != last_refresh:
            refresh_gaps.append(refreshed - last_refresh)
            last_refresh = refreshed

    connection = world.connection(connection_id)
    writes = world.vault.read(connection_id).generation - writes_before
    assert connection.status.value == "connected" and not identity.grant_revoked(REALM)
    # The keep-alive never lets a day and a sweep pass without a refresh; the grant's rolling expiry moved.
    assert max(refresh_gaps) <= DAY + period
    assert connection.refresh_token_expires_at > clock.now() + identity.refresh_seconds - DAY - period
    # About one write a day (a request and the keep-alive rarely both), against 30 for an eager connection.
    assert SIMULATED_DAYS * 0.9 <= writes <= SIMULATED_DAYS * 1.5
