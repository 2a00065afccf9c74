"""The local stack's JWT authorizer refuses what API Gateway's refuses (its documented claim checks: kid, iss,
aud or client_id, exp, nbf, iat), or a test built on the local stack proves less than it claims."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from qbo_local.authorizers import JwtAuthorizer, Refused, SignedRequest

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_pool"
CLIENT = "console-client"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "pool-key-1"}, private=True)


@pytest.fixture
def authorizer(signing_key: RSAKey) -> JwtAuthorizer:
    return JwtAuthorizer(ISSUER, (CLIENT,), "http://unused/jwks.json", clock=lambda: NOW, _keys=KeySet([signing_key]))


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": CLIENT, "sub": "u-1", "token_use": "id", "iat": NOW - 60, "exp": NOW + 3600}
    return {k: v for k, v in (base | changes).items() if v is not None}


def request_with(token: str) -> SignedRequest:
    return SignedRequest("GET", "https://api.example/admin/connections", [("Authorization", f"Bearer {token}")], b"")


def signed(key: RSAKey, payload: dict[str, Any], *, kid: str | None = "pool-key-1") -> str:
    header = {"alg": "RS256"} | ({"kid": kid} if kid else {})
    return jwt.encode(header, payload, key)


def test_a_token_from_the_pool_for_the_console_is_let_through(authorizer, signing_key):
    vouched = authorizer.authorize(request_with(signed(signing_key, claims())))
    assert vouched["jwt"]["claims"]["sub"] == "u-1"


@pytest.mark.parametrize(
    ("why", "payload", "kid"),
    [
        ("no kid in the header", claims(), None),
        ("a kid the pool's key set does not have", claims(), "another-key"),
        ("issued in the future", claims(iat=NOW + 600), "pool-key-1"),
        ("no iat", claims(iat=None), "pool-key-1"),
        ("an audience list holding no string", claims(aud=[{"client": CLIENT}]), "pool-key-1"),
        ("another audience", claims(aud="other-client"), "pool-key-1"),
        ("expired", claims(exp=NOW - 1), "pool-key-1"),
        ("not valid yet", claims(nbf=NOW + 600), "pool-key-1"),
    ],
)
def test_a_token_api_gateway_would_refuse_is_refused_with_a_401(authorizer, signing_key, why, payload, kid):
    with pytest.raises(Refused) as refused:
        authorizer.authorize(request_with(signed(signing_key, payload, kid=kid)))
    assert refused.value.status == 401, why
