"""EventPublisher on EventBridge. Publishing is best effort: a lost event must never fail a refresh."""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from qbo_connect.domain.events import EVENT_SOURCE
from qbo_connect.observability import logger
from qbo_connect.ports import ConnectionEvent

_MAX_ENTRIES_PER_CALL = 10


class EventBridgePublisher:
    def __init__(self, client, bus_name: str) -> None:
        self._client = client
        self._bus_name = bus_name

    def publish(self, events: list[ConnectionEvent]) -> None:
        for start in range(0, len(events), _MAX_ENTRIES_PER_CALL):
            batch = events[start : start + _MAX_ENTRIES_PER_CALL]
            entries = [
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": e.detail_type,
                    "Detail": json.dumps(e.detail),
                    "EventBusName": self._bus_name,
                }
                for e in batch
            ]
            try:
                response = self._client.put_events(Entries=entries)
            except (BotoCoreError, ClientError) as error:
                logger.warning(
                    "Could not publish events",
                    extra={"error": type(error).__name__, "detail_types": [e.detail_type for e in batch]},
                )
                continue
            if response.get("FailedEntryCount"):
                logger.warning("Some events were not published", extra={"failed": response["FailedEntryCount"]})
            for event in batch:
                logger.info(
                    "Event published",
                    extra={
                        "detail_type": event.detail_type,
                        "connection_id": event.detail.get("connection_id"),
                    },
                )
