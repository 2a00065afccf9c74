"""The emulated Intuit OAuth 2.0 server: consent, codes, strict rotation, expiries, revocation, clients."""

from __future__ import annotations

from typing import Any

import pytest
from emulator_support import ACCOUNTING, OTHER_REALM, REALM, REDIRECT_URI, FakeClock, Intuit, basic
from flask import Flask
from qbo_local.emulator import EmulatorConfig, create_app

DAY = 86_400.0
HARD_EXPIRY_HEADER = {"x-include-refresh-token-hard-expires-in": "true"}


def companyinfo(intuit: Intuit, access_token: str) -> Any:
    return intuit.api(f"/companyinfo/{REALM}", access_token)


# Consent page and decision.


def test_consent_page_shows_the_app_scopes_and_companies_in_a_scriptless_form(intuit: Intuit) -> None:
    response = intuit.http.get("/connect/oauth2", query_string=intuit.authorize_params(scope=f"{ACCOUNTING} openid"))

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<title>Connect to QuickBooks | Intuit</title>" in html
    assert "test-client" in html and ACCOUNTING in html and "openid" in html
    assert '<select name="realm_id"' in html
    assert "Sandbox Company_US_1" in html and "9341453050000002" in html
    assert '<button id="connect" type="submit">Connect</button>' in html
    assert '<button id="cancel"' in html
    assert 'action="/connect/oauth2/decision"' in html
    assert "<script" not in html
    assert "script-src" not in response.headers["Content-Security-Policy"]


def test_consent_page_escapes_a_hostile_state_and_client_id(intuit: Intuit) -> None:
    hostile = '"><script>alert(1)</script>'
    params = intuit.authorize_params(client_id=f"evil{hostile}", state=hostile)

    html = intuit.http.get("/connect/oauth2", query_string=params).get_data(as_text=True)

    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'value="&quot;&gt;&lt;script&gt;' in html


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": ""},
        {"redirect_uri": ""},
        {"redirect_uri": "not a url"},
        {"redirect_uri": "javascript:alert(1)"},
        {"redirect_uri": "https://app.example.com/cb#fragment"},
        {"response_type": "token"},
        {"scope": ""},
        {"scope": "com.intuit.quickbooks.everything"},
        {"state": ""},
    ],
)
def test_bad_authorization_request_shows_an_error_page_and_never_redirects(
    intuit: Intuit, overrides: dict[str, str]
) -> None:
    response = intuit.http.get("/connect/oauth2", query_string=intuit.authorize_params(**overrides))

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"


def test_unknown_client_is_refused_on_the_consent_page_when_registration_is_closed(clock: FakeClock) -> None:
    app = create_app(EmulatorConfig(clock=clock, open_registration=False, clients={"known": "s"}))
    http = app.test_client()

    unknown = http.get("/connect/oauth2", query_string=Intuit(http, "stranger").authorize_params())
    known = http.get("/connect/oauth2", query_string=Intuit(http, "known").authorize_params())

    assert unknown.status_code == 400
    assert "stranger" in unknown.get_data(as_text=True)
    assert known.status_code == 200


def test_connect_redirects_with_code_state_and_realm(intuit: Intuit) -> None:
    callback = intuit.decide(realm="9341453050000002")

    assert set(callback) == {"code", "state", "realmId"}
    assert callback["state"] == "state-123"
    assert callback["realmId"] == "9341453050000002"


def test_connect_keeps_the_redirect_uris_own_query(intuit: Intuit) -> None:
    form = intuit.authorize_params(redirect_uri="https://app.example.com/cb?tenant=7") | {"realm_id": REALM}

    location = intuit.http.post("/connect/oauth2/decision", data=form).headers["Location"]

    assert location.startswith("https://app.example.com/cb?tenant=7&code=")


def test_cancel_redirects_with_access_denied(intuit: Intuit) -> None:
    callback = intuit.decide(cancel=True)

    assert callback["error"] == "access_denied"
    assert callback["error_description"]
    assert callback["state"] == "state-123"
    assert "code" not in callback


