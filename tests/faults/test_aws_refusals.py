"""AwsRefusals on moto: a refused request changes nothing, botocore retries it as it does against AWS, and a
refusal that stops lets the request through exactly once."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from moto import mock_aws
from qbo_local.faults import AwsRefusals
from qbo_local.faults.aws_refusals import every_entry_failed

REGION = "eu-west-1"
RETRYING = Config(retries={"mode": "standard", "max_attempts": 2})  # two retries: three attempts in all
THROUGHPUT = "ProvisionedThroughputExceededException"
SLOW_DOWN = "The level of configured provisioned throughput for the table was exceeded."


@pytest.fixture
def session(monkeypatch) -> Iterator[boto3.Session]:
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda _self, _context: 0.0)
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def dynamodb_with_table(session: boto3.Session, name: str = "things") -> Any:
    dynamodb = session.client("dynamodb", config=RETRYING)
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb


def items(name: str = "things") -> list[dict[str, Any]]:
    # A session of its own: nothing refused on it.
    return boto3.Session(region_name=REGION).client("dynamodb").scan(TableName=name)["Items"]


class _Raw(io.BytesIO):
    def stream(self, **_options: Any):
        yield self.getvalue()


def test_an_error_answered_at_before_send_alone_still_lets_moto_write(session):
    # Why AwsRefusals exists: moto's stub is a before-send handler too, and botocore calls every one of them.
    def throttled(request, **_):
        body = json.dumps({"__type": THROUGHPUT, "message": SLOW_DOWN}).encode()
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body))

    session.events.register_first("before-send.dynamodb.PutItem", throttled)
    dynamodb = dynamodb_with_table(session)

    with pytest.raises(dynamodb.exceptions.ProvisionedThroughputExceededException):
        dynamodb.put_item(TableName="things", Item={"k": {"S": "a"}})

    assert items() == [{"k": {"S": "a"}}]


def test_a_refused_write_changes_nothing_and_botocore_retried_it_before_raising(session):
    refusals = AwsRefusals(session)
    throttled = refusals.refuse("dynamodb.PutItem", THROUGHPUT, SLOW_DOWN)
    dynamodb = dynamodb_with_table(session)

    with pytest.raises(dynamodb.exceptions.ProvisionedThroughputExceededException) as raised:
        dynamodb.put_item(TableName="things", Item={"k": {"S": "a"}})

    assert items() == []
    assert throttled.refused == 3 and raised.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert raised.value.response["Error"]["Message"] == SLOW_DOWN
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_refusal_that_stops_within_the_retries_lets_the_write_land_exactly_once(session):
    refusals = AwsRefusals(session)
    throttled = refusals.refuse("secrets-manager.PutSecretValue", "ThrottlingException", "Rate exceeded", times=2)
    vault = session.client("secretsmanager", config=RETRYING)
    vault.create_secret(Name="conn", SecretString="v1")

    answer = vault.put_secret_value(SecretId="conn", SecretString="v2")

    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert (throttled.refused, throttled.passed) == (2, 1)
    versions = vault.list_secret_version_ids(SecretId="conn")["Versions"]
    assert len(versions) == 2 and vault.get_secret_value(SecretId="conn")["SecretString"] == "v2"


def test_a_refused_secret_write_creates_no_version_and_the_old_value_stays_current(session):
    refusals = AwsRefusals(session)
    refusals.refuse("secrets-manager.PutSecretValue", "LimitExceededException", "over the quota")
    vault = session.client("secretsmanager", config=RETRYING)
    vault.create_secret(Name="conn", SecretString="v1")

    with pytest.raises(vault.exceptions.LimitExceededException):
        vault.put_secret_value(SecretId="conn", SecretString="v2")

    assert len(vault.list_secret_version_ids(SecretId="conn")["Versions"]) == 1
    assert vault.get_secret_value(SecretId="conn")["SecretString"] == "v1"


def test_only_the_requests_a_refusal_picks_are_refused(session):
    refusals = AwsRefusals(session)
    refused = refusals.refuse(
        "dynamodb.PutItem", THROUGHPUT, SLOW_DOWN, when=lambda body: body.get("TableName") == "history"
    )
    dynamodb = dynamodb_with_table(session)
    dynamodb_with_table(session, "history")

    dynamodb.put_item(TableName="things", Item={"k": {"S": "a"}})
    with pytest.raises(dynamodb.exceptions.ProvisionedThroughputExceededException):
        dynamodb.put_item(TableName="history", Item={"k": {"S": "b"}})

    assert items() == [{"k": {"S": "a"}}] and items("history") == []
    assert refused.refused == 3 and refused.passed == 0


def test_an_error_that_is_not_retried_is_refused_once(session):
    refusals = AwsRefusals(session)
    denied = refusals.refuse("dynamodb.PutItem", "AccessDeniedException", "User is not authorized")
    dynamodb = dynamodb_with_table(session)

    with pytest.raises(dynamodb.exceptions.ClientError, match="AccessDeniedException"):
        dynamodb.put_item(TableName="things", Item={"k": {"S": "a"}})

    assert denied.refused == 1 and items() == []


def test_a_lost_answer_is_a_write_that_landed_and_botocores_retry_lands_it_again(session):
    # The other real shape, named as such: AWS acted, the caller saw a 500, botocore retried.
    refusals = AwsRefusals(session)
    lost = refusals.lose_answers("dynamodb.UpdateItem", "InternalServerError", "Internal server error", times=1)
    dynamodb = dynamodb_with_table(session)

    answer = dynamodb.update_item(
        TableName="things",
        Key={"k": {"S": "counter"}},
        UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )

    assert answer["ResponseMetadata"]["RetryAttempts"] == 1 and lost.refused == 1
    assert items() == [{"k": {"S": "counter"}, "n": {"N": "2"}}]


def test_events_whose_entries_eventbridge_refuses_are_not_delivered(session):
    refusals = AwsRefusals(session)
    refusals.answer("eventbridge.PutEvents", every_entry_failed("ThrottlingException", "Rate exceeded"))
    sqs = session.client("sqs")
    queue = sqs.create_queue(QueueName="target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = session.client("events")
    events.put_rule(Name="all", EventPattern=json.dumps({"source": ["qbo"]}))
    events.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": arn}])
    entry = {"Source": "qbo", "DetailType": "Refreshed", "Detail": "{}"}

    answer = events.put_events(Entries=[entry, entry])

    assert answer["FailedEntryCount"] == 2
    assert [e["ErrorCode"] for e in answer["Entries"]] == ["ThrottlingException"] * 2
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", []) == []


def test_a_refusal_named_by_its_service_alone_refuses_every_operation_of_that_service_and_no_other(session):
    # A table throttled as a whole: its reads and its writes alike; Secrets Manager on the same session is not.
    refusals = AwsRefusals(session)
    throttled = refusals.refuse("dynamodb", THROUGHPUT, SLOW_DOWN, times=2)
    dynamodb = session.client("dynamodb", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    secrets = session.client("secretsmanager", config=RETRYING)
    secrets.create_secret(Name="s", SecretString="v")

    with pytest.raises(dynamodb.exceptions.ProvisionedThroughputExceededException):
        dynamodb.list_tables()
    with pytest.raises(dynamodb.exceptions.ProvisionedThroughputExceededException):
        dynamodb.describe_limits()

    assert dynamodb.list_tables()["TableNames"] == []  # its third call: the refusals ran out
    assert throttled.refused == 2 and throttled.passed == 1
