"""The emulated Intuit's OpenID Connect: who is signed in, signed ID tokens, their key set, and userinfo."""

from __future__ import annotations

import pytest
from emulator_support import ACCOUNTING, FakeClock, Intuit
from flask import Flask
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet, RSAKey
from qbo_connect import intuit as intuit_facts

OPENID = f"{ACCOUNTING} openid email profile"


def _verified_claims(app: Flask, id_token: str) -> dict:
    keys = KeySet.import_key_set(app.test_client().get("/op/v1/jwks").get_json())
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    return dict(token.claims)


def test_the_id_token_is_signed_with_a_published_key_and_names_the_person_userinfo_names(
    app: Flask, intuit: Intuit, clock: FakeClock
) -> None:
    tokens = intuit.connect(scope=OPENID)

    claims = _verified_claims(app, tokens["id_token"])
    person = intuit.userinfo(tokens["access_token"]).get_json()

    assert claims["iss"] == intuit_facts.OPENID_ISSUER
    assert claims["aud"] == [intuit.client_id]
    assert claims["exp"] == int(clock()) + 3600
    assert claims["sub"] == person["sub"]
    assert person == {
        "sub": claims["sub"],
        "email": "admin@sandbox-company.example",
        "emailVerified": True,
        "givenName": "Sandbox",
        "familyName": "Admin",
    }


def test_a_tampered_or_foreign_id_token_fails_verification(app: Flask, intuit: Intuit) -> None:
    id_token = intuit.connect(scope=OPENID)["id_token"]
    header, payload, signature = id_token.split(".")
    keys = KeySet.import_key_set(app.test_client().get("/op/v1/jwks").get_json())

    with pytest.raises(BadSignatureError):
        jwt.decode(f"{header}.{payload[:-4]}AAAA.{signature}", keys, algorithms=["RS256"])
    stranger = RSAKey.generate_key(2048, parameters={"kid": keys.keys[0].kid})  # same kid, other key
    forged = jwt.encode({"alg": "RS256", "kid": stranger.kid}, {"sub": "x"}, stranger)
    with pytest.raises(BadSignatureError):
        jwt.decode(forged, keys, algorithms=["RS256"])


def test_userinfo_shares_only_what_the_scopes_allow(intuit: Intuit) -> None:
    just_openid = intuit.connect(scope=f"{ACCOUNTING} openid")

    body = intuit.userinfo(just_openid["access_token"]).get_json()

    assert set(body) == {"sub"}


def test_userinfo_needs_the_openid_scope_and_a_valid_token(intuit: Intuit, clock: FakeClock) -> None:
    accounting_only = intuit.connect()
    with_openid = intuit.connect(scope=OPENID)

    refused = intuit.userinfo(accounting_only["access_token"])
    assert (refused.status_code, refused.get_json()) == (403, {"error": "insufficient_scope"})
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'
    assert intuit.userinfo("emu-at-unknown").status_code == 401
    clock.advance(3600)
    assert intuit.userinfo(with_openid["access_token"]).status_code == 401


def test_whoever_is_signed_in_when_connect_is_clicked_is_the_grant_s_person(app: Flask, intuit: Intuit) -> None:
    admin = app.test_client()
    first = intuit.connect(scope=OPENID)
    signed_in = admin.post("/_emulator/person", json={"email": "bookkeeper@acme.example", "given_name": "Bo"})
    second = intuit.connect(scope=OPENID)

    assert signed_in.get_json()["email"] == "bookkeeper@acme.example"
    assert intuit.userinfo(second["access_token"]).get_json()["email"] == "bookkeeper@acme.example"
    assert _verified_claims(app, second["id_token"])["sub"] == signed_in.get_json()["sub"]
    assert intuit.userinfo(first["access_token"]).get_json()["email"] == "admin@sandbox-company.example"
    page = intuit.http.get("/connect/oauth2", query_string=intuit.authorize_params(scope=OPENID))
    assert "Signed in as bookkeeper@acme.example" in page.get_data(as_text=True)


def test_a_person_s_subject_is_stable_and_their_own(app: Flask) -> None:
    admin = app.test_client()
    a = admin.post("/_emulator/person", json={"email": "a@acme.example"}).get_json()["sub"]
    b = admin.post("/_emulator/person", json={"email": "b@acme.example"}).get_json()["sub"]
    again = admin.post("/_emulator/person", json={"email": "A@acme.example"}).get_json()["sub"]
    assert a != b and a == again
    assert admin.post("/_emulator/person", json={}).status_code == 400


def test_userinfo_faults_are_injected_like_the_other_groups(app: Flask, intuit: Intuit) -> None:
    tokens = intuit.connect(scope=OPENID)
    app.emulator.faults.inject("userinfo", "http_503", times=1)

    assert intuit.userinfo(tokens["access_token"]).status_code == 503
    assert intuit.userinfo(tokens["access_token"]).status_code == 200
    assert app.emulator.stats.calls("userinfo") == 2


def test_discovery_points_at_the_userinfo_endpoint_and_the_key_set(app: Flask) -> None:
    body = app.test_client().get("/.well-known/openid_configuration").get_json()

    assert body["issuer"] == intuit_facts.OPENID_ISSUER
    assert body["userinfo_endpoint"] == "http://localhost/v1/openid_connect/userinfo"
    assert body["jwks_uri"] == "http://localhost/op/v1/jwks"
    assert body["id_token_signing_alg_values_supported"] == ["RS256"]
