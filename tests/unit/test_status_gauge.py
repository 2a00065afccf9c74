"""The connections-by-status gauge: emitted every sweep, so the needs-a-person alarm stays raised until fixed."""

from __future__ import annotations

import json

import pytest
from fakes import DAY
from qbo_connect.observability import metrics
from qbo_connect.refresh_runs import RefreshRuns
from qbo_connect.status_gauge import publish_status_gauge

REVOKED_REALM = "9341453050000002"


@pytest.fixture
def emitted(capsys, monkeypatch):
    """The EMF documents printed so far (Powertools writes metrics to stdout), as {name: [(dimensions, value)]}."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # importing the CLI turns them off process-wide
    metrics.clear_metrics()

    def read() -> dict[str, list[tuple[dict, float]]]:
        metrics.flush_metrics(raise_on_empty_metrics=False)
        found: dict[str, list[tuple[dict, float]]] = {}
        for line in capsys.readouterr().out.splitlines():
            if not line.startswith('{"_aws"'):
                continue
            document = json.loads(line)
            for definition in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                name = definition["Name"]
                dims = {
                    d: document[d] for group in document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in group
                }
                values = document[name] if isinstance(document[name], list) else [document[name]]
                found.setdefault(name, []).extend((dims, float(v)) for v in values)
        return found

    yield read
    metrics.clear_metrics()


def _needing(found) -> float:
    return max(value for _, value in found["ConnectionsNeedingReauthorization"])


def test_each_sweep_reports_every_status_and_the_alarm_level_stays_until_a_person_reconnects(world, emitted):
    runs = RefreshRuns(world.lifecycle, None, world.clock, status_gauge=lambda: publish_status_gauge(world.store))
    world.connected("Fine")
    revoked = world.connected("Revoked", realm_id=REVOKED_REALM)
    world.create_connection("New")
    world.identity.revoke_grant(REVOKED_REALM)
    world.clock.advance(DAY)  # both due

    runs.sweep()
    found = emitted()
    by_status = {dims["status"]: value for dims, value in found["Connections"]}
    assert by_status == {"not_connected": 1, "connected": 1, "needs_reauthorization": 1, "invalid_client": 0}
    assert _needing(found) == 1

    for _ in range(3):  # no new failure happens, yet every sweep says one connection still needs a person
        world.clock.advance(300)
        runs.sweep()
        assert _needing(emitted()) == 1

    world.admin.reset("Revoked", actor="user:alice")
    world.connect(revoked.connection_id, realm_id=REVOKED_REALM)
    world.clock.advance(300)
    runs.sweep()
    found = emitted()
    assert _needing(found) == 0
    assert {dims["status"]: value for dims, value in found["Connections"]}["connected"] == 2
