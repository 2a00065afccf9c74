"""Every answer a browser can get from the service, over the local stack's HTTP, carries the headers that keep it
from being framed, sniffed, sent on as a referrer, cached where it holds anything secret, or fetched over plain
http once the browser has seen it over https."""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

import pytest
import requests
from stack_support import aws_client, sign_in_token

pytestmark = pytest.mark.e2e

A_YEAR = 365 * 24 * 3600
# The console's static files are the same for everyone; every other answer may hold a link, a state or a name.
STATIC = {"/", "/console/app.js"}


def _answers(stack) -> dict[str, requests.Response]:
    api = stack.discovery["api_url"]
    token = sign_in_token(stack)
    admin = {"Authorization": f"Bearer {token}"}
    pool = stack.discovery["environment"]["QBO_ADMIN_USER_POOL_ID"]
    cognito = aws_client(stack, "cognito-idp")
    cognito.admin_create_user(UserPoolId=pool, Username="erin", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool, Username="erin", Password="Erins-Password-2024", Permanent=True)
    outsider = {"Authorization": f"Bearer {sign_in_token(stack, username='erin', password='Erins-Password-2024')}"}
    realm = str(9_341_453_050_200_000 + secrets.randbelow(99_999))
    pinned = requests.post(
        f"{api}/admin/connections",
        headers=admin,
        json={"name": f"Pinned {realm[-5:]}", "client_id": "ABpinned12345", "realm_id": realm},
        timeout=10,
    )
    assert pinned.status_code == 201, pinned.text
    link = requests.post(f"{api}/admin/connections/demo/authorize-link", headers=admin, json={}, timeout=10)
    authorize = link.json()["authorize_url"]

    def get(url: str, **kwargs) -> requests.Response:
        return requests.get(url, allow_redirects=False, timeout=30, **kwargs)

    return {
        "console page": get(f"{api}/"),
        "console script": get(f"{api}/console/app.js"),
        "console configuration": get(f"{api}/console/config.json"),
        "console file not found": get(f"{api}/console/nothing.js"),
        "authorize redirect": get(authorize),
        "authorize refused": get(authorize.replace("sig=", "sig=X")),
        "callback refused": get(f"{api}/oauth/callback?state=unknown&code=AB11x&realmId=1"),
        "launch page": get(f"{api}/intuit/launch"),
        "disconnect page": get(f"{api}/intuit/disconnect?realmId={realm}"),
        "reconnect redirect": get(f"{api}/intuit/reconnect?realmId={realm}"),
        "reconnect refused": get(f"{api}/intuit/reconnect"),
        "admin list": get(f"{api}/admin/connections", headers=admin),
        "admin authorize link": link,
        "admin not found": get(f"{api}/admin/connections/nothing-here", headers=admin),
        "admin bad request": requests.post(f"{api}/admin/connections", headers=admin, data="{", timeout=10),
        "admin outside the group": get(f"{api}/admin/connections", headers=outsider),
    }


def test_every_answer_to_a_browser_carries_the_headers_that_protect_it(local_stack):
    answers = _answers(local_stack)
    assert answers["authorize redirect"].status_code == 302
    assert answers["reconnect redirect"].status_code == 302
    assert answers["admin outside the group"].status_code == 403

    for what, answer in answers.items():
        headers = answer.headers
        assert headers.get("X-Content-Type-Options") == "nosniff", what
        assert headers.get("Referrer-Policy") == "no-referrer", what
        policy = headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in policy, what
        assert "default-src 'none'" in policy, what  # nothing loads or runs unless the policy names it
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, what
        # The deployed API answers over https only: a year of HSTS keeps the browser from ever trying plain http
        # (where a network in the middle could answer). Browsers ignore it over the local stack's http.
        transport = re.fullmatch(r"max-age=(\d+)(; ?includeSubDomains)?", headers.get("Strict-Transport-Security", ""))
        assert transport and int(transport.group(1)) >= A_YEAR, (what, headers.get("Strict-Transport-Security"))
        if urlsplit(answer.url).path not in STATIC:
            assert headers.get("Cache-Control") == "no-store", what
