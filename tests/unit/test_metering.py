"""Metering: what counts as a metered call, counting in memory with few writes, and never losing counts silently."""

from __future__ import annotations

import threading

import pytest
from fakes import EPOCH, FakeClock, InMemoryUsageLedger
from qbo_connect import intuit
from qbo_connect.domain.metering import (
    Allowances,
    MeteringReport,
    UsageKey,
    UsageMeter,
    call_kinds,
    highest_share,
    month_of,
)
from qbo_connect.errors import InvalidInput
from qbo_connect.settings import Settings, SettingsError

PRODUCTION = UsageKey("ABappone0123456789", "qbc-acme", intuit.Environment.PRODUCTION)
SANDBOX = UsageKey("ABdevapp0123456789", "qbc-dev", intuit.Environment.SANDBOX)


@pytest.mark.parametrize(
    ("method", "path", "body", "kinds"),
    [
        ("GET", "customer/58", None, (1, 0)),
        ("GET", "companyinfo/9341453050000001", None, (1, 0)),
        ("GET", "query", None, (1, 0)),
        ("POST", "query", None, (1, 0)),  # a query sent as the body is still a read
        ("GET", "cdc", None, (1, 0)),
        ("GET", "reports/ProfitAndLoss", None, (1, 0)),
        ("POST", "customer", {"DisplayName": "x"}, (0, 1)),
        ("POST", "invoice/130/send", None, (0, 1)),
        (
            "POST",
            "batch",
            {
                "BatchItemRequest": [
                    {"bId": "1", "Query": "select * from Customer"},
                    {"bId": "2", "operation": "create"},
                ]
            },
            (1, 1),  # each item counts as the call it stands for
        ),
    ],
)
def test_reads_are_what_intuit_meters_and_writes_are_free(method, path, body, kinds):
    assert call_kinds(method, path, body) == kinds


def test_calls_are_counted_in_memory_and_written_once_per_interval_not_once_per_call():
    clock, ledger = FakeClock(), InMemoryUsageLedger()
    meter = UsageMeter(ledger, clock, flush_seconds=60)

    for _ in range(500):
        meter.count(PRODUCTION, reads=1)
        clock.advance(0.1)  # 500 calls in 50 s
    assert ledger.writes == 0 and meter.unwritten_calls == 500

    clock.advance(10.5)
    meter.count(PRODUCTION, writes=1)  # the first call a minute after the oldest writes them all
    assert ledger.writes == 1 and meter.unwritten_calls == 0
    assert (ledger.calls(PRODUCTION).reads, ledger.calls(PRODUCTION).writes) == (500, 1)


def test_a_burst_is_written_when_max_pending_calls_wait_however_fast_it_comes():
    ledger = InMemoryUsageLedger()
    meter = UsageMeter(ledger, FakeClock(), flush_seconds=60, max_pending=100)
    for _ in range(250):
        meter.count(PRODUCTION, reads=1)
    assert ledger.writes == 2 and meter.unwritten_calls == 50


def test_with_no_interval_every_call_is_written_as_it_happens():
    ledger = InMemoryUsageLedger()
    meter = UsageMeter(ledger, FakeClock(), flush_seconds=0)
    meter.count(SANDBOX, reads=1)
    meter.count(SANDBOX, reads=1)
    assert ledger.writes == 2 and ledger.calls(SANDBOX).reads == 2


def test_calls_are_counted_in_the_calendar_month_utc_they_happen_in():
    clock, ledger = FakeClock(EPOCH - 30), InMemoryUsageLedger()  # 2025-12-31 23:59:30 UTC
    meter = UsageMeter(ledger, clock, flush_seconds=3600)
    meter.count(PRODUCTION, reads=3)
    clock.advance(60)  # 2026-01-01 00:00:30
    meter.count(PRODUCTION, reads=2)
    meter.flush()

    assert [u.metered_calls for u in ledger.month("2025-12")] == [3]
    assert [u.metered_calls for u in ledger.month("2026-01")] == [2]
    assert month_of(EPOCH) == "2026-01"


def test_a_refused_flush_keeps_its_counts_says_so_and_is_written_at_the_next_flush():
    clock, ledger = FakeClock(), InMemoryUsageLedger()
    refused = []
    meter = UsageMeter(ledger, clock, flush_seconds=0, on_unrecorded=lambda flush, error: refused.append(flush.calls))
    ledger.fail_next(2, RuntimeError("AccessDeniedException"))

    meter.count(PRODUCTION, reads=1)
    meter.count(PRODUCTION, reads=1)
    assert refused == [1, 1] and meter.unwritten_calls == 2  # the oldest is retried first; nothing dropped

    meter.count(PRODUCTION, reads=1)
    assert ledger.calls(PRODUCTION).reads == 3 and meter.unwritten_calls == 0


