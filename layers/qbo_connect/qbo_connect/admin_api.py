"""The admin API over API Gateway's HTTP API: JSON in, JSON out, every operation from domain/admin_operations.py.

Who may call: API Gateway lets a request through only with a valid Cognito JWT (routes under `/admin/`, for
people and the console) or a valid SigV4 signature (the same routes under `/iam/admin/`, for machines). The
handler checks again that one of the two authorizers vouched for the caller, so a route declared without an
authorizer by mistake still refuses everyone, and names the caller in every change it records.

A signed-in person must also be in the administrators' group (QBO_ADMIN_GROUP, the token's `cognito:groups`):
a valid token of the pool is who someone is, the group is what they may do. Anyone else gets 403 before any
route runs. A machine (SigV4) is authorized by its IAM policy (execute-api:Invoke on /iam/admin/*), as IAM
decides everything else it may do.

Errors are `{"error": {"code", "message", "next_step"}}` with the test function's codes.
"""

from __future__ import annotations

import base64
import binascii
import json
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from qbo_connect import intuit
from qbo_connect.adapters.aws_faults import AWS_ERRORS, is_transient, refusal
from qbo_connect.domain.admin_operations import ConnectionUpdate, ImportedTokens
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.authorization import callback_url
from qbo_connect.domain.connection import RefreshPolicy
from qbo_connect.domain.connection_test import NEXT_STEPS
from qbo_connect.domain.event_history import MAX_PAGE
from qbo_connect.errors import ErrorCode, InvalidInput, QboConnectError
from qbo_connect.invocation import invocation_end
from qbo_connect.observability import logger
from qbo_connect.pages import TRANSPORT_SECURITY
from qbo_connect.public_json import whole_seconds
from qbo_connect.runtime import services
from qbo_connect.web import api_base_url

ADMIN_PREFIX = "/admin"
IAM_PREFIX = "/iam"  # /iam/admin/... : the same operations behind the IAM (SigV4) authorizer
MAX_BODY_BYTES = 16 * 1024
JSON_HEADERS = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # Data, never a document: nothing in it loads or runs, nothing frames it, and its URL goes nowhere as a referrer.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    **TRANSPORT_SECURITY,
}

_STATUS: dict[ErrorCode, HTTPStatus] = {
    ErrorCode.INVALID_INPUT: HTTPStatus.BAD_REQUEST,
    ErrorCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: HTTPStatus.CONFLICT,
    ErrorCode.CONFLICT: HTTPStatus.CONFLICT,
    ErrorCode.BUSY: HTTPStatus.CONFLICT,
    ErrorCode.NOT_CONNECTED: HTTPStatus.CONFLICT,
    ErrorCode.NEEDS_REAUTHORIZATION: HTTPStatus.CONFLICT,
    ErrorCode.INVALID_CLIENT: HTTPStatus.CONFLICT,
    ErrorCode.THROTTLED: HTTPStatus.TOO_MANY_REQUESTS,
    ErrorCode.INTUIT_UNAVAILABLE: HTTPStatus.BAD_GATEWAY,
    ErrorCode.VAULT_UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
}
ADMIN_NEXT_STEPS = {
    **NEXT_STEPS,
    ErrorCode.INVALID_INPUT: "Fix the request as the message says; the admin API is described in the README.",
    ErrorCode.ALREADY_EXISTS: "Choose another name, or use the existing connection.",
}

_CREATE_FIELDS = {
    "name",
    "client_id",
    "environment",
    "realm_id",
    "scopes",
    "base_url",
    "connection_id",
    "client_secret",
    "refresh_policy",
}
_UPDATE_FIELDS = {"name", "client_id", "environment", "realm_id", "scopes", "base_url", "refresh_policy"}


class RequestRefused(QboConnectError):
    """Not an admin (no authorizer vouched for the caller)."""

    code = ErrorCode.UNAUTHORIZED


PERSON = "user:"  # how a signed-in person is named as the actor of a change


class NotAnAdministrator(QboConnectError):
    """Signed in, but not in the administrators' group."""

    code = ErrorCode.FORBIDDEN


def error_response(status: int, code: str, message: str, next_step: str | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "next_step": next_step}}
    return Response(status_code=status, headers=dict(JSON_HEADERS), body=json.dumps(body))


def _json(status: int, data: Any) -> Response:
    return Response(status_code=status, headers=dict(JSON_HEADERS), body=json.dumps(whole_seconds(data), default=str))


