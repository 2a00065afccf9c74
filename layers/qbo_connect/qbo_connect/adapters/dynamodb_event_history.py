"""EventHistory on a DynamoDB table of its own (domain/event_history.py says what it keeps and why).

Why a table of its own rather than items in the connections table: the history is read newest first, a page
at a time, per connection, which needs a sort key; the connections table has only a hash key (`pk`), a key
schema cannot change without replacing the table, and a GSI there is not ours to add. Here the key is the
connection ID (hash) and the event ID (range: microseconds, then random bits, so it sorts by time and is
unique). The history also lives differently: append-only, expired by TTL, read by the admin API only, and it
never slows the connection queries down.

Items: connection_id, event_id, detail_type, detail (the published detail, as JSON text), occurred_at,
expires_at (the TTL attribute) and, until EventBridge has taken the event, `publish_pending`: the sparse
index `pending-publish` finds those for the sweep without a scan.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from qbo_connect.adapters.dynamodb_conditions import Attr, Key
from qbo_connect.adapters.dynamodb_table import DynamoDbTable, create_declared_table, query_pages
from qbo_connect.domain.events import event_id_prefix
from qbo_connect.ports import RecordedEvent

PENDING_INDEX = "pending-publish"
PENDING_ATTRIBUTE = "publish_pending"
PENDING_VALUE = "pending"
TTL_ATTRIBUTE = "expires_at"

# Exactly as template.yaml declares ConnectionEventsTable (tests/unit/test_template.py holds the two together).
EVENTS_TABLE_SCHEMA: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "connection_id", "AttributeType": "S"},
        {"AttributeName": "event_id", "AttributeType": "S"},
        {"AttributeName": PENDING_ATTRIBUTE, "AttributeType": "S"},
    ],
    "KeySchema": [
        {"AttributeName": "connection_id", "KeyType": "HASH"},
        {"AttributeName": "event_id", "KeyType": "RANGE"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": PENDING_INDEX,
            "KeySchema": [
                {"AttributeName": PENDING_ATTRIBUTE, "KeyType": "HASH"},
                {"AttributeName": "event_id", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


def create_events_table(dynamodb_client, table_name: str) -> None:
    """Create the table as the template does (local stack and tests)."""
    create_declared_table(dynamodb_client, table_name, EVENTS_TABLE_SCHEMA, TTL_ATTRIBUTE)


def _event(item: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(
        connection_id=item["connection_id"],
        event_id=item["event_id"],
        detail_type=item["detail_type"],
        detail=json.loads(item["detail"]),
        occurred_at=float(item["occurred_at"]),
        published=PENDING_ATTRIBUTE not in item,
    )


class DynamoDbEventHistory:
    def __init__(self, table: DynamoDbTable) -> None:
        self._table = table

    def record(self, events: list[RecordedEvent], *, expires_at: float) -> None:
        self._table.put_items(
            [
                {
                    "connection_id": event.connection_id,
                    "event_id": event.event_id,
                    "detail_type": event.detail_type,
                    "detail": json.dumps(event.detail, sort_keys=True, default=str),
                    "occurred_at": Decimal(str(round(event.occurred_at, 6))),
                    TTL_ATTRIBUTE: int(expires_at),
                    PENDING_ATTRIBUTE: PENDING_VALUE,
                }
                for event in events
            ]
        )

    def mark_published(self, events: list[RecordedEvent]) -> None:
        for event in events:
            try:
                self._table.update_item(
                    Key={"connection_id": event.connection_id, "event_id": event.event_id},
                    UpdateExpression=f"REMOVE {PENDING_ATTRIBUTE}",
                    # An update never creates: a record deleted meanwhile (TTL) stays deleted.
                    ConditionExpression=Attr("event_id").exists(),
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    def page(
        self, connection_id: str, *, limit: int, before: str | None, now: float
    ) -> tuple[list[RecordedEvent], str | None]:
        condition = Key("connection_id").eq(connection_id)
        if before is not None:
            condition &= Key("event_id").lt(before)
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
            # TTL deletes up to days late: an expired record is gone as far as anyone can tell.
            "FilterExpression": Attr(TTL_ATTRIBUTE).gt(int(now)),
            "Limit": limit + 1,
        }
        found: list[dict[str, Any]] = []
        for answer in query_pages(self._table, **kwargs):
            found += answer.get("Items", [])
            if len(found) > limit:
                break
        events = [_event(item) for item in found[:limit]]
        more = len(found) > limit
        return events, (events[-1].event_id if more and events else None)

    def unpublished(self, *, recorded_before: float, limit: int) -> list[RecordedEvent]:
        answer = self._table.query(
            IndexName=PENDING_INDEX,
            KeyConditionExpression=Key(PENDING_ATTRIBUTE).eq(PENDING_VALUE)
            & Key("event_id").lt(event_id_prefix(recorded_before)),
            Limit=limit,
        )
        return [_event(item) for item in answer.get("Items", [])]
