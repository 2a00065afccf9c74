"""Token access for workflows: served from memory while valid, refreshed only through the lease, and a
401 leads to at most one forced refresh per connection per ten minutes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fakes import FORCED_REFRESH_AGE, FakeWorld
from qbo_connect.domain.admin_operations import ConnectionUpdate
from qbo_connect.domain.lifecycle import RefreshTimings
from qbo_connect.errors import Busy, ConnectionNotFound, InvalidInput, NeedsReauthorization, NotConnected
from qbo_connect.token_access import RECHECK_SECONDS, TokenAccess


class Counting:
    """Wraps one method of an object and counts its calls (the store's GetItem, the vault's GetSecretValue)."""

    def __init__(self, target: object, name: str) -> None:
        self.calls = 0
        self._inner = getattr(target, name)
        self._lock = threading.Lock()
        setattr(target, name, self)

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.calls += 1
        return self._inner(*args, **kwargs)


@pytest.fixture
def connected(world: FakeWorld) -> str:
    return world.connected().connection_id


@pytest.fixture
def access(world: FakeWorld) -> TokenAccess:
    return TokenAccess(world.lifecycle, world.store, world.clock)


def test_a_cold_cache_costs_one_metadata_read_and_one_secret_read_then_memory_serves(world, connected, access):
    gets, reads = Counting(world.store, "get"), Counting(world.vault, "read")
    first = access.access(connected)
    assert (gets.calls, reads.calls) == (1, 1)
    for _ in range(5):
        assert access.access_token(connected) == first.access_token
    assert (gets.calls, reads.calls) == (1, 1)
    assert first.access_token == world.token_set(connected).access_token
    assert first.realm_id == "9341453050000001"
    assert world.identity.refresh_calls == 0


def test_a_cached_token_too_short_for_the_caller_is_read_again_and_refreshed_only_when_the_vault_is_short_too(
    world, connected, access
):
    token = access.access_token(connected)
    world.clock.advance(3600 - 200)  # 200 s left: short of the default 300
    refreshed = access.access_token(connected)
    assert refreshed != token
    assert world.identity.refresh_calls == 1  # through the lifecycle, under the lease
    assert world.token_set(connected).access_token == refreshed


def test_the_schedules_fresh_token_is_picked_up_without_a_refresh_here(world, connected, access):
    access.access_token(connected)
    world.clock.advance(3600 - 600)
    assert world.lifecycle.refresh(connected).outcome.value == "refreshed"  # the schedule's sweep
    world.clock.advance(350)  # the cached token now has 250 s left
    assert access.access_token(connected) == world.token_set(connected).access_token
    assert world.identity.refresh_calls == 1


def test_threads_missing_together_share_one_read(world, connected, access):
    reads = Counting(world.vault, "read")
    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = set(pool.map(lambda _: access.access_token(connected), range(32)))
    assert len(tokens) == 1
    assert reads.calls == 1


def test_a_rejected_token_is_refreshed_once_and_a_second_rejection_soon_after_is_not(world, connected, access):
    world.clock.advance(FORCED_REFRESH_AGE)  # older than the forced-refresh minimum age
    rejected = access.access_token(connected)
    retry = access.token_rejected(connected, rejected)
    assert retry.access_token != rejected
    assert world.identity.refresh_calls == 1
    # The new token is refused too (a buggy caller, or Intuit trouble): no second refresh within the minimum age.
    again = access.token_rejected(connected, retry.access_token)
    assert again.access_token == retry.access_token
    world.clock.advance(30)
    assert access.token_rejected(connected, retry.access_token).access_token == retry.access_token
    assert world.identity.refresh_calls == 1
    world.clock.advance(RefreshTimings.forced_refresh_min_age_seconds - 29)
    assert access.token_rejected(connected, retry.access_token).access_token != retry.access_token
    assert world.identity.refresh_calls == 2


def test_the_lifecycle_refuses_to_force_a_refresh_of_a_young_token_whoever_asks(world, connected):
    rejected = TokenAccess(world.lifecycle, world.store, world.clock).access_token(connected)
    # Two processes (two TokenAccess) see a 401 right after the connection was made.
    for _ in range(2):
        TokenAccess(world.lifecycle, world.store, world.clock).token_rejected(connected, rejected)
    assert world.identity.refresh_calls == 0


def test_a_rejection_of_an_already_replaced_token_does_not_refresh(world, connected, access):
    world.clock.advance(3600 - 600)
    old = access.access_token(connected)
    world.lifecycle.refresh(connected)  # someone else refreshed meanwhile
    assert access.token_rejected(connected, old).access_token == world.token_set(connected).access_token
    assert world.identity.refresh_calls == 1


def test_threads_rejecting_the_same_token_share_one_forced_refresh(world, connected, access):
    world.clock.advance(FORCED_REFRESH_AGE)
    rejected = access.access_token(connected)
    with ThreadPoolExecutor(max_workers=8) as pool:
        retries = set(pool.map(lambda _: access.token_rejected(connected, rejected).access_token, range(16)))
    assert len(retries) == 1 and rejected not in retries
    assert world.identity.refresh_calls == 1


def test_a_revoked_grant_surfaces_as_needs_reauthorization(world, connected, access):
    world.clock.advance(FORCED_REFRESH_AGE)
    rejected = access.access_token(connected)
    world.identity.revoke_grant("9341453050000001")
    with pytest.raises(NeedsReauthorization) as raised:
        access.token_rejected(connected, rejected)
    assert "reconnect" in raised.value.message
    with pytest.raises(NeedsReauthorization):
        access.access_token(connected)  # the cache was dropped with the rejected token


def test_while_another_holder_refreshes_the_rejection_waits_for_it(world, connected, access):
    world.clock.advance(FORCED_REFRESH_AGE)
    rejected = access.access_token(connected)
    world.store.acquire_lease(connected, owner="the-schedule", now=world.clock.now(), seconds=2)
    started = world.clock.now()
    # The holder's lease lapsed without a refresh, and cannot be taken over within the skew allowance: the caller
    # hears busy, not the refused token (Intuit would refuse it again: an Unauthorized that is not the grant's).
    with pytest.raises(Busy, match="try again"):
        access.token_rejected(connected, rejected)
    assert world.clock.now() - started >= 2  # waited for the lease (fake time)
    assert world.identity.refresh_calls == 0


def test_a_rejection_that_waited_for_a_holder_who_refreshed_nothing_forces_its_refresh_after_all(
    world, connected, access
):
    world.clock.advance(FORCED_REFRESH_AGE)
    rejected = access.access_token(connected)
    holder = world.store.acquire_lease(connected, owner="a-check-not-due", now=world.clock.now(), seconds=200)
    real_sleep = world.clock.sleep

    def holder_gives_back_during_the_wait(seconds: float) -> None:
        world.store.release_lease(connected, owner=holder.lease_owner or "")
        real_sleep(seconds)

    world.clock.sleep = holder_gives_back_during_the_wait
    retry = access.token_rejected(connected, rejected)
    assert retry.access_token != rejected
    assert world.identity.refresh_calls == 1


def test_a_connection_that_is_not_connected_says_what_to_do(world, access):
    connection = world.create_connection("Never Connected")
    with pytest.raises(NotConnected) as raised:
        access.access_token(connection.connection_id)
    assert "authorize-link" in raised.value.message


@pytest.mark.parametrize("seconds", [-1, 3301, 7200])
def test_asking_for_more_validity_than_a_token_can_have_is_refused(world, connected, access, seconds):
    with pytest.raises(InvalidInput):
        access.access_token(connected, min_valid_seconds=seconds)
    assert world.identity.refresh_calls == 0


@pytest.mark.parametrize("action", ["reset", "delete"])
def test_a_reset_or_delete_stops_a_workflows_cached_token_within_a_minute(world, access, action):
    # Here Intuit still honours the token: another connection holds the same app on the company, so the
    # reset revoked nothing (a failed revocation leaves it the same). Only the stored state says stop.
    connection_id = world.connected("Acme Books").connection_id
    world.connected("Acme Books reports")
    access.access_token(connection_id)
    getattr(world.administration, action)(connection_id)

    world.clock.advance(RECHECK_SECONDS)

    with pytest.raises((NotConnected, ConnectionNotFound)):
        access.access_token(connection_id)


def test_a_warm_cache_checks_the_stored_state_once_a_minute_with_one_metadata_read(world, connected, access):
    gets, reads = Counting(world.store, "get"), Counting(world.vault, "read")
    token = access.access_token(connected)
    for _ in range(3):
        world.clock.advance(RECHECK_SECONDS / 2)
        assert access.access_token(connected) == token

    assert (gets.calls, reads.calls) == (2, 1)  # the first read, then one check after a minute


def test_a_workflow_left_too_little_time_to_refresh_an_on_demand_connection_is_told_how_to_get_a_token(world, access):
    """Only a caller refreshes an on-demand connection (no schedule does until its keep-alive, a day later):
    'the next run will', the schedule's words, promised a refresh nobody makes, and a workflow retrying with the
    same 45 s left hears it forever. It must hear what to do instead."""
    connection = world.connected()
    world.admin.update(connection.connection_id, ConnectionUpdate(refresh_policy="on_demand"), actor="test")
    world.clock.advance(3600 - 180)

    with pytest.raises(Busy) as refused:
        access.access(connection.connection_id, not_after=world.clock.now() + 45)

    assert "next run" not in refused.value.message
    needed = f"{int(world.lifecycle.timings.to_see_a_refresh_through)} s"
    assert "token function" in refused.value.message and needed in refused.value.message
    assert "QBO_REFRESH_FUNCTION_NAME" in refused.value.message
    assert world.identity.refresh_calls == 0
