"""The consent page and the error page: static HTML, every value escaped, no script at all.

The page must work with JavaScript disabled, so Connect and Cancel are both plain submit buttons of one
form; Cancel carries name="cancel" so the decision endpoint can tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

from .facts import CONSENT_PAGE_TITLE, DECISION_PATH

# Inline styles only: a CSP with no script source makes any injected script inert as well.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"

_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; background: #f4f5f8; color: #393a3d; margin: 0; }
main { max-width: 30rem; margin: 3rem auto; background: #fff; padding: 2rem; border-radius: 8px; }
h1 { font-size: 1.4rem; } .brand { color: #2ca01c; font-weight: bold; } code { word-break: break-all; }
.actions { margin-top: 1.5rem; display: flex; gap: 1rem; }
button { padding: .6rem 1.4rem; border-radius: 4px; border: 1px solid #8d9096; background: #fff; }
#connect { background: #2ca01c; color: #fff; border-color: #2ca01c; }
"""


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><main><p class="brand">intuit quickbooks (emulator)</p>{body}</main></body></html>\n'
    )


def consent_page(
    *,
    client_id: str,
    scopes: Iterable[str],
    companies: Iterable[tuple[str, str]],
    hidden: Mapping[str, str],
    signed_in_as: str = "",
) -> str:
    """`hidden` carries the authorization request's parameters through the form, unchanged."""
    scope_items = "".join(f"<li><code>{escape(scope)}</code></li>" for scope in scopes)
    options = "".join(
        f'<option value="{escape(realm_id)}">{escape(name)} ({escape(realm_id)})</option>'
        for realm_id, name in companies
    )
    inputs = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">' for name, value in hidden.items()
    )
    body = (
        f"<h1>Connect <code>{escape(client_id)}</code> to QuickBooks</h1>"
        f'<p id="signed-in-as">Signed in as {escape(signed_in_as)}</p>'
        "<p>This app is asking for access to:</p>"
        f'<ul id="scopes">{scope_items}</ul>'
        f'<form method="post" action="{escape(DECISION_PATH)}">{inputs}'
        '<p><label for="realm_id">Company</label> '
        f'<select name="realm_id" id="realm_id">{options}</select></p>'
        '<div class="actions">'
        '<button id="connect" type="submit">Connect</button>'
        '<button id="cancel" type="submit" name="cancel" value="cancel">Cancel</button>'
        "</div></form>"
    )
    return _page(CONSENT_PAGE_TITLE, body)


def error_page(message: str) -> str:
    body = (
        "<h1>Something went wrong</h1>"
        f'<p id="error">{escape(message)}</p>'
        "<p>Check the app's client id, redirect URI and scopes, then start the connection again.</p>"
    )
    return _page("Error | Intuit", body)
