"""Call counters, so tests can assert "exactly one refresh call" in-process or over HTTP."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()  # endpoint: authorize, decision, token, revoke, api
        self._grant_types: Counter[str] = Counter()  # token calls by grant_type, as sent
        self._api_resources: Counter[str] = Counter()  # api calls by resource: companyinfo, customer, ...

    def record(self, endpoint: str) -> None:
        with self._lock:
            self._calls[endpoint] += 1

    def record_token(self, grant_type: str) -> None:
        with self._lock:
            self._calls["token"] += 1
            self._grant_types[grant_type or "(missing)"] += 1

    def record_api(self, resource: str) -> None:
        with self._lock:
            self._calls["api"] += 1
            self._api_resources[resource] += 1

    def calls(self, endpoint: str) -> int:
        with self._lock:
            return self._calls[endpoint]

    def grant_type(self, grant_type: str) -> int:
        with self._lock:
            return self._grant_types[grant_type]

    def api_resource(self, resource: str) -> int:
        with self._lock:
            return self._api_resources[resource]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self._calls),
                "grant_types": dict(self._grant_types),
                "api_resources": dict(self._api_resources),
            }

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._grant_types.clear()
            self._api_resources.clear()
