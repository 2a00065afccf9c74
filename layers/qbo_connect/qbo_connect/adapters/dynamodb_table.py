"""One DynamoDB table on botocore's client, speaking plain Python values.

The adapters write Python values (str, int, Decimal, bool, None, lists, maps, sets) and conditions built
with `Attr` and `Key` (dynamodb_conditions.py); this turns them into DynamoDB's typed request and the
answer's items back (dynamodb_values.py). boto3's Table resource does the same, but only with boto3's
import and its resource model: tens of milliseconds of every cold start for nothing else the adapters use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from qbo_connect.adapters.dynamodb_conditions import Condition, Placeholders
from qbo_connect.adapters.dynamodb_values import from_item, to_item

_CONDITIONS = ("KeyConditionExpression", "ConditionExpression", "FilterExpression")
_ITEMS_SENT = ("Item", "Key", "ExclusiveStartKey")
_ITEMS_ANSWERED = ("Item", "Attributes", "LastEvaluatedKey")
BATCH_WRITE_LIMIT = 25  # items in one BatchWriteItem
BATCH_WRITE_ATTEMPTS = 6  # items DynamoDB leaves unprocessed (throttling) are sent again, with backoff


def query_pages(table: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Each page of a Query, following LastEvaluatedKey; the next page is read only when asked for, so a
    caller that has enough stops iterating and reads no more."""
    while True:
        page = table.query(**kwargs)
        yield page
        if "LastEvaluatedKey" not in page:
            return
        kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def create_declared_table(client: Any, name: str, schema: dict[str, Any], ttl_attribute: str) -> None:
    """Create a table as template.yaml declares it, TTL included (local stack and tests)."""
    client.create_table(TableName=name, **schema)
    client.get_waiter("table_exists").wait(TableName=name)
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
    )


def typed_request(params: dict[str, Any]) -> dict[str, Any]:
    """One operation's parameters (or one transaction item's) with typed values and rendered conditions."""
    request = dict(params)
    names = dict(request.get("ExpressionAttributeNames") or {})
    values = to_item(request.get("ExpressionAttributeValues") or {})
    placeholders = Placeholders(names, values)
    for key in _CONDITIONS:
        if isinstance(request.get(key), Condition):
            request[key] = request[key].render(placeholders)
    for key in _ITEMS_SENT:
        if key in request:
            request[key] = to_item(request[key])
    for key, filled in (("ExpressionAttributeNames", names), ("ExpressionAttributeValues", values)):
        if filled:
            request[key] = filled
    return request


def plain_answer(answer: dict[str, Any]) -> dict[str, Any]:
    plain = dict(answer)
    for key in _ITEMS_ANSWERED:
        if key in plain:
            plain[key] = from_item(plain[key])
    if "Items" in plain:
        plain["Items"] = [from_item(item) for item in plain["Items"]]
    return plain


class DynamoDbTable:
    def __init__(self, client: Any, name: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = name
        self.meta = SimpleNamespace(client=client)  # as on boto3's resource: the client itself
        self._sleep = sleep

    def get_item(self, **params: Any) -> dict[str, Any]:
        return self._call("get_item", params)

    def put_item(self, **params: Any) -> dict[str, Any]:
        return self._call("put_item", params)

    def update_item(self, **params: Any) -> dict[str, Any]:
        return self._call("update_item", params)

    def delete_item(self, **params: Any) -> dict[str, Any]:
        return self._call("delete_item", params)

    def query(self, **params: Any) -> dict[str, Any]:
        return self._call("query", params)

    def transact_write_items(self, *, TransactItems: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        """All or nothing; each item (`Put`, `Update`, `Delete`, `ConditionCheck`) names its table."""
        typed = [{action: typed_request(item) for action, item in entry.items()} for entry in TransactItems]
        return self.meta.client.transact_write_items(TransactItems=typed, **params)

    def put_items(self, items: list[dict[str, Any]]) -> None:
        """Put many items, BATCH_WRITE_LIMIT to a call. Not atomic: what DynamoDB leaves unprocessed
        (throttled) is sent again with backoff, and an error says how many were still left."""
        for start in range(0, len(items), BATCH_WRITE_LIMIT):
            requests = [{"PutRequest": {"Item": to_item(item)}} for item in items[start : start + BATCH_WRITE_LIMIT]]
            for attempt in range(BATCH_WRITE_ATTEMPTS):
                if attempt:
                    self._sleep(0.05 * 2**attempt)
                answer = self.meta.client.batch_write_item(RequestItems={self.name: requests})
                requests = (answer.get("UnprocessedItems") or {}).get(self.name) or []
                if not requests:
                    break
            else:
                raise RuntimeError(
                    f"DynamoDB left {len(requests)} item(s) of {self.name} unprocessed after "
                    f"{BATCH_WRITE_ATTEMPTS} attempts (throttled): write them again"
                )

    def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = getattr(self.meta.client, operation)(TableName=self.name, **typed_request(params))
        return plain_answer(answer)
