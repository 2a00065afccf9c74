"""The two public routes, shaped for API Gateway's HTTP API: requests in, pages and redirects out.

Input limits come first: anything oversized or malformed gets a 400 page and touches nothing.

Each route is a function of its own, and the HTTP API sends each function only its route, so neither
needs a router: the answer is the payload 2.0 response Powertools' resolver would build (status,
headers, cookies, body). Importing the event handler was a third of these functions' cold start
(docs/performance.md, "Cold start"), for a route table of one. The event is read as the dictionary it
is, for the same reason: Powertools' event classes come as one package of every event source's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from qbo_connect.domain.authorization import (
    CALLBACK_PATH,
    RECEIPT_COOKIE,
    RECEIPT_SECONDS,
    STATE_COOKIE,
    FlowError,
    FlowResult,
    LinkRejected,
    callback_url,
)
from qbo_connect.errors import QboConnectError
from qbo_connect.observability import logger
from qbo_connect.pages import (
    SECURITY_HEADERS,
    Page,
    bad_request_page,
    connected_page,
    failure_page,
    service_unavailable_page,
)
from qbo_connect.runtime import Services

# An HTTP API event, payload format 2.0, as Lambda hands it to the function.
HttpEvent = Mapping[str, Any]

MAX_QUERY_STRING = 4096
MAX_COOKIE_HEADER = 4096
MAX_HEADER_VALUE = 8192


def http_response(
    status: int, headers: dict[str, str], body: str = "", cookies: list[Cookie] | None = None
) -> dict[str, Any]:
    """What a Lambda function behind an HTTP API returns (payload format 2.0)."""
    return {
        "statusCode": status,
        "body": body,
        "isBase64Encoded": False,
        "headers": dict(headers),
        "cookies": [str(cookie) for cookie in cookies or []],
    }


def _page_response(page: Page, cookies: list[Cookie] | None = None) -> dict[str, Any]:
    return http_response(page.status, SECURITY_HEADERS, page.html, cookies)


def _host_cookie(name: str, value: str, max_age: int) -> Cookie:
    return Cookie(
        name=name,
        value=value,
        path="/",
        secure=True,
        http_only=True,
        max_age=max_age,
        same_site=SameSite.LAX_MODE,
    )


def _clear_state_cookie() -> Cookie:
    return _host_cookie(STATE_COOKIE, "", 0)


def _oversized(event: HttpEvent) -> bool:
    cookies = event.get("cookies") or []
    return (
        len(event.get("rawQueryString") or "") > MAX_QUERY_STRING
        or sum(len(c) for c in cookies) > MAX_COOKIE_HEADER
        or any(len(v or "") > MAX_HEADER_VALUE for v in (event.get("headers") or {}).values())
    )


def _single_params(event: HttpEvent) -> dict[str, str] | None:
    """Query parameters, each at most once: API Gateway joins repeats with commas, which we refuse."""
    params = dict(event.get("queryStringParameters") or {})
    raw_names = [pair.split("=", 1)[0] for pair in (event.get("rawQueryString") or "").split("&") if pair]
    if len(raw_names) != len(set(raw_names)):
        return None
    if not all(_is_utf8(name) and _is_utf8(value) for name, value in params.items()):
        return None  # a lone surrogate (a "\ud800" escape in the event) could not even be sent on to Intuit
    return params


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _cookie(event: HttpEvent, wanted: str) -> str | None:
    for cookie in event.get("cookies") or []:
        name, _, value = cookie.partition("=")
        if name.strip() == wanted:
            return value.strip()
    return None


def api_base_url(event: HttpEvent, services: Services) -> str:
    """The public URL of the API: configured (custom domain, local stack) or the execute-api host."""
    if services.settings.public_base_url:
        return services.settings.public_base_url
    return f"https://{event['requestContext']['domainName']}"


def _page_when_aws_keeps_failing(route: Callable[[HttpEvent, Services], dict[str, Any]]):
    """A person waits on these routes: AWS still refusing after botocore's retries (throttling, throughput)
    gets a page saying to try again, not API Gateway's bare Internal Server Error. Anything else AWS raises
    (access denied, a missing table) is a deployment fault and fails loudly, as before."""

    @functools.wraps(route)
    def answered(event: HttpEvent, services: Services, **options: Any) -> dict[str, Any]:
        try:
            return route(event, services, **options)
        except Exception as error:
            # Imported here: botocore is loaded by the first AWS call, not by the handler's import.
            from qbo_connect.adapters.aws_faults import is_transient, refusal

            if not is_transient(error):
                raise
            logger.warning("AWS kept failing a call", extra={"reason": refusal(error), "route": route.__name__})
            return _page_response(service_unavailable_page())

    return answered


@_page_when_aws_keeps_failing
def start_consent(event: HttpEvent, services: Services) -> dict[str, Any]:
    connection_id = (event.get("pathParameters") or {}).get("connection_id", "")
    params = _single_params(event)
    if _oversized(event) or params is None:
        return _page_response(bad_request_page())
    try:
        start = services.consent.start(
            connection_id,
            exp=params.get("exp"),
            kid=params.get("kid"),
            sig=params.get("sig"),
            redirect_uri=callback_url(api_base_url(event, services)),
        )
    except LinkRejected as rejected:
        logger.info("Authorize link rejected", extra={"reason": rejected.reason.value})
        return _page_response(failure_page(rejected.reason, rejected.details))
    cookie = _host_cookie(STATE_COOKIE, start.state_cookie, start.cookie_max_age)
    headers = {k: v for k, v in SECURITY_HEADERS.items() if k != "Content-Type"}
    return http_response(302, {**headers, "Location": start.redirect_url}, cookies=[cookie])


@_page_when_aws_keeps_failing
def finish_consent(event: HttpEvent, services: Services, *, not_after: float | None = None) -> dict[str, Any]:
    """`not_after`: when the invocation's work must be done (invocation.invocation_end)."""
    params = _single_params(event)
    if _oversized(event) or params is None:
        return _page_response(bad_request_page())
    try:
        result = services.consent.complete(params, state_cookie=_cookie(event, STATE_COOKIE), not_after=not_after)
    except LinkRejected as rejected:
        if rejected.reason is FlowError.STATE_UNKNOWN:
            reloaded = services.consent.completed_before(params, receipt=_cookie(event, RECEIPT_COOKIE))
            if reloaded is not None:
                logger.info("Consent result page reloaded", extra={"connection_id": reloaded.connection.connection_id})
                # Its state cookie went when it completed: the one this browser holds now is another consent's.
                return _page_response(_connected_page(reloaded))
        logger.info("Consent callback rejected", extra={"reason": rejected.reason.value})
        # The cookie goes only with the state it was for. A state we do not hold (forged, or already spent) tells
        # us nothing about whose cookie this browser carries: it may bind a consent still pending here.
        keep_cookie = rejected.reason in {FlowError.OTHER_BROWSER, FlowError.STATE_UNKNOWN}
        return _page_response(
            failure_page(rejected.reason, rejected.details), None if keep_cookie else [_clear_state_cookie()]
        )
    except QboConnectError as error:
        logger.warning("Consent callback failed", extra={"error_code": error.code.value})
        return _page_response(failure_page(FlowError.INTUIT_UNAVAILABLE), [_clear_state_cookie()])
    return _connected_response(result)


def _connected_page(result: FlowResult) -> Page:
    return connected_page(name=result.connection.name, company_name=result.company_name, realm_id=result.realm_id)


def _connected_response(result: FlowResult) -> dict[str, Any]:
    cookies = [_clear_state_cookie()]
    if result.receipt:
        cookies.append(_host_cookie(RECEIPT_COOKIE, result.receipt, RECEIPT_SECONDS))
    return _page_response(_connected_page(result), cookies)


__all__ = ["CALLBACK_PATH", "finish_consent", "start_consent"]
