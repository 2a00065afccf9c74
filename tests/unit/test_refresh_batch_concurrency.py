"""A batch's records are refreshed at the same time, and the local event source runs as many
instances as the template's RefreshMaxConcurrency (both so that refreshes keep the write budget busy)."""

from __future__ import annotations

import contextvars
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeClock
from qbo_connect.domain.lifecycle import RefreshOutcome, RefreshResult
from qbo_connect.refresh_runs import BatchFailed, RefreshRuns
from qbo_local.functions import LocalFunction
from qbo_local.scheduler import QueueEventSource
from qbo_local.template import Tag, load_template, parameter_default

ROOT = Path(__file__).resolve().parents[2]
INTUIT_SECONDS = 0.2


class WaitingLifecycle:
    """Each refresh waits (as on Intuit) until `together` refreshes are under way at once; a refresh held
    back behind the others breaks the barrier instead of hanging the test."""

    def __init__(self, together: int) -> None:
        self._barrier = threading.Barrier(together, timeout=10)

    def refresh(self, connection_id: str, **_: Any) -> RefreshResult:
        self._barrier.wait()
        return RefreshResult(connection_id, RefreshOutcome.REFRESHED)


def sqs_event(connection_ids: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{index}",
                "receiptHandle": f"r-{index}",
                "body": json.dumps({"connection_id": cid}),
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:refresh",
                "awsRegion": "us-east-1",
            }
            for index, cid in enumerate(connection_ids)
        ]
    }


def test_every_record_of_a_batch_is_refreshed_at_once_and_reports_no_failures() -> None:
    # Twenty: more than the event loop's default executor runs at once (CPU count + 4; 6 in Lambda).
    lifecycle = WaitingLifecycle(together=20)
    runs = RefreshRuns(lifecycle, None, FakeClock())  # type: ignore[arg-type]

    answer = runs.handle(sqs_event([f"qbc-{n:04d}" for n in range(20)]))

    assert answer == {"batchItemFailures": []}


def test_the_local_event_source_runs_the_templates_refresh_concurrency() -> None:
    template = load_template(ROOT / "template.yaml")
    default = template["Parameters"]["RefreshMaxConcurrency"]["Default"]

    assert parameter_default(template, Tag("Ref", "RefreshMaxConcurrency"), 1) == default
    assert parameter_default(template, {"Ref": "RefreshMaxConcurrency"}, 1) == default
    assert parameter_default(template, 7, 1) == 7
    assert parameter_default(template, Tag("Ref", "NoSuchParameter"), 1) == 1


class FakeQueue:
    """receive_message and delete_message_batch over a list, as SQS answers them."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self.waiting = [{"MessageId": f"m-{n}", "ReceiptHandle": f"r-{n}", "Body": "{}"} for n in range(count)]
        self.deleted: list[str] = []

    def receive_message(self, MaxNumberOfMessages: int, **_: Any) -> dict[str, Any]:
        with self._lock:
            taken, self.waiting = self.waiting[:MaxNumberOfMessages], self.waiting[MaxNumberOfMessages:]
        if not taken:
            time.sleep(0.01)
        return {"Messages": taken}

    def delete_message_batch(self, Entries: list[dict[str, str]], **_: Any) -> None:
        with self._lock:
            self.deleted += [entry["ReceiptHandle"] for entry in Entries]


def test_each_poller_invokes_its_own_container_and_every_message_is_deleted() -> None:
    invoked_by: set[int] = set()
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with lock:
            invoked_by.add(threading.get_ident())
        time.sleep(0.05)
        return {"batchItemFailures": []}

    queue = FakeQueue(60)
    function = LocalFunction.from_handler("RefreshFunction", handler)
    source = QueueEventSource(function, queue, "url", "arn", batch_size=10, concurrency=3, poll_seconds=0)

    source.start()
    deadline = time.monotonic() + 10
    while len(queue.deleted) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    source.stop()

    assert sorted(queue.deleted) == sorted(f"r-{n}" for n in range(60))
    assert len(invoked_by) > 1
    assert 1 < len(source.containers) <= 3
    assert len({id(container) for container in source.containers}) == len(source.containers)


def test_no_message_is_received_while_every_instance_is_busy() -> None:
    # Lambda's pollers take a batch only for an instance that can run it: anything received sooner would
    # sit invisible on the queue, waiting for an instance, while its visibility timeout runs down.
    release = threading.Event()
    running = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        running.set()
        release.wait(10)
        return {"batchItemFailures": []}

    queue = FakeQueue(30)
    source = QueueEventSource(
        LocalFunction.from_handler("RefreshFunction", handler),
        queue,
        "url",
        "arn",
        batch_size=10,
        concurrency=1,
        pollers=3,
        poll_seconds=0,
    )
    source.start()
    assert running.wait(10)
    time.sleep(0.3)  # pollers that did not wait for the instance would have taken the rest by now
    waiting_while_busy = len(queue.waiting)
    release.set()
    deadline = time.monotonic() + 10
    while len(queue.deleted) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    source.stop()

    assert waiting_while_busy == 20
    assert len(queue.deleted) == 30


def test_a_batch_runs_no_more_refreshes_at_once_than_its_workers():
    # A low write budget: no more refreshes at once than the instance's share writes within the vault
    # deadline, so no rotated token set waits in memory longer than that.
    running, most, lock = 0, 0, threading.Lock()

    class CountingLifecycle:
        def refresh(self, connection_id: str, **_: Any) -> RefreshResult:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            with lock:
                running -= 1
            return RefreshResult(connection_id, RefreshOutcome.REFRESHED)

    runs = RefreshRuns(CountingLifecycle(), None, FakeClock(), workers=6)  # type: ignore[arg-type]

    answer = runs.handle(sqs_event([f"qbc-{n:04d}" for n in range(20)]))

    assert answer == {"batchItemFailures": []}
    assert 1 <= most <= 6


class FailingLifecycle:
    """Every refresh raises, as when DynamoDB is down."""

    def refresh(self, connection_id: str, **_: Any) -> RefreshResult:
        raise RuntimeError("DynamoDB is down")


def test_a_batch_whose_every_record_fails_fails_the_invocation_so_the_whole_batch_is_retried() -> None:
    runs = RefreshRuns(FailingLifecycle(), None, FakeClock())  # type: ignore[arg-type]

    with pytest.raises(BatchFailed, match="All 3 refresh messages of the batch failed"):
        runs.handle(sqs_event(["qbc-0001", "qbc-0002", "qbc-0003"]))


def test_an_empty_batch_reports_no_failures() -> None:
    runs = RefreshRuns(FailingLifecycle(), None, FakeClock())  # type: ignore[arg-type]

    assert runs.handle({"Records": []}) == {"batchItemFailures": []}


def test_each_record_is_refreshed_in_the_invocations_context() -> None:
    # The local stack routes a handler's output by a context variable: its worker threads must see it too.
    invocation = contextvars.ContextVar("invocation", default="none")
    seen: list[str] = []

    class Lifecycle:
        def refresh(self, connection_id: str, **_: Any) -> RefreshResult:
            seen.append(invocation.get())
            return RefreshResult(connection_id, RefreshOutcome.REFRESHED)

    runs = RefreshRuns(Lifecycle(), None, FakeClock())  # type: ignore[arg-type]
    invocation.set("refresh-invocation-1")

    runs.handle(sqs_event(["qbc-0001", "qbc-0002"]))

    assert seen == ["refresh-invocation-1"] * 2
