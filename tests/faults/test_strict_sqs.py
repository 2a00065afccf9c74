"""StrictSqs on moto: SendMessageBatch and SendMessage held to SQS's size limits as AWS documents them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from qbo_local.faults import StrictSqs

LIMIT = 262_144


@pytest.fixture
def raw() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("sqs", region_name="eu-west-1")
        yield client, client.create_queue(QueueName="q")["QueueUrl"]


def _waiting(client: Any, url: str) -> int:
    return int(
        client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]["ApproximateNumberOfMessages"]
    )


def test_a_batch_whose_messages_add_up_past_the_limit_is_refused_whole(raw) -> None:
    client, url = raw
    strict = StrictSqs(client)
    entries = [{"Id": str(n), "MessageBody": "x" * 60_000} for n in range(5)]  # each fits; together 300,000

    with pytest.raises(client.exceptions.BatchRequestTooLong) as refused:
        strict.send_message_batch(QueueUrl=url, Entries=entries)

    assert refused.value.response["Error"]["Code"] == "BatchRequestTooLong"
    assert "You have sent 300000 bytes" in refused.value.response["Error"]["Message"]
    assert _waiting(client, url) == 0 and strict.batches == []


def test_a_batch_at_the_limit_passes_and_attributes_count_toward_it(raw) -> None:
    client, url = raw
    strict = StrictSqs(client)
    strict.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x" * LIMIT}])
    with_attribute = {
        "Id": "b",
        "MessageBody": "x" * (LIMIT - 10),
        "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "change"}},  # 4 + 6 + 6 bytes
    }
    with pytest.raises(client.exceptions.BatchRequestTooLong):
        strict.send_message_batch(QueueUrl=url, Entries=[with_attribute])
    assert strict.batches == [[LIMIT]] and _waiting(client, url) == 1


def test_a_message_over_the_queues_size_is_refused_under_a_larger_batch_limit(raw) -> None:
    client, url = raw
    strict = StrictSqs(client, max_message_bytes=LIMIT, max_batch_bytes=4 * LIMIT)  # a queue made before 2025
    with pytest.raises(client.exceptions.ClientError, match="Message must be shorter than 262144 bytes"):
        strict.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "é" * (LIMIT // 2 + 1)}])
    with pytest.raises(client.exceptions.ClientError, match="InvalidParameterValue"):
        strict.send_message(QueueUrl=url, MessageBody="x" * (LIMIT + 1))
    assert _waiting(client, url) == 0
