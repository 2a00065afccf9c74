"""Lambda's Invoke API over real HTTP, in front of the local stack's functions.

boto3's lambda client (a function handing a refresh off, a local workflow, the CLI) reaches it through
AWS_ENDPOINT_URL_LAMBDA and calls a function by name, full ARN or partial ARN, as it calls Lambda:
`POST /2015-03-31/functions/{FunctionName}/invocations`. The answers take Lambda's shapes, so botocore
reads them as it reads Lambda's: the handler's JSON with 200; a handler that raised, with 200 and
X-Amz-Function-Error (a function error is not an API error); Event with 202 and the handler run in the
background; DryRun with 204; an unknown function, a payload over the quota or one that is not JSON as the
API errors botocore raises (ResourceNotFoundException, RequestTooLargeException,
InvalidRequestContentException).

As in Lambda, each invocation has a container to itself: an idle one of that function, else a new one, so
a sweep or a slow invocation in progress never holds a hand-off up. A caller that stops waiting (its read
timeout) does not stop the invocation: it runs to its end, as in Lambda.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

from werkzeug.wrappers import Request

from qbo_local.config import ACCOUNT_ID, REGION
from qbo_local.functions import FunctionSpec
from qbo_local.serving import BackgroundServer, QuietRequestHandler

log = logging.getLogger("qbo_local.lambda_service")

_INVOKE_PATH = re.compile(r"/2015-03-31/functions/(?P<function>[^/]+)/invocations")
# Lambda's quotas: a synchronous request or answer, and an asynchronous (Event) request.
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_EVENT_PAYLOAD_BYTES = 1024 * 1024
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
LATEST = "$LATEST"
# Idle containers kept per function; more run at once when needed, and the extra ones end after their invocation.
IDLE_CONTAINERS_KEPT = 4
_HERE = {Path(__file__).resolve(), Path(__file__).resolve().with_name("functions.py")}


class InvocationType(StrEnum):
    REQUEST_RESPONSE = "RequestResponse"
    EVENT = "Event"
    DRY_RUN = "DryRun"


class Container(Protocol):
    """A function instance (functions.LocalFunction): invocations run one at a time on it."""

    spec: FunctionSpec

    def invoke(self, event: Any, *, request_id: str | None = None) -> Any: ...

    def another_container(self) -> Container: ...


class InvalidParameter(ValueError):
    """A FunctionName, Qualifier or invocation type Lambda would refuse (InvalidParameterValueException)."""


@dataclass(frozen=True)
class FunctionAddress:
    """What FunctionName and Qualifier name: `NAME`, `ACCOUNT:function:NAME` or
    `arn:aws:lambda:REGION:ACCOUNT:function:NAME`, each perhaps with `:VERSION-OR-ALIAS`."""

    name: str
    region: str = REGION
    account: str = ACCOUNT_ID
    qualifier: str | None = None

    @classmethod
    def parse(cls, function_name: str, qualifier: str | None = None) -> FunctionAddress:
        parts = function_name.split(":")
        if parts[0] == "arn" and len(parts) in (7, 8) and parts[2] == "lambda" and parts[5] == "function":
            region, account, rest = parts[3], parts[4], parts[6:]
        elif len(parts) in (3, 4) and parts[1] == "function":
            region, account, rest = REGION, parts[0], parts[2:]
        elif len(parts) in (1, 2):
            region, account, rest = REGION, ACCOUNT_ID, parts
        else:
            raise InvalidParameter(f"FunctionName {function_name!r} is not a function name, ARN or partial ARN")
        if not rest[0]:
            raise InvalidParameter("FunctionName names no function")
        in_name = rest[1] if len(rest) == 2 else None
        if in_name and qualifier and in_name != qualifier:
            raise InvalidParameter(
                "The derived qualifier from the function name does not match the specified qualifier."
            )
        return cls(rest[0], region, account, in_name or qualifier or None)

    @property
    def arn(self) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account}:function:{self.name}"
        return f"{arn}:{self.qualifier}" if self.qualifier else arn


class ContainerPool:
    """One function's containers: an idle one for each invocation, or a new one when every one is busy.

    New containers only (another_container), never the stack's own instance of the function: the router and
    the schedule invoke that one, and a hand-off must not wait behind a sweep running on it."""

    def __init__(self, function: Container, keep_idle: int = IDLE_CONTAINERS_KEPT) -> None:
        self.function = function
        self._keep_idle = keep_idle
        self._idle: list[Container] = []
        self._lock = threading.Lock()
        self.started = 0  # containers made so far

    def take(self) -> Container:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self.started += 1
        return self.function.another_container()

    def give_back(self, container: Container) -> None:
        with self._lock:
            if len(self._idle) < self._keep_idle:
                self._idle.append(container)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def _api_error(status: int, code: str, message: str, *, message_key: str = "message") -> Answer:
    """An API error as Lambda sends one: botocore reads the code from x-amzn-ErrorType and raises it.
    (Lambda spells the key "Message" in ResourceNotFoundException, "message" elsewhere; botocore reads either.)"""
    body = json.dumps({"Type": "User", message_key: message}).encode()
    return Answer(status, (("Content-Type", "application/json"), ("x-amzn-ErrorType", code)), body)


def _function_error(error_type: str, message: str, **more: Any) -> Answer:
    """A function error: 200, X-Amz-Function-Error, and the runtime's error object as the payload."""
    body = json.dumps({"errorMessage": message, "errorType": error_type, **more}).encode()
    return Answer(
        200,
        (
            ("Content-Type", "application/json"),
            ("X-Amz-Executed-Version", LATEST),
            ("X-Amz-Function-Error", "Unhandled"),
        ),
        body,
    )


