"""The pages a person sees after the consent flow: one per outcome, every value escaped, strict headers."""

from __future__ import annotations

import base64
import hashlib
from html import escape

from qbo_connect.domain.authorization import FlowError
from qbo_connect.records import record

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}"
    "h1{font-size:1.5rem}.ok{color:#1a7f37}.fail{color:#b42318}code{background:#f3f3f3;padding:0 .2rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

# On every answer a browser may get. API Gateway serves the service over https only: a year of HSTS keeps the
# browser from ever trying plain http for this host, where a network in the middle could answer with a
# look-alike. Browsers ignore it over plain http, such as the local stack's (RFC 6797, section 8.1).
TRANSPORT_SECURITY = {"Strict-Transport-Security": "max-age=31536000"}

SECURITY_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    # No script at all; the one inline style is allowed by its hash.
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    **TRANSPORT_SECURITY,
}


@record
class Page:
    """An HTML page the browser is shown, with its status code."""

    status: int
    title: str
    html: str


def _render(status: int, title: str, css_class: str, paragraphs: list[str]) -> Page:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} - QuickBooks connection</title><style>{_STYLE}</style></head>"
        f'<body><h1 class="{css_class}">{escape(title)}</h1>{body}</body></html>'
    )
    return Page(status, title, html)


def connected_page(*, name: str, company_name: str | None, realm_id: str) -> Page:
    company = f"company &ldquo;{escape(company_name)}&rdquo;" if company_name else "the company"
    return _render(
        200,
        "Connected",
        "ok",
        [
            f"Connection <strong>{escape(name)}</strong> is connected to {company} "
            f"(realm ID <code>{escape(realm_id)}</code>).",
            "Workflows can use it now. You can close this window.",
        ],
    )


_LINK_STEP = "Ask your administrator for a fresh link (<code>qbo-connect connections authorize-link NAME</code>)."

# FlowError -> (HTTP status, title, what happened, what to do next). Details are escaped before use.
_FAILURES: dict[FlowError, tuple[int, str, str, str]] = {
    FlowError.LINK_INVALID: (
        403,
        "This link is not valid",
        "The authorize link is incomplete or was changed.",
        _LINK_STEP,
    ),
    FlowError.LINK_EXPIRED: (
        403,
        "This link has expired",
        "Authorize links work for a limited time.",
        _LINK_STEP,
    ),
    FlowError.CONNECTION_NOT_FOUND: (
        404,
        "Unknown connection",
        "The connection this link is for no longer exists.",
        "Ask your administrator to check the connection (<code>qbo-connect connections list</code>).",
    ),
    FlowError.NO_CLIENT_SECRET: (
        409,
        "The connection is not ready",
        "Connection {name} has no client secret yet, so Intuit would refuse it.",
        "Set it first: <code>qbo-connect connections set-secret {name}</code>, then open a new link.",
    ),
    FlowError.CONSENT_DENIED: (
        403,
        "Connection not authorized",
        "Intuit reports that access was denied for connection {name}; nothing was changed.",
        "To connect, open a fresh authorize link and click Connect.",
    ),
    FlowError.INTUIT_ERROR: (
        400,
        "Intuit reported an error",
        "Intuit returned the error <code>{error}</code> for connection {name}; nothing was changed.",
        "Open a fresh authorize link and try again; if it repeats, check the app's settings in Intuit's developer portal.",
    ),
    FlowError.BAD_CALLBACK: (
        400,
        "Incomplete answer from Intuit",
        "The answer from Intuit lacked a valid authorization code or company ID; nothing was changed.",
        "Open a fresh authorize link and try again.",
    ),
    FlowError.STATE_UNKNOWN: (
        400,
        "This sign-in can't be completed",
        "It was already used, or it did not start here; nothing was changed.",
        "Start again from a fresh authorize link.",
    ),
    FlowError.STATE_EXPIRED: (
        400,
        "This sign-in took too long",
        "Sign-ins must be finished within minutes of starting; nothing was changed.",
        "Start again from a fresh authorize link.",
    ),
    FlowError.OTHER_BROWSER: (
        403,
        "Finish in the browser you started in",
        "This sign-in was started in another browser (or its cookie was blocked); nothing was changed.",
        "Open the authorize link and finish in the same browser, with cookies allowed for this site.",
    ),
    FlowError.EXCHANGE_REFUSED: (
        400,
        "Intuit refused the sign-in",
        "Intuit did not accept the authorization for connection {name} (<code>{error}</code>); nothing was stored.",
        "Check the client ID and secret match the app in Intuit's developer portal "
        "(<code>qbo-connect connections set-secret {name}</code>), then open a fresh link.",
    ),
    FlowError.INTUIT_UNAVAILABLE: (
        503,
        "Intuit did not answer",
        "Intuit could not be reached to finish connecting {name}; nothing was stored.",
        "Wait a minute, then open a fresh authorize link.",
    ),
    FlowError.COMPANY_MISMATCH: (
        409,
        "Wrong company chosen",
        "You chose the company with realm ID <code>{chosen}</code>, but connection {name} is for "
        "realm ID <code>{expected}</code>. Nothing was stored. Revocation of the new access at Intuit: "
        "{revocation}.",
        "Open a fresh authorize link and choose the company with realm ID <code>{expected}</code>.",
    ),
    FlowError.BUSY: (
        409,
        "The connection is busy",
        "Connection {name} is being changed by someone else right now; nothing was stored.",
        "Wait a minute, then open a fresh authorize link.",
    ),
    FlowError.STORAGE_UNAVAILABLE: (
        503,
        "Could not save the connection",
        "Intuit accepted the sign-in for {name}, but the service's storage (AWS) kept refusing to save it; "
        "nothing was stored.",
        "Wait a minute, then open a fresh authorize link.",
    ),
    FlowError.STORED_BUT_CHANGED: (
        409,
        "Check the connection",
        "Intuit accepted the sign-in for {name} and its tokens were saved, but someone else changed the connection "
        "at the same moment, so it may not be connected.",
        "Check it with <code>qbo-connect connections show {name}</code> (or Test Connection in the console); "
        "if it is not connected, open a fresh authorize link.",
    ),
    FlowError.COMPANY_BUSY: (
        409,
        "Not connected: try again shortly",
        "Connection {name} was not connected: {why}. Nothing was stored.",
        "Open a fresh authorize link {when}.",
    ),
}


