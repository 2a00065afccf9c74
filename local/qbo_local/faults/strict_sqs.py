"""An SQS client (moto's, in tests) that holds sends to SQS's size limits as AWS does.

AWS counts a message's size as its body's UTF-8 bytes plus its attributes' names, types and values, and
refuses (SendMessageBatch reference, Amazon SQS message quotas):
- a SendMessageBatch whose messages' sizes add up to more than the batch limit: the whole call fails with
  BatchRequestTooLong ("Batch requests cannot be longer than N bytes. You have sent M bytes."), nothing
  is enqueued;
- a message larger than the queue's MaximumMessageSize: InvalidParameterValue ("One or more parameters
  are invalid. Reason: Message must be shorter than N bytes.").

Both limits were 262,144 bytes (256 KiB) until August 2025. Since then AWS's reference gives 1 MiB for
both, and a queue created without MaximumMessageSize gets 1 MiB, while a queue created before keeps
262,144 until someone raises it. moto 5.2 applies 1 MiB to every batch and the queue's own attribute to
each message; this wrapper takes both limits as arguments, the older ones by default, so a test can hold
the code to any queue it may meet. Everything else passes through to the wrapped client untouched.
"""

from __future__ import annotations

from typing import Any

from .aws_errors import client_error

SQS_LIMIT_BEFORE_AUGUST_2025 = 262_144


def message_size(entry: dict[str, Any]) -> int:
    """A message's size as SQS counts it: the body and every attribute's name, data type and value."""
    size = len(entry.get("MessageBody", "").encode("utf-8"))
    for name, attribute in (entry.get("MessageAttributes") or {}).items():
        value = attribute.get("StringValue", "").encode("utf-8") or attribute.get("BinaryValue", b"")
        size += len(name.encode("utf-8")) + len(attribute.get("DataType", "").encode("utf-8")) + len(value)
    return size


class StrictSqs:
    """Wraps a boto3 SQS client; send_message and send_message_batch refuse what AWS refuses for size.

    batches: the sizes of each SendMessageBatch's messages that reached the wrapped client."""

    def __init__(
        self,
        client: Any,
        *,
        max_message_bytes: int = SQS_LIMIT_BEFORE_AUGUST_2025,
        max_batch_bytes: int = SQS_LIMIT_BEFORE_AUGUST_2025,
    ) -> None:
        self._client = client
        self._max_message_bytes = max_message_bytes
        self._max_batch_bytes = max_batch_bytes
        self.batches: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self._check_message(message_size(kwargs), "SendMessage")
        return self._client.send_message(**kwargs)

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        sizes = [message_size(entry) for entry in kwargs.get("Entries", [])]
        if sum(sizes) > self._max_batch_bytes:
            raise client_error(
                self._client,
                "SendMessageBatch",
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {self._max_batch_bytes} bytes. You have sent {sum(sizes)} bytes.",
                400,
            )
        for size in sizes:
            self._check_message(size, "SendMessageBatch")
        self.batches.append(sizes)
        return self._client.send_message_batch(**kwargs)

    def _check_message(self, size: int, operation: str) -> None:
        if size > self._max_message_bytes:
            raise client_error(
                self._client,
                operation,
                "InvalidParameterValue",
                "One or more parameters are invalid. Reason: Message must be shorter than "
                f"{self._max_message_bytes} bytes.",
                400,
            )
