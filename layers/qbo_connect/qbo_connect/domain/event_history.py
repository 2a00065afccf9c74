"""Each connection's event history, kept in step with EventBridge.

Every event the service publishes about a connection (Connection Authorized, Refresh Failed, Recovered, Needs
Reauthorization, Invalid Client, Reset, Test Failed, Reauthorization Due, Changed) goes through
`RecordingPublisher`, which writes it to the history and publishes it on EventBridge. The rules, and what
happens when one of the two writes fails:

- Record first, marked "not yet published"; then publish; then mark it published. The record is the outbox.
- The record fails (DynamoDB down, throttled past the SDK's retries): the event is still published. The
  history misses it, and says so loudly: metric `EventsNotRecorded` (alarm) and an error log line naming
  the connection, the detail type and the event ID.
- The publish fails (EventBridge down or throttled, an entry refused): the record stays "not yet published",
  metric `EventsNotPublished` (alarm). The refresh sweep publishes such records again once they are older
  than the redelivery grace (`REDELIVERY_GRACE_SECONDS`, longer than any publish with the SDK's retries
  takes), with the same `event_id`. The history shows the event as not published until then.
- A crash (the Lambda's timeout) between the record and the publish leaves the same unpublished record: the
  sweep publishes it. Only a crash before the record loses the event from both, as before the history existed.
- Marking published fails: the sweep publishes the event again. Delivery is at least once (as EventBridge's
  own delivery to targets is): consumers drop repeats by `event_id`.
- Neither failure ever fails the caller: a refresh, a consent or an administrator's change that has been
  committed stays committed.

What is kept is the detail exactly as published, which never holds a secret (domain/events.py); each record
expires after the retention, and reads skip expired records that DynamoDB's TTL has not deleted yet.
Webhook entity changes (QuickBooks Entity Changed) are not connection events and are not recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qbo_connect.domain.events import EVENT_ID, EventType, event_id_time
from qbo_connect.errors import InvalidInput
from qbo_connect.observability import MetricUnit, logger, metrics
from qbo_connect.ports import Clock, ConnectionEvent, EventHistory, RecordedEvent, StrictPublisher
from qbo_connect.records import record

DAY_SECONDS = 86_400
DEFAULT_RETENTION_DAYS = 90
# A record this old and still unpublished was not being published by anyone any more: botocore's standard retries
# (3 attempts, 5 s connect + 20 s read timeout each, with backoff) are over within about 80 seconds.
REDELIVERY_GRACE_SECONDS = 300
REDELIVERY_BATCH = 100
DEFAULT_PAGE = 20
MAX_PAGE = 100


@record
class EventPage:
    """One page of a connection's event history, newest first, and where the next one starts."""

    events: list[RecordedEvent]
    next_before: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "events": [
                {
                    "event_id": e.event_id,
                    "detail_type": e.detail_type,
                    "occurred_at": int(e.occurred_at),
                    "summary": summary(e.detail_type, e.detail),
                    "published": e.published,
                    "detail": dict(e.detail),
                }
                for e in self.events
            ],
            "next_before": self.next_before,
        }


def summary(detail_type: str, detail: Mapping[str, Any]) -> str:
    """One line a person reads in the console and the CLI: who did what, or what happened and why."""
    if detail_type == EventType.CHANGED:
        fields = detail.get("fields") or []
        what = f"{detail.get('action')} by {detail.get('actor')}"
        extras = [f"fields: {', '.join(map(str, fields))}"] if fields else []
        extras += [f"{key}: {detail[key]}" for key in ("outcome", "revocation") if detail.get(key)]
        return "; ".join([what, *extras])
    if detail_type == EventType.AUTHORIZED:
        return f"connected to {detail.get('company_name') or 'company ' + str(detail.get('realm_id'))}"
    if detail_type == EventType.RESET:
        return f"tokens cleared; revocation: {detail.get('revocation')}"
    if detail_type == EventType.TEST_FAILED:
        return f"test failed: {detail.get('reason')}"
    return str(detail.get("reason") or "")


def recorded(event: ConnectionEvent) -> RecordedEvent | None:
    """The history's record of a published event; None for an event about no connection."""
    connection_id, event_id = event.detail.get("connection_id"), event.detail.get("event_id")
    if not isinstance(connection_id, str) or not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        return None
    return RecordedEvent(connection_id, event_id, event.detail_type, event.detail, event_id_time(event_id))


