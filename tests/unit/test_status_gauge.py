"""The connections-by-status gauge: emitted every sweep, so the needs-a-person alarm stays raised until fixed."""

from __future__ import annotations

from fakes import DAY
from qbo_connect.refresh_runs import RefreshRuns
from qbo_connect.status_gauge import publish_status_gauge

REVOKED_REALM = "9341453050000002"
PERIOD = 300
HOUR = 3600


def _needing(found) -> float:
    return max(value for _, value in found["ConnectionsNeedingReauthorization"])


def _gauge(world):
    return lambda sweep_at: publish_status_gauge(world.store, sweep_at=sweep_at, period_seconds=PERIOD)


def _to_the_hour(clock) -> None:
    """On to the next hour's first sweep: the one that counts every status."""
    clock.advance(HOUR - clock.now() % HOUR)


def test_each_sweep_reports_the_alarm_level_which_stays_until_a_person_reconnects(world, emitted):
    runs = RefreshRuns(world.lifecycle, None, world.clock, status_gauge=_gauge(world))
    world.connected("Fine")
    revoked = world.connected("Revoked", realm_id=REVOKED_REALM)
    world.create_connection("New")
    world.identity.revoke_grant(REVOKED_REALM)
    world.clock.advance(DAY)  # both due
    _to_the_hour(world.clock)

    runs.sweep()
    found = emitted()
    by_status = {dims["status"]: value for dims, value in found["Connections"]}
    assert by_status == {"not_connected": 1, "connected": 1, "needs_reauthorization": 1, "invalid_client": 0}
    assert _needing(found) == 1

    for _ in range(3):  # no new failure happens, yet every sweep says one connection still needs a person
        world.clock.advance(PERIOD)
        runs.sweep()
        found = emitted()
        assert _needing(found) == 1
        # Between the hourly counts, only what a person must fix is counted: never every connection.
        assert {dims["status"] for dims, _ in found["Connections"]} == {"needs_reauthorization", "invalid_client"}

    world.admin.reset("Revoked", actor="user:alice")
    world.connect(revoked.connection_id, realm_id=REVOKED_REALM)
    world.clock.advance(PERIOD)
    runs.sweep()
    assert _needing(emitted()) == 0
    _to_the_hour(world.clock)
    runs.sweep()
    assert {dims["status"]: value for dims, value in emitted()["Connections"]}["connected"] == 2


def test_every_status_is_counted_on_one_sweep_an_hour_at_any_phase_of_the_schedule(world):
    class CountingStore:
        """Notes when it is asked for every status."""

        def __init__(self) -> None:
            self.now = 0.0
            self.every_status_at: list[float] = []

        def count_by_status(self, statuses=None):
            if statuses is None:
                self.every_status_at.append(self.now)
            return world.store.count_by_status(statuses)

    for phase in (0, 17, PERIOD - 1):
        store = CountingStore()
        for sweep in range(2 * HOUR // PERIOD):
            store.now = world.clock.now() + phase + sweep * PERIOD
            publish_status_gauge(store, sweep_at=store.now, period_seconds=PERIOD)
        first, second = store.every_status_at
        assert second - first == HOUR


def test_a_sweep_retried_minutes_late_counts_every_status_for_the_hour_it_was_scheduled_in(world, emitted):
    """The Scheduler retries a failed sweep for up to four minutes (RetryPolicy), and a sweep scheduled at
    01:04 may run at 01:06: it is still the hour's first sweep, by the time the Scheduler puts in its input."""
    from datetime import UTC, datetime

    runs = RefreshRuns(world.lifecycle, None, world.clock, status_gauge=_gauge(world))
    world.connected("Fine")
    _to_the_hour(world.clock)
    scheduled = world.clock.now() + 4 * 60
    world.clock.advance(6 * 60)  # past the hour's first period when it finally runs
    when = datetime.fromtimestamp(scheduled, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    runs.handle({"action": "sweep", "scheduled_time": when})

    assert {dims["status"]: value for dims, value in emitted()["Connections"]}["connected"] == 1
