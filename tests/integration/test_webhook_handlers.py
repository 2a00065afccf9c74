"""The two webhook functions as Lambda calls them, on moto: POST /intuit/webhooks (payload 2.0 events
built from events/webhooks.json) hands a signed delivery to SQS; the webhook events function consumes
those messages and publishes QuickBooks Entity Changed events, once each, to the bus."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError
from fakes import FakeClock
from moto import mock_aws
from qbo_connect import intuit, runtime, webhook_runs
from qbo_connect.adapters.dynamodb_store import STATE_TTL_ATTRIBUTE, create_table
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.webhooks import signature_of
from qbo_connect.runtime import build_services
from qbo_local.faults import StrictSqs
from qbo_local.template import load_template
from test_handlers import LambdaContext, _load_handler, lambda_environment

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
TABLE = "qbo-connect-webhooks-test"
REALM = "9341453050000001"
CLIENT_ID = "ABfakeclientid0123456789"
VERIFIER = "verifier-token-of-the-app"

# SQS hands a message that was not deleted to the consumer again this long after it received it.
WEBHOOK_VISIBILITY_SECONDS = load_template(ROOT / "template.yaml")["Resources"]["WebhookQueue"]["Properties"][
    "VisibilityTimeout"
]

webhooks_function = _load_handler("webhooks")
webhook_events_function = _load_handler("webhook_events")

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def cloudevent(
    entity_id: str = "145", *, event_id: str | None = None, realm: str = REALM, kind: str = "invoice.created"
):
    return {
        "specversion": "1.0",
        "id": event_id or f"evt-{entity_id}-{kind}",
        "source": "intuit.test",
        "type": f"qbo.{kind}.v1",
        "time": "2026-11-28T14:41:41.179851517Z",
        "intuitentityid": entity_id,
        "intuitaccountid": realm,
        "data": {},
    }


def webhook_event(body: bytes | str, signature: str | None, *, base64_body: bool = False) -> dict:
    event = json.loads((ROOT / "events" / "webhooks.json").read_text())
    raw = body.encode() if isinstance(body, str) else body
    event["body"] = base64.b64encode(raw).decode() if base64_body else raw.decode()
    event["isBase64Encoded"] = base64_body
    event["headers"].pop(intuit.WEBHOOK_SIGNATURE_HEADER)
    if signature is not None:
        event["headers"][intuit.WEBHOOK_SIGNATURE_HEADER] = signature
    event["headers"]["content-length"] = str(len(raw))
    return event


@dataclass
class Deployment:
    session: boto3.Session
    webhook_queue_url: str
    bus_queue_url: str  # what a user's rule on the bus delivers to

    def post(self, document, *, token: str | None = VERIFIER, signature: str | None = None) -> dict:
        body = json.dumps(document).encode()
        if signature is None and token is not None:
            signature = signature_of(body, token)
        return webhooks_function.handler(webhook_event(body, signature), LambdaContext())

    def handed_off(self) -> list[dict]:
        """The webhook queue's messages, as the SQS event source would hand them to the consumer."""
        sqs = self.session.client("sqs")
        records = []
        while answer := sqs.receive_message(QueueUrl=self.webhook_queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in answer:
                records.append(
                    {
                        "messageId": message["MessageId"],
                        "receiptHandle": message["ReceiptHandle"],
                        "body": message["Body"],
                        "attributes": {"ApproximateReceiveCount": "1"},
                        "messageAttributes": {},
                        "md5OfBody": message["MD5OfBody"],
                        "eventSource": "aws:sqs",
                        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:webhooks",
                        "awsRegion": REGION,
                    }
                )
                sqs.delete_message(QueueUrl=self.webhook_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return records

    def consume(self, records: list[dict]) -> dict:
        return webhook_events_function.handler({"Records": records}, LambdaContext())

    def on_the_bus(self) -> list[dict]:
        sqs = self.session.client("sqs")
        found = []
        while answer := sqs.receive_message(QueueUrl=self.bus_queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in answer:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.bus_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return found


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    lambda_environment(monkeypatch, table=TABLE, secret_prefix="qbo-connect/webhooks-test/")
    runtime.reset_services()
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        create_table(session.client("dynamodb"), TABLE)
        sqs, events = session.client("sqs"), session.client("events")
        queue_url = sqs.create_queue(QueueName="webhooks")["QueueUrl"]
        bus_queue_url = sqs.create_queue(QueueName="bus")["QueueUrl"]
        bus_arn = sqs.get_queue_attributes(QueueUrl=bus_queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name="all", EventPattern=json.dumps({"source": ["qbo-connect"]}))
        events.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": bus_arn}])
        monkeypatch.setenv("QBO_WEBHOOK_QUEUE_URL", queue_url)
        services = runtime.services()
        for connection_id, realm in (("acme", REALM), ("acme-eu", REALM), ("other", "1234567")):
            services.administration.create(
                NewConnection(
                    name=connection_id,
                    client_id=CLIENT_ID,
                    client_secret="cs-0123456789",
                    connection_id=connection_id,
                    realm_id=realm,
                )
            )
        services.webhook_verifiers.set(CLIENT_ID, VERIFIER)
        try:
            yield Deployment(session, queue_url, bus_queue_url)
        finally:
            runtime.reset_services()


def test_a_signed_delivery_arrives_on_the_bus_once_per_connection_of_its_company(deployment: Deployment) -> None:
    answer = deployment.post([cloudevent("145"), cloudevent("146", kind="customer.updated")])
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"accepted": 2, "skipped": 0}

    result = deployment.consume(deployment.handed_off())
    assert result == {"batchItemFailures": []}

    events = deployment.on_the_bus()
    assert {e["detail-type"] for e in events} == {"QuickBooks Entity Changed"}
    assert sorted((e["detail"]["connection_id"], e["detail"]["entity"], e["detail"]["operation"]) for e in events) == [
        ("acme", "Customer", "Update"),
        ("acme", "Invoice", "Create"),
        ("acme-eu", "Customer", "Update"),
        ("acme-eu", "Invoice", "Create"),
    ]
    assert set(events[0]["detail"]) == {
        "connection_id",
        "realm_id",
        "entity",
        "entity_id",
        "operation",
        "occurred_at",
        "event_id",
    }


def test_intuits_retry_of_a_delivery_publishes_nothing_more(deployment: Deployment) -> None:
    delivery = [cloudevent("145")]
    deployment.post(delivery)
    deployment.consume(deployment.handed_off())
    assert len(deployment.on_the_bus()) == 2

    assert deployment.post(delivery)["statusCode"] == 200  # Intuit did not see our first 200
    deployment.consume(deployment.handed_off())
    assert deployment.on_the_bus() == []


def test_the_legacy_shape_is_published_like_cloudevents(deployment: Deployment) -> None:
    legacy = {
        "eventNotifications": [
            {
                "realmId": REALM,
                "dataChangeEvent": {
                    "entities": [
                        {"name": "Invoice", "id": "9", "operation": "Void", "lastUpdated": "2026-11-28T14:00:00Z"}
                    ]
                },
            }
        ]
    }
    assert deployment.post(legacy)["statusCode"] == 200
    deployment.consume(deployment.handed_off())
    assert {(e["detail"]["entity_id"], e["detail"]["operation"]) for e in deployment.on_the_bus()} == {("9", "Void")}


@pytest.mark.parametrize("signature", [None, "", "bm90IGl0", signature_of(b"[]", VERIFIER)])
def test_a_missing_or_wrong_signature_gets_401_and_nothing_is_queued(deployment: Deployment, signature) -> None:
    answer = deployment.post([cloudevent()], token=None, signature=signature)
    assert answer["statusCode"] == 401
    assert deployment.handed_off() == []


def test_another_apps_token_does_not_verify_this_deployments_deliveries(deployment: Deployment) -> None:
    assert deployment.post([cloudevent()], token="a-token-nobody-set")["statusCode"] == 401
    assert deployment.handed_off() == []


def test_a_token_set_a_moment_ago_verifies_at_once(deployment: Deployment) -> None:
    services = runtime.services()
    deployment.post([cloudevent()])  # the function now holds the tokens in its cache
    services.webhook_verifiers._clock = _Later(services.webhook_verifiers._clock, 30)  # the cache is 30 s old
    runtime.build_services(services.settings, session=services.session).webhook_verifiers.set(
        "ABsecondapp0123456789", "new"
    )
    assert deployment.post([cloudevent("7", event_id="x")], token="new")["statusCode"] == 200


class _Later:
    def __init__(self, clock, seconds: float) -> None:
        self._clock, self._seconds = clock, seconds

    def now(self) -> float:
        return self._clock.now() + self._seconds


def test_changes_for_a_company_no_connection_holds_are_counted_and_logged(
    deployment: Deployment, caplog, monkeypatch
) -> None:
    # The metric as the function adds it (whether Powertools prints it depends on POWERTOOLS_METRICS_DISABLED).
    added = []
    real_add_metric = webhook_runs.metrics.add_metric
    monkeypatch.setattr(
        webhook_runs.metrics,
        "add_metric",
        lambda **kw: (added.append((kw["name"], kw["value"])), real_add_metric(**kw)),
    )
    deployment.post([cloudevent("1", realm="5550001")])
    result = deployment.consume(deployment.handed_off())
    assert result == {"batchItemFailures": []}
    assert deployment.on_the_bus() == []
    (record,) = [r for r in caplog.records if "no connection of this app holds" in r.getMessage()]
    assert record.realm_ids == ["5550001"]
    assert ("WebhookEventsUnmatched", 1) in added


def test_a_publish_that_eventbridge_refuses_is_retried_by_sqs_and_then_lands_once(
    deployment: Deployment, monkeypatch
) -> None:
    deployment.post([cloudevent("145")])
    records = deployment.handed_off()
    events_client = runtime.services().events._client
    real_put_events = events_client.put_events

    def refusing(**kwargs):
        return {
            "FailedEntryCount": len(kwargs["Entries"]),
            "Entries": [{"ErrorCode": "InternalFailure"}] * len(kwargs["Entries"]),
        }

    monkeypatch.setattr(events_client, "put_events", refusing)
    with pytest.raises(BatchProcessingError):  # every record failed: the whole batch goes back to SQS
        deployment.consume(records)
    monkeypatch.setattr(events_client, "put_events", real_put_events)
    assert deployment.consume(records) == {"batchItemFailures": []}  # SQS's redelivery
    assert len(deployment.on_the_bus()) == 2


def test_a_base64_body_is_verified_over_its_raw_bytes(deployment: Deployment) -> None:
    body = json.dumps([cloudevent("145")]).encode()
    event = webhook_event(body, signature_of(body, VERIFIER), base64_body=True)
    assert webhooks_function.handler(event, LambdaContext())["statusCode"] == 200
    assert len(deployment.handed_off()) == 1


def test_a_signed_body_in_no_known_shape_is_acknowledged_and_nothing_is_queued(deployment: Deployment) -> None:
    answer = deployment.post({"something": "else"})
    assert answer["statusCode"] == 200
    assert deployment.handed_off() == []


def test_a_large_delivery_is_handed_off_in_few_messages(deployment: Deployment) -> None:
    sends = []
    runtime.services().webhook_queue._client.meta.events.register(
        "before-call.sqs", lambda model, **_: sends.append(model.name)
    )
    answer = deployment.post([cloudevent(str(i)) for i in range(1000)])
    assert json.loads(answer["body"])["accepted"] == 1000
    assert sends == ["SendMessageBatch"]  # one SQS call, however large the delivery
    records = deployment.handed_off()
    assert len(records) == 10  # 100 changes a message
    assert sum(len(json.loads(r["body"])["changes"]) for r in records) == 1000


def test_a_delivery_of_changes_with_long_ids_fits_sqs_s_size_limits(deployment: Deployment, monkeypatch) -> None:
    # Intuit's IDs are not bounded by what we have seen: the receiver reads CloudEvents IDs up to 256
    # characters and entity IDs up to 128. 1,000 such changes are some 590 KB of SQS messages, past the
    # 256 KiB that SendMessageBatch takes (and a queue made before August 2025 takes per message): AWS
    # refuses the whole call (BatchRequestTooLong), the delivery is answered 503, and Intuit retries it
    # for ever while holding back every later delivery.
    queue = runtime.services().webhook_queue
    strict = StrictSqs(queue._client)
    monkeypatch.setattr(queue, "_client", strict)
    long_ids = [
        cloudevent(f"{i:04d}".rjust(128, "7"), event_id=f"{i:04d}-" + "e" * 251, kind="purchaseorder.updated")
        for i in range(1000)
    ]

    answer = deployment.post(long_ids)

    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"]) == {"accepted": 1000, "skipped": 0}
    handed_off = [change for r in deployment.handed_off() for change in json.loads(r["body"])["changes"]]
    assert sorted(change["event_id"] for change in handed_off) == sorted(event["id"] for event in long_ids)


class LambdaTimedOut(BaseException):
    """Lambda stopped the invocation at its timeout: nothing after this point runs."""


@pytest.fixture
def fake_time(deployment: Deployment, monkeypatch) -> FakeClock:
    """The deployment's functions on a clock the test moves (the data stays in moto)."""
    clock = FakeClock(time.time())
    monkeypatch.setattr(runtime, "_services", build_services(clock=clock))
    return clock


def _put_events_fails(monkeypatch, failure: BaseException) -> None:
    events_client = runtime.services().events._client
    real_put_events = events_client.put_events

    def failing(**kwargs):
        monkeypatch.setattr(events_client, "put_events", real_put_events)  # only this once
        raise failure

    monkeypatch.setattr(events_client, "put_events", failing)


def test_a_consumer_stopped_at_its_timeout_before_publishing_has_the_changes_published_on_sqs_redelivery(
    deployment: Deployment, fake_time: FakeClock, monkeypatch
) -> None:
    deployment.post([cloudevent("145")])
    records = deployment.handed_off()
    _put_events_fails(monkeypatch, LambdaTimedOut("Task timed out after 30.00 seconds"))
    with pytest.raises(LambdaTimedOut):  # the changes are claimed, nothing is published or deleted
        deployment.consume(records)

    fake_time.advance(WEBHOOK_VISIBILITY_SECONDS)  # SQS hands the message over again
    deployment.consume(records)
    assert len(deployment.on_the_bus()) == 2


def test_a_put_events_error_after_botos_retries_has_the_changes_published_on_sqs_redelivery(
    deployment: Deployment, fake_time: FakeClock, monkeypatch
) -> None:
    deployment.post([cloudevent("145")])
    records = deployment.handed_off()
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutEvents")
    _put_events_fails(monkeypatch, throttled)
    with pytest.raises(BatchProcessingError):
        deployment.consume(records)

    fake_time.advance(WEBHOOK_VISIBILITY_SECONDS)
    assert deployment.consume(records) == {"batchItemFailures": []}
    assert len(deployment.on_the_bus()) == 2


def test_a_put_events_error_on_a_later_call_publishes_the_earlier_calls_events_no_second_time(
    deployment: Deployment, fake_time: FakeClock, monkeypatch
) -> None:
    # 10 changes for a company two connections hold: 20 events, two PutEvents calls of 10. EventBridge
    # takes the first call and throttles the second past boto's retries.
    deployment.post([cloudevent(str(i)) for i in range(10)])
    records = deployment.handed_off()
    events_client = runtime.services().events._client
    real_put_events = events_client.put_events
    calls = []

    def second_call_throttled(**kwargs):
        calls.append(len(kwargs["Entries"]))
        if len(calls) == 2:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutEvents")
        return real_put_events(**kwargs)

    monkeypatch.setattr(events_client, "put_events", second_call_throttled)
    with pytest.raises(BatchProcessingError):
        deployment.consume(records)
    assert len(deployment.on_the_bus()) == 10  # the first call's events are out

    fake_time.advance(WEBHOOK_VISIBILITY_SECONDS)  # SQS hands the message over again
    assert deployment.consume(records) == {"batchItemFailures": []}
    again = deployment.on_the_bus()
    assert len(again) == 10, "the events EventBridge took the first time were published a second time"


def test_a_delivery_of_a_bulk_import_is_accepted_whole(deployment: Deployment) -> None:
    # Intuit aggregates a company's changes for up to 5 minutes and imposes no limit on a delivery's size
    # or count; a company importing 12,000 transactions gets them in one delivery of about 3 MB, well
    # within what API Gateway and Lambda hand the function. Anything but a 200 has Intuit retry it every
    # 6 hours for ever and hold back every later delivery behind it.
    delivery = [cloudevent(str(i), event_id=f"88cd52aa-33b6-4351-9aa4-{i:012d}") for i in range(12_000)]
    answer = deployment.post(delivery)
    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"]) == {"accepted": 12_000, "skipped": 0}
    handed_off = [change for r in deployment.handed_off() for change in json.loads(r["body"])["changes"]]
    assert len({change["event_id"] for change in handed_off}) == 12_000


def _dynamodb_ttl_sweeps(deployment: Deployment, now: float) -> None:
    """What DynamoDB's TTL does in AWS (moto never does it): items whose TTL has passed are deleted."""
    table = deployment.session.resource("dynamodb").Table(TABLE)
    for item in table.scan()["Items"]:
        if STATE_TTL_ATTRIBUTE in item and int(item[STATE_TTL_ATTRIBUTE]) < now:
            table.delete_item(Key={"pk": item["pk"]})


def test_a_message_redriven_from_the_dead_letter_queue_publishes_nothing_twice(
    deployment: Deployment, fake_time: FakeClock, monkeypatch
) -> None:
    # EventBridge takes the first change's events and refuses the second's, five receives in a row: SQS
    # parks the message in the dead-letter queue (kept 14 days from its first enqueue). The operator
    # fixes the bus after a week and a half and redrives it, as the alarm's runbook says.
    deployment.post([cloudevent("145"), cloudevent("146")])
    records = deployment.handed_off()
    events_client = runtime.services().events._client
    real_put_events = events_client.put_events

    def refusing_the_second_change(**kwargs):
        entries = kwargs["Entries"]
        taken = [e for e in entries if json.loads(e["Detail"])["entity_id"] == "145"]
        answer = real_put_events(Entries=taken)["Entries"]
        refused = [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}] * (len(entries) - len(taken))
        return {"FailedEntryCount": len(refused), "Entries": answer + refused}

    monkeypatch.setattr(events_client, "put_events", refusing_the_second_change)
    for _ in range(5):
        with pytest.raises(BatchProcessingError):
            deployment.consume(records)
        fake_time.advance(WEBHOOK_VISIBILITY_SECONDS)
    assert sorted(e["detail"]["entity_id"] for e in deployment.on_the_bus()) == ["145", "145"]

    monkeypatch.setattr(events_client, "put_events", real_put_events)
    fake_time.advance(10 * 86400)
    _dynamodb_ttl_sweeps(deployment, fake_time.now())
    assert deployment.consume(records) == {"batchItemFailures": []}  # the redriven message
    assert sorted(e["detail"]["entity_id"] for e in deployment.on_the_bus()) == ["146", "146"]
