"""RefreshQueue on SQS: the sweep sends due connection IDs; the refresh function consumes them in batches."""

from __future__ import annotations

import json

from qbo_connect.observability import logger

# SQS's limits, for both queues' adapters.
MAX_BATCH_ENTRIES = 10  # messages per SendMessageBatch
MAX_DELAY_SECONDS = 900  # DelaySeconds
# Bytes per message and per SendMessageBatch (the sum of its messages) that every queue takes: 256 KiB,
# SQS's limit for both until August 2025 and still that of a queue created before then (since then AWS
# allows 1 MiB, and 1 MiB is a new queue's default MaximumMessageSize). The smaller one holds anywhere.
MAX_PAYLOAD_BYTES = 262_144


class SqsRefreshQueue:
    def __init__(self, client, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def enqueue(self, connection_ids: list[str], *, delay_seconds: int = 0) -> int:
        delay = max(0, min(int(delay_seconds), MAX_DELAY_SECONDS))
        sent = 0
        for start in range(0, len(connection_ids), MAX_BATCH_ENTRIES):
            batch = connection_ids[start : start + MAX_BATCH_ENTRIES]
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