def test_a_flush_whose_answer_was_lost_is_retried_with_its_token_and_counted_once():
    ledger = InMemoryUsageLedger()
    meter = UsageMeter(ledger, FakeClock(), flush_seconds=3600)
    meter.count(PRODUCTION, reads=7)
    ledger.lose_next_answers(1, TimeoutError("read timeout after the commit"))

    assert meter.flush() is False  # written, but the meter cannot know
    assert meter.flush() is True  # the same flush again, with the same token

    assert ledger.tokens and len(ledger.tokens) == 1
    assert ledger.calls(PRODUCTION).reads == 7


def test_counting_from_many_threads_loses_and_invents_nothing():
    ledger = InMemoryUsageLedger()
    meter = UsageMeter(ledger, FakeClock(), flush_seconds=3600, max_pending=37)

    def work() -> None:
        for _ in range(1000):
            meter.count(PRODUCTION, reads=1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    meter.flush()

    assert ledger.calls(PRODUCTION).reads == 8000


def test_only_production_reads_count_toward_the_allowance():
    clock, ledger = FakeClock(), InMemoryUsageLedger()
    meter = UsageMeter(ledger, clock, flush_seconds=0)
    meter.count(PRODUCTION, reads=400, writes=1000)
    meter.count(UsageKey(PRODUCTION.client_id, "qbc-sandbox", intuit.Environment.SANDBOX), reads=5000)

    (usage,) = ledger.month(month_of(clock.now()))

    assert usage.metered_calls == 400
    assert usage.share_of(1000) == 40.0
    assert (usage.production_writes, usage.sandbox_reads) == (1000, 5000)


def test_the_report_gives_each_app_its_allowance_share_and_flags_the_ones_over_the_alarm():
    clock, ledger = FakeClock(), InMemoryUsageLedger()
    meter = UsageMeter(ledger, clock, flush_seconds=0)
    meter.count(PRODUCTION, reads=900)
    meter.count(UsageKey("ABapptwo0123456789", "qbc-gone", intuit.Environment.PRODUCTION), reads=100)
    allowances = Allowances.parse(1000, "ABapptwo0123456789=10000")

    report = MeteringReport(ledger, _Names({"qbc-acme": "Acme US"}), allowances, clock, alarm_percent=80).month()

    first, second = report["apps"]
    assert (first["metered_calls"], first["allowance"], first["allowance_used_percent"]) == (900, 1000, 90.0)
    assert first["over_alarm_share"] is True and second["over_alarm_share"] is False
    assert second["allowance_used_percent"] == 1.0
    assert first["connections"][0] == {
        "connection_id": "qbc-acme",
        "name": "Acme US",
        "environment": "production",
        "reads": 900,
        "writes": 0,
    }
    assert second["connections"][0]["name"] is None  # deleted since: still counted
    assert highest_share(ledger.month(report["month"]), allowances) == 90.0


@pytest.mark.parametrize("month", ["2026-13", "26-01", "2026-1", "last month", "2026-01; drop", "2026-01\n"])
def test_a_month_that_is_not_yyyy_mm_is_refused_with_the_form_to_use(month):
    report = MeteringReport(InMemoryUsageLedger(), _Names({}), Allowances(), FakeClock(), alarm_percent=80)
    with pytest.raises(InvalidInput, match="YYYY-MM"):
        report.month(month)


def test_allowances_and_the_flush_interval_come_from_the_environment():
    settings = Settings.from_environment(
        {
            "QBO_TABLE_NAME": "t",
            "QBO_METERING_FLUSH_SECONDS": "0",
            "QBO_METERING_MONTHLY_ALLOWANCE": "1000000",
            "QBO_METERING_ALLOWANCES": "ABappone0123456789=2000000, ABapptwo0123456789=500",
            "QBO_METERING_ALARM_PERCENT": "75",
        }
    )
    assert settings.metering_flush_seconds == 0
    assert settings.metering_allowances.of("ABappone0123456789") == 2_000_000
    assert settings.metering_allowances.of("ABapptwo0123456789") == 500
    assert settings.metering_allowances.of("ABother") == 1_000_000
    assert settings.metering_alarm_percent == 75
    assert Settings(table_name="t").metering_allowances.of("x") == 500_000  # Intuit's Builder tier


@pytest.mark.parametrize("overrides", ["app", "app=", "app=0", "app=-5", "=5", "app=1e6"])
def test_a_malformed_allowance_override_is_refused_saying_what_to_fix(overrides):
    with pytest.raises(SettingsError, match="QBO_METERING_ALLOWANCES"):
        Settings.from_environment({"QBO_TABLE_NAME": "t", "QBO_METERING_ALLOWANCES": overrides})


class _Names:
    def __init__(self, names: dict[str, str]) -> None:
        self._names = names

    def list(self):
        return [type("C", (), {"connection_id": k, "name": v})() for k, v in self._names.items()]


def test_the_consent_and_the_connection_test_read_company_info_as_the_connection_s_calls(world):
    connection = world.connected()

    world.tests.run(connection.connection_id, deep=False)

    assert world.company_api.usages == [UsageKey.of(connection)] * 2  # the consent's name lookup, the test
    assert UsageKey.of(connection).client_id == connection.client_id
