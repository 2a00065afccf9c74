"""EventPublisher on EventBridge. `publish` is best effort: a lost event must never fail a refresh. `deliver`
reports what EventBridge refused, for the webhook hand-off and the event history, which retry it."""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from qbo_connect.domain.events import EVENT_SOURCE
from qbo_connect.observability import logger
from qbo_connect.ports import ConnectionEvent

_MAX_ENTRIES_PER_CALL = 10
# What a published event's log line names (the stack's log shows entity changes arriving).
_LOGGED_FIELDS = ("connection_id", "entity", "entity_id", "operation")


class EventBridgePublisher:
    def __init__(self, client, bus_name: str) -> None:
        self._client = client
        self._bus_name = bus_name

    def _entries(self, batch: list[ConnectionEvent]) -> list[dict]:
        return [
            {
                "Source": EVENT_SOURCE,
                "DetailType": e.detail_type,
                "Detail": json.dumps(e.detail),
                "EventBusName": self._bus_name,
            }
            for e in batch
        ]

    def deliver(self, events: list[ConnectionEvent]) -> list[ConnectionEvent]:
        """Publish, and return the events EventBridge did not take (for a caller that retries them).

        A call that fails outright (botocore's retries spent: throttling, an outage) refuses its events and
        every later one, but not those earlier calls published: raising instead would have the caller
        send those again, and subscribers receive them twice."""
        refused: list[ConnectionEvent] = []
        for start in range(0, len(events), _MAX_ENTRIES_PER_CALL):
            batch = events[start : start + _MAX_ENTRIES_PER_CALL]
            try:
                response = self._client.put_events(Entries=self._entries(batch))
            except (BotoCoreError, ClientError) as error:
                logger.error(
                    "PutEvents failed; its events and the later ones are left for a retry",
                    extra={"error": type(error).__name__, "published": start, "left": len(events) - start},
                )
                return refused + events[start:]
            results = response.get("Entries") or []
            for index, event in enumerate(batch):
                if index >= len(results) or results[index].get("ErrorCode"):
                    refused.append(event)
                else:
                    self._log_published(event)
        return refused

    def _log_published(self, event: ConnectionEvent) -> None:
        logger.info(
            "Event published",
            extra={
                "detail_type": event.detail_type,
                **{k: event.detail.get(k) for k in _LOGGED_FIELDS if k in event.detail},
            },
        )

    def publish(self, events: list[ConnectionEvent]) -> None:
        for start in range(0, len(events), _MAX_ENTRIES_PER_CALL):
            batch = events[start : start + _MAX_ENTRIES_PER_CALL]
            try:
                response = self._client.put_events(Entries=self._entries(batch))
            except (BotoCoreError, ClientError) as error:
                logger.warning(
                    "Could not publish events",
                    extra={"error": type(error).__name__, "detail_types": [e.detail_type for e in batch]},
                )
                continue
            if response.get("FailedEntryCount"):
                logger.warning("Some events were not published", extra={"failed": response["FailedEntryCount"]})
            for event in batch:
                self._log_published(event)
