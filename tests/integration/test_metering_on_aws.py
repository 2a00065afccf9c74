"""Metering on moto and the emulator: the ledger's items and transactions, a workflow's calls counted as
the emulator saw them, the test function's read, and the gauge the alarm watches."""

from __future__ import annotations

from dataclasses import replace

import boto3
import pytest
from fakes import EPOCH, FakeClock
from moto import mock_aws
from qbo_connect import intuit
from qbo_connect.adapters.dynamodb_store import DynamoDbConnectionStore, create_table
from qbo_connect.adapters.dynamodb_table import DynamoDbTable
from qbo_connect.adapters.dynamodb_usage import DynamoDbUsageLedger
from qbo_connect.bulk import BatchOperation
from qbo_connect.domain.connection import Connection, ConnectionStatus
from qbo_connect.domain.metering import Allowances, Flush, Tally, UsageKey, UsageMeter, month_of
from qbo_connect.metering import publish_metering_gauge
from test_client_emulator import CLIENT_ID, REALM, world  # noqa: F401 - the fixture

TABLE = "qbo-metering-test"
APP = UsageKey("ABappone0123456789", "qbc-acme", intuit.Environment.PRODUCTION)


@pytest.fixture
def table(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):  # moto in this process, whatever ran before
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        create_table(boto3.client("dynamodb"), TABLE)
        yield DynamoDbTable(boto3.client("dynamodb"), TABLE)


def _tokens_sent(table) -> list[str]:
    sent: list[str] = []
    table.meta.client.meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params, **_: sent.append(params["ClientRequestToken"]),
    )
    return sent


def test_flushes_add_up_per_app_and_per_connection_in_their_month(table):
    ledger = DynamoDbUsageLedger(table)
    month = month_of(EPOCH)
    sandbox = UsageKey(APP.client_id, "qbc-dev", intuit.Environment.SANDBOX)
    ledger.add(Flush({(month, APP): Tally(10, 2), (month, sandbox): Tally(5, 1)}))
    ledger.add(Flush({(month, APP): Tally(3, 0), ("2025-12", APP): Tally(99, 0)}))

    (usage,) = ledger.month(month)

    assert (usage.production_reads, usage.production_writes) == (13, 2)
    assert (usage.sandbox_reads, usage.sandbox_writes) == (5, 1)
    assert {(c.connection_id, c.environment, c.reads, c.writes) for c in usage.connections} == {
        ("qbc-acme", "production", 13, 2),
        ("qbc-dev", "sandbox", 5, 1),
    }
    assert [u.metered_calls for u in ledger.month("2025-12")] == [99]
    assert ledger.month("2024-01") == []
    (apps_only,) = ledger.month(month, connections_too=False)  # the gauge's read: the app items only
    assert (apps_only.production_reads, apps_only.connections) == (13, ())


def test_counts_live_beside_the_connections_without_showing_up_among_them(table):
    store = DynamoDbConnectionStore(table)
    store.create(
        Connection(
            connection_id="qbc-acme",
            name="Acme",
            environment=intuit.Environment.PRODUCTION,
            base_url=intuit.PRODUCTION_API_BASE_URL,
            client_id=APP.client_id,
            realm_id=REALM,
            status=ConnectionStatus.CONNECTED,
        )
    )
    DynamoDbUsageLedger(table).add(Flush({(month_of(EPOCH), APP): Tally(1, 0)}))

    assert [c.connection_id for c in store.list()] == ["qbc-acme"]
    assert [c.connection_id for c in store.find_by_realm(REALM)] == ["qbc-acme"]
    assert sum(store.count_by_status().values()) == 1
    items = boto3.resource("dynamodb").Table(TABLE).scan()["Items"]
    usage = [i for i in items if i["pk"].startswith("usage#")]
    assert len(usage) == 2 and all(i["purge_at"] > EPOCH + 300 * 86400 for i in usage)  # kept about a year


def test_a_retried_flush_sends_the_same_idempotency_tokens_and_big_flushes_are_split(table):
    ledger, sent = DynamoDbUsageLedger(table), _tokens_sent(table)
    month = month_of(EPOCH)
    many = Flush({(month, replace(APP, connection_id=f"qbc-{n}")): Tally(1, 0) for n in range(150)})

    ledger.add(many)
    ledger.add(many)  # DynamoDB applies a token once within ten minutes (moto does not model that)

    assert len(sent) == 4 and sent[:2] == sent[2:]  # 1 app + 150 connections: two transactions each time
    assert len(set(sent[:2])) == 2 and all(len(token) <= 36 for token in sent)


