"""Direct invocation payloads ({"connection_id": "...", ...}): checked here, answered as JSON, never raised.

The test and token functions' payloads are public contracts: docs/schemas/test-function.request.schema.json
and docs/schemas/token-function.request.schema.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qbo_connect.adapters.aws_faults import AWS_ERRORS, is_transient, try_again_message
from qbo_connect.domain.connection import validate_connection_id
from qbo_connect.domain.connection_test import NEXT_STEPS
from qbo_connect.domain.lifecycle import RefreshTimings
from qbo_connect.errors import ErrorCode, InvalidInput
from qbo_connect.observability import logger

# Kept back from an invocation's end to answer and flush metrics before Lambda stops it.
ANSWER_SECONDS = 2.0


def work_deadline(context: Any, now: float) -> float | None:
    """When the invocation's work must be done by, on the caller's clock (None: no Lambda context)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    return now + remaining() / 1000 - ANSWER_SECONDS


def invocation_end(lambda_context: Any) -> float | None:
    """`work_deadline` on the process-wide services' clock (None without a context): pass a handler's `context`
    so that a refresh Lambda would stop midway is never sent (Intuit would rotate, and the answer be lost)."""
    from qbo_connect.runtime import services  # the wiring imports this module, not the other way round

    return work_deadline(lambda_context, services().clock.now())


def error_body(code: ErrorCode, message: str, *, next_step: str | None = None, **extra: Any) -> dict[str, Any]:
    error = {"code": code.value, "message": message} | ({"next_step": next_step} if next_step else {})
    return {"ok": False, **extra, "error": error}


def connection_id_from(
    event: Any, answer: Callable[[str], dict[str, Any]], *, failed: Callable[..., dict[str, Any]] = error_body
) -> dict[str, Any]:
    """Call `answer` with the payload's connection ID, or answer invalid_input without touching anything.

    AWS still throttling or failing the service's own calls after botocore's retries is answered as
    `vault_unavailable` (try again shortly; `failed` shapes it as the function's contract has it) rather
    than raised: a workflow branches on the documented codes, never on Lambda's unhandled-error payload."""
    connection_id = event.get("connection_id") if isinstance(event, dict) else None
    if not isinstance(connection_id, str):
        return error_body(ErrorCode.INVALID_INPUT, 'Invoke with a JSON object like {"connection_id": "qbc-..."}')
    try:
        validate_connection_id(connection_id)
    except InvalidInput as error:
        return error_body(ErrorCode.INVALID_INPUT, error.message, connection_id=connection_id[:64])
    try:
        return answer(connection_id)
    except AWS_ERRORS as error:
        if not is_transient(error):
            raise  # a deployment fault (access denied, a missing table): Lambda's error metric and alarm see it
        message = try_again_message(error)
        logger.warning("AWS kept failing a call", extra={"connection_id": connection_id, "reason": message})
        return failed(ErrorCode.VAULT_UNAVAILABLE, message, connection_id=connection_id)


def connection_test_payload(event: Any, answer: Callable[[str, bool], dict[str, Any]]) -> dict[str, Any]:
    """The test function's payload {"connection_id": "...", "deep": false}: call `answer(connection_id, deep)`,
    or answer invalid_input without touching anything."""

    def failed(code: ErrorCode, message: str, *, connection_id: str) -> dict[str, Any]:
        # The test function's failures carry when and what to do next (test-function.response.schema.json).
        return error_body(
            code, message, next_step=NEXT_STEPS.get(code), connection_id=connection_id, tested_at=int(time.time())
        )

    def with_deep(connection_id: str) -> dict[str, Any]:
        deep = event.get("deep", False)
        if not isinstance(deep, bool):
            return error_body(
                ErrorCode.INVALID_INPUT,
                '"deep" must be true or false (JSON booleans, not strings): {"connection_id": "...", "deep": true}',
                connection_id=connection_id,
            )
        return answer(connection_id, deep)

    return connection_id_from(event, with_deep, failed=failed)


DEFAULT_MIN_VALID_SECONDS = 300
# A fresh access token lives an hour; asking for more than this would refresh a fresh token every time.
MAX_MIN_VALID_SECONDS = int(RefreshTimings.max_min_valid_seconds)


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
