"""A connection is one company: Intuit names the company (realmId) on the callback only for the company
scopes (accounting, payment). A connection asking for OpenID scopes alone could never be connected."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from qbo_connect import intuit
from qbo_connect.domain.administration import NewConnection
from qbo_connect.errors import InvalidInput
from test_client_emulator import APP_URL, CLIENT_ID, CLIENT_SECRET, REALM, world  # noqa: F401 - the fixture

OPENID_ONLY = ("openid", "email")


def _intuits_callback(emulator_url: str, scopes: tuple[str, ...]) -> dict[str, str]:
    """What Intuit's consent hands the browser back for these scopes (the emulator, INTUIT.md "Callback")."""
    form = {
        "client_id": CLIENT_ID,
        "redirect_uri": f"{APP_URL}/oauth/callback",
        "response_type": "code",
        "scope": " ".join(scopes),
        "state": "s" * 22,
        "realm_id": REALM,
    }
    decision = requests.post(f"{emulator_url}/connect/oauth2/decision", data=form, allow_redirects=False, timeout=10)
    assert decision.status_code == 302
    return {key: values[0] for key, values in parse_qs(urlsplit(decision.headers["Location"]).query).items()}


def test_a_connection_without_a_company_scope_is_refused_because_intuit_names_no_company_for_it(world) -> None:  # noqa: F811
    assert "realmId" not in _intuits_callback(world.emulator.url, OPENID_ONLY)
    before = [c.connection_id for c in world.services.administration.list()]

    with pytest.raises(InvalidInput) as raised:
        world.services.administration.create(
            NewConnection(name="Who Am I", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scopes=OPENID_ONLY)
        )

    assert intuit.ACCOUNTING_SCOPE in raised.value.message
    assert [c.connection_id for c in world.services.administration.list()] == before


def test_the_payment_scope_alone_names_the_company(world) -> None:  # noqa: F811
    assert _intuits_callback(world.emulator.url, (intuit.PAYMENT_SCOPE,))["realmId"] == REALM
    created = world.services.administration.create(
        NewConnection(
            name="Payments Books", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scopes=(intuit.PAYMENT_SCOPE,)
        )
    )
    assert created.scopes == (intuit.PAYMENT_SCOPE,)
