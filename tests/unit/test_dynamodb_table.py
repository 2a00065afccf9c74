"""The table adapter's own conversions (the functions run without boto3): what DynamoDB receives must be what
boto3's resource would have sent for the same values, and what comes back the values that went in."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from qbo_connect.adapters.dynamodb_conditions import Attr, Key
from qbo_connect.adapters.dynamodb_table import BATCH_WRITE_ATTEMPTS, DynamoDbTable, plain_answer, typed_request
from qbo_connect.adapters.dynamodb_values import from_attribute, to_attribute

VALUES: list[Any] = [
    "qbc-1",
    "",
    0,
    -17,
    10**30,
    Decimal("1767225600.125"),
    True,
    False,
    None,
    b"\x00sealed",
    ["a", 1, None, {"nested": [Decimal("2.5")]}],
    {"status": "connected", "warnings": [30, 7, 1]},
    {"b", "a"},
    {1, Decimal("2.5")},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_value_is_sent_as_boto3_would_send_it_and_read_back_unchanged(value):
    sent = to_attribute(value)

    assert _sets_sorted(sent) == _sets_sorted(TypeSerializer().serialize(value))
    assert from_attribute(sent) == TypeDeserializer().deserialize(sent)
    assert from_attribute(sent) == value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (1.5, "not float"),
        (set(), "empty set"),
        ({"a", 1}, "one kind"),
        (10**38 + 1, "38 significant digits"),
        (Decimal("1E+126"), "under 1E"),
        (Decimal("1E-131"), "from 1E-130"),
    ],
)
def test_a_value_dynamodb_cannot_store_is_refused_naming_its_type_not_its_content(value, says):
    with pytest.raises((TypeError, ValueError), match=says) as refused:
        to_attribute({"access_token": value})

    assert "1.5" not in str(refused.value) and "10000" not in str(refused.value)


def test_an_int_based_enum_is_stored_as_its_number():
    class Warning(int, enum.Enum):
        THIRTY_DAYS = 30

    assert to_attribute(Warning.THIRTY_DAYS) == {"N": "30"}


def test_conditions_render_with_placeholders_that_never_take_the_requests_own():
    request = typed_request(
        {
            "Key": {"pk": "connection#qbc-1"},
            "UpdateExpression": "SET #v0 = :v0",
            "ExpressionAttributeNames": {"#v0": "status"},
            "ExpressionAttributeValues": {":v0": "connected"},
            "ConditionExpression": (Attr("lease_owner").not_exists() | Attr("lease_owner").eq("me"))
            & ~Attr("status").eq("revoked"),
        }
    )

    assert request["ConditionExpression"] == ("((attribute_not_exists(#n1) OR #n1 = :v1) AND (NOT #n2 = :v2))")
    assert request["ExpressionAttributeNames"] == {"#v0": "status", "#n1": "lease_owner", "#n2": "status"}
    assert request["ExpressionAttributeValues"] == {
        ":v0": {"S": "connected"},
        ":v1": {"S": "me"},
        ":v2": {"S": "revoked"},
    }
    assert request["Key"] == {"pk": {"S": "connection#qbc-1"}}


def test_a_key_condition_and_a_filter_share_one_set_of_placeholders():
    request = typed_request(
        {
            "KeyConditionExpression": Key("listing").eq("usage#2026-12") & Key("name").begins_with("app#"),
            "FilterExpression": Attr("purge_at").between(1, 2),
        }
    )

    assert request["KeyConditionExpression"] == "(#n0 = :v0 AND begins_with(#n1, :v1))"
    assert request["FilterExpression"] == "#n2 BETWEEN :v2 AND :v3"
    assert set(request["ExpressionAttributeValues"]) == {":v0", ":v1", ":v2", ":v3"}


def test_an_answer_comes_back_as_plain_values():
    answer = plain_answer(
        {
            "Items": [{"pk": {"S": "a"}, "n": {"N": "3"}}],
            "LastEvaluatedKey": {"pk": {"S": "a"}},
            "Count": 1,
        }
    )

    assert answer == {"Items": [{"pk": "a", "n": Decimal(3)}], "LastEvaluatedKey": {"pk": "a"}, "Count": 1}


class ThrottlingClient:
    """BatchWriteItem that leaves its last item unprocessed `times` times, as DynamoDB does when throttled."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.sent: list[int] = []

    def batch_write_item(self, RequestItems):
        ((table, requests),) = RequestItems.items()
        self.sent.append(len(requests))
        if self.times:
            self.times -= 1
            return {"UnprocessedItems": {table: requests[-1:]}}
        return {"UnprocessedItems": {}}


def test_putting_many_items_sends_25_a_call_and_what_dynamodb_left_unprocessed_again_with_backoff():
    client, slept = ThrottlingClient(times=2), []
    table = DynamoDbTable(client, "events", sleep=slept.append)

    table.put_items([{"pk": str(n)} for n in range(30)])

    assert client.sent == [25, 1, 1, 5]
    assert slept == [0.1, 0.2]


def test_items_still_unprocessed_after_every_attempt_raise_an_error_saying_how_many():
    client = ThrottlingClient(times=BATCH_WRITE_ATTEMPTS)
    table = DynamoDbTable(client, "events", sleep=lambda _: None)

    with pytest.raises(RuntimeError, match="left 1 item"):
        table.put_items([{"pk": "a"}, {"pk": "b"}])

    assert len(client.sent) == BATCH_WRITE_ATTEMPTS


def _sets_sorted(typed: dict[str, Any]) -> dict[str, Any]:
    """boto3 sends a set's members in the set's own order; DynamoDB's sets have none."""
    ((kind, raw),) = typed.items()
    if kind in ("SS", "NS", "BS"):
        return {kind: sorted(raw)}
    if kind == "M":
        return {kind: {name: _sets_sorted(value) for name, value in raw.items()}}
    if kind == "L":
        return {kind: [_sets_sorted(value) for value in raw]}
    return typed