def build_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(strip_prefixes=[IAM_PREFIX])

    def actor() -> str:
        return caller(app.current_event.raw_event, services().settings.admin_group)

    def body(allowed: set[str], *, required: set[str] = frozenset()) -> dict[str, Any]:
        raw = _body_text(app.current_event.raw_event)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            raise InvalidInput("The request body is not JSON: send a JSON object") from None
        if not isinstance(data, dict):
            raise InvalidInput("The request body must be a JSON object")
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise InvalidInput(f"Unknown fields {unknown}: allowed are {sorted(allowed)}")
        missing = sorted(required - set(data))
        if missing:
            raise InvalidInput(f"Missing fields {missing}")
        for name, value in data.items():
            if name == "scopes":
                if not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
                    raise InvalidInput("scopes is a list of strings")
            elif name == "deep":
                if not isinstance(value, bool):
                    raise InvalidInput(f"{name} is true or false")
            elif name == "lifetime_seconds":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise InvalidInput("lifetime_seconds is a whole number of seconds")
            elif value is not None and not isinstance(value, str):
                raise InvalidInput(f"{name} is a string")
        return data

    def ref(name_or_id: str) -> str:
        return unquote(name_or_id)

    def base_url() -> str:
        return api_base_url(app.current_event.raw_event, services())

    @app.get(f"{ADMIN_PREFIX}/connections")
    def list_connections() -> Response:
        return _json(200, {"connections": services().admin.list(), "callback_url": callback_url(base_url())})

    @app.post(f"{ADMIN_PREFIX}/connections")
    def create_connection() -> Response:
        data = body(_CREATE_FIELDS, required={"name", "client_id"})
        request = NewConnection(
            name=data["name"],
            client_id=data["client_id"],
            environment=data.get("environment", intuit.Environment.SANDBOX.value),
            realm_id=data.get("realm_id") or None,
            scopes=tuple(data.get("scopes") or intuit.DEFAULT_SCOPES),
            base_url=data.get("base_url") or None,
            connection_id=data.get("connection_id") or None,
            client_secret=data.get("client_secret"),
            # Given, it must be a policy (null, "" or false are refused); left out, eager.
            refresh_policy=data.get("refresh_policy", RefreshPolicy.EAGER.value),
        )
        created = services().admin.create(request, actor=actor())
        return _json(201, services().admin.show(created.connection_id))

    @app.get(f"{ADMIN_PREFIX}/callback-url")
    def get_callback_url() -> Response:
        return _json(200, {"callback_url": callback_url(base_url())})

    @app.get(f"{ADMIN_PREFIX}/metering")
    def metering() -> Response:
        """The month's accounting API calls per app and connection (?month=YYYY-MM; default this month)."""
        month = (app.current_event.query_string_parameters or {}).get("month")
        return _json(200, services().metering_report.month(month))

    @app.get(f"{ADMIN_PREFIX}/connections/<name_or_id>")
    def show_connection(name_or_id: str) -> Response:
        return _json(200, services().admin.show(ref(name_or_id)))

    @app.patch(f"{ADMIN_PREFIX}/connections/<name_or_id>")
    def update_connection(name_or_id: str) -> Response:
        data = body(_UPDATE_FIELDS)
        change = ConnectionUpdate(
            name=data.get("name"),
            client_id=data.get("client_id"),
            scopes=tuple(data["scopes"]) if "scopes" in data else None,
            environment=data.get("environment"),
            base_url=data.get("base_url"),
            # null or "" removes the company pin; leaving the field out keeps it.
            realm_id=(data["realm_id"] or "") if "realm_id" in data else None,
            refresh_policy=data.get("refresh_policy"),
        )
        saved = services().admin.update(
            ref(name_or_id), change, actor=actor(), not_after=invocation_end(app.lambda_context)
        )
        return _json(200, services().admin.show(saved.connection_id))

    @app.put(f"{ADMIN_PREFIX}/connections/<name_or_id>/client-secret")
    def set_client_secret(name_or_id: str) -> Response:
        data = body({"client_secret"}, required={"client_secret"})
        saved = services().admin.set_client_secret(ref(name_or_id), data["client_secret"] or "", actor=actor())
        return _json(200, services().admin.show(saved.connection_id))

    @app.post(f"{ADMIN_PREFIX}/connections/<name_or_id>/authorize-link")
    def authorize_link(name_or_id: str) -> Response:
        data = body({"lifetime_seconds"})
        base = base_url()
        link = services().admin.authorize_link(
            ref(name_or_id),
            api_base_url=base,
            callback_url=callback_url(base),
            lifetime_seconds=data.get("lifetime_seconds"),
        )
        return _json(200, link.as_json())

    @app.post(f"{ADMIN_PREFIX}/connections/<name_or_id>/reset")
    def reset_connection(name_or_id: str) -> Response:
        body(set())
        saved = services().admin.reset(ref(name_or_id), actor=actor(), not_after=invocation_end(app.lambda_context))
        return _json(200, services().admin.show(saved.connection_id))

    @app.delete(f"{ADMIN_PREFIX}/connections/<name_or_id>")
    def delete_connection(name_or_id: str) -> Response:
        connection = services().admin.find(ref(name_or_id))
        revocation = services().admin.delete(
            connection.connection_id, actor=actor(), not_after=invocation_end(app.lambda_context)
        )
        return _json(200, {"connection_id": connection.connection_id, "deleted": True, "revocation": revocation})

    @app.post(f"{ADMIN_PREFIX}/connections/<name_or_id>/test")
    def test_connection(name_or_id: str) -> Response:
        data = body({"deep"})
        report = services().admin.test(
            ref(name_or_id), deep=bool(data.get("deep")), not_after=invocation_end(app.lambda_context)
        )
        return _json(200, report.as_json())

    @app.post(f"{ADMIN_PREFIX}/connections/<name_or_id>/refresh")
    def refresh_connection(name_or_id: str) -> Response:
        body(set())
        result = services().admin.refresh(ref(name_or_id), actor=actor(), not_after=invocation_end(app.lambda_context))
        return _json(200, {**result.as_json(), "connection": services().admin.show(result.connection_id)})

    @app.get(f"{ADMIN_PREFIX}/connections/<name_or_id>/events")
    def connection_events(name_or_id: str) -> Response:
        query = app.current_event.query_string_parameters or {}
        unknown = sorted(set(query) - {"limit", "before"})
        if unknown:
            raise InvalidInput(f"Unknown query parameters {unknown}: allowed are ['before', 'limit']")
        limit = query.get("limit")
        if limit is not None and not (limit.isascii() and limit.isdigit() and len(limit) <= 4):
            raise InvalidInput(f"limit is a whole number from 1 to {MAX_PAGE}")
        page = services().admin.events(
            ref(name_or_id), limit=None if limit is None else int(limit), before=query.get("before")
        )
        return _json(200, page.as_json())

    @app.post(f"{ADMIN_PREFIX}/connections/<name_or_id>/import")
    def import_tokens(name_or_id: str) -> Response:
        data = body({"refresh_token", "access_token", "realm_id"}, required={"refresh_token"})
        tokens = ImportedTokens(
            refresh_token=data["refresh_token"] or "",
            access_token=data.get("access_token"),
            realm_id=data.get("realm_id") or None,
        )
        saved = services().admin.import_tokens(
            ref(name_or_id), tokens, actor=actor(), not_after=invocation_end(app.lambda_context)
        )
        return _json(200, services().admin.show(saved.connection_id))

    @app.exception_handler(QboConnectError)
    def domain_error(error: QboConnectError) -> Response:
        if isinstance(error, RequestRefused | NotAnAdministrator):
            return _refused(error)
        status = _STATUS.get(error.code, HTTPStatus.BAD_REQUEST)
        logger.info("Admin request refused", extra={"error_code": error.code.value, "status": int(status)})
        return error_response(int(status), error.code.value, error.message, ADMIN_NEXT_STEPS.get(error.code))

    @app.exception_handler(list(AWS_ERRORS))
    def aws_error(error: Exception) -> Response:
        return _aws_failing(error)

    @app.exception_handler(NotFoundError)
    def no_route(_: NotFoundError) -> Response:
        return error_response(
            404, ErrorCode.NOT_FOUND.value, "No such admin route", ADMIN_NEXT_STEPS[ErrorCode.NOT_FOUND]
        )

    return app


