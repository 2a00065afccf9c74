"""Refresh policies: eager connections are kept valid by the schedule; on-demand ones are refreshed when a
workflow asks for a token, and once a day to keep the grant alive."""

from __future__ import annotations

import pytest
from fakes import DAY, FakeWorld
from qbo_connect.domain.admin_operations import ConnectionUpdate
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.connection import RefreshPolicy
from qbo_connect.domain.events import EventType
from qbo_connect.domain.lifecycle import RefreshOutcome
from qbo_connect.errors import InvalidInput
from qbo_connect.refresh_runs import RefreshRuns

REALM = "9341453050000001"
HOUR = 3600


def on_demand(world: FakeWorld) -> str:
    connection_id = world.connected(realm_id=REALM).connection_id
    world.admin.update(connection_id, ConnectionUpdate(refresh_policy="on_demand"), actor="admin@example.com")
    return connection_id


def sweep(world: FakeWorld) -> int:
    """Run the schedule's sweep; how many refresh calls reached Intuit."""
    calls = world.identity.refresh_calls
    RefreshRuns(world.lifecycle, None, world.clock).sweep()
    return world.identity.refresh_calls - calls


def test_the_schedule_leaves_an_on_demand_token_to_expire(world):
    connection_id = on_demand(world)

    world.clock.advance(2 * HOUR)

    assert connection_id not in world.lifecycle.due_connection_ids()
    assert sweep(world) == 0
    assert world.token_set(connection_id).seconds_valid(world.clock.now()) < 0


def test_a_workflow_asking_for_an_expired_on_demand_token_gets_a_fresh_one_from_one_refresh(world):
    connection_id = on_demand(world)
    world.clock.advance(2 * HOUR)

    _, token_set = world.lifecycle.valid_token(connection_id, min_valid_seconds=300)
    _, again = world.lifecycle.valid_token(connection_id, min_valid_seconds=300)

    assert world.identity.refresh_calls == 1
    assert token_set.seconds_valid(world.clock.now()) > 3000
    assert again.access_token == token_set.access_token
    assert world.identity.is_access_token_valid(token_set.access_token, REALM)
    assert world.vault.read(connection_id).token_set.access_token == token_set.access_token


def test_an_unused_on_demand_connection_is_refreshed_once_a_day_by_the_schedule(world):
    connection_id = on_demand(world)
    refreshed_at = world.connection(connection_id).last_refreshed_at

    world.clock.advance(refreshed_at + DAY - 60 - world.clock.now())
    assert sweep(world) == 0
    world.clock.advance(61)
    assert sweep(world) == 1
    assert sweep(world) == 0  # not again until a day after this one

    stored = world.connection(connection_id)
    assert stored.last_refreshed_at == world.clock.now()
    assert stored.refresh_token_expires_at == pytest.approx(world.clock.now() + world.identity.refresh_seconds)


def test_a_workflows_refresh_moves_the_keepalive(world):
    connection_id = on_demand(world)
    world.clock.advance(12 * HOUR)
    world.lifecycle.valid_token(connection_id)

    world.clock.advance(DAY - 12 * HOUR + 60)  # a day after consent, half a day after the workflow's refresh
    assert sweep(world) == 0
    world.clock.advance(12 * HOUR)
    assert sweep(world) == 1


def test_the_keepalive_finds_a_revoked_grant_within_a_day(world):
    connection_id = on_demand(world)
    world.identity.revoke_grant(REALM)  # the company disconnected the app in QuickBooks

    world.clock.advance(DAY + 1)
    sweep(world)

    assert world.connection(connection_id).status.value == "needs_reauthorization"
    assert EventType.NEEDS_REAUTHORIZATION in world.events.detail_types


def test_changing_the_policy_tells_secret_readers_at_once_and_is_recorded(world):
    connection_id = world.connected(realm_id=REALM).connection_id
    before = world.vault.read(connection_id)

    saved = world.admin.update(connection_id, ConnectionUpdate(refresh_policy="on_demand"), actor="admin@example.com")

    after = world.vault.read(connection_id)
    assert saved.refresh_policy is RefreshPolicy.ON_DEMAND
    assert after.refresh_policy is RefreshPolicy.ON_DEMAND and before.refresh_policy is RefreshPolicy.EAGER
    assert after.generation == before.generation + 1
    assert after.token_set == before.token_set and after.client_secret == before.client_secret
    assert world.identity.refresh_calls == 0
    changed = [e.detail for e in world.events.published if e.detail_type == EventType.CHANGED][-1]
    assert changed["fields"] == ["refresh_policy"] and changed["actor"] == "admin@example.com"


def test_back_to_eager_an_expired_token_is_refreshed_at_the_next_sweep(world):
    connection_id = on_demand(world)
    world.clock.advance(3 * HOUR)

    world.admin.update(connection_id, ConnectionUpdate(refresh_policy="eager"), actor="admin@example.com")

    assert sweep(world) == 1
    assert world.vault.read(connection_id).refresh_policy is RefreshPolicy.EAGER
    assert world.token_set(connection_id).seconds_valid(world.clock.now()) > 3000


def test_a_connection_can_start_on_demand(world):
    world.identity.register_client("ABfakeclientid0123456789", world.client_secret)

    created = world.administration.create(
        NewConnection(
            name="Nightly Books",
            client_id="ABfakeclientid0123456789",
            client_secret=world.client_secret,
            refresh_policy="on_demand",
        )
    )

    assert created.refresh_policy is RefreshPolicy.ON_DEMAND
    assert world.vault.read(created.connection_id).refresh_policy is RefreshPolicy.ON_DEMAND


@pytest.mark.parametrize("policy", ["lazy", "ON_DEMAND", "", "eager "])
def test_an_unknown_policy_is_refused_and_changes_nothing(world, policy):
    connection_id = world.connected(realm_id=REALM).connection_id
    before = (world.connection(connection_id), world.vault.read(connection_id), len(world.events.published))

    with pytest.raises(InvalidInput, match=r"`eager`.*`on_demand`"):
        world.admin.update(connection_id, ConnectionUpdate(refresh_policy=policy), actor="admin@example.com")

    assert (world.connection(connection_id), world.vault.read(connection_id), len(world.events.published)) == before


def test_a_secret_written_before_policies_existed_reads_as_eager():
    from qbo_connect.domain.secret_document import ConnectionSecret

    old = '{"schema":"qbo-connect/connection-secret/v1","connection_id":"qbc-1","client_id":"abcd","base_url":"https://x"}'

    assert ConnectionSecret.from_json(old).refresh_policy is RefreshPolicy.EAGER


def test_an_on_demand_token_request_when_not_due_refreshes_nothing(world):
    connection_id = on_demand(world)
    world.clock.advance(10 * 60)

    result = world.lifecycle.refresh(connection_id)

    assert result.outcome is RefreshOutcome.NOT_DUE
    assert world.identity.refresh_calls == 0
