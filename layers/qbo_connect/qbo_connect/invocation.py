"""Direct invocation payloads ({"connection_id": "...", ...}): checked here, answered as JSON, never raised.

The test and token functions' payloads are public contracts: docs/schemas/test-function.request.schema.json
and docs/schemas/token-function.request.schema.json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qbo_connect.domain.connection import validate_connection_id
from qbo_connect.errors import ErrorCode, InvalidInput

# Kept back from an invocation's end to answer and flush metrics before Lambda stops it.
ANSWER_SECONDS = 2.0


def work_deadline(context: Any, now: float) -> float | None:
    """When the invocation's work must be done by, on the caller's clock (None: no Lambda context)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    return now + remaining() / 1000 - ANSWER_SECONDS


def error_body(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, **extra, "error": {"code": code.value, "message": message}}


def connection_id_from(event: Any, answer: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Call `answer` with the payload's connection ID, or answer invalid_input without touching anything."""
    connection_id = event.get("connection_id") if isinstance(event, dict) else None
    if not isinstance(connection_id, str):
        return error_body(ErrorCode.INVALID_INPUT, 'Invoke with a JSON object like {"connection_id": "qbc-..."}')
    try:
        validate_connection_id(connection_id)
    except InvalidInput as error:
        return error_body(ErrorCode.INVALID_INPUT, error.message, connection_id=connection_id[:64])
    return answer(connection_id)


def connection_test_payload(event: Any, answer: Callable[[str, bool], dict[str, Any]]) -> dict[str, Any]:
    """The test function's payload {"connection_id": "...", "deep": false}: call `answer(connection_id, deep)`,
    or answer invalid_input without touching anything."""

    def with_deep(connection_id: str) -> dict[str, Any]:
        deep = event.get("deep", False)
        if not isinstance(deep, bool):
            return error_body(
                ErrorCode.INVALID_INPUT,
                '"deep" must be true or false (JSON booleans, not strings): {"connection_id": "...", "deep": true}',
                connection_id=connection_id,
            )
        return answer(connection_id, deep)

    return connection_id_from(event, with_deep)


DEFAULT_MIN_VALID_SECONDS = 300
# A fresh access token lives an hour; asking for more than this would refresh a fresh token every time.
MAX_MIN_VALID_SECONDS = 1800


def token_payload(event: Any, answer: Callable[[str, float], dict[str, Any]]) -> dict[str, Any]:
    """The token function's payload {"connection_id": "...", "min_valid_seconds": 300}: call
    `answer(connection_id, min_valid_seconds)`, or answer invalid_input without touching anything."""

    def with_validity(connection_id: str) -> dict[str, Any]:
        wanted = event.get("min_valid_seconds", DEFAULT_MIN_VALID_SECONDS)
        if isinstance(wanted, bool) or not isinstance(wanted, int | float) or not 0 <= wanted <= MAX_MIN_VALID_SECONDS:
            return error_body(
                ErrorCode.INVALID_INPUT,
                f'"min_valid_seconds" is a number of seconds from 0 to {MAX_MIN_VALID_SECONDS} (default '
                f"{DEFAULT_MIN_VALID_SECONDS}): how long the access token must stay valid",
                connection_id=connection_id,
            )
        return answer(connection_id, float(wanted))

    return connection_id_from(event, with_validity)
