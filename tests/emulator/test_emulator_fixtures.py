"""The emulator's bodies must have exactly the key structure of the Intuit-shaped fixtures.

tests/fixtures/intuit holds bodies shaped as Intuit documents them (fake values). Comparing key trees,
with value kinds, keeps the emulator from drifting away from what Intuit sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from emulator_support import ACCOUNTING, FIXTURES, REALM, FakeClock, Intuit, basic, fixture, key_tree
from flask import Flask

HARD_EXPIRY_HEADER = {"x-include-refresh-token-hard-expires-in": "true"}


def token_response(intuit: Intuit, clock: FakeClock, app: Flask) -> Any:
    return intuit.exchange(intuit.decide()["code"])


def token_response_with_hard_expiry(intuit: Intuit, clock: FakeClock, app: Flask) -> Any:
    return intuit.refresh(intuit.connect()["refresh_token"], HARD_EXPIRY_HEADER)


def invalid_grant(intuit: Intuit, clock: FakeClock, app: Flask) -> Any:
    return intuit.refresh("emu-rt-unknown")


def invalid_client(intuit: Intuit, clock: FakeClock, app: Flask) -> Any:
    return intuit.token({"grant_type": "refresh_token", "refresh_token": "x"}, auth=basic("", ""))


def companyinfo(intuit: Intuit, clock: FakeClock, app: Flask) -> Any:
    return intuit.api(f"/companyinfo/{REALM}", intuit.connect()["access_token"])


def fault_401(intuit: Intuit, clock: FakeClock, app: Flask) -> Any:
    access_token = intuit.connect()["access_token"]
    clock.advance(3601)
    return intuit.api(f"/companyinfo/{REALM}", access_token)


def fault_429(intuit: Intuit, clock: FakeClock, app: Flask) -> Any:
    app.emulator.update_config({"rate_limit_per_second": 1})
    access_token = intuit.connect()["access_token"]
    intuit.api(f"/companyinfo/{REALM}", access_token)
    return intuit.api(f"/companyinfo/{REALM}", access_token)


def stale_object(intuit: Intuit, clock: FakeClock, app: Flask) -> Any:
    body = {"Id": "1", "SyncToken": "5", "sparse": True, "Notes": "late"}
    return intuit.api("/customer", intuit.connect()["access_token"], method="POST", json=body)


def query_customers(intuit: Intuit, clock: FakeClock, app: Flask) -> Any:
    return intuit.query("select * from Customer startposition 1 maxresults 10", intuit.connect()["access_token"])


def userinfo(intuit: Intuit, clock: FakeClock, app: Flask) -> Any:
    return intuit.userinfo(intuit.connect(scope=f"{ACCOUNTING} openid email profile")["access_token"])


PRODUCERS: dict[str, Callable[[Intuit, FakeClock, Flask], Any]] = {
    "token_response.json": token_response,
    "token_response_with_hard_expiry.json": token_response_with_hard_expiry,
    "invalid_grant.json": invalid_grant,
    "invalid_client.json": invalid_client,
    "companyinfo.json": companyinfo,
    "fault_401.json": fault_401,
    "fault_429.json": fault_429,
    "stale_object.json": stale_object,
    "query_customers.json": query_customers,
    "userinfo.json": userinfo,
}


@pytest.mark.parametrize("name", sorted(PRODUCERS))
def test_emulator_body_has_the_fixtures_key_structure(name: str, intuit: Intuit, clock: FakeClock, app: Flask) -> None:
    response = PRODUCERS[name](intuit, clock, app)

    assert key_tree(response.get_json()) == key_tree(fixture(name))


def test_every_fixture_is_checked() -> None:
    assert {path.name for path in FIXTURES.glob("*.json")} == set(PRODUCERS)


def test_key_tree_sees_a_missing_key_and_a_changed_kind() -> None:
    assert key_tree({"a": 1, "b": [{"c": "x"}]}) != key_tree({"a": 1, "b": [{"c": "x", "d": 1}]})
    assert key_tree({"a": 1}) != key_tree({"a": "1"})
    assert key_tree({"a": True}) != key_tree({"a": 1})
