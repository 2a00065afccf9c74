"""What AWS runs the refresh function with: the schedule (EventBridge Scheduler) that starts a sweep,
and the SQS event source mapping that hands the queued connections to it in batches."""

from __future__ import annotations

import base64
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from qbo_local.config import REGION
from qbo_local.router import Invocable

log = logging.getLogger("qbo_local.scheduler")

SWEEP_EVENT = {"action": "sweep"}


def describe_sweep(result: Any) -> str:
    """One line with the counts: "2 due, 2 enqueued", or "2 due: refreshed 1, busy 1" without a queue."""
    if not isinstance(result, dict) or not isinstance(result.get("due"), int):
        return f"unexpected answer {result!r}"
    if not result["due"]:
        return "nothing due"
    if "enqueued" in result:
        return f"{result['due']} due, {result['enqueued']} enqueued"
    outcomes = result.get("outcomes") or {}
    counts = ", ".join(f"{outcome.replace('_', ' ')} {count}" for outcome, count in sorted(outcomes.items()))
    return f"{result['due']} due: {counts}" if counts else f"{result['due']} due"


def describe_refresh(
    summary: dict[str, Any], *, batch_started_at: float, now: float, next_step: str | None = None
) -> str:
    """One connection's outcome after a refresh batch, with the reason and what to do when it failed."""
    name, status = summary.get("name") or summary.get("connection_id"), summary.get("status")
    error, failures = summary.get("last_refresh_error"), summary.get("consecutive_refresh_failures") or 0
    reason = f" ({error})" if error and error != status else ""
    step = f": {next_step}" if next_step else ""
    if status != "connected":
        return f"{name} {status}{reason}{step}"
    if failures:
        return f"{name} refresh failed{reason}, {failures} in a row; the next sweep retries{step}"
    refreshed_at, expires_at = summary.get("last_refreshed_at"), summary.get("access_token_expires_at")
    if refreshed_at is None or refreshed_at < batch_started_at:
        return f"{name} not refreshed (not due, or refreshed by another holder)"
    valid = f", access token valid {int((expires_at - now) // 60)} min" if expires_at else ""
    return f"{name} refreshed{valid}"