def test_a_workflow_s_calls_are_counted_as_the_emulator_received_them(world) -> None:  # noqa: F811
    ledger = DynamoDbUsageLedger(world.services.table)
    meter = UsageMeter(ledger, world.clock, flush_seconds=3600)
    client = world.client(meter=meter, page_size=2)
    world.admin("DELETE", "/stats")

    customers = list(client.query("select * from Customer"))  # 3 seeded customers: two pages
    created = client.create("Customer", {"DisplayName": "Metered"})
    client.update("Customer", {"Id": created["Id"], "SyncToken": created["SyncToken"], "Notes": "x"}, sparse=True)
    client.batch(
        [
            BatchOperation("Customer", "create", {"DisplayName": "Metered 2"}),
            BatchOperation(query="select * from Customer", bid="q"),
        ]
    )
    client.company_info()
    assert meter.flush()

    resources = world.admin("GET", "/stats")["api_resources"]
    (usage,) = ledger.month(month_of(world.clock.now()))
    assert len(customers) == 3
    assert usage.sandbox_reads == resources["query"] + resources["companyinfo"] + 1  # + the batch's query
    assert usage.sandbox_writes == resources["customer"] + 1  # create, update, + the batch's create
    assert usage.metered_calls == 0  # a sandbox connection: Intuit meters none of it
    (connection,) = usage.connections
    assert (connection.connection_id, connection.reads) == (world.connection_id, usage.sandbox_reads)


def test_a_read_whose_answer_was_lost_is_counted_as_intuit_counts_it(world) -> None:  # noqa: F811
    meter = UsageMeter(DynamoDbUsageLedger(world.services.table), world.clock, flush_seconds=3600)
    client = world.client(meter=meter, timeout=(2, 0.3), transient_retries=0)
    # Intuit handles the request after a stall; the client has given up by then.
    world.admin("POST", "/faults", {"group": "api", "fault": "timeout", "seconds": 0.8, "process": True})

    with pytest.raises(Exception, match="did not answer"):
        client.company_info()

    assert meter.unwritten_calls == 1
    assert world.admin("GET", "/stats")["api_resources"]["companyinfo"] == 1


def test_the_consent_s_and_the_test_function_s_company_info_reads_are_counted_for_the_connection(world) -> None:  # noqa: F811
    world.services.meter.flush()
    month = month_of(world.clock.now())
    (after_consent,) = world.services.usage_ledger.month(month)

    world.services.connection_tests.run(world.connection_id)
    world.services.meter.flush()

    (after_test,) = world.services.usage_ledger.month(month)
    assert after_test.client_id == CLIENT_ID
    # The fixture's consent read the company's name; the test read CompanyInfo once more.
    assert [(c.connection_id, c.reads) for c in after_consent.connections] == [(world.connection_id, 1)]
    assert [(c.connection_id, c.reads) for c in after_test.connections] == [(world.connection_id, 2)]


def test_the_gauge_reports_the_highest_share_of_an_allowance_any_app_has_used(table, monkeypatch):
    ledger, clock = DynamoDbUsageLedger(table), FakeClock()
    month = month_of(clock.now())
    other = UsageKey("ABapptwo0123456789", "qbc-two", intuit.Environment.PRODUCTION)
    ledger.add(Flush({(month, APP): Tally(400, 0), (month, other): Tally(900, 0)}))
    emitted: list[tuple[str, float, dict]] = []
    monkeypatch.setattr(
        "qbo_connect.metering._emit", lambda name, unit, value, **dims: emitted.append((name, value, dims))
    )
    added: list[tuple[str, float]] = []
    monkeypatch.setattr(
        "qbo_connect.metering.metrics.add_metric", lambda name, unit, value: added.append((name, value))
    )

    share = publish_metering_gauge(ledger, Allowances.parse(1000, "ABapptwo0123456789=10000"), clock)

    assert share == 40.0  # app one: 400 of 1,000; app two: 900 of 10,000
    assert added == [("MeteredAllowanceUsedPercent", 40.0)]
    assert sorted(emitted) == [
        ("MeteredApiCalls", 400, {"ClientId": APP.client_id}),
        ("MeteredApiCalls", 900, {"ClientId": other.client_id}),
    ]
