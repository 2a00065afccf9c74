"""The scheduled sweep finds due connections through the sparse index and fans them out over SQS; the
refresh function consumes them in batches (moto's DynamoDB and SQS, the emulator)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fakes import FORCED_REFRESH_AGE
from qbo_connect.adapters.dynamodb_store import REFRESH_DUE_INDEX
from qbo_connect.domain.administration import NewConnection
from qbo_local.faults import AwsRefusals
from refresh_support import (
    ACCESS_TOKEN_SECONDS,
    REGION,
    Stack,
    botocore_hook,
    manual_clock,
    new_session,
)

SWEEP = {"action": "sweep"}


def connected_at(stack: Stack, offset: float) -> str:
    """A connection that went through consent `offset` seconds after the test's start."""
    stack.clock.advance(offset)
    return stack.connect().connection_id


def test_due_detection_returns_only_due_connected_connections_from_the_index_without_a_scan(make_stack) -> None:
    clock = manual_clock()
    stack: Stack = make_stack(clock)
    services = stack.services()
    due = [connected_at(stack, 0), connected_at(stack, 1)]
    # Connections whose tokens are just as old but that cannot be refreshed: permanently refused...
    clock.advance(FORCED_REFRESH_AGE)
    refused = {}
    for kind in ("invalid_grant", "invalid_client"):
        connection_id = stack.connect().connection_id
        clock.advance(FORCED_REFRESH_AGE)
        stack.emulator.faults.inject("token", kind, times=1)
        refused[connection_id] = services.lifecycle.refresh(connection_id, force=True).outcome.value
    assert sorted(refused.values()) == ["invalid_client", "needs_reauthorization"]
    # ...never connected, and connected later (not due yet).
    services.administration.create(NewConnection(name="Never connected", client_id="ABnotconnected01"))
    fresh = connected_at(stack, 40 * 60)
    clock.advance(ACCESS_TOKEN_SECONDS - 600 - 40 * 60)  # the first ones have 10 minutes left, `fresh` 50

    session = new_session()
    calls: list[tuple[str, dict[str, Any]]] = []
    scanned: list[int] = []
    with (
        botocore_hook(
            session, "provide-client-params.dynamodb", lambda params, model, **_: calls.append((model.name, params))
        ),
        botocore_hook(session, "after-call.dynamodb.Query", lambda parsed, **_: scanned.append(parsed["ScannedCount"])),
    ):
        found = stack.services(session=session).lifecycle.due_connection_ids()

    assert set(found) == set(due) and fresh not in found and not set(refused) & set(found)
    # One query of the index per refresh policy (eager, on demand: each has its own part of it), never a scan.
    assert [name for name, _ in calls] == ["Query", "Query"], "due detection must read the index, never scan"
    assert {params["IndexName"] for _, params in calls} == {REFRESH_DUE_INDEX}
    assert scanned == [len(due), 0]  # reads proportional to the due connections (all eager here), not to all


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping delivers for these messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def test_the_sweep_fans_out_over_sqs_and_a_batch_refreshes_each_connection(make_stack, monkeypatch) -> None:
    clock = manual_clock()
    stack: Stack = make_stack(clock)
    sqs = new_session().client("sqs")
    queue_url = sqs.create_queue(QueueName=f"refresh-{stack.settings.table_name}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.settings = dataclasses.replace(stack.settings, refresh_queue_url=queue_url)
    first, second, failing = (connected_at(stack, 0) for _ in range(3))
    fresh = connected_at(stack, 40 * 60)
    clock.advance(ACCESS_TOKEN_SECONDS - 600 - 40 * 60)

    # The schedule: due IDs go on the queue, nothing is refreshed yet.
    assert stack.services().refresh_runs.handle(SWEEP) == {"due": 3, "enqueued": 3}
    assert stack.refresh_calls() == 0
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    by_connection = {json.loads(m["Body"])["connection_id"]: m for m in received}
    assert set(by_connection) == {first, second, failing} and fresh not in by_connection

    # One batch: the three messages, a duplicate (SQS delivers at least once) and a malformed one.
    malformed = {**received[0], "MessageId": "malformed-1", "Body": "not json", "MD5OfBody": "0" * 32}
    duplicate = {**by_connection[first], "MessageId": "duplicate-1"}
    event = sqs_event([*received, duplicate, malformed], queue_arn)
    session = new_session()
    # DynamoDB failing every write of one connection's item (500, retried by botocore, then raised).
    down = AwsRefusals(session).refuse(
        "dynamodb.UpdateItem",
        "com.amazonaws.dynamodb.v20120810#InternalServerError",
        "Internal server error",
        when=lambda body: f"connection#{failing}" in json.dumps(body),
    )
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda _self, _context: 0.0)

    response = stack.services(session=session).refresh_runs.handle(event, None)

    # Only the unexpected error (botocore's retries spent) is retried by SQS; the malformed message is dropped,
    # the duplicate is a no-op.
    assert down.refused > 1
    assert response == {"batchItemFailures": [{"itemIdentifier": by_connection[failing]["MessageId"]}]}
    assert stack.refresh_calls() == 2
    for connection_id in (first, second):
        connection = stack.connection(connection_id)
        assert connection.status.value == "connected" and connection.secret_generation == 2
        assert connection.lease_owner is None
    assert stack.connection(failing).secret_generation == 1 and stack.connection(failing).lease_owner is None

    # SQS redelivers the failed message; now it goes through.
    retry = sqs_event([by_connection[failing]], queue_arn)
    assert stack.services().refresh_runs.handle(retry, None) == {"batchItemFailures": []}
    assert stack.refresh_calls() == 3 and stack.connection(failing).secret_generation == 2
    assert stack.services().refresh_runs.handle(SWEEP) == {"due": 0, "enqueued": 0}
    for connection_id in (first, second, failing):
        assert stack.company_name(stack.token_set(connection_id).access_token) is not None


