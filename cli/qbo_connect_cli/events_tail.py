"""`events tail`: follow the events the service publishes, from its event log (template.yaml's EventLogRule
sends every `qbo-connect` event to a CloudWatch Logs group; the local stack does the same in moto).

Reading a log instead of draining a queue: any number of people and scripts can follow at once, each
sees every event, and `--since` shows what happened before. CloudWatch Logs may make an event readable
a few seconds after a later one, so each poll reads again from a little before the newest event seen
and drops what it showed already (by event ID). Filters (connection, detail type) are applied here.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click
from qbo_connect.domain.events import EVENT_SOURCE, EventType
from qbo_connect.domain.webhooks import ENTITY_CHANGED

from qbo_connect_cli import output
from qbo_connect_cli.main import Failure, Invocation, cli, pass_invocation

# Every detail type the service publishes (the CLI ships with the service's package, so they agree).
DETAIL_TYPES = (*(t.value for t in EventType), ENTITY_CHANGED)
POLL_SECONDS = 2.0  # FilterLogEvents allows 5 calls a second per account and region: stay well under
# How late an event may become readable after a newer one (EventBridge to CloudWatch Logs delivery).
LATE_ARRIVAL_MS = 30_000


@dataclass(frozen=True)
class LoggedEvent:
    """One EventBridge event as the event log holds it."""

    event_id: str
    logged_at_ms: int
    detail_type: str
    time: str
    detail: dict[str, Any]

    @classmethod
    def from_log(cls, record: dict[str, Any]) -> LoggedEvent | None:
        try:
            event = json.loads(record["message"])
        except (KeyError, TypeError, ValueError):
            return None
        if not isinstance(event, dict) or event.get("source") != EVENT_SOURCE:
            return None
        return cls(
            event_id=str(event.get("id") or record.get("eventId")),
            logged_at_ms=int(record.get("timestamp", 0)),
            detail_type=str(event.get("detail-type", "")),
            time=str(event.get("time", "")),
            detail=event.get("detail") if isinstance(event.get("detail"), dict) else {},
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "time": self.time,
            "detail_type": self.detail_type,
            "connection_id": self.detail.get("connection_id"),
            "detail": self.detail,
        }


class CloudWatchEventLog:
    def __init__(self, logs_client, group: str) -> None:
        self._logs = logs_client
        self._group = group

    def read(self, start_ms: int) -> list[LoggedEvent]:
        """Every event logged at or after `start_ms`, oldest first."""
        events, kwargs = [], {"logGroupName": self._group, "startTime": start_ms}
        while True:
            page = self._logs.filter_log_events(**kwargs)
            events += [e for e in map(LoggedEvent.from_log, page.get("events", [])) if e is not None]
            token = page.get("nextToken")
            if not token or token == kwargs.get("nextToken"):
                return sorted(events, key=lambda e: e.logged_at_ms)
            kwargs["nextToken"] = token


@dataclass
class EventTail:
    """Which events to show, each once, in the order they were logged."""

    log: CloudWatchEventLog
    start_ms: int
    connection_ids: frozenset[str] = frozenset()
    detail_types: frozenset[str] = frozenset()
    _seen: dict[str, int] = field(default_factory=dict)  # event ID -> when it was logged

    def poll(self) -> list[LoggedEvent]:
        newest = max(self._seen.values(), default=self.start_ms)
        start = max(self.start_ms, newest - LATE_ARRIVAL_MS)
        fresh = [e for e in self.log.read(start) if e.event_id not in self._seen]
        for event in fresh:
            self._seen[event.event_id] = event.logged_at_ms
        # Forget what can no longer come back in a poll's window, so a long tail stays small.
        horizon = max(self._seen.values(), default=start) - 2 * LATE_ARRIVAL_MS
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
        return [e for e in fresh if self._wanted(e)]

    def _wanted(self, event: LoggedEvent) -> bool:
        if self.detail_types and event.detail_type not in self.detail_types:
            return False
        return not self.connection_ids or event.detail.get("connection_id") in self.connection_ids

    def follow(
        self,
        *,
        until: float | None,
        stop_after: int | None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
    ) -> Iterator[LoggedEvent]:
        shown = 0
        while True:
            for event in self.poll():
                yield event
                shown += 1
                if stop_after is not None and shown >= stop_after:
                    return
            if until is not None and now() >= until:
                return
            sleep(POLL_SECONDS if until is None else max(0.0, min(POLL_SECONDS, until - now())))


def parse_since(text: str) -> float:
    """`10m`, `2h`, `30s`, `1d` -> seconds: output.parse_duration, with the unit required here."""
    if text.strip()[-1:].lower() in output.DURATION_UNITS:
        with contextlib.suppress(click.BadParameter):
            return output.parse_duration(text)
    raise click.BadParameter(f"{text!r}: give a duration such as 30s, 10m, 2h or 1d")


def detail_types_option(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """Each --type in the service's own spelling, any case; one no event has would match nothing and the tail
    would follow for ever showing nothing, so it is refused with the list."""
    known = {t.casefold(): t for t in DETAIL_TYPES}
    spelled = []
    for value in values:
        canonical = known.get(" ".join(value.split()).casefold())
        if canonical is None:
            raise click.BadParameter(
                f"{value!r} is no detail type the service publishes: one of {', '.join(DETAIL_TYPES)}"
            )
        spelled.append(canonical)
    return tuple(spelled)


def describe(event: LoggedEvent, names: dict[str, str]) -> str:
    detail = event.detail
    connection = detail.get("connection_id")
    who = names.get(connection, connection) if connection else "-"
    if event.detail_type == "QuickBooks Entity Changed":
        what = f"{detail.get('entity')} {detail.get('entity_id')} {detail.get('operation')}"
    elif event.detail_type == "Connection Changed":
        what = f"{detail.get('action')} by {detail.get('actor')}"
    else:
        status, reason = detail.get("status"), detail.get("reason")
        what = " ".join(str(v) for v in (status, reason if reason != status else None) if v)
    return f"{event.time}  {event.detail_type}  {who}  {what}".rstrip()


@cli.group()
def events() -> None:
    """The events the service publishes to EventBridge (connection lifecycle, QuickBooks entity changes)."""


@events.command(name="tail")
@click.option(
    "--connection", "connections", multiple=True, metavar="REF", help="Only this connection (name or ID); repeatable."
)
@click.option(
    "--type",
    "detail_types",
    multiple=True,
    metavar="TYPE",
    callback=detail_types_option,
    help='Only this detail type, e.g. "QuickBooks Entity Changed" (any case); repeatable.',
)
@click.option("--since", default="10m", show_default=True, help="Start this long ago (30s, 10m, 2h, 1d).")
@click.option("--follow/--no-follow", default=True, show_default=True, help="Keep waiting for new events.")
@click.option("--max", "stop_after", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop following after this many seconds.")
@pass_invocation
def tail(
    invocation: Invocation,
    connections: tuple[str, ...],
    detail_types: tuple[str, ...],
    since: str,
    follow: bool,
    stop_after: int | None,
    timeout: float | None,
) -> None:
    """Print the service's events as they are published: one line each, or one JSON object per line."""
    target = invocation.target
    if not target.event_log_group:
        raise Failure(
            f"{target.description} has no event log: redeploy the stack (`sam deploy`) to add EventLogGroupName, "
            "or restart `make dev`",
            code="target",
            as_json=invocation.wants_json,
        )
    admin = invocation.services.admin
    wanted = frozenset(admin.find(ref).connection_id for ref in connections)
    names = {c.connection_id: c.name for c in admin.connections()} if not invocation.wants_json else {}
    started = time.time()
    log = CloudWatchEventLog(target.session.client("logs"), target.event_log_group)
    follower = EventTail(log, int((started - parse_since(since)) * 1000), wanted, frozenset(detail_types))
    until = started + timeout if timeout is not None else (None if follow else started)
    shown = 0
    try:
        for event in follower.follow(until=until, stop_after=stop_after):
            shown += 1
            # JSON: one object per line, so that a script can read events as they come.
            click.echo(json.dumps(event.as_json(), default=str) if invocation.wants_json else describe(event, names))
    except KeyboardInterrupt:
        return
    if stop_after is not None and shown < stop_after and timeout is not None:
        raise Failure(
            f"{shown} of {stop_after} events within {timeout:g} s", code="timeout", as_json=invocation.wants_json
        )