class RecordingPublisher:
    """An EventPublisher that keeps the history (see the module's rules); never raises to its caller."""

    def __init__(
        self,
        history: EventHistory,
        bus: StrictPublisher,
        clock: Clock,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        redelivery_grace_seconds: float = REDELIVERY_GRACE_SECONDS,
    ) -> None:
        self._history = history
        self._bus = bus
        self._clock = clock
        self._retention_seconds = retention_days * DAY_SECONDS
        self._grace = redelivery_grace_seconds

    # --- publishing -------------------------------------------------------------------------------
    def publish(self, events: list[ConnectionEvent]) -> None:
        records = [r for r in (recorded(e) for e in events) if r is not None]
        stored = self._record(records)
        refused = self._deliver(events)
        self._mark_published([r for r in stored if r.event_id not in refused])

    def redeliver(self) -> int:
        """Publish again what stayed unpublished past the grace period; returns how many EventBridge took."""
        try:
            waiting = self._history.unpublished(recorded_before=self._clock.now() - self._grace, limit=REDELIVERY_BATCH)
        except Exception as error:  # the sweep goes on; the next one tries again
            logger.error("Could not read unpublished events", extra={"error": type(error).__name__})
            return 0
        if not waiting:
            return 0
        refused = self._deliver([r.as_event() for r in waiting])
        delivered = [r for r in waiting if r.event_id not in refused]
        self._mark_published(delivered)
        metrics.add_metric(name="EventsRedelivered", unit=MetricUnit.Count, value=len(delivered))
        logger.warning(
            "Published events again that had not reached EventBridge",
            extra={"redelivered": len(delivered), "still_unpublished": len(waiting) - len(delivered)},
        )
        return len(delivered)

    def _record(self, records: list[RecordedEvent]) -> list[RecordedEvent]:
        if not records:
            return []
        try:
            self._history.record(records, expires_at=self._clock.now() + self._retention_seconds)
        except Exception as error:  # the publish must not be lost with the record
            metrics.add_metric(name="EventsNotRecorded", unit=MetricUnit.Count, value=len(records))
            logger.error(
                "Events not recorded in the connection's history (published all the same)",
                extra={"error": type(error).__name__, "events": _names(records)},
            )
            return []
        return records

    def _deliver(self, events: list[ConnectionEvent]) -> set[str]:
        """Publish; the event IDs EventBridge did not take (all of them if the call failed)."""
        try:
            refused = self._bus.deliver(events)
        except Exception as error:  # recorded as unpublished: the sweep publishes it again
            logger.error("Could not publish events", extra={"error": type(error).__name__})
            refused = list(events)
        if refused:
            metrics.add_metric(name="EventsNotPublished", unit=MetricUnit.Count, value=len(refused))
            logger.error(
                "Events not published to EventBridge (the sweep publishes the recorded ones again)",
                extra={"events": [(e.detail_type, e.detail.get("event_id")) for e in refused]},
            )
        return {str(e.detail.get("event_id")) for e in refused}

    def _mark_published(self, records: list[RecordedEvent]) -> None:
        if not records:
            return
        try:
            self._history.mark_published(records)
        except Exception as error:  # the sweep publishes them again: a repeat, never a loss
            logger.warning(
                "Could not mark events published (they will be published again)",
                extra={"error": type(error).__name__, "events": _names(records)},
            )

    # --- reading ----------------------------------------------------------------------------------
    def page(self, connection_id: str, *, limit: int | None = None, before: str | None = None) -> EventPage:
        limit = DEFAULT_PAGE if limit is None else limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit is a whole number from 1 to {MAX_PAGE}")
        if before is not None and (not isinstance(before, str) or not EVENT_ID.fullmatch(before)):
            raise InvalidInput("before is the next_before of the previous page (an event ID)")
        events, next_before = self._history.page(connection_id, limit=limit, before=before, now=self._clock.now())
        return EventPage(events, next_before)


def _names(records: list[RecordedEvent]) -> list[tuple[str, str, str]]:
    return [(r.connection_id, r.detail_type, r.event_id) for r in records]