def test_the_sweep_reads_as_much_with_ten_times_the_connections_and_counts_every_status_once_an_hour(
    make_stack,
) -> None:
    """At a million connections a sweep every five minutes must not read them all: the status gauge counts
    the statuses a person must act on every sweep (the alarm's level) and every status once an hour."""
    from qbo_connect import intuit
    from qbo_connect.adapters.dynamodb_store import connection_to_item
    from qbo_connect.domain.connection import Connection, ConnectionStatus

    clock = manual_clock()
    clock.advance(3600 - clock.now() % 3600 + 1800)  # half past: not the hour's first sweep
    stack: Stack = make_stack(clock)
    table = new_session().resource("dynamodb").Table(stack.settings.table_name)
    written = 0

    def store_connected(total: int) -> None:
        nonlocal written
        with table.batch_writer() as batch:
            for number in range(written, total):
                connection = Connection(
                    connection_id=f"qbc-stored{number:06d}",
                    name=f"stored {number}",
                    environment=intuit.Environment.SANDBOX,
                    base_url=intuit.SANDBOX_API_BASE_URL,
                    client_id="ABstoredclient0001",
                    realm_id="9341453050000001",
                    status=ConnectionStatus.CONNECTED,
                    has_client_secret=True,
                    access_token_expires_at=clock.now() + 3000,  # not due
                    refresh_token_expires_at=clock.now() + 8_000_000,
                    last_refreshed_at=clock.now() - 600,
                    version=1,
                    secret_generation=1,
                )
                batch.put_item(Item=connection_to_item(connection))
        written = total

    def sweep_reads() -> int:
        session = new_session()
        read: list[int] = []
        with botocore_hook(
            session, "after-call.dynamodb.Query", lambda parsed, **_: read.append(parsed["ScannedCount"])
        ):
            stack.services(session=session).refresh_runs.sweep()
        return sum(read)

    store_connected(20)
    few = sweep_reads()
    store_connected(200)
    clock.advance(stack.settings.refresh_period_seconds)
    assert sweep_reads() == few, "a sweep's reads must not grow with the connections stored"
    clock.advance(3600 - clock.now() % 3600)  # the hour's first sweep counts every status
    assert sweep_reads() >= 200


def test_the_hours_first_sweep_counts_every_status_even_when_its_fan_out_ends_after_the_first_period(
    make_stack,
) -> None:
    """The Scheduler invokes a 5-minute schedule anywhere in its minute (`:04:00` to `:04:59` for the one
    that falls in the hour's first period), and the gauge comes after the fan-out, which takes tens of
    seconds at ten thousand due (a thousand SendMessageBatch calls). The hour's every-status count must be
    decided by when the sweep started, or a deployment whose schedule runs at :04 loses it most hours."""
    clock = manual_clock()
    stack: Stack = make_stack(clock)
    sqs = new_session().client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=f"refresh-{stack.settings.table_name}")["QueueUrl"]
    stack.settings = dataclasses.replace(stack.settings, refresh_queue_url=queue_url)
    stack.connect()
    clock.advance(ACCESS_TOKEN_SECONDS - 600)  # due
    clock.advance(3600 - clock.now() % 3600 + 4 * 60 + 30)  # the :04 sweep, invoked 30 s into its minute

    session = new_session()
    services = stack.services(session=session)
    asked: list[object] = []
    count_by_status = services.store.count_by_status
    services.store.count_by_status = lambda statuses=None: asked.append(statuses) or count_by_status(statuses)

    # The fan-out takes 40 s (what a thousand batches take; this one stands for them).
    with botocore_hook(session, "after-call.sqs.SendMessageBatch", lambda **_: clock.advance(40)):
        assert services.refresh_runs.sweep()["enqueued"] == 1
    assert asked == [None], "the hour's first sweep must count every status"
