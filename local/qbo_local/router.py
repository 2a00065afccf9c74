"""An HTTP server that stands in for API Gateway's HTTP API in front of the functions.

Each request is matched against the routes of template.yaml and handed to the function as exactly
the event payload format 2.0 describes; the function's answer is turned back into HTTP the way API
Gateway does it. Request lines are logged without their query strings: the callback's carries the
authorization code and the OAuth state.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl

from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request

from qbo_local.authorizers import Refused, SignedRequest, find_header, request_url
from qbo_local.config import ACCOUNT_ID
from qbo_local.discovery import PROBE_USER_AGENT, REQUEST_ID_HEADER
from qbo_local.serving import BackgroundServer

log = logging.getLogger("qbo_local.router")

DEFAULT_ROUTE = "$default"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's request size limit
_RAW_HEADERS = "qbo_local.raw_headers"
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded")


class Invocable(Protocol):
    name: str

    def invoke(self, event: Any) -> Any: ...


class Authorizer(Protocol):
    def authorize(self, request: SignedRequest) -> dict[str, Any]:
        """requestContext.authorizer for the function; raises Refused."""


@dataclass(frozen=True)
class Route:
    method: str  # "GET", or "ANY"
    path: str  # "/connections/{connection_id}/authorize", or "$default"
    function: Invocable
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    _names: tuple[str, ...] = field(default=(), compare=False, repr=False)
    authorizer: Authorizer | None = field(default=None, compare=False)

    @classmethod
    def of(cls, method: str, path: str, function: Invocable, authorizer: Authorizer | None = None) -> Route:
        if path == DEFAULT_ROUTE:
            return cls(method.upper(), path, function, authorizer=authorizer)
        names, parts = [], []
        for segment in re.split(r"(\{[^}]+\})", path):
            if segment.startswith("{") and segment.endswith("}"):
                name = segment[1:-1]
                greedy = name.endswith("+")
                names.append(name.rstrip("+"))
                parts.append("(.+)" if greedy else "([^/]+)")
            else:
                parts.append(re.escape(segment))
        return cls(method.upper(), path, function, re.compile("".join(parts)), tuple(names), authorizer)

    @property
    def route_key(self) -> str:
        return DEFAULT_ROUTE if self.path == DEFAULT_ROUTE else f"{self.method} {self.path}"

    def precedence(self) -> tuple[int, int, int, int]:
        """API Gateway prefers exact paths, then fewer and non-greedy variables, then a method over ANY."""
        return (
            self.path == DEFAULT_ROUTE,
            "+}" in self.path,
            len(self._names),
            self.method == "ANY",
        )

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        if self._pattern is None:
            return {}
        found = self._pattern.fullmatch(path)
        return dict(zip(self._names, found.groups(), strict=True)) if found else None


def order_routes(routes: Iterable[Route]) -> list[Route]:
    return sorted(routes, key=Route.precedence)


# --- request -> event ----------------------------------------------------------------------------


def _joined(pairs: Iterable[tuple[str, str]], *, lower: bool) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower() if lower else name
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def _is_text(content_type: str | None, body: bytes) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    textual = kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith(("+json", "+xml"))
    if not textual:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _trace_id(now: float) -> str:
    return f"Root=1-{int(now):08x}-{secrets.token_hex(12)}"


@dataclass(frozen=True)
class IncomingRequest:
    """What the router read off the wire, before it became an event."""

    method: str
    path: str  # decoded, as HTTP APIs deliver rawPath
    raw_query: str
    headers: Sequence[tuple[str, str]]  # as received: original case, repeats kept
    body: bytes
    source_ip: str
    protocol: str
    port: int


def build_event(
    request: IncomingRequest,
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The HTTP API payload format 2.0 event for one request."""
    now = time.time() if now is None else now
    cookies = [
        cookie for name, value in request.headers if name.lower() == "cookie" for cookie in value.split("; ") if cookie
    ]
    headers = _joined(((n, v) for n, v in request.headers if n.lower() != "cookie"), lower=True)
    # What API Gateway adds in front of every integration.
    headers["content-length"] = str(len(request.body))
    headers.setdefault("x-amzn-trace-id", _trace_id(now))
    headers["x-forwarded-for"] = (
        f"{headers['x-forwarded-for']}, {request.source_ip}" if "x-forwarded-for" in headers else request.source_ip
    )
    headers["x-forwarded-port"] = str(request.port)
    headers["x-forwarded-proto"] = "http"
    domain = f"localhost:{request.port}"

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if request.raw_query:
        event["queryStringParameters"] = _joined(parse_qsl(request.raw_query, keep_blank_values=True), lower=False)
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": "local",
        "domainName": domain,
        "domainPrefix": "localhost",
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id or str(uuid.uuid4()),
        "routeKey": route.route_key,
        "stage": "$default",
        "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now * 1000),
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if request.body:
        text = _is_text(headers.get("content-type"), request.body)
        event["body"] = request.body.decode("utf-8") if text else base64.b64encode(request.body).decode("ascii")
        event["isBase64Encoded"] = not text
    else:
        event["isBase64Encoded"] = False
    return event