def caller(event: dict[str, Any], admin_group: str) -> str:
    """Who API Gateway's authorizer vouched for: `user:<name>` (Cognito JWT) or `iam:<ARN>` (SigV4).

    Raises RequestRefused when neither did (the route was reached without an authorizer), NotAnAdministrator
    when a signed-in person is not in `admin_group`.
    """
    authorizer = _mapping(_mapping(event).get("requestContext")).get("authorizer")
    claims = _claims(event)
    if isinstance(claims.get("sub"), str) and claims["sub"]:
        name = claims.get("cognito:username") or claims.get("username") or claims.get("email") or claims["sub"]
        if admin_group not in token_groups(claims.get("cognito:groups")):
            raise NotAnAdministrator(
                f"You are signed in as {name}, who is not in the administrators' group {admin_group!r}: nothing "
                "was changed. Ask an AWS administrator to add you: aws cognito-idp admin-add-user-to-group "
                f"--user-pool-id POOL --username {name} --group-name {admin_group} (then sign in again)"
            )
        return f"{PERSON}{name}"
    arn = _mapping(_mapping(authorizer).get("iam")).get("userArn")
    if isinstance(arn, str) and arn:
        return f"iam:{arn}"
    raise RequestRefused("No authorizer vouched for this request: sign in (Cognito) or sign it with SigV4")


