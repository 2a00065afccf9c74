"""The console's files, served by the service itself: a page, a script, a style sheet and its configuration.

Why a function rather than static files the template deploys: an HTTP API cannot serve S3 objects without
CloudFront or a proxy in front; and the page needs this deployment's user pool, app client and sign-in
endpoint, which a function reads from its environment. Served from the API's own origin, the page calls the
admin API without CORS, and its Content-Security-Policy can say 'self'. The four files are about 40 kB and
are cached by the browser for five minutes.

Nothing here is secret: the configuration names the app client (public, no secret) and Cognito's endpoint.
Every admin call still needs the signed-in person's token.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from qbo_connect.pages import TRANSPORT_SECURITY
from qbo_connect.records import record
from qbo_connect.settings import Settings

ASSETS = Path(__file__).with_name("console_assets")
CONSOLE_PREFIX = "/console/"
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8", "no-cache"),
    "/console/app.js": ("app.js", "text/javascript; charset=utf-8", "max-age=300"),
    "/console/srp.js": ("srp.js", "text/javascript; charset=utf-8", "max-age=300"),
    "/console/app.css": ("app.css", "text/css; charset=utf-8", "max-age=300"),
}


@record
class Asset:
    status: int
    content_type: str
    body: str
    cache_control: str = "no-store"


def security_headers(settings: Settings) -> dict[str, str]:
    """No inline script or style, nothing from elsewhere but Cognito's sign-in endpoint, never framed."""
    sign_in = urlsplit(settings.cognito_sign_in_url)
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src 'self' {sign_in.scheme}://{sign_in.netloc}; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        **TRANSPORT_SECURITY,
    }


@cache
def _read(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def console_config(settings: Settings) -> dict[str, str]:
    return {
        "client_id": settings.admin_console_client_id,
        "user_pool_id": settings.admin_user_pool_id,
        "cognito_url": settings.cognito_sign_in_url,
        "api_base": "/admin",
    }


def asset(path: str, settings: Settings) -> Asset:
    if path == "/console/config.json":
        return Asset(200, "application/json", json.dumps(console_config(settings)))
    known = _FILES.get(path)
    if known is None:
        return Asset(404, "text/plain; charset=utf-8", "Not found")
    name, content_type, cache_control = known
    return Asset(200, content_type, _read(name), cache_control)
