"""Intuit's accounting API limits: per realm and app, requests per second and concurrent requests;
per realm, requests per minute; per realm and app, batch requests per minute. Windows slide on the
injected clock.

Source: developer.intuit.com, docs/learn/limits-and-throttles ("Throttled at 40 Batch requests per
minute, per realm ID and app"; a batch request also counts as a request) and the batch page
(docs/learn/explore-the-quickbooks-online-api/batch: "up to 40 requests per minute").
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

from qbo_connect import intuit


@dataclass(frozen=True)
class Limits:
    per_second: int
    per_minute: int
    max_concurrent: int
    batch_per_minute: int = intuit.BATCH_REQUESTS_PER_MINUTE


class RateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._second: dict[tuple[str, str], deque[float]] = {}
        self._minute: dict[str, deque[float]] = {}
        self._batch_minute: dict[tuple[str, str], deque[float]] = {}
        self._in_flight: Counter[tuple[str, str]] = Counter()

    def acquire(self, realm_id: str, client_id: str, now: float, limits: Limits, *, batch: bool = False) -> bool:
        """Take a slot for one request (a batch request when `batch`); False means answer 429. A True must
        be paired with release()."""
        key = (realm_id, client_id)
        with self._lock:
            second = _trimmed(self._second.setdefault(key, deque()), now - 1.0)
            minute = _trimmed(self._minute.setdefault(realm_id, deque()), now - 60.0)
            batches = _trimmed(self._batch_minute.setdefault(key, deque()), now - 60.0)
            if (
                len(second) >= limits.per_second
                or len(minute) >= limits.per_minute
                or self._in_flight[key] >= limits.max_concurrent
                or (batch and len(batches) >= limits.batch_per_minute)
            ):
                # Rejected requests do not count against the window, so a client that backs off recovers.
                return False
            second.append(now)
            minute.append(now)
            if batch:
                batches.append(now)
            self._in_flight[key] += 1
            return True

    def release(self, realm_id: str, client_id: str) -> None:
        key = (realm_id, client_id)
        with self._lock:
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]

    def in_flight(self, realm_id: str, client_id: str) -> int:
        with self._lock:
            return self._in_flight[(realm_id, client_id)]

    def reset(self) -> None:
        with self._lock:
            self._second.clear()
            self._minute.clear()
            self._batch_minute.clear()
            # In-flight counts belong to requests still running; they release themselves.


def _trimmed(window: deque[float], oldest_kept: float) -> deque[float]:
    while window and window[0] <= oldest_kept:
        window.popleft()
    return window
