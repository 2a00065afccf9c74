"""Each connection's event history: everything the service publishes about a connection is also kept, newest
first, a page at a time, for the retention; and neither write can lose the other silently."""

from __future__ import annotations

import json

import pytest
from fakes import DAY, FakeWorld
from qbo_connect.domain.admin_operations import ConnectionUpdate
from qbo_connect.domain.event_history import REDELIVERY_GRACE_SECONDS
from qbo_connect.domain.events import EventType
from qbo_connect.errors import ConnectionNotFound, IntuitUnavailable, InvalidInput, NeedsReauthorization

ACTOR = "user:alice"
UNTIL_DUE = 3600 - 900 + 1


def _history(world: FakeWorld, ref: str, **page) -> list[dict]:
    return world.admin.events(ref, **page).as_json()["events"]


def _types(world: FakeWorld, ref: str) -> list[str]:
    return [e["detail_type"] for e in _history(world, ref, limit=100)]


def test_every_kind_of_connection_event_is_in_its_history_newest_first_as_published(world):
    world.identity.hard_seconds = 30 * DAY  # the grant ends within 30 days: the first refresh warns
    connection = world.create_connection()
    cid = connection.connection_id
    world.admin.update(cid, ConnectionUpdate(name="Acme US"), actor=ACTOR)
    world.connect(cid)  # Authorized
    world.clock.advance(UNTIL_DUE)
    world.identity.fail_next(3, IntuitUnavailable)
    world.lifecycle.refresh(cid)  # Reauthorization Due (30 days), Refresh Failed (three attempts, one run)
    world.lifecycle.refresh(cid)  # Recovered
    world.company_api.fail_next(1, IntuitUnavailable)
    world.tests.run(cid)  # Test Failed
    world.clock.advance(UNTIL_DUE)
    world.identity.revoke_grant("9341453050000001")
    world.lifecycle.refresh(cid)  # Needs Reauthorization
    world.admin.reset(cid, actor=ACTOR)  # Reset, and Changed (reset)

    history = _history(world, "Acme US", limit=100)

    assert [e["detail_type"] for e in history] == [
        EventType.CHANGED,
        EventType.RESET,
        EventType.NEEDS_REAUTHORIZATION,
        EventType.TEST_FAILED,
        EventType.RECOVERED,
        EventType.REFRESH_FAILED,
        EventType.REAUTHORIZATION_DUE,
        EventType.AUTHORIZED,
        EventType.CHANGED,
    ]
    assert (history[0]["detail"]["action"], history[0]["detail"]["actor"]) == ("reset", ACTOR)
    assert history[-1]["detail"]["fields"] == ["name"]
    # Exactly what EventBridge got, event IDs included; all of it published.
    assert [e["detail"] for e in reversed(history)] == [dict(e.detail) for e in world.events.published]
    assert all(e["published"] for e in history)
    assert [e["occurred_at"] for e in history] == sorted((e["occurred_at"] for e in history), reverse=True)
    text = json.dumps(history)
    assert world.client_secret not in text
    assert not any(token in text for token in world.identity.issued_values())


