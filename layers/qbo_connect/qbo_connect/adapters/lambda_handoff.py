"""RefreshHandoff on Lambda: the refresh function, invoked synchronously (RequestResponse).

Lambda runs a synchronous invocation to its end whether or not its caller still listens, so a caller that
stops waiting leaves the refresh to finish and be stored there. Its answer comes in one piece when the
function returns: the client's read timeout is the wait. One attempt only: botocore retrying a timed-out
Invoke would start a second run and wait for it all over again.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from qbo_connect.adapters.aws_faults import AWS_ERRORS, error_code, is_transient
from qbo_connect.errors import VaultUnavailable

# Connecting comes before the read timeout and within the caller's wait.
CONNECT_TIMEOUT_SECONDS = 2


def read_timeout_within(wait_seconds: float) -> int:
    """The longest read timeout in powers of two (1, 2, 4, ... s) that keeps connecting and reading within the
    wait: a warm container keeps a few clients, not one per second its callers had left."""
    room = max(1.0, wait_seconds - CONNECT_TIMEOUT_SECONDS)
    return 2 ** math.floor(math.log2(room))


class LambdaRefreshHandoff:
    def __init__(self, client_with_read_timeout: Callable[[float], Any], function_name: str) -> None:
        self._client_with_read_timeout = client_with_read_timeout
        self._function_name = function_name
        self._clients: dict[int, Any] = {}  # by read timeout: a handful, from read_timeout_within
        self._lock = threading.Lock()

    def refresh(self, payload: dict[str, Any], *, wait_seconds: float) -> dict[str, Any] | None:
        client = self._client(read_timeout_within(wait_seconds))
        try:
            response = client.invoke(
                FunctionName=self._function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode(),
            )
        except (ReadTimeoutError, ConnectionClosedError):
            return None  # sent: the refresh function may be at it, and stores what Intuit answers
        except AWS_ERRORS as error:
            if not is_transient(error):
                raise  # a deployment's mistake (the role may not invoke it, no such function): loud
            code = error_code(error) if isinstance(error, ClientError) else type(error).__name__
            raise VaultUnavailable(
                f"Lambda did not run the refresh function for this call ({code}): try again in a few seconds"
            ) from None
        answer = json.loads(response["Payload"].read() or b"null")
        return answer if isinstance(answer, dict) else {"errorType": "an answer that is no JSON object"}

    def _client(self, read_timeout: int) -> Any:
        with self._lock:
            if read_timeout not in self._clients:
                self._clients[read_timeout] = self._client_with_read_timeout(read_timeout)
            return self._clients[read_timeout]