class RefreshSchedule:
    """Invokes the refresh function with {"action": "sweep"} every `interval` seconds until stopped.

    The first run comes one interval after start, as a new schedule's does, and the runs keep a fixed rate
    as a rate(...) schedule's do: a sweep's own duration does not push the next one back (the status gauge
    counts every status on the sweep in each hour's first period, which a drifting schedule can skip)."""

    def __init__(
        self,
        function: Invocable,
        interval: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the refresh interval must be greater than zero")
        self.function = function
        self.interval = interval
        self.runs = 0
        self._monotonic = monotonic
        self._stop = stop or threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Any:
        started = time.monotonic()
        try:
            result = self.function.invoke(dict(SWEEP_EVENT))
        except Exception:
            log.exception("Refresh sweep failed (the schedule tries again in %g s)", self.interval)
            return None
        finally:
            self.runs += 1
        log.info("Refresh sweep: %s (%.0f ms)", describe_sweep(result), (time.monotonic() - started) * 1000)
        return result

    def _loop(self) -> None:
        next_run = self._monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_run - self._monotonic())):
            self.run_once()
            next_run += self.interval
            while next_run <= self._monotonic():  # a sweep longer than the interval: skip, never burst
                next_run += self.interval

    def start(self) -> RefreshSchedule:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="refresh-schedule", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stops waiting at once; a sweep under way finishes first (bounded by `timeout`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def _message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    converted = {}
    for name, value in attributes.items():
        binary = value.get("BinaryValue")
        converted[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode("ascii") if binary is not None else None,
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": [base64.b64encode(b).decode("ascii") for b in value.get("BinaryListValues", [])],
            "dataType": value.get("DataType"),
        }
    return converted


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of the event Lambda's SQS event source sends (events/refresh-queue.json)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": _message_attributes(message.get("MessageAttributes") or {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def failed_message_ids(result: Any, message_ids: list[str], *, report_failures: bool) -> set[str]:
    """The messages to leave on the queue after an invocation that returned `result`."""
    if not report_failures:
        return set()
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return set(message_ids)
    failed = {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
    # Lambda treats an unknown or missing identifier as a failure of the whole batch.
    return set(message_ids) if not failed <= set(message_ids) or None in failed else failed


class QueueEventSource:
    """Polls the queue and invokes the function with batches of up to `batch_size` records, as Lambda's
    event source mapping does: processed messages are deleted, failed ones come back after their
    visibility timeout, and the queue's redrive policy parks them in the dead-letter queue in the end.

    As in Lambda, the pollers are not the function's instances: `pollers` threads receive batches and
    hand each to a free instance ("container"), of which at most `concurrency` exist (the mapping's
    MaximumConcurrency). A poller receives only once an instance is free, so no message waits
    invisible for an instance; instances are created when first needed, each with its own
    one-at-a-time invocations."""

    def __init__(
        self,
        function: Invocable,
        sqs_client: Any,
        queue_url: str,
        queue_arn: str,
        *,
        batch_size: int = 10,
        window_seconds: float = 0.0,
        report_failures: bool = True,
        poll_seconds: int = 1,
        concurrency: int = 1,
        pollers: int | None = None,
        describe: Callable[[list[str], float], str] | None = None,
        label: str = "Refresh queue",
    ) -> None:
        self.function = function
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.batch_size = max(1, min(batch_size, 10_000))
        self.window_seconds = window_seconds
        self.report_failures = report_failures
        self.poll_seconds = poll_seconds
        self.concurrency = max(1, concurrency)
        # Lambda starts five pollers per mapping; more than the instances would only wait for one.
        self.pollers = max(1, min(pollers or 5, self.concurrency))
        # Says, from the message bodies after the batch, what became of each (the function answers only failures).
        self.describe = describe
        self.label = label
        self.batches = 0
        self.containers: list[Invocable] = []  # every instance created so far
        self._idle: queue.SimpleQueue[Invocable] = queue.SimpleQueue()
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: set[threading.Thread] = set()

    def _receive(self, count: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(count, 10),
            WaitTimeSeconds=self.poll_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return response.get("Messages", [])

    def _collect(self) -> list[dict[str, Any]]:
        messages = self._receive(self.batch_size)
        deadline = time.monotonic() + self.window_seconds
        while messages and len(messages) < self.batch_size and time.monotonic() < deadline and not self._stop.is_set():
            more = self._receive(self.batch_size - len(messages))
            if not more:
                break
            messages += more
        return messages

    def poll_once(self, function: Invocable | None = None) -> int:
        """Receive one batch and hand it to the function (or one of its instances); the number of messages handled."""
        messages = self._collect()
        if messages:
            self._invoke(function or self.function, messages)
        return len(messages)

    def _invoke(self, function: Invocable, messages: list[dict[str, Any]]) -> None:
        ids = [m["MessageId"] for m in messages]
        started_at = time.time()
        try:
            result = function.invoke({"Records": [sqs_record(m, self.queue_arn) for m in messages]})
        except Exception:
            log.exception("%s: the function failed on %d message(s); SQS retries them", self.label, len(messages))
            failed = set(ids)
        else:
            failed = failed_message_ids(result, ids, report_failures=self.report_failures)
        done = [m for m in messages if m["MessageId"] not in failed]
        for chunk in _chunks(done, 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        with self._count_lock:
            self.batches += 1
        retried = f", {len(failed)} left for retry" if failed else ""
        outcomes = self._describe([m["Body"] for m in messages], started_at)
        log.info("%s: %d message(s) handled%s%s", self.label, len(messages), retried, outcomes)

    def _describe(self, bodies: list[str], started_at: float) -> str:
        if self.describe is None:
            return ""
        try:
            return f": {self.describe(bodies, started_at)}"
        except Exception:  # a log line must never stop the consumer
            log.exception("%s: could not describe the batch's outcome", self.label)
            return ""

    def _free_container(self) -> Invocable | None:
        """An idle instance, a new one while fewer than `concurrency` exist, or None once stopping."""
        while not self._stop.is_set():
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            started = self._start_container()
            if started is not None:
                return started
            try:
                return self._idle.get(timeout=0.2)
            except queue.Empty:
                continue
        return None

    def add_container(self) -> Invocable | None:
        """Start one more idle instance now (as provisioned concurrency would), unless `concurrency` exist."""
        started = self._start_container()
        if started is not None:
            self._idle.put(started)
        return started

    def _start_container(self) -> Invocable | None:
        """A new instance, unless `concurrency` exist; started outside the lock (a process takes a while)."""
        with self._count_lock:
            if len(self.containers) >= self.concurrency:
                return None
            index = len(self.containers)
            self.containers.append(self.function)  # holds the place while the instance starts
        container = self._new_container(index)
        with self._count_lock:
            self.containers[index] = container
        return container

    def _new_container(self, index: int) -> Invocable:
        if index == 0:
            return self.function
        another = getattr(self.function, "another_container", None)
        return another() if callable(another) else self.function

    def _poll(self) -> None:
        while not self._stop.is_set():
            container = self._free_container()
            if container is None:
                return
            try:
                messages = self._collect()
            except Exception:
                log.exception("%s: polling failed; trying again", self.label)
                self._idle.put(container)
                self._stop.wait(self.poll_seconds)
                continue
            if not messages:
                self._idle.put(container)
                continue
            worker = threading.Thread(
                target=self._run_batch, args=(container, messages), name=f"{self.label} batch", daemon=True
            )
            with self._count_lock:
                self._running.add(worker)
            worker.start()

    def _run_batch(self, container: Invocable, messages: list[dict[str, Any]]) -> None:
        try:
            self._invoke(container, messages)
        except Exception:
            log.exception("%s: deleting handled messages failed; SQS hands them out again", self.label)
        finally:
            self._idle.put(container)
            with self._count_lock:
                self._running.discard(threading.current_thread())

    def start(self) -> QueueEventSource:
        if not self._threads:
            self._stop.clear()
            for index in range(self.pollers):
                thread = threading.Thread(target=self._poll, name=f"{self.label} poller {index}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stops after the polls and batches under way (a poll waits at most `poll_seconds`)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        with self._count_lock:
            running = list(self._running)
        for thread in [*self._threads, *running]:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
