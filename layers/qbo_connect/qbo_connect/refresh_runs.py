"""The refresh function's jobs.

Sweep (the schedule, {"action": "sweep"}, with the Scheduler's "scheduled_time" when it sends one): find
the due connections through the index and fan them out on the queue (or refresh them here when no queue
is configured). Queue batches: refresh each
connection through the lifecycle, reporting only unexpected errors as batch item failures, so SQS
retries them and finally parks them in the dead-letter queue. A message that can never succeed (not
JSON, no valid connection ID) is dropped with a log line instead. One connection ({"connection_id"})
is refreshed directly; any other payload is refused, not taken for a sweep.

Every refresh is told when the invocation ends (`work_deadline`): one that could not finish and
persist Intuit's answer by then is not started (the lifecycle answers busy; the next run does it).

A batch's records are refreshed all at once, each in a thread of its own (a pool as large as the
batch, not a default executor capped at the CPU count + 4): a refresh mostly waits on Intuit's token
endpoint, and a record held back behind others would hold the whole batch (and the instance's share
of the Secrets Manager write budget) longer. The vault's rate limiter still caps the writes; when the
instance's share could not write a whole batch within the vault write deadline, the batch runs in
waves (Settings.refresh_workers), so no rotated token set waits in memory longer than that.

The batch's answer is SQS's partial batch response, built here rather than by Powertools' batch
utility: the utility's import (asyncio, and every event source's data classes) was a tenth of the
function's first request, for a loop over the records. What it does is kept: the records that raised
are reported for SQS to retry, and a batch whose every record raised fails as a whole.
"""

from __future__ import annotations

import contextvars
import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from qbo_connect.domain.connection import validate_connection_id
from qbo_connect.domain.lifecycle import RefreshResult, TokenLifecycle
from qbo_connect.errors import ErrorCode, InvalidInput
from qbo_connect.invocation import error_body, work_deadline
from qbo_connect.observability import MetricUnit, logger, metrics
from qbo_connect.ports import Clock, RefreshQueue

SWEEP_EVENT = {"action": "sweep"}
# The template's schedule adds "<aws.scheduler.scheduled-time>", which the Scheduler fills in.
SWEEP_KEYS = {"action", "scheduled_time"}
ASKED_KEYS = {"connection_id", "force", "min_valid_seconds"}


class BatchFailed(RuntimeError):
    """Every record of an SQS batch failed (the message carries no token: only counts)."""


