"""The webhook hand-off on SQS: the public function enqueues a verified delivery's changes and answers
Intuit at once; the webhook events function publishes them from the queue."""

from __future__ import annotations

import json

from qbo_connect.domain.webhooks import EntityChange

_MAX_BATCH = 10  # SQS SendMessageBatch entries per call
# Changes per message: about 300 bytes each, so a message stays far below SQS's 256 KiB.
CHANGES_PER_MESSAGE = 100


class HandOffFailed(RuntimeError):
    """SQS did not take every message: Intuit is answered with an error and retries the delivery."""


class SqsWebhookQueue:
    def __init__(self, client, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def hand_off(self, client_id: str, changes: list[EntityChange]) -> int:
        """Enqueue the changes; returns how many messages were sent. Raises HandOffFailed."""
        bodies = [
            json.dumps({"client_id": client_id, "changes": [c.as_json() for c in changes[i : i + CHANGES_PER_MESSAGE]]})
            for i in range(0, len(changes), CHANGES_PER_MESSAGE)
        ]
        for start in range(0, len(bodies), _MAX_BATCH):
            batch = bodies[start : start + _MAX_BATCH]
            response = self._client.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(index), "MessageBody": body} for index, body in enumerate(batch)],
            )
            if response.get("Failed"):
                # What was sent is published once: the retried delivery's duplicates are skipped.
                raise HandOffFailed(f"SQS refused {len(response['Failed'])} webhook messages")
        return len(bodies)
