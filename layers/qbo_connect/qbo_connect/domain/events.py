"""State changes people route to alarms, mail or chat. The detail shape is documented in the README
and only grows: connection_id, name, environment, realm_id, status, reason, occurred_at, plus extras."""

from __future__ import annotations

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
        **extra,
    }
    return ConnectionEvent(detail_type=kind.value, detail=detail)
