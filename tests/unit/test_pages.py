"""The pages a person sees at the end of the consent flow: a status, what happened, what to do, nothing executable."""

from __future__ import annotations

import base64
import hashlib
import html
import re

import pytest
from qbo_connect.domain.app_links import CheckedConnection
from qbo_connect.domain.authorization import FlowError
from qbo_connect.pages import SECURITY_HEADERS, bad_request_page, connected_page, disconnect_page, failure_page

HOSTILE = '<script>alert("x")</script>'


def _paragraphs(html: str) -> list[str]:
    return re.findall(r"<p>(.*?)</p>", html)


@pytest.mark.parametrize("reason", list(FlowError))
def test_every_failure_has_an_error_status_and_says_what_happened_and_what_to_do(reason):
    page = failure_page(
        reason,
        {
            "name": "Acme Books",
            "error": "invalid_scope",
            "expected": "1",
            "chosen": "2",
            "revocation": "revoked",
            "why": "another connection of this service is being connected to the same company right now",
            "when": "in a minute",
        },
    )

    assert 400 <= page.status <= 599
    happened, next_step = _paragraphs(page.html)
    assert happened and next_step
    assert "unknown" not in page.html  # every placeholder was filled
    assert f"<title>{html.escape(page.title)}" in page.html


@pytest.mark.parametrize("reason", list(FlowError))
def test_a_failure_page_without_details_still_reads_sensibly(reason):
    page = failure_page(reason)

    body = page.html.split("<body>")[1]
    assert "{" not in body and "}" not in body  # no placeholder left unfilled
    assert all(_paragraphs(page.html))


@pytest.mark.parametrize("field", ["name", "error", "expected", "chosen", "revocation", "why", "when"])
def test_html_in_details_is_escaped(field):
    reason = FlowError.INTUIT_ERROR
    if field in {"expected", "chosen", "revocation"}:
        reason = FlowError.COMPANY_MISMATCH
    elif field in {"why", "when"}:
        reason = FlowError.COMPANY_BUSY
    page = failure_page(reason, {field: HOSTILE})

    assert "<script>" not in page.html
    assert "&lt;script&gt;" in page.html


def test_html_in_the_company_name_is_escaped_on_the_success_page():
    page = connected_page(name="Acme Books", company_name=HOSTILE, realm_id="9341453050000001")

    assert page.status == 200
    assert "<script>" not in page.html
    assert "&lt;script&gt;" in page.html
    assert "9341453050000001" in page.html


def test_a_malformed_request_gets_a_400_page():
    page = bad_request_page()

    assert page.status == 400
    assert len(_paragraphs(page.html)) == 2


def test_pages_are_served_with_headers_that_forbid_scripts_framing_sniffing_referrers_and_caching():
    csp = SECURITY_HEADERS["Content-Security-Policy"]

    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"
    assert SECURITY_HEADERS["Cache-Control"] == "no-store"
    assert SECURITY_HEADERS["Content-Type"].startswith("text/html")


def test_the_inline_style_is_the_one_the_policy_allows():
    page = connected_page(name="Acme Books", company_name=None, realm_id="1").html
    style = re.search(r"<style>(.*?)</style>", page).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()

    assert f"'sha256-{digest}'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert "<script" not in page


def test_the_public_disconnect_page_names_no_connection_to_whoever_knows_the_realm_id():
    # The URL is public and a realm ID is no secret; connection names are the deployment's own business.
    checked = [
        CheckedConnection("Acme payroll export", "needs_reauthorization", checked=True),
        CheckedConnection("Acme month-end close", "connected", checked=False),
    ]

    page = disconnect_page(checked)

    assert "Acme" not in page.html
    assert "2 connections" in page.html
    assert "<code>needs_reauthorization</code> (checked just now)" in page.html
    assert "<code>connected</code> (checked a moment ago)" in page.html
