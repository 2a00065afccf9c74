"""The app's public pages for Intuit, shaped for API Gateway's HTTP API: launch, disconnect, reconnect.

None of them changes anything from its query alone. The disconnect page checks the company's
connections (domain/app_links.py); the reconnect page sends the browser on to a fresh signed authorize
link, and the consent flow's pinned-company check does the rest: only a connection that already has a
realm ID is offered, so consent for any other company is refused at the callback.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from qbo_connect import intuit
from qbo_connect.domain.app_links import DisconnectChecks
from qbo_connect.domain.authorization import callback_url
from qbo_connect.invocation import work_deadline
from qbo_connect.observability import logger
from qbo_connect.pages import SECURITY_HEADERS, Page, disconnect_page, launch_page, reconnect_refused_page
from qbo_connect.runtime import Services
from qbo_connect.web import api_base_url

_REALM = re.compile(intuit.REALM_ID_PATTERN)
# Intuit names the company `realmId` on its redirects; accept the same name here.
REALM_PARAMETER = "realmId"


def _page(page: Page) -> Response:
    return Response(status_code=page.status, headers=dict(SECURITY_HEADERS), body=page.html)


def _realm(event: APIGatewayProxyEventV2) -> str | None:
    value = (event.query_string_parameters or {}).get(REALM_PARAMETER)
    return value if isinstance(value, str) and _REALM.fullmatch(value) else None


def launch(event: APIGatewayProxyEventV2, services: Services) -> Response:
    return _page(launch_page(redirect_uri=callback_url(api_base_url(event.raw_event, services))))


def disconnect(event: APIGatewayProxyEventV2, services: Services, context: Any = None) -> Response:
    checks = DisconnectChecks(services.store, services.connection_tests, services.clock)
    # One end for all the company's checks: a refresh sent later than it allows is answered after Lambda
    # stopped us, and its rotation would be lost.
    checked = checks.check(_realm(event), not_after=work_deadline(context, services.clock.now()))
    logger.info("Disconnect page", extra={"connections": len(checked), "checked": sum(c.checked for c in checked)})
    return _page(disconnect_page(checked))


def reconnect(event: APIGatewayProxyEventV2, services: Services) -> Response:
    realm_id = _realm(event)
    if realm_id is None:
        return _page(reconnect_refused_page("The link names no QuickBooks company (realmId)."))
    holders = services.store.find_by_realm(realm_id)
    if not holders:
        return _page(reconnect_refused_page("There is no connection for this QuickBooks company here."))
    if len(holders) > 1:
        return _page(
            reconnect_refused_page("Several connections use this QuickBooks company, so the link is ambiguous.")
        )
    link = services.authorize_links.create(api_base_url(event.raw_event, services), holders[0].connection_id)
    headers = {k: v for k, v in SECURITY_HEADERS.items() if k != "Content-Type"}
    return Response(status_code=302, headers={**headers, "Location": link}, body="")
