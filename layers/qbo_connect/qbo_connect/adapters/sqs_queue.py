"""RefreshQueue on SQS: the sweep sends due connection IDs; the refresh function consumes them in batches."""

from __future__ import annotations

import json

from qbo_connect.observability import logger

_MAX_BATCH = 10  # SQS SendMessageBatch limit
MAX_DELAY_SECONDS = 900  # SQS DelaySeconds limit


class SqsRefreshQueue:
    def __init__(self, client, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def enqueue(self, connection_ids: list[str], *, delay_seconds: int = 0) -> int:
        delay = max(0, min(int(delay_seconds), MAX_DELAY_SECONDS))
        sent = 0
        for start in range(0, len(connection_ids), _MAX_BATCH):
            batch = connection_ids[start : start + _MAX_BATCH]
            response = self._client.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(index), "MessageBody": json.dumps({"connection_id": cid}), "DelaySeconds": delay}
                    for index, cid in enumerate(batch)
                ],
            )
            failed = response.get("Failed", [])
            if failed:
                # The next sweep finds them again: they stay due until refreshed.
                logger.warning("Some refresh messages were not enqueued", extra={"failed": len(failed)})
            sent += len(batch) - len(failed)
        return sent