def test_decision_for_an_unknown_company_is_refused(intuit: Intuit) -> None:
    form = intuit.authorize_params() | {"realm_id": "123"}

    assert intuit.http.post("/connect/oauth2/decision", data=form).status_code == 400


# Code exchange.


def test_code_exchange_returns_intuits_token_response(intuit: Intuit) -> None:
    response = intuit.exchange(intuit.decide()["code"])

    body = response.get_json()
    assert response.status_code == 200
    assert set(body) == {"token_type", "access_token", "refresh_token", "expires_in", "x_refresh_token_expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["x_refresh_token_expires_in"] == 8_726_400
    assert response.headers["Cache-Control"] == "no-store"
    assert companyinfo(intuit, body["access_token"]).status_code == 200


def test_id_token_is_returned_only_with_openid(intuit: Intuit) -> None:
    with_openid = intuit.connect(scope=f"{ACCOUNTING} openid email")
    without = intuit.connect()

    assert with_openid["id_token"].count(".") == 2
    assert "id_token" not in without


def test_client_secret_post_is_accepted(intuit: Intuit) -> None:
    code = intuit.decide()["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": intuit.client_id,
        "client_secret": intuit.secret,
    }

    response = intuit.http.post("/oauth2/v1/tokens/bearer", data=data)

    assert response.status_code == 200


def test_reused_code_is_rejected_and_revokes_what_it_issued(intuit: Intuit) -> None:
    code = intuit.decide()["code"]
    first = intuit.exchange(code).get_json()

    second = intuit.exchange(code)

    assert second.status_code == 400
    assert second.get_json() == {"error": "invalid_grant"}
    assert companyinfo(intuit, first["access_token"]).status_code == 401
    assert intuit.refresh(first["refresh_token"]).status_code == 400


def test_code_expires_after_ten_minutes(intuit: Intuit, clock: FakeClock) -> None:
    code = intuit.decide()["code"]
    clock.advance(601)

    response = intuit.exchange(code)

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_code_is_bound_to_its_redirect_uri_and_client(intuit: Intuit) -> None:
    code = intuit.decide()["code"]
    wrong_uri = intuit.token(
        {"grant_type": "authorization_code", "code": code, "redirect_uri": "https://elsewhere.example.com/cb"}
    )
    other_code = intuit.decide()["code"]
    other_client = Intuit(intuit.http, "other-client", "other-secret").exchange(other_code)

    assert wrong_uri.status_code == 400
    assert other_client.status_code == 400
    assert other_client.get_json()["error"] == "invalid_grant"


# Refresh: strict rotation, rolling and hard expiry.


def test_refresh_rotates_the_refresh_token_every_time(intuit: Intuit, tokens: dict[str, Any]) -> None:
    first = intuit.refresh(tokens["refresh_token"]).get_json()
    second = intuit.refresh(first["refresh_token"]).get_json()

    assert len({tokens["refresh_token"], first["refresh_token"], second["refresh_token"]}) == 3
    assert second["expires_in"] == 3600
    assert "id_token" not in first


def test_reusing_a_consumed_refresh_token_kills_the_whole_grant(intuit: Intuit, tokens: dict[str, Any]) -> None:
    rotated = intuit.refresh(tokens["refresh_token"]).get_json()

    replay = intuit.refresh(tokens["refresh_token"])

    assert replay.status_code == 400
    assert replay.get_json() == {"error": "invalid_grant", "error_description": "Incorrect or invalid refresh token"}
    assert intuit.refresh(rotated["refresh_token"]).status_code == 400
    assert companyinfo(intuit, rotated["access_token"]).status_code == 401
    assert companyinfo(intuit, tokens["access_token"]).status_code == 401


def test_unknown_refresh_token_is_invalid_grant(intuit: Intuit) -> None:
    response = intuit.refresh("emu-rt-never-issued")

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_refresh_token_of_another_client_is_refused_without_harm(intuit: Intuit, tokens: dict[str, Any]) -> None:
    stranger = Intuit(intuit.http, "other-client", "other-secret")

    assert stranger.refresh(tokens["refresh_token"]).status_code == 400
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200


def test_rolling_expiry_restarts_on_each_refresh(intuit: Intuit, tokens: dict[str, Any], clock: FakeClock) -> None:
    clock.advance(100 * DAY)
    rotated = intuit.refresh(tokens["refresh_token"])
    assert rotated.status_code == 200

    clock.advance(100 * DAY)  # 200 days after consent, but only 100 after the last refresh
    again = intuit.refresh(rotated.get_json()["refresh_token"])
    assert again.status_code == 200

    clock.advance(102 * DAY)
    expired = intuit.refresh(again.get_json()["refresh_token"])
    assert expired.status_code == 400
    assert expired.get_json()["error"] == "invalid_grant"


def test_with_daily_rotation_a_refresh_answers_the_same_refresh_token_until_it_is_a_day_old(
    intuit: Intuit, admin: Any, clock: FakeClock
) -> None:
    """Intuit as users see it: the same refresh token (its expiry unmoved) for about a day, then a new one,
    after which the old one is dead (the strict reading)."""
    assert admin.post("/_emulator/config", json={"refresh_token_rotation_seconds": int(DAY)}).status_code == 200
    tokens = intuit.connect()
    clock.advance(3000)
    same = intuit.refresh(tokens["refresh_token"]).get_json()
    assert same["refresh_token"] == tokens["refresh_token"] and same["access_token"] != tokens["access_token"]
    assert same["x_refresh_token_expires_in"] == tokens["x_refresh_token_expires_in"] - 3000
    clock.advance(DAY - 3000)
    rotated = intuit.refresh(same["refresh_token"]).get_json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert rotated["x_refresh_token_expires_in"] == tokens["x_refresh_token_expires_in"]  # a fresh life

    assert intuit.refresh(tokens["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert intuit.refresh(rotated["refresh_token"]).status_code == 400  # reuse killed the grant


def test_hard_expiry_is_returned_only_when_asked(intuit: Intuit, tokens: dict[str, Any], clock: FakeClock) -> None:
    clock.advance(DAY)
    plain = intuit.refresh(tokens["refresh_token"]).get_json()
    clock.advance(DAY)

    asked = intuit.refresh(plain["refresh_token"], HARD_EXPIRY_HEADER).get_json()

    assert "x_refresh_token_hard_expires_in" not in plain
    assert asked["x_refresh_token_hard_expires_in"] == 5 * 365 * 86_400 - 2 * 86_400


def test_hard_expiry_never_moves_and_ends_the_grant(clock: FakeClock) -> None:
    config = EmulatorConfig(clock=clock, hard_expiry_seconds=int(150 * DAY))
    intuit = Intuit(create_app(config).test_client())
    refresh_token = intuit.connect()["refresh_token"]

    clock.advance(100 * DAY)
    near_the_end = intuit.refresh(refresh_token, HARD_EXPIRY_HEADER).get_json()
    clock.advance(50 * DAY)
    after = intuit.refresh(near_the_end["refresh_token"])

    # The rolling expiry is capped by the hard one, and after it nothing works.
    assert near_the_end["x_refresh_token_hard_expires_in"] == int(50 * DAY)
    assert near_the_end["x_refresh_token_expires_in"] == int(50 * DAY)
    assert after.status_code == 400
    assert after.get_json()["error"] == "invalid_grant"


def test_hard_expiry_counts_from_consent_not_from_the_code_exchange(intuit: Intuit, clock: FakeClock) -> None:
    code = intuit.decide()["code"]
    clock.advance(300)

    body = intuit.exchange(code, HARD_EXPIRY_HEADER).get_json()

    assert body["x_refresh_token_hard_expires_in"] == 5 * 365 * 86_400 - 300


# Token endpoint errors.


def test_bad_client_secret_is_invalid_client(intuit: Intuit, tokens: dict[str, Any]) -> None:
    response = intuit.token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=basic(intuit.client_id, "wrong-secret"),
    )

    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid_client"}
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_missing_client_credentials_are_invalid_client(intuit: Intuit) -> None:
    response = intuit.http.post("/oauth2/v1/tokens/bearer", data={"grant_type": "refresh_token"})

    assert response.status_code == 401


def test_open_registration_learns_a_secret_on_first_use(intuit: Intuit) -> None:
    newcomer = Intuit(intuit.http, "newcomer", "first-secret")
    newcomer.connect()
    impostor = Intuit(intuit.http, "newcomer", "second-secret")

    assert impostor.exchange(impostor.decide()["code"]).status_code == 401


def test_closed_registration_accepts_only_registered_clients(clock: FakeClock) -> None:
    app = create_app(EmulatorConfig(clock=clock, open_registration=False, clients={"known": "secret"}))
    http = app.test_client()
    app.emulator.register_client("late", "late-secret")

    assert Intuit(http, "known", "secret").refresh("x").status_code == 400  # authenticated, bad token
    assert Intuit(http, "late", "late-secret").refresh("x").status_code == 400
    assert Intuit(http, "stranger", "secret").refresh("x").status_code == 401


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({}, 400, "unsupported_grant_type"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI}, 400, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "c"}, 400, "invalid_request"),
        ({"grant_type": "refresh_token"}, 400, "invalid_request"),
    ],
)
def test_malformed_token_requests(intuit: Intuit, data: dict[str, str], status: int, error: str) -> None:
    response = intuit.token(data)

    assert response.status_code == status
    assert response.get_json()["error"] == error