def failure_page(reason: FlowError, details: dict[str, str | None] | None = None) -> Page:
    status, title, happened, next_step = _FAILURES[reason]
    values = {k: escape(str(v)) for k, v in (details or {}).items() if v is not None}
    values.setdefault("name", "this connection")
    values["name"] = f"<strong>{values['name']}</strong>"
    return _render(
        status, title, "fail", [happened.format_map(_Missing(values)), next_step.format_map(_Missing(values))]
    )


def bad_request_page() -> Page:
    return _render(
        400,
        "Bad request",
        "fail",
        [
            "The request was malformed or too large; nothing was changed.",
            "Open the authorize link again, unchanged.",
        ],
    )


def service_unavailable_page() -> Page:
    return _render(
        503,
        "The service is busy",
        "fail",
        [
            "The service could not reach its storage in time to go on (AWS kept refusing).",
            "Wait a minute, then open the authorize link again (ask for a fresh one if it has expired).",
        ],
    )


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "unknown"


# --- the app's pages for Intuit (launch, disconnect, reconnect) -------------------------------------


def launch_page(*, redirect_uri: str) -> Page:
    return _render(
        200,
        "QuickBooks connection service",
        "ok",
        [
            "This service keeps your organisation's QuickBooks Online companies connected for its "
            "accounting workflows on AWS: one consent per company, then valid access tokens for months.",
            "Connections are set up by your administrator with the command line "
            "(<code>qbo-connect connections create</code>, then <code>qbo-connect connections authorize-link</code>), "
            "who sends a company administrator the link to connect.",
            f"The redirect URI of this deployment is <code>{escape(redirect_uri)}</code>.",
            "Opening this page changes nothing.",
        ],
    )


def disconnect_page(checked: list) -> Page:
    paragraphs = ["The app is disconnected from your QuickBooks company. Workflows can no longer use it."]
    if checked:
        # Statuses only: the page is public and a realm ID no secret, so connection names stay private.
        states = ", ".join(
            f"<code>{escape(c.status)}</code> ({'checked just now' if c.checked else 'checked a moment ago'})"
            for c in checked
        )
        count = f"{len(checked)} connection{'s' if len(checked) > 1 else ''}"
        paragraphs.append(f"This service had {count} to the company. Status now: {states}.")
    paragraphs.append(
        "To connect again, ask your administrator for a fresh link "
        "(<code>qbo-connect connections authorize-link NAME</code>). You can close this window."
    )
    return _render(200, "Disconnected", "ok", paragraphs)


def reconnect_refused_page(reason: str) -> Page:
    return _render(
        404 if "no connection" in reason else 400,
        "This company cannot be reconnected here",
        "fail",
        [
            escape(reason),
            "Ask your administrator for a link (<code>qbo-connect connections authorize-link NAME</code>).",
        ],
    )
