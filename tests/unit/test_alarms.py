"""The alarms of template.yaml against what the service emits: each situation a person must hear of raises
one (notifying AlarmTopicArn), and ordinary operation raises none."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import DAY
from qbo_connect.observability import metrics
from qbo_connect.refresh_runs import RefreshRuns
from qbo_connect.status_gauge import publish_status_gauge
from qbo_local.template import Tag, load_template

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
PERIOD = 300
NOTIFIES_THE_ALARM_TOPIC = Tag("If", ["HasAlarmTopic", [Tag("Ref", "AlarmTopicArn")], Tag("Ref", "AWS::NoValue")])


@pytest.fixture(scope="module")
def alarms() -> dict[str, dict]:
    """The service's own metric alarms (namespace QboConnect, one metric each), by logical name."""
    resources = load_template(TEMPLATE_PATH)["Resources"]
    return {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm" and resource["Properties"].get("Namespace") == metrics.namespace
    }


def raised(alarms: dict[str, dict], found: dict[str, list[tuple[dict, float]]]) -> set[str]:
    """The alarms one period of these metrics breaches (the period's statistic: the largest value for Maximum,
    their sum for Sum, how many for SampleCount). A silence alarm (LessThanThreshold) is judged on the
    periods with data only: one period of a sweep's metrics says nothing of the periods without."""
    statistics = {"Sum": sum, "Maximum": max, "SampleCount": len}
    compare = {"GreaterThanOrEqualToThreshold": float.__ge__, "LessThanThreshold": float.__lt__}
    breached = set()
    for name, alarm in alarms.items():
        dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        values = [value for dims, value in found.get(alarm["MetricName"], []) if dimensions.items() <= dims.items()]
        if not values:
            continue
        statistic = float(statistics[alarm["Statistic"]](values))
        if compare[alarm["ComparisonOperator"]](statistic, float(alarm["Threshold"])):
            breached.add(name)
    return breached


def _sweeps(world, emitted):
    runs = RefreshRuns(
        world.lifecycle,
        None,
        world.clock,
        status_gauge=lambda sweep_at: publish_status_gauge(world.store, sweep_at=sweep_at, period_seconds=PERIOD),
    )

    def sweep() -> dict[str, list[tuple[dict, float]]]:
        world.clock.advance(PERIOD)
        runs.sweep()
        return emitted()

    return sweep


def test_a_grant_coming_within_30_days_of_its_end_raises_an_alarm_that_notifies_the_alarm_topic(world, emitted, alarms):
    """README: "says loudly (EventBridge events, metrics, alarms) when only a person can help", and the
    five-year hard expiry is warned about 30, 7 and 1 days ahead. An operator who subscribed to the alarm
    topic must hear of it too, not only whoever routes EventBridge events, and before the grant is dead
    (ConnectionsNeedingReauthorization counts only connections that already are)."""
    world.identity.hard_seconds = 31 * DAY  # an old grant: its five years end 31 days after this consent
    sweep = _sweeps(world, emitted)
    world.connected("Old grant")
    emitted()
    found = sweep()
    while "ReauthorizationDue" not in found:
        assert not raised(alarms, found)
        found = sweep()
    assert "Connection Reauthorization Due" in world.events.detail_types

    breached = raised(alarms, found)
    assert breached, f"no alarm watches what the sweep emitted: {sorted(found)}"
    assert all(alarms[name]["AlarmActions"] == NOTIFIES_THE_ALARM_TOPIC for name in breached)


def test_a_grant_within_30_days_of_its_end_keeps_an_alarm_raised_every_day_until_a_reconnect(world, emitted, alarms):
    """The 30, 7 and 1 day marks each notify once; an operator who missed one must still find an alarm raised
    while the grant is within 30 days of its end, and see it clear once a company administrator reconnected."""
    world.identity.hard_seconds = 29 * DAY  # an old grant: its five years end 29 days after this consent
    sweep = _sweeps(world, emitted)
    connection = world.connected("Old grant")
    emitted()
    for _ in range(3):  # three days on, long after the 30-day mark was announced
        day = [sweep() for _ in range(int(DAY // PERIOD))]
        assert any(raised(alarms, found) - {"ReauthorizationDueAlarm"} for found in day), "no alarm stayed raised"

    world.identity.hard_seconds = 5 * 365 * DAY
    world.connect(connection.connection_id)  # the reconnect: a new grant, five years ahead
    emitted()
    day = [sweep() for _ in range(int(DAY // PERIOD))]
    assert not any(raised(alarms, found) for found in day)


def test_refreshes_failing_run_after_run_raise_an_alarm_which_clears_once_they_succeed(world, emitted, alarms):
    """Intuit's token endpoint (or the way to it: a NAT gateway, DNS) fails every refresh for an hour: after
    three failed runs an eager connection's stored access token is expiring and workflows fail. Transient
    failures are outcomes, not function errors, so only an alarm on them tells the operator; a single
    failure the next run repairs must not page anyone."""
    from qbo_connect.errors import IntuitUnavailable

    intuit_down = False
    answering = world.identity.refresh

    def refresh(credentials, **request):
        if intuit_down:
            raise IntuitUnavailable("Intuit's token endpoint answered HTTP 503")
        return answering(credentials, **request)

    world.identity.refresh = refresh
    sweep = _sweeps(world, emitted)
    connection_id = world.connected("Acme").connection_id
    emitted()

    def until(metric: str) -> dict:
        found = sweep()
        while metric not in found:
            found = sweep()
        return found

    until("RefreshSuccess")
    intuit_down = True
    found = until("RefreshTransientFailure")
    assert not raised(alarms, found), "one failed run paged someone"
    intuit_down = False
    assert not raised(alarms, until("RefreshSuccess"))
    assert world.connection(connection_id).consecutive_refresh_failures == 0

    # Every run fails: an alarm by the third, and it stays raised while the runs keep failing.
    intuit_down = True
    breached_at = None
    for run in range(1, 13):
        breached = raised(alarms, until("RefreshTransientFailure"))
        if breached and breached_at is None:
            breached_at = run
            assert all(alarms[name]["AlarmActions"] == NOTIFIES_THE_ALARM_TOPIC for name in breached)
        if breached_at is not None:
            assert breached, f"the alarm cleared at failed run {run} while refreshes still fail"
    assert breached_at is not None and breached_at <= 3, "twelve failed runs (an hour) raised no alarm"

    intuit_down = False
    found = until("RefreshSuccess")
    assert not raised(alarms, found)
    assert "Connection Recovered" in world.events.detail_types
