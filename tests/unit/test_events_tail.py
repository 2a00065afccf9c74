"""`events tail`'s following: each event once, in order, late arrivals caught, filters applied, stops on time."""

from __future__ import annotations

import json

import click
import pytest
from qbo_connect_cli.events_tail import LATE_ARRIVAL_MS, EventTail, LoggedEvent, describe, parse_since


def record(event_id: str, at_ms: int, detail_type: str = "Connection Authorized", **detail) -> dict:
    message = {"id": event_id, "source": "qbo-connect", "detail-type": detail_type, "time": "t", "detail": detail}
    return {"eventId": f"log-{event_id}", "timestamp": at_ms, "message": json.dumps(message)}


class Log:
    """The event log as CloudWatch Logs answers: what was ingested by now, from a start time."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.starts: list[int] = []

    def read(self, start_ms: int) -> list[LoggedEvent]:
        self.starts.append(start_ms)
        found = [LoggedEvent.from_log(r) for r in self.records if r["timestamp"] >= start_ms]
        return sorted((e for e in found if e is not None), key=lambda e: e.logged_at_ms)


def test_each_event_is_shown_once_even_when_polls_overlap():
    log = Log()
    tail = EventTail(log, start_ms=1000)
    log.records += [record("a", 1000), record("b", 2000)]
    assert [e.event_id for e in tail.poll()] == ["a", "b"]
    log.records.append(record("c", 3000))
    assert [e.event_id for e in tail.poll()] == ["c"]
    assert tail.poll() == []


def test_an_event_that_becomes_readable_after_a_newer_one_is_still_shown():
    log = Log()
    tail = EventTail(log, start_ms=0)
    log.records.append(record("newer", 50_000))
    assert [e.event_id for e in tail.poll()] == ["newer"]
    log.records.append(record("late", 50_000 - LATE_ARRIVAL_MS + 1))  # ingested late, stamped earlier
    assert [e.event_id for e in tail.poll()] == ["late"]
    assert log.starts[-1] == 50_000 - LATE_ARRIVAL_MS


def test_filters_by_connection_and_detail_type():
    log = Log()
    log.records += [
        record("1", 1, connection_id="qbc-a"),
        record("2", 2, "QuickBooks Entity Changed", connection_id="qbc-a", entity="Invoice"),
        record("3", 3, "QuickBooks Entity Changed", connection_id="qbc-b", entity="Invoice"),
    ]
    tail = EventTail(log, 0, frozenset({"qbc-a"}), frozenset({"QuickBooks Entity Changed"}))
    assert [e.event_id for e in tail.poll()] == ["2"]


def test_what_is_not_a_qbo_connect_event_is_skipped():
    log = Log()
    log.records += [{"eventId": "x", "timestamp": 1, "message": "not json"}, record("ok", 2)]
    log.records.append({"eventId": "y", "timestamp": 3, "message": json.dumps({"source": "aws.s3", "id": "s3"})})
    assert [e.event_id for e in EventTail(log, 0).poll()] == ["ok"]


class Clock:
    def __init__(self, now: float, on_sleep=None) -> None:
        self.now, self.slept, self._on_sleep = now, [], on_sleep

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self._on_sleep:
            self._on_sleep(self)


def test_following_stops_after_the_wanted_count():
    log = Log()
    clock = Clock(100.0, lambda c: log.records.append(record(f"e{len(c.slept)}", int(c.now * 1000))))

    got = list(EventTail(log, 0).follow(until=None, stop_after=2, sleep=clock.sleep, now=lambda: clock.now))

    assert [e.event_id for e in got] == ["e1", "e2"]


def test_following_stops_at_the_deadline_without_sleeping_past_it():
    clock = Clock(200.0)

    got = list(EventTail(Log(), 0).follow(until=203.0, stop_after=None, sleep=clock.sleep, now=lambda: clock.now))

    assert got == [] and sum(clock.slept) == pytest.approx(3.0)


def test_a_line_says_what_happened_to_which_connection():
    change = LoggedEvent.from_log(
        record(
            "1",
            1,
            "QuickBooks Entity Changed",
            connection_id="qbc-a",
            entity="Invoice",
            entity_id="145",
            operation="Create",
        )
    )
    assert describe(change, {"qbc-a": "Acme"}) == "t  QuickBooks Entity Changed  Acme  Invoice 145 Create"
    assert change.as_json()["connection_id"] == "qbc-a"


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400)])
def test_since_takes_a_duration(text, seconds):
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["10", "m", "-5m", "1w", "ten minutes"])
def test_a_since_that_is_not_a_duration_says_how_to_write_one(text):
    with pytest.raises(click.BadParameter, match="30s, 10m, 2h or 1d"):
        parse_since(text)


def test_a_reason_that_repeats_the_status_is_shown_once():
    reset = LoggedEvent.from_log(
        record("1", 1, "Connection Reset", connection_id="qbc-a", status="not_connected", reason="not_connected")
    )
    failed = LoggedEvent.from_log(
        record("2", 2, "Refresh Failed", connection_id="qbc-a", status="connected", reason="outcome_unknown")
    )
    assert describe(reset, {"qbc-a": "Acme"}) == "t  Connection Reset  Acme  not_connected"
    assert describe(failed, {"qbc-a": "Acme"}) == "t  Refresh Failed  Acme  connected outcome_unknown"
