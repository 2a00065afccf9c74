"""One convention for every JSON answer a user reads (the CLI's, the admin API's; the test and token functions
and the connection secret write theirs as integers already): times, in fields ending `_at`, are whole epoch
seconds (UTC). The connection item keeps fractions for ordering; a client that reads times into integers (Go's
int64, a typed TypeScript client) must never meet one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def whole_seconds(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {
            key: int(value) if key.endswith("_at") and isinstance(value, float) else whole_seconds(value)
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [whole_seconds(item) for item in data]
    return data
