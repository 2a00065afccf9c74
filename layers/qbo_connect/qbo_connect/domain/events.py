"""State changes people route to alarms, mail or chat. The detail shape is documented in the README
and only grows: connection_id, name, environment, realm_id, status, reason, occurred_at, event_id, plus
extras. `event_id` is unique and sorts by time: the connection's event history keys on it, and a consumer
drops a repeat delivery by it (domain/event_history.py)."""

from __future__ import annotations

import re
import secrets
import threading
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from qbo_connect.domain.connection import Connection
from qbo_connect.ports import ConnectionEvent

EVENT_SOURCE = "qbo-connect"


class EventType(StrEnum):
    AUTHORIZED = "Connection Authorized"
    REFRESH_FAILED = "Connection Refresh Failed"
    RECOVERED = "Connection Recovered"
    NEEDS_REAUTHORIZATION = "Connection Needs Reauthorization"
    INVALID_CLIENT = "Connection Invalid Client"
    RESET = "Connection Reset"
    TEST_FAILED = "Connection Test Failed"
    REAUTHORIZATION_DUE = "Connection Reauthorization Due"
    # An administrator's change (CLI, admin API, console): who, what, when; never a secret.
    CHANGED = "Connection Changed"


# Microseconds since the epoch (16 digits until the year 2286), then 32 random bits.
EVENT_ID = re.compile(r"^[0-9]{16}-[0-9a-f]{8}$")


_last_micros = 0
_micros_lock = threading.Lock()


def new_event_id(now: float) -> str:
    """Increasing within a process, so that two events of one operation made in the same microsecond keep their
    order; a clock that jumps back by more than a second (a test's clock, a corrected host clock) is followed."""
    global _last_micros
    micros = int(now * 1_000_000)
    with _micros_lock:
        if micros <= _last_micros < micros + 1_000_000:
            micros = _last_micros + 1
        _last_micros = micros
    return f"{_micros_prefix(micros)}-{secrets.token_hex(4)}"


def event_id_prefix(seconds: float) -> str:
    """The event ID prefix of an instant: IDs below it were made before it."""
    return _micros_prefix(max(0, int(seconds * 1_000_000)))


def _micros_prefix(micros: int) -> str:
    return f"{micros:016d}"


def event_id_time(event_id: str) -> float:
    return int(event_id[:16]) / 1_000_000


def connection_event(
    kind: EventType, connection: Connection, *, now: float, reason: str | None = None, **extra: Any
) -> ConnectionEvent:
    detail = {
        "connection_id": connection.connection_id,
        "name": connection.name,
        "environment": connection.environment.value,
        "realm_id": connection.realm_id,
        "status": connection.status.value,
        "reason": reason,
        "occurred_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "event_id": new_event_id(now),
        **extra,
    }
    return ConnectionEvent(detail_type=kind.value, detail=detail)