# --- function answer -> HTTP ---------------------------------------------------------------------


class MalformedResponse(ValueError):
    """The function answered something API Gateway would refuse (it answers 500)."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _header_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MalformedResponse(f"header value {value!r} is not a string or number")
    text = str(value)
    if "\r" in text or "\n" in text:
        raise MalformedResponse("a header value holds a line break")
    return text


def to_http(result: Any) -> HttpAnswer:
    """A payload 2.0 response, or (API Gateway's inference) any other JSON as a 200 application/json."""
    if not (isinstance(result, dict) and "statusCode" in result):
        body = result if isinstance(result, str) else json.dumps(result)
        return HttpAnswer(200, [("Content-Type", "application/json")], body.encode("utf-8"))
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode {status!r} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), _header_value(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if not isinstance(values, list):
            raise MalformedResponse(f"multiValueHeaders[{name!r}] is not a list")
        headers.extend((str(name), _header_value(value)) for value in values)
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise MalformedResponse("cookies is not a list")
    headers.extend(("Set-Cookie", _header_value(cookie)) for cookie in cookies)
    body = result.get("body")
    if body is None:
        payload = b""
    elif not isinstance(body, str):
        raise MalformedResponse("body is not a string")
    elif result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(body, validate=True)
        except ValueError as error:
            raise MalformedResponse("body is not valid base64") from error
    else:
        payload = body.encode("utf-8")
    return HttpAnswer(status, headers, payload)


def _gateway_error(status: int, message: str) -> HttpAnswer:
    return HttpAnswer(status, [("Content-Type", "application/json")], json.dumps({"message": message}).encode())


# --- the WSGI app and its server -----------------------------------------------------------------


class Router:
    """The WSGI app: route, build the event, invoke, answer."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = order_routes(routes)

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            parameters = route.match(method, path)
            if parameters is not None:
                return route, parameters
        return None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        request = Request(environ)
        method, path = request.method, request.path
        answer, function_name = self._answer(environ, request, request_id)
        headers = [(n, v) for n, v in answer.headers if n.lower() != "content-length"]
        headers.append(("Content-Length", str(len(answer.body))))
        headers.append((REQUEST_ID_HEADER, request_id))
        start_response(f"{answer.status} {_reason(answer.status)}", headers)
        elapsed = (time.monotonic() - started) * 1000
        if environ.get("HTTP_USER_AGENT") != PROBE_USER_AGENT:
            log.info("%s %s -> %s  %s %.0f ms", method, path, answer.status, function_name or "(no route)", elapsed)
        return [answer.body] if method != "HEAD" else []

    def _answer(self, environ: dict[str, Any], request: Request, request_id: str) -> tuple[HttpAnswer, str | None]:
        found = self.find(request.method, request.path)
        if found is None:
            return _gateway_error(404, "Not Found"), None
        route, parameters = found
        if (request.content_length or 0) > MAX_PAYLOAD_BYTES:
            return _gateway_error(413, "Request Entity Too Large"), route.function.name
        incoming = IncomingRequest(
            method=request.method,
            path=request.path,
            raw_query=environ.get("QUERY_STRING", ""),
            headers=environ.get(_RAW_HEADERS) or list(request.headers.items()),
            body=request.get_data(cache=False),
            source_ip=environ.get("REMOTE_ADDR", "127.0.0.1"),
            protocol=environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            port=int(environ.get("SERVER_PORT") or 0),
        )
        event = build_event(incoming, route, parameters, request_id=request_id)
        if route.authorizer is not None:
            host = find_header(incoming.headers, "host") or f"localhost:{incoming.port}"
            signed = SignedRequest(
                incoming.method, request_url(host, incoming.path, incoming.raw_query), incoming.headers, incoming.body
            )
            try:
                event["requestContext"]["authorizer"] = route.authorizer.authorize(signed)
            except Refused as refused:
                log.info("%s %s refused by the authorizer: %s", incoming.method, incoming.path, refused.reason)
                return _gateway_error(refused.status, refused.message), route.function.name
        try:
            result = route.function.invoke(event)
            return to_http(result), route.function.name
        except MalformedResponse as error:
            log.error("%s answered a response API Gateway would refuse: %s", route.function.name, error)
        except Exception:
            log.exception("%s raised an exception (API Gateway answers 500)", route.function.name)
        return _gateway_error(500, "Internal Server Error"), route.function.name


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _RequestHandler(WSGIRequestHandler):
    """Keeps the headers exactly as received (werkzeug drops names with underscores) and leaves
    request logging to the router, which never logs a query string."""

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ[_RAW_HEADERS] = list(self.headers.items())
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class RouterServer(BackgroundServer):
    """The router on a threaded werkzeug server."""

    def __init__(self, router: Router, host: str = "localhost", port: int = 0) -> None:
        self.router = router
        super().__init__(router, host, port, request_handler=_RequestHandler, thread_name="api-router")