# Revocation.


@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
def test_revoking_either_token_kills_the_grant(intuit: Intuit, tokens: dict[str, Any], which: str) -> None:
    response = intuit.revoke(tokens[which])

    assert response.status_code == 200
    assert companyinfo(intuit, tokens["access_token"]).status_code == 401
    assert intuit.refresh(tokens["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_revoking_a_token_disconnects_the_app_from_that_company_whichever_consent_issued_it(intuit: Intuit) -> None:
    # Intuit's revocation is its "disconnect": the app's access to the company ends, not one token's.
    earlier = intuit.connect()
    later = intuit.connect()
    other_company = intuit.connect(realm=OTHER_REALM)
    other_app = Intuit(intuit.http, "other-app", "other-secret")
    other_apps_grant = other_app.connect()

    assert intuit.revoke(earlier["refresh_token"]).status_code == 200

    assert companyinfo(intuit, later["access_token"]).status_code == 401
    assert intuit.refresh(later["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert intuit.refresh(other_company["refresh_token"]).status_code == 200
    assert other_app.refresh(other_apps_grant["refresh_token"]).status_code == 200


def test_revoking_an_unknown_token_succeeds(intuit: Intuit) -> None:
    assert intuit.revoke("emu-rt-unknown").status_code == 200


def test_revocation_with_a_bad_client_is_refused(intuit: Intuit, tokens: dict[str, Any]) -> None:
    response = intuit.revoke(tokens["refresh_token"], auth=basic(intuit.client_id, "wrong"))

    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid_client"}
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200


def test_another_client_cannot_revoke_my_grant(intuit: Intuit, tokens: dict[str, Any]) -> None:
    assert Intuit(intuit.http, "other", "other-secret").revoke(tokens["refresh_token"]).status_code == 200
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200


def test_discovery_points_at_the_emulator(app: Flask) -> None:
    body = app.test_client().get("/.well-known/openid_sandbox_configuration").get_json()

    assert body["token_endpoint"] == "http://localhost/oauth2/v1/tokens/bearer"
    assert body["authorization_endpoint"].endswith("/connect/oauth2")
    assert body["revocation_endpoint"].endswith("/v2/oauth2/tokens/revoke")


def test_a_refresh_asking_for_more_scope_than_granted_is_invalid_scope_and_spends_nothing(
    intuit: Intuit, tokens: dict[str, Any]
) -> None:
    """RFC 6749 section 6: the scope of a refresh may not exceed the grant's (section 5.2: invalid_scope)."""
    wider = intuit.token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "scope": f"{ACCOUNTING} openid"}
    )
    assert (wider.status_code, wider.get_json()["error"]) == (400, "invalid_scope")

    same = intuit.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "scope": ACCOUNTING})
    assert same.status_code == 200
    assert intuit.refresh(same.get_json()["refresh_token"]).status_code == 200  # no scope: the grant's own