def _claims(event: dict[str, Any]) -> dict[str, Any]:
    """The JWT authorizer's claims (empty when none vouched)."""
    authorizer = _mapping(_mapping(event).get("requestContext")).get("authorizer")
    return _mapping(_mapping(_mapping(authorizer).get("jwt")).get("claims"))


def token_groups(claim: Any) -> set[str]:
    """The groups in a `cognito:groups` claim. API Gateway's JWT authorizer hands array claims to the function
    as one string, "[admins ops]"; a direct invocation may give a list. Group names hold no whitespace."""
    if isinstance(claim, list):
        return {g for g in claim if isinstance(g, str)}
    if not isinstance(claim, str):
        return set()
    text = claim.strip()
    if text.startswith("[") and text.endswith("]"):
        return set(text[1:-1].split())
    return {text} if text else set()


def _aws_failing(error: Exception) -> Response:
    if not is_transient(error):
        raise error  # a deployment fault (access denied, a missing table): Lambda's error metric sees it
    message = f"{refusal(error)}: try again in a few seconds; `connections show` says what the connection holds"
    logger.warning("AWS kept failing a call", extra={"reason": message})
    code = ErrorCode.VAULT_UNAVAILABLE
    return error_response(int(HTTPStatus.SERVICE_UNAVAILABLE), code.value, message, ADMIN_NEXT_STEPS.get(code))


def _refused(error: RequestRefused | NotAnAdministrator) -> Response:
    if isinstance(error, NotAnAdministrator):
        return error_response(403, error.code.value, error.message, "Sign in as an administrator.")
    return error_response(401, error.code.value, error.message, "Sign in.")


def _body_text(event: dict[str, Any]) -> str:
    """The request body as text. API Gateway hands over a body that is not UTF-8 (or has a content type it does
    not know as text) base64-encoded; one that does not decode to UTF-8 is refused, not a 500."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        data = body.encode("utf-8", "surrogatepass")
    else:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("The request body is not readable: send a JSON object encoded as UTF-8") from None
    if len(data) > MAX_BODY_BYTES:
        raise InvalidInput(f"The request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("The request body is not UTF-8 text: send a JSON object encoded as UTF-8") from None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def handle(app: APIGatewayHttpResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Refuse anything no authorizer vouched for, and people outside the administrators' group (as their token
    says, and as the pool says now), before routing."""
    try:
        who = caller(event, services().settings.admin_group)
        if who.startswith(PERSON):
            _confirm_still_administrator(who.removeprefix(PERSON), _claims(event)["sub"])
    except (RequestRefused, NotAnAdministrator) as refused:
        logger.info("Admin request refused", extra={"error_code": refused.code.value})
        answer = _refused(refused)
    except AWS_ERRORS as error:
        answer = _aws_failing(error)
    else:
        return app.resolve(event, context)
    return {"statusCode": answer.status_code, "headers": dict(JSON_HEADERS), "body": answer.body}


def _confirm_still_administrator(name: str, sub: str) -> None:
    administrators = services().administrators
    if administrators is None:
        raise NotAnAdministrator(
            f"You are signed in as {name}, but this deployment's admin function has no user pool to confirm "
            "administrators with (QBO_ADMIN_USER_POOL_ID): nothing was changed. Redeploy the stack; machines can "
            "use /iam/admin meanwhile"
        )
    if not administrators.confirm(name, sub):
        raise NotAnAdministrator(
            f"You are signed in as {name}, who is no longer an administrator (removed from the group "
            f"{services().settings.admin_group!r}, disabled or deleted since signing in; a user created again "
            "under the name signs in again): nothing was changed"
        )


__all__ = ["ADMIN_PREFIX", "IAM_PREFIX", "build_app", "caller", "handle"]
