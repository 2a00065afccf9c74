"""Shared fixtures: the fake world for unit tests, and the log scan every flow test ends with."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator

import pytest
from fakes import FakeWorld
from qbo_connect.observability import SERVICE, logger, metrics


class LogScan:
    """Everything logged or printed during a test, to prove that no secret value reached it."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
        self._caplog = caplog
        self._capsys = capsys
        self._printed: list[str] = []

    def text(self) -> str:
        captured = self._capsys.readouterr()
        self._printed += [captured.out, captured.err]
        formatter = logger.registered_formatter
        # The formatted line (message and extras, as shipped to CloudWatch) and every attribute of the record.
        # `records` is the current phase only: a check at teardown must also read setup's and the call's.
        everything = [*self._caplog.get_records("setup"), *self._caplog.get_records("call"), *self._caplog.records]
        records = [f"{formatter.format(r)}\n{vars(r)!r}" for r in everything]
        return "\n".join([*self._printed, *records])

    def saw(self, printed: str) -> None:
        """Output another fixture read from capsys first (the metrics' EMF lines), still scanned."""
        self._printed.append(printed)

    def assert_free_of(self, values: Iterable[str]) -> None:
        text = self.text()
        leaked = sorted(v for v in set(values) if v and v in text)
        assert not leaked, f"{len(leaked)} secret value(s) appeared in the logs, e.g. one starting {leaked[0][:6]!r}"


@pytest.fixture(autouse=True)
def _service_log_level() -> Iterator[None]:
    """Every test starts with the service logging at INFO, whatever an earlier test (the CLI) set."""
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(logging.INFO)


@pytest.fixture
def log_scan(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> LogScan:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger=SERVICE)
    return LogScan(caplog, capsys)


@pytest.fixture
def world(log_scan: LogScan) -> Iterator[FakeWorld]:
    """The domain on in-memory fakes; when the test ends, no token, code, state or secret it made was logged."""
    world = FakeWorld()
    yield world
    log_scan.assert_free_of(world.identity.issued_values())


@pytest.fixture
def emitted(capsys, monkeypatch, log_scan):
    """The EMF documents printed so far (Powertools writes metrics to stdout), as {name: [(dimensions, value)]}."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # importing the CLI turns them off process-wide
    metrics.clear_metrics()

    def read() -> dict[str, list[tuple[dict, float]]]:
        metrics.flush_metrics(raise_on_empty_metrics=False)
        found: dict[str, list[tuple[dict, float]]] = {}
        printed = capsys.readouterr()
        log_scan.saw(printed.out + printed.err)
        for line in printed.out.splitlines():
            if not line.startswith('{"_aws"'):
                continue
            document = json.loads(line)
            for definition in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                name = definition["Name"]
                dims = {
                    d: document[d] for group in document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in group
                }
                values = document[name] if isinstance(document[name], list) else [document[name]]
                found.setdefault(name, []).extend((dims, float(v)) for v in values)
        return found

    yield read
    metrics.clear_metrics()