def test_pages_follow_each_other_without_gaps_or_repeats_and_bad_paging_is_refused(world):
    connection = world.create_connection()
    for number in range(7):
        world.clock.advance(1)
        world.admin.update(connection.connection_id, ConnectionUpdate(name=f"Acme {number}"), actor=ACTOR)

    seen, before = [], None
    while True:
        page = world.admin.events(connection.connection_id, limit=3, before=before).as_json()
        seen += [e["detail"]["name"] for e in page["events"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == [f"Acme {n}" for n in reversed(range(7))]
    assert len(world.admin.events(connection.connection_id, limit=7).events) == 7
    assert world.admin.events(connection.connection_id, limit=7).next_before is None

    for bad in (
        {"limit": 0},
        {"limit": 101},
        {"limit": True},
        {"before": "yesterday"},
        {"before": "1" * 16},
        {"before": "1" * 16 + "-0123abcd\n"},
    ):
        with pytest.raises(InvalidInput):
            world.admin.events(connection.connection_id, **bad)


def test_records_expire_after_the_retention_even_before_dynamodb_deletes_them(world):
    connection = world.create_connection()
    world.admin.update(connection.connection_id, ConnectionUpdate(name="Acme US"), actor=ACTOR)

    world.clock.advance(89 * DAY)
    assert _types(world, "Acme US") == [EventType.CHANGED]
    world.clock.advance(DAY + 1)
    assert _types(world, "Acme US") == []


def test_a_deleted_connections_history_stays_readable_by_its_id_until_it_expires(world):
    connection = world.create_connection()
    world.admin.delete(connection.connection_id, actor="cli:bob@ops")

    [deleted] = _history(world, connection.connection_id)
    assert (deleted["detail"]["action"], deleted["detail"]["actor"]) == ("deleted", "cli:bob@ops")
    with pytest.raises(ConnectionNotFound):
        world.admin.events("Acme Books")  # the name went with the connection
    world.history.expire(connection.connection_id)
    with pytest.raises(ConnectionNotFound):
        world.admin.events(connection.connection_id)


def test_when_the_history_cannot_be_written_the_event_is_still_published(world):
    connection = world.create_connection()
    world.history.fail_next_records(1)

    world.admin.update(connection.connection_id, ConnectionUpdate(name="Acme US"), actor=ACTOR)

    assert [e.detail["action"] for e in world.events.published] == ["updated"]
    assert _types(world, "Acme US") == []  # missed, and said so (metric EventsNotRecorded, an error log line)
    assert world.connection(connection.connection_id).name == "Acme US"  # the change itself stands


@pytest.mark.parametrize("how", ["outage", "entries refused"])
def test_an_event_eventbridge_did_not_take_is_published_by_a_later_sweep_with_the_same_id(how, world):
    connection = world.create_connection()
    world.events.fail_next(1, refuse=how == "entries refused")

    world.admin.update(connection.connection_id, ConnectionUpdate(name="Acme US"), actor=ACTOR)

    [record] = _history(world, "Acme US")
    assert record["published"] is False and world.events.published == []
    assert world.recorder.redeliver() == 0  # not before the grace: it may still be on its way
    world.clock.advance(REDELIVERY_GRACE_SECONDS + 1)
    assert world.recorder.redeliver() == 1
    [published] = world.events.published
    assert published.detail == record["detail"] and published.detail["event_id"] == record["event_id"]
    assert _history(world, "Acme US")[0]["published"] is True
    world.clock.advance(REDELIVERY_GRACE_SECONDS + 1)
    assert world.recorder.redeliver() == 0  # once delivered, never again


def test_a_sweep_during_an_eventbridge_outage_keeps_the_events_for_the_next_one(world):
    connection = world.create_connection()
    world.events.fail_next(2)
    world.admin.update(connection.connection_id, ConnectionUpdate(name="Acme US"), actor=ACTOR)
    world.clock.advance(REDELIVERY_GRACE_SECONDS + 1)

    assert world.recorder.redeliver() == 0
    assert world.recorder.redeliver() == 1
    assert len(world.events.published) == 1


def test_an_event_not_marked_published_is_delivered_again_a_repeat_with_its_id_never_a_loss(world):
    connection = world.create_connection()
    world.history.fail_next_marks(1)

    world.admin.update(connection.connection_id, ConnectionUpdate(name="Acme US"), actor=ACTOR)
    world.clock.advance(REDELIVERY_GRACE_SECONDS + 1)
    world.recorder.redeliver()

    first, repeat = world.events.published
    assert first.detail == repeat.detail  # consumers drop the repeat by event_id


def test_neither_failure_fails_the_operation_that_published(world):
    connection = world.connected()
    world.history.fail_next_records(1)
    world.events.fail_next(1)
    world.identity.revoke_grant("9341453050000001")
    world.clock.advance(UNTIL_DUE)

    result = world.lifecycle.refresh(connection.connection_id)

    assert result.outcome.value == "needs_reauthorization"
    with pytest.raises(NeedsReauthorization):
        world.lifecycle.valid_token(connection.connection_id)