class RefreshRuns:
    def __init__(
        self,
        lifecycle: TokenLifecycle,
        queue: RefreshQueue | None,
        clock: Clock,
        status_gauge: Callable[[float], dict[str, int]] | None = None,
        redeliver_events: Callable[[], int] | None = None,
        *,
        workers: int | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._queue = queue
        self._clock = clock
        # status_gauge.py: emitted once per sweep, told when the sweep started (which sweep of the hour it is).
        self._status_gauge = status_gauge
        # domain/event_history.py: events recorded but not yet on EventBridge are published again once per sweep.
        self._redeliver_events = redeliver_events
        # A batch's refreshes at once: all of them (None), or at most Settings.refresh_workers.
        self._workers = workers

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        # Per invocation, not on self: the local stack runs invocations of one function concurrently.
        not_after = work_deadline(context, self._clock.now())
        if isinstance(event, dict) and "Records" in event:
            records = event["Records"] if isinstance(event["Records"], list) else []
            return self.refresh_batch(records, not_after=not_after)
        if isinstance(event, dict) and "connection_id" in event:
            try:
                return self.refresh_asked(event, not_after=not_after).as_json()
            except InvalidInput as error:
                return error_body(ErrorCode.INVALID_INPUT, error.message)
        if isinstance(event, dict) and event.get("action") == SWEEP_EVENT["action"] and set(event) <= SWEEP_KEYS:
            try:
                scheduled_at = _scheduled_time(event.get("scheduled_time"))
            except InvalidInput as error:
                return error_body(ErrorCode.INVALID_INPUT, error.message)
            return self.sweep(not_after=not_after, scheduled_at=scheduled_at)
        logger.error("Refusing an unknown refresh payload", extra={"payload_keys": _keys(event)})
        return error_body(
            ErrorCode.INVALID_INPUT,
            'Invoke with {"action": "sweep"} (the schedule\'s event) or {"connection_id": "qbc-..."}',
        )

    def sweep(self, *, not_after: float | None = None, scheduled_at: float | None = None) -> dict[str, Any]:
        # Which sweep of the hour this is (the status gauge's hourly count): the schedule's time, which a
        # retried invocation keeps; else the start, before a fan-out that takes tens of seconds at scale.
        sweep_at = scheduled_at if scheduled_at is not None else self._clock.now()
        due = self._lifecycle.due_connection_ids()
        metrics.add_metric(name="ConnectionsDue", unit=MetricUnit.Count, value=len(due))
        if self._queue is not None:
            enqueued = self._queue.enqueue(due)
            logger.info("Refresh sweep enqueued due connections", extra={"due": len(due), "enqueued": enqueued})
            self._after_sweep(sweep_at, not_after)
            return {"due": len(due), "enqueued": enqueued}
        outcomes = Counter(self.refresh_one(cid, not_after=not_after).outcome.value for cid in due)
        logger.info("Refresh sweep finished", extra={"due": len(due), "outcomes": dict(outcomes)})
        self._after_sweep(sweep_at, not_after)
        return {"due": len(due), "outcomes": dict(outcomes)}

    def _after_sweep(self, sweep_at: float, not_after: float | None) -> None:
        if self._status_gauge is not None:
            logger.info("Connections by status", extra={"statuses": self._status_gauge(sweep_at)})
        if self._redeliver_events is not None:
            self._redeliver_events()
        # Last, and only in what the invocation has left: grants no refresh looks at (invalid_client) still hear
        # their end coming, on the sweep's cadence; a sweep out of time leaves the rest to the next ones.
        self._lifecycle.watch_unrefreshed_grants(not_after=not_after)

    def refresh_asked(self, event: dict[str, Any], *, not_after: float | None = None) -> RefreshResult:
        """One connection's refresh asked for directly: by an operator, or handed over by a caller with too little
        time to see it through (TokenLifecycle's hand-off: {"connection_id", "force", "min_valid_seconds"})."""
        if not set(event) <= ASKED_KEYS:
            raise InvalidInput(f"Unknown fields {sorted(set(event) - ASKED_KEYS)}: use {sorted(ASKED_KEYS)}")
        force = event.get("force", False)
        min_valid_seconds = event.get("min_valid_seconds", 0)
        if not isinstance(force, bool):
            raise InvalidInput('"force" must be true or false')
        if isinstance(min_valid_seconds, bool) or not isinstance(min_valid_seconds, int | float):
            raise InvalidInput('"min_valid_seconds" must be a number of seconds')
        return self._lifecycle.refresh(
            validate_connection_id(event["connection_id"]),
            force=force,
            min_valid_seconds=min_valid_seconds,
            not_after=not_after,
        )

    def refresh_one(self, connection_id: Any, *, not_after: float | None = None) -> RefreshResult:
        return self._lifecycle.refresh(
            validate_connection_id(connection_id), not_after=not_after, requeue_if_in_flight=True
        )

    def refresh_batch(self, records: list[dict[str, Any]], *, not_after: float | None = None) -> dict[str, Any]:
        """SQS's partial batch response: the records whose refresh raised, for SQS to deliver again."""
        if not records:
            return {"batchItemFailures": []}
        # All at once, or at most Settings.refresh_workers: a low write budget runs the batch in waves.
        at_once = min(len(records), self._workers or len(records))
        with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="refresh") as pool:
            # Each worker runs in a copy of the invocation's context (as asyncio.to_thread does), so what
            # the invocation set there (the local stack's function output) holds in its threads too.
            outcomes = [
                pool.submit(contextvars.copy_context().run, self._refresh_record, record, not_after)
                for record in records
            ]
        failed = []
        for record, outcome in zip(records, outcomes, strict=True):
            error = outcome.exception()
            if error is not None:
                message_id = record.get("messageId")
                logger.error(
                    "Refresh message failed; SQS will deliver it again",
                    extra={"message_id": message_id, "error": type(error).__name__},
                )
                failed.append({"itemIdentifier": message_id})
        if len(failed) == len(records):
            # Nothing succeeded: fail the invocation, so that Lambda retries the batch and its errors count.
            raise BatchFailed(f"All {len(records)} refresh messages of the batch failed: SQS will deliver them again")
        return {"batchItemFailures": failed}

    def _refresh_record(self, record: dict[str, Any], not_after: float | None) -> dict[str, Any]:
        message_id = record.get("messageId")
        try:
            connection_id = validate_connection_id(json.loads(record["body"])["connection_id"])
        except (ValueError, KeyError, TypeError, InvalidInput):
            # A malformed message would fail forever: drop it with a log line instead of retrying it.
            logger.error("Dropping a malformed refresh message", extra={"message_id": message_id})
            metrics.add_metric(name="RefreshMessagesDropped", unit=MetricUnit.Count, value=1)
            return {"dropped": message_id}
        # Transient Intuit failures are outcomes, not exceptions: the connection stays due and the next
        # sweep enqueues it again. Only unexpected errors (AWS down, bugs) raise and are retried by SQS.
        return self.refresh_one(connection_id, not_after=not_after).as_json()


def _scheduled_time(value: Any) -> float | None:
    """The Scheduler's scheduled time (ISO 8601 in UTC, e.g. 2026-12-07T01:00:00Z) as epoch seconds."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 40 else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidInput(
            "scheduled_time must be a UTC time such as 2026-12-07T01:00:00Z (the schedule's "
            "<aws.scheduler.scheduled-time>), or left out"
        )
    return when.timestamp()


def _keys(event: Any) -> list[str]:
    """What a refused payload looked like, without its values."""
    return sorted(str(key)[:40] for key in event)[:10] if isinstance(event, dict) else [type(event).__name__]
