"""Counting AWS API calls as boto3 makes them: a botocore event hook, not an estimate.

`before-call` fires once per API call (what the caller asked for); `before-send` once per HTTP
attempt, so retries show up as attempts above calls.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class AwsCallCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # "dynamodb.UpdateItem": n
        self.attempts = 0

    def attach(self, events: Any) -> AwsCallCounter:
        """Register on a boto3 Session's or a client's event emitter (`session.events`, `client.meta.events`).

        Clients copy their session's emitter when they are created: attach to a session before it makes them."""
        events.register("before-call", self._on_call, unique_id=f"bench-call-{id(self)}")
        events.register("before-send", self._on_send, unique_id=f"bench-send-{id(self)}")
        return self

    def _on_call(self, model: Any = None, **_: Any) -> None:
        name = f"{model.service_model.service_name}.{model.name}"
        with self._lock:
            self.calls[name] += 1

    def _on_send(self, **_: Any) -> None:
        with self._lock:
            self.attempts += 1

    def snapshot(self) -> tuple[Counter[str], int]:
        with self._lock:
            return Counter(self.calls), self.attempts

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.attempts = 0


def total(calls: Counter[str], operations: set[str] | None = None) -> int:
    return sum(n for name, n in calls.items() if operations is None or name in operations)
