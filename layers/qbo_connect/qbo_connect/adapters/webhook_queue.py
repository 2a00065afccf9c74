"""The webhook hand-off on SQS: the public function enqueues a verified delivery's changes and answers
Intuit at once; the webhook events function publishes them from the queue."""

from __future__ import annotations

import json
from collections.abc import Iterator

from qbo_connect.adapters.sqs_queue import MAX_BATCH_ENTRIES, MAX_PAYLOAD_BYTES
from qbo_connect.domain.webhooks import EntityChange

# A change's size depends on its IDs, which Intuit does not bound (the receiver reads CloudEvents IDs of
# up to 256 characters), so messages and batches are sized by bytes, not by count alone. Sizing to SQS's
# smaller limit costs nothing with Intuit's usual IDs: ten messages of 100 changes are about 233 KB.

# Changes per message at most: bounds what one message asks of the webhook events function (a claim and
# an event each), so a batch of ten stays far within its 30 s.
CHANGES_PER_MESSAGE = 100


class HandOffFailed(RuntimeError):
    """SQS did not take every message: Intuit is answered with an error and retries the delivery."""


class SqsWebhookQueue:
    def __init__(self, client, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def hand_off(self, client_id: str, changes: list[EntityChange]) -> int:
        """Enqueue the changes; returns how many messages were sent. Raises HandOffFailed."""
        bodies = list(_message_bodies(client_id, changes))
        for batch in _batches(bodies):
            response = self._client.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(index), "MessageBody": body} for index, body in enumerate(batch)],
            )
            if response.get("Failed"):
                # What was sent is published once: the retried delivery's duplicates are skipped.
                raise HandOffFailed(f"SQS refused {len(response['Failed'])} webhook messages")
        return len(bodies)


def _message_bodies(client_id: str, changes: list[EntityChange]) -> Iterator[str]:
    """Messages of at most CHANGES_PER_MESSAGE changes and MAX_PAYLOAD_BYTES bytes each, the changes in order."""
    head, tail, separator = f'{{"client_id": {json.dumps(client_id)}, "changes": [', "]}", ", "
    parts = [json.dumps(change.as_json()) for change in changes]  # ASCII (json's default): length is size in bytes
    for chunk in _filled(parts, most=CHANGES_PER_MESSAGE, framing=len(head) + len(tail), between=len(separator)):
        yield head + separator.join(chunk) + tail


def _batches(bodies: list[str]) -> Iterator[list[str]]:
    """SendMessageBatch calls of at most MAX_BATCH_ENTRIES messages whose sizes add up to at most MAX_PAYLOAD_BYTES."""
    return _filled(bodies, most=MAX_BATCH_ENTRIES)


def _filled(items: list[str], *, most: int, framing: int = 0, between: int = 0) -> Iterator[list[str]]:
    """`items` in order, in runs of at most `most` whose sizes (plus `framing` once and `between` each two) add up
    to at most MAX_PAYLOAD_BYTES; an item too large alone still goes, alone."""
    run: list[str] = []
    size = framing
    for item in items:
        grown = size + len(item) + (between if run else 0)
        if run and (len(run) == most or grown > MAX_PAYLOAD_BYTES):
            yield run
            run, grown = [], framing + len(item)
        run.append(item)
        size = grown
    if run:
        yield run
