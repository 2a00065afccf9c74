"""The part of boto3's DynamoDB Table resource the adapters use, on a plain client.

The resource costs a cold start tens of milliseconds more than a client (it loads boto3's resource
model and builds classes from it) and adds nothing the adapters use but one service: turning Python
values into typed attributes and condition builders (`Attr`, `Key`) into expressions, and back. That
is boto3's own transformation (boto3.dynamodb.transform), which this registers on the client exactly
as the resource registers it on its own client; the calls and their answers are the resource's.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from boto3.dynamodb.transform import TransformationInjector, copy_dynamodb_params


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


class DynamoDbTable:
    def __init__(self, client: Any, name: str) -> None:
        self.name = name
        self.meta = SimpleNamespace(client=client)  # as on the resource: the client, for transactions
        injector = TransformationInjector()
        events = client.meta.events
        events.register("provide-client-params.dynamodb", copy_dynamodb_params, unique_id="qbo-dynamodb-params-copy")
        events.register(
            "before-parameter-build.dynamodb",
            injector.inject_condition_expressions,
            unique_id="qbo-dynamodb-conditions",
        )
        events.register(
            "before-parameter-build.dynamodb", injector.inject_attribute_value_input, unique_id="qbo-dynamodb-input"
        )
        events.register("after-call.dynamodb", injector.inject_attribute_value_output, unique_id="qbo-dynamodb-output")

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        return self.meta.client.get_item(TableName=self.name, **kwargs)

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        return self.meta.client.put_item(TableName=self.name, **kwargs)

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        return self.meta.client.update_item(TableName=self.name, **kwargs)

    def delete_item(self, **kwargs: Any) -> dict[str, Any]:
        return self.meta.client.delete_item(TableName=self.name, **kwargs)

    def query(self, **kwargs: Any) -> dict[str, Any]:
        return self.meta.client.query(TableName=self.name, **kwargs)

    def batch_writer(self, **kwargs: Any) -> Any:
        """boto3's own batch writer (unprocessed items sent again), on this client."""
        from boto3.dynamodb.table import BatchWriter

        return BatchWriter(self.name, self.meta.client, **kwargs)
