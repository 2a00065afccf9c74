"""DeliveryLedger on the connections table: one `webhook#<sha256>` item per app and event ID, with a
TTL. The claim is a conditional put, so two deliveries of one event (Intuit's retries, SQS's
redeliveries) publish it once."""

from __future__ import annotations

from botocore.exceptions import ClientError

from qbo_connect.adapters.dynamodb_store import STATE_TTL_ATTRIBUTE

_PENDING, _DONE = "pending", "done"


def _key(key: str) -> dict[str, str]:
    return {"pk": f"webhook#{key}"}


class DynamoDbDeliveryLedger:
    def __init__(self, table) -> None:
        self._table = table

    def claim(self, key: str, *, now: float, ttl_seconds: int, stale_after_seconds: int) -> bool:
        try:
            self._table.put_item(
                Item={
                    **_key(key),
                    "delivery": _PENDING,
                    "claimed_at": int(now),
                    STATE_TTL_ATTRIBUTE: int(now + ttl_seconds),
                },
                # New, or a claim that a crashed publisher left pending long ago.
                ConditionExpression="attribute_not_exists(pk) OR (delivery = :pending AND claimed_at < :stale)",
                ExpressionAttributeValues={":pending": _PENDING, ":stale": int(now - stale_after_seconds)},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def finish(self, key: str) -> None:
        try:
            # Conditional, so that a finish never creates an item without its TTL.
            self._table.update_item(
                Key=_key(key),
                UpdateExpression="SET delivery = :done",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":done": _DONE},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def release(self, key: str) -> None:
        self._table.delete_item(Key=_key(key))
