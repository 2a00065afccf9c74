"""Authorize links: only a link signed for this connection, unchanged and unexpired, starts a consent flow."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from fakes import API_BASE_URL, FakeClock, InMemorySigningKeys
from qbo_connect.domain.authorization import AuthorizeLinks, FlowError, LinkRejected

LIFETIME = 1800


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys() -> InMemorySigningKeys:
    return InMemorySigningKeys()


@pytest.fixture
def links(keys, clock) -> AuthorizeLinks:
    return AuthorizeLinks(keys, clock, lifetime_seconds=LIFETIME)


def _params(link: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


def _rejection(links: AuthorizeLinks, connection_id: str, params: dict[str, str | None]) -> FlowError:
    with pytest.raises(LinkRejected) as raised:
        links.verify(connection_id, exp=params.get("exp"), kid=params.get("kid"), sig=params.get("sig"))
    return raised.value.reason


def test_a_fresh_link_points_at_the_connections_authorize_route_and_verifies(links):
    link = links.create(API_BASE_URL + "/", "qbc-1")

    assert link.startswith(f"{API_BASE_URL}/connections/qbc-1/authorize?")
    links.verify("qbc-1", **_params(link))


def test_a_tampered_signature_is_rejected(links):
    params = _params(links.create(API_BASE_URL, "qbc-1"))
    sig = params["sig"]
    params["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]

    assert _rejection(links, "qbc-1", params) is FlowError.LINK_INVALID


def test_a_pushed_back_expiry_is_rejected(links):
    params = _params(links.create(API_BASE_URL, "qbc-1"))
    params["exp"] = str(int(params["exp"]) + 86400)

    assert _rejection(links, "qbc-1", params) is FlowError.LINK_INVALID


def test_a_link_for_another_connection_is_rejected(links):
    params = _params(links.create(API_BASE_URL, "qbc-1"))

    assert _rejection(links, "qbc-2", params) is FlowError.LINK_INVALID


def test_a_link_is_rejected_once_it_has_expired(links, clock):
    params = _params(links.create(API_BASE_URL, "qbc-1"))
    clock.advance(LIFETIME - 1)
    links.verify("qbc-1", **params)

    clock.advance(2)

    assert _rejection(links, "qbc-1", params) is FlowError.LINK_EXPIRED


def test_an_unknown_key_id_is_rejected(links):
    params = _params(links.create(API_BASE_URL, "qbc-1"))
    params["kid"] = "k9"

    assert _rejection(links, "qbc-1", params) is FlowError.LINK_INVALID


@pytest.mark.parametrize(
    "broken",
    [
        {"exp": None},
        {"kid": None},
        {"sig": None},
        {"exp": "soon"},
        {"exp": "-1"},
        {"sig": "x" * 101},
        {"kid": "k" * 65},
    ],
)
def test_incomplete_or_malformed_links_are_rejected(links, broken):
    params = {**_params(links.create(API_BASE_URL, "qbc-1")), **broken}

    assert _rejection(links, "qbc-1", params) is FlowError.LINK_INVALID


def test_links_signed_before_a_key_rotation_still_verify(links, keys):
    old = _params(links.create(API_BASE_URL, "qbc-1"))

    keys.rotate("k2")
    new = _params(links.create(API_BASE_URL, "qbc-1"))

    assert new["kid"] == "k2"
    links.verify("qbc-1", **old)
    links.verify("qbc-1", **new)


def test_a_link_signed_with_a_retired_key_is_rejected():
    clock = FakeClock()
    old_keys, new_keys = InMemorySigningKeys(), InMemorySigningKeys()
    params = _params(AuthorizeLinks(old_keys, clock, lifetime_seconds=LIFETIME).create(API_BASE_URL, "qbc-1"))

    # Same key ID, different key: a deployment that replaced the key without keeping the old one.
    assert _rejection(AuthorizeLinks(new_keys, clock, lifetime_seconds=LIFETIME), "qbc-1", params) is (
        FlowError.LINK_INVALID
    )
