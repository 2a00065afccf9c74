"""Helpers the route modules share: reaching the state, shaping responses, applying injected faults."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

from flask import Response, current_app, request

from .errors import ApiFault, OAuthFailure, invalid_client
from .facts import OAuthError
from .faults import FaultKind, Group
from .pages import CONTENT_SECURITY_POLICY
from .state import EmulatorState


class EmulatedConnectionReset(ConnectionResetError):
    """Raised in-process (Flask test client) where no socket exists to close."""


def emulator() -> EmulatorState:
    return current_app.emulator  # type: ignore[attr-defined]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers.update(headers or {})
    return response


def oauth_response(body: Any, status: int = 200) -> Response:
    # Token responses must never be cached (RFC 6749 section 5.1).
    response = json_response(body, status, {"Cache-Control": "no-store", "Pragma": "no-cache"})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="intuit"'
    return response


def oauth_failure_response(failure: OAuthFailure) -> Response:
    return oauth_response(failure.body(), failure.status)


def fault_response(fault: ApiFault) -> Response:
    return json_response(fault.body(emulator().now()), fault.status, fault.headers)


def html_response(html: str, status: int = 200) -> Response:
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def client_credentials() -> tuple[str, str]:
    """client_secret_basic, else client_secret_post; empty strings when neither is sent."""
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return auth.username or "", auth.password or ""
    return request.form.get("client_id", ""), request.form.get("client_secret", "")


def authenticated_client() -> str:
    client_id, client_secret = client_credentials()
    emulator().authenticate_client(client_id, client_secret)
    return client_id


def injected_response(group: Group, grant_type: str | None = None) -> Response | None:
    """Apply the group's latency and its next matching fault; None means handle the request normally."""
    state = emulator()
    delay = state.faults.delay_for(group)
    if delay > 0:
        state.config.sleep(delay)
    fault = state.faults.take(group, grant_type)
    if fault is None:
        return None
    match fault.kind:
        case FaultKind.TIMEOUT:
            state.config.sleep(fault.seconds)
            if fault.process:
                return None
            return html_response("<h1>504 Gateway Time-out</h1>", 504)
        case FaultKind.HTTP_500:
            return fault_response(ApiFault.system())
        case FaultKind.HTTP_503:
            # Intuit's edge answers an outage with an HTML page, not JSON: clients must cope with both.
            return html_response("<h1>503 Service Unavailable</h1>", 503)
        case FaultKind.HTTP_429:
            return fault_response(ApiFault.throttle(fault.retry_after))
        case FaultKind.INVALID_GRANT | FaultKind.INVALID_CLIENT if group in (Group.API, Group.USERINFO):
            return fault_response(ApiFault.authentication("the access token was rejected (injected fault)"))
        case FaultKind.INVALID_GRANT:
            return oauth_failure_response(OAuthFailure(OAuthError.INVALID_GRANT))
        case FaultKind.INVALID_CLIENT:
            return oauth_failure_response(invalid_client())
        case FaultKind.CONNECTION_RESET:
            return _reset_connection()
    raise AssertionError(f"unhandled fault {fault.kind}")


def _reset_connection() -> Response:
    """Close the connection without an answer; the client sees "connection closed without response"."""
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        raise EmulatedConnectionReset("connection reset (injected fault)")
    with contextlib.suppress(OSError):  # the client may have gone already
        sock.shutdown(socket.SHUT_RDWR)
    # Werkzeug's write of this response then fails with a broken pipe, which it treats as a dropped client.
    return Response(b"", status=204)