def _stack_trace(error: BaseException) -> list[str]:
    """The handler's frames, as the Python runtime lists them (this service's and the loader's left out). Source
    lines and places only: no values, so nothing the handler held."""
    frames = traceback.extract_tb(error.__traceback__)
    return traceback.format_list([frame for frame in frames if Path(frame.filename).resolve() not in _HERE])


class LambdaService:
    """The WSGI app: find the function, check the request as Lambda does, run it on a free container, answer."""

    def __init__(self, functions: Iterable[Container], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.pools = {function.spec.function_name: ContainerPool(function) for function in functions}
        self._clock = clock  # measures each run against the function's timeout (tests move it)
        self._background: set[threading.Thread] = set()
        self._background_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        answer, described = self._answer(Request(environ), request_id)
        headers = [*answer.headers, ("Content-Length", str(len(answer.body))), ("x-amzn-RequestId", request_id)]
        start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}", headers)
        function_error = dict(answer.headers).get("X-Amz-Function-Error")
        log.info(
            "Lambda Invoke %s -> %s%s  %.0f ms",
            described,
            answer.status,
            f" ({function_error}: {json.loads(answer.body)['errorType']})" if function_error else "",
            (time.monotonic() - started) * 1000,
        )
        return [answer.body]

    def _answer(self, request: Request, request_id: str) -> tuple[Answer, str]:
        found = _INVOKE_PATH.fullmatch(request.path)
        if request.method != "POST" or found is None:
            # Only Invoke is served here; the rest of Lambda's API (and moto's) is not.
            return _api_error(404, "UnknownOperationException", "Only Invoke is served by the local stack"), "?"
        try:
            address = FunctionAddress.parse(found["function"], request.args.get("Qualifier"))
        except InvalidParameter as error:
            return _api_error(400, "InvalidParameterValueException", str(error)), found["function"]
        try:
            kind = InvocationType(request.headers.get("X-Amz-Invocation-Type") or InvocationType.REQUEST_RESPONSE)
        except ValueError:
            kinds = ", ".join(kind.value for kind in InvocationType)
            message = f"InvocationType must be one of {kinds}"
            return _api_error(400, "InvalidParameterValueException", message), address.name
        described = f"{address.name} ({kind.value})"
        pool = self._pool_for(address)
        if pool is None:
            not_found = f"Function not found: {address.arn}"
            return _api_error(404, "ResourceNotFoundException", not_found, message_key="Message"), described

        limit = MAX_EVENT_PAYLOAD_BYTES if kind is InvocationType.EVENT else MAX_SYNC_PAYLOAD_BYTES
        payload = b"" if (request.content_length or 0) > limit else request.get_data(cache=False)
        if (request.content_length or 0) > limit or len(payload) > limit:
            too_large = _api_error(
                413, "RequestTooLargeException", f"Request must be smaller than {limit} bytes for the Invoke operation"
            )
            # The body was left unread: this connection cannot carry another request.
            return Answer(413, (*too_large.headers, ("Connection", "close")), too_large.body), described
        try:
            event = json.loads(payload) if payload.strip() else {}  # no payload: the handler gets {}, as in Lambda
        except ValueError as error:
            # The parser's message says where, never what: the payload is not echoed.
            message = f"Could not parse request body into json: {error}"
            return _api_error(400, "InvalidRequestContentException", message), described

        if kind is InvocationType.DRY_RUN:
            return Answer(204), described
        if kind is InvocationType.EVENT:
            self._run_in_background(pool, event, request_id, described)
            return Answer(202), described
        return self.run(pool, event, request_id), described

    def _pool_for(self, address: FunctionAddress) -> ContainerPool | None:
        """This account's and region's function of that name; only $LATEST (the stack publishes no versions)."""
        if (address.region, address.account) != (REGION, ACCOUNT_ID) or address.qualifier not in (None, LATEST):
            return None
        return self.pools.get(address.name)

    def run(self, pool: ContainerPool, event: Any, request_id: str) -> Answer:
        """One invocation on a free container, answered as Lambda answers a synchronous one."""
        container = pool.take()
        timeout = container.spec.timeout_seconds
        started = self._clock()
        try:
            result = container.invoke(event, request_id=request_id)
        except Exception as error:
            result, raised = None, error
        else:
            raised = None
        if self._clock() - started > timeout:
            # Lambda would have stopped the invocation at its timeout and answered this. A thread cannot be
            # stopped, so the handler ran to its end, and the answer goes only now; the container is not used
            # again, as Lambda replaces a timed-out one.
            return _function_error(
                "Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            )
        pool.give_back(container)
        if raised is not None:
            # The exception's type and text, and where: what Lambda's Python runtime sends back.
            return _function_error(
                type(raised).__name__, str(raised), requestId=request_id, stackTrace=_stack_trace(raised)
            )
        try:
            body = json.dumps(result).encode()
        except (TypeError, ValueError) as error:
            return _function_error("Runtime.MarshalError", f"Unable to marshal response: {error}", requestId=request_id)
        if len(body) > MAX_RESPONSE_BYTES:
            return _function_error(
                "Function.ResponseSizeTooLarge",
                f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload size "
                f"({MAX_RESPONSE_BYTES} bytes).",
            )
        return Answer(200, (("Content-Type", "application/json"), ("X-Amz-Executed-Version", LATEST)), body)

    def _run_in_background(self, pool: ContainerPool, event: Any, request_id: str, described: str) -> None:
        def run() -> None:
            try:
                answer = self.run(pool, event, request_id)
                if answer.status == 200 and any(name == "X-Amz-Function-Error" for name, _ in answer.headers):
                    # Lambda would try it twice more, then drop it (this stack gives its functions no destination).
                    error_type = json.loads(answer.body)["errorType"]
                    log.warning("Lambda Invoke %s failed (%s); not retried locally", described, error_type)
            finally:
                with self._background_lock:
                    self._background.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"lambda event {described}", daemon=True)
        with self._background_lock:
            self._background.add(thread)
        thread.start()

    def wait_for_background(self, timeout: float) -> None:
        """Let the Event invocations in progress end (up to `timeout` in all), before the AWS they use stops."""
        deadline = time.monotonic() + timeout
        with self._background_lock:
            running = list(self._background)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))


class LambdaServer(BackgroundServer):
    """The Invoke API on a threaded werkzeug server: each request in a thread of its own."""

    def __init__(self, service: LambdaService, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        super().__init__(service, host, port, request_handler=QuietRequestHandler, thread_name="lambda-api")

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self.service.wait_for_background(timeout)
