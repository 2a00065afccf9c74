"""The refresh function's jobs.

Sweep (the schedule, {"action": "sweep"}): find the due connections through the index and fan them
out on the queue (or refresh them here when no queue is configured). Queue batches: refresh each
connection through the lifecycle, reporting only unexpected errors as batch item failures, so SQS
retries them and finally parks them in the dead-letter queue. A message that can never succeed (not
JSON, no valid connection ID) is dropped with a log line instead. One connection ({"connection_id"})
is refreshed directly; any other payload is refused, not taken for a sweep.

Every refresh is told when the invocation ends (`work_deadline`): one that could not finish and
persist Intuit's answer by then is not started (the lifecycle answers busy; the next run does it).

A batch's records are refreshed all at once, each in a thread of its own (not the event loop's
default executor, which the runtime caps at its CPU count + 4, 6 in Lambda): a refresh mostly waits on
Intuit's token endpoint, and a record held back behind others would hold the whole batch (and the
instance's share of the Secrets Manager write budget) longer. The vault's rate limiter still caps the
writes.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from qbo_connect.domain.connection import validate_connection_id
from qbo_connect.domain.lifecycle import RefreshResult, TokenLifecycle
from qbo_connect.errors import ErrorCode, InvalidInput
from qbo_connect.invocation import error_body, work_deadline
from qbo_connect.observability import MetricUnit, logger, metrics
from qbo_connect.ports import Clock, RefreshQueue

SWEEP_EVENT = {"action": "sweep"}


class RefreshRuns:
    def __init__(
        self,
        lifecycle: TokenLifecycle,
        queue: RefreshQueue | None,
        clock: Clock,
        status_gauge: Callable[[], dict[str, int]] | None = None,
        redeliver_events: Callable[[], int] | None = None,
        *,
        workers: int | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._queue = queue
        self._clock = clock
        self._status_gauge = status_gauge  # status_gauge.py: emitted once per sweep
        # domain/event_history.py: events recorded but not yet on EventBridge are published again once per sweep.
        self._redeliver_events = redeliver_events
        # A batch's refreshes at once: all of them (None), or at most Settings.refresh_workers.
        self._workers = workers

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        # Per invocation, not on self: the local stack runs invocations of one function concurrently.
        not_after = work_deadline(context, self._clock.now())
        if isinstance(event, dict) and "Records" in event:
            records = event["Records"] if isinstance(event["Records"], list) else []
            at_once = min(len(records), self._workers or len(records))
            with ThreadPoolExecutor(max_workers=max(1, at_once), thread_name_prefix="refresh") as threads:
                return async_process_partial_response(
                    event=event,
                    record_handler=functools.partial(
                        self._refresh_record_in_thread, not_after=not_after, threads=threads
                    ),
                    processor=AsyncBatchProcessor(event_type=EventType.SQS),
                    context=context,
                )
        if isinstance(event, dict) and "connection_id" in event:
            try:
                return self.refresh_one(event["connection_id"], not_after=not_after).as_json()
            except InvalidInput as error:
                return error_body(ErrorCode.INVALID_INPUT, error.message)
        if event == SWEEP_EVENT:
            return self.sweep(not_after=not_after)
        logger.error("Refusing an unknown refresh payload", extra={"payload_keys": _keys(event)})
        return error_body(
            ErrorCode.INVALID_INPUT,
            'Invoke with {"action": "sweep"} (the schedule\'s event) or {"connection_id": "qbc-..."}',
        )

    def sweep(self, *, not_after: float | None = None) -> dict[str, Any]:
        due = self._lifecycle.due_connection_ids()
        metrics.add_metric(name="ConnectionsDue", unit=MetricUnit.Count, value=len(due))
        if self._queue is not None:
            enqueued = self._queue.enqueue(due)
            logger.info("Refresh sweep enqueued due connections", extra={"due": len(due), "enqueued": enqueued})
            self._after_sweep()
            return {"due": len(due), "enqueued": enqueued}
        outcomes = Counter(self.refresh_one(cid, not_after=not_after).outcome.value for cid in due)
        logger.info("Refresh sweep finished", extra={"due": len(due), "outcomes": dict(outcomes)})
        self._after_sweep()
        return {"due": len(due), "outcomes": dict(outcomes)}

    def _after_sweep(self) -> None:
        if self._status_gauge is not None:
            logger.info("Connections by status", extra={"statuses": self._status_gauge()})
        if self._redeliver_events is not None:
            self._redeliver_events()

    def refresh_one(self, connection_id: Any, *, not_after: float | None = None) -> RefreshResult:
        return self._lifecycle.refresh(validate_connection_id(connection_id), not_after=not_after)

    async def _refresh_record_in_thread(
        self, record: SQSRecord, *, not_after: float | None, threads: ThreadPoolExecutor
    ) -> dict[str, Any]:
        # contextvars travel with the record, as asyncio.to_thread would carry them.
        call = functools.partial(contextvars.copy_context().run, self._refresh_record, record, not_after)
        return await asyncio.get_running_loop().run_in_executor(threads, call)

    def _refresh_record(self, record: SQSRecord, not_after: float | None) -> dict[str, Any]:
        try:
            connection_id = validate_connection_id(json.loads(record.body)["connection_id"])
        except (ValueError, KeyError, TypeError, InvalidInput):
            # A malformed message would fail forever: drop it with a log line instead of retrying it.
            logger.error("Dropping a malformed refresh message", extra={"message_id": record.message_id})
            metrics.add_metric(name="RefreshMessagesDropped", unit=MetricUnit.Count, value=1)
            return {"dropped": record.message_id}
        # Transient Intuit failures are outcomes, not exceptions: the connection stays due and the next
        # sweep enqueues it again. Only unexpected errors (AWS down, bugs) raise and are retried by SQS.
        return self.refresh_one(connection_id, not_after=not_after).as_json()


def _keys(event: Any) -> list[str]:
    """What a refused payload looked like, without its values."""
    return sorted(str(key)[:40] for key in event)[:10] if isinstance(event, dict) else [type(event).__name__]
