"""Fault knobs, call counters and the rate limiter, driven in-process with a fake clock and sleep."""

from __future__ import annotations

from typing import Any

import pytest
from emulator_support import REALM, FakeClock, FakeSleep, Intuit
from flask import Flask
from qbo_local.emulator import EmulatorConfig, create_app
from qbo_local.emulator.common import EmulatedConnectionReset
from qbo_local.emulator.ratelimit import Limits, RateLimiter

Tokens = dict[str, Any]


def companyinfo(intuit: Intuit, tokens: Tokens) -> Any:
    return intuit.api(f"/companyinfo/{REALM}", tokens["access_token"])


# Faults on the token endpoint.


@pytest.mark.parametrize(
    ("kind", "status"),
    [("http_500", 500), ("http_503", 503), ("http_429", 429), ("invalid_grant", 400), ("invalid_client", 401)],
)
def test_token_fault_answers_once_then_the_real_thing(
    app: Flask, intuit: Intuit, tokens: Tokens, kind: str, status: int
) -> None:
    app.emulator.faults.inject("token", kind)

    faulty = intuit.refresh(tokens["refresh_token"])
    real = intuit.refresh(tokens["refresh_token"])

    assert faulty.status_code == status
    assert real.status_code == 200  # the fault did not consume the refresh token


def test_injected_429_carries_retry_after_and_the_throttle_body(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    app.emulator.faults.inject("token", "http_429", retry_after=5)

    response = intuit.refresh(tokens["refresh_token"])

    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["Fault"]["Error"][0]["code"] == "003001"


def test_injected_invalid_grant_does_not_kill_the_grant(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    app.emulator.faults.inject("token", "invalid_grant")

    assert intuit.refresh(tokens["refresh_token"]).get_json() == {"error": "invalid_grant"}
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200


def test_fault_for_next_n_requests(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    app.emulator.faults.inject("token", "http_503", times=2)

    statuses = [intuit.refresh(tokens["refresh_token"]).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]


def test_fault_until_cleared(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    app.emulator.faults.inject("token", "http_500", times=None)

    statuses = [intuit.refresh(tokens["refresh_token"]).status_code for _ in range(4)]
    app.emulator.faults.clear("token")

    assert statuses == [500] * 4
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200


def test_fault_can_target_one_grant_type(app: Flask, intuit: Intuit) -> None:
    app.emulator.faults.inject("token", "http_503", grant_type="refresh_token")

    tokens = intuit.connect()  # the code exchange is untouched

    assert intuit.refresh(tokens["refresh_token"]).status_code == 503


def test_timeout_stalls_then_still_rotates_the_token(
    app: Flask, intuit: Intuit, tokens: Tokens, sleep: FakeSleep
) -> None:
    app.emulator.faults.inject("token", "timeout", seconds=125)

    late = intuit.refresh(tokens["refresh_token"])

    # The client gave up long ago; the token it sent is now consumed and the new one never arrived.
    assert sleep.calls == [125]
    assert late.status_code == 200
    assert intuit.refresh(tokens["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_timeout_without_processing_answers_504_and_changes_nothing(
    app: Flask, intuit: Intuit, tokens: Tokens, sleep: FakeSleep
) -> None:
    app.emulator.faults.inject("token", "timeout", seconds=130, process=False)

    assert intuit.refresh(tokens["refresh_token"]).status_code == 504
    assert sleep.calls == [130]
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200


def test_delay_uses_the_injected_sleep(app: Flask, intuit: Intuit, tokens: Tokens, sleep: FakeSleep) -> None:
    app.emulator.faults.set_delay("api", 2.5)

    companyinfo(intuit, tokens)
    intuit.refresh(tokens["refresh_token"])

    assert sleep.calls == [2.5]


def test_connection_reset_in_process_raises(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    app.emulator.faults.inject("token", "connection_reset")

    with pytest.raises(EmulatedConnectionReset):
        intuit.refresh(tokens["refresh_token"])
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("invalid_client", 401), ("http_429", 429)])
def test_revoke_faults(app: Flask, intuit: Intuit, tokens: Tokens, kind: str, status: int) -> None:
    app.emulator.faults.inject("revoke", kind)

    assert intuit.revoke(tokens["refresh_token"]).status_code == status
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "fault_type"),
    [
        ("http_500", 500, "SystemFault"),
        ("http_429", 429, "SERVICE"),
        ("invalid_grant", 401, "AUTHENTICATION"),
        ("invalid_client", 401, "AUTHENTICATION"),
    ],
)
def test_api_faults(app: Flask, intuit: Intuit, tokens: Tokens, kind: str, status: int, fault_type: str) -> None:
    app.emulator.faults.inject("api", kind)

    faulty = companyinfo(intuit, tokens)

    assert faulty.status_code == status
    assert faulty.get_json()["Fault"]["type"] == fault_type
    assert faulty.headers["intuit_tid"]
    assert companyinfo(intuit, tokens).status_code == 200


def test_api_503_is_an_html_page(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    app.emulator.faults.inject("api", "http_503")

    response = companyinfo(intuit, tokens)

    assert response.status_code == 503
    assert response.mimetype == "text/html"


@pytest.mark.parametrize(("mode", "expected"), [("header", False), ("always", True), ("never", False)])
def test_include_hard_expiry_knob_without_the_header(
    app: Flask, intuit: Intuit, tokens: Tokens, mode: str, expected: bool
) -> None:
    app.emulator.faults.include_hard_expiry = mode

    body = intuit.refresh(tokens["refresh_token"]).get_json()

    assert ("x_refresh_token_hard_expires_in" in body) is expected


def test_never_include_hard_expiry_ignores_the_header(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    app.emulator.faults.include_hard_expiry = "never"

    body = intuit.refresh(tokens["refresh_token"], {"x-include-refresh-token-hard-expires-in": "true"}).get_json()

    assert "x_refresh_token_hard_expires_in" not in body


def test_bad_fault_names_are_refused(app: Flask) -> None:
    with pytest.raises(ValueError):
        app.emulator.faults.inject("token", "meteor_strike")
    with pytest.raises(ValueError):
        app.emulator.faults.inject("billing", "http_500")


# Counters.


def test_counters_count_calls_per_endpoint_and_grant_type(app: Flask, intuit: Intuit) -> None:
    tokens = intuit.connect()
    intuit.refresh(tokens["refresh_token"])
    companyinfo(intuit, tokens)
    intuit.query("select * from Customer", tokens["access_token"])
    intuit.revoke(tokens["access_token"])

    stats = app.emulator.stats
    assert stats.grant_type("refresh_token") == 1
    assert stats.grant_type("authorization_code") == 1
    assert stats.snapshot() == {
        "calls": {"decision": 1, "token": 2, "api": 2, "revoke": 1},
        "grant_types": {"authorization_code": 1, "refresh_token": 1},
        "api_resources": {"companyinfo": 1, "query": 1},
    }


def test_counters_include_calls_that_failed(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    app.emulator.faults.inject("token", "http_503")

    intuit.refresh(tokens["refresh_token"])
    intuit.refresh("bogus")

    assert app.emulator.stats.grant_type("refresh_token") == 2


# Rate limits.


def test_more_than_ten_requests_a_second_are_throttled(
    app: Flask, intuit: Intuit, tokens: Tokens, clock: FakeClock
) -> None:
    statuses = [companyinfo(intuit, tokens).status_code for _ in range(11)]
    throttled = companyinfo(intuit, tokens)
    clock.advance(1.0)
    recovered = companyinfo(intuit, tokens)

    assert statuses == [200] * 10 + [429]
    assert throttled.headers["Retry-After"] == "60"
    error = throttled.get_json()["Fault"]["Error"][0]
    assert error["Message"] == "message=ThrottleExceeded; errorCode=003001; statusCode=429"
    assert throttled.get_json()["Fault"]["type"] == "SERVICE"
    assert recovered.status_code == 200


def test_rate_limit_is_per_realm_and_client(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    other_app = Intuit(intuit.http, "other-client", "other-secret")
    other_tokens = other_app.connect()
    for _ in range(10):
        companyinfo(intuit, tokens)

    assert companyinfo(intuit, tokens).status_code == 429
    assert companyinfo(other_app, other_tokens).status_code == 200


def test_rate_limits_can_be_disabled(clock: FakeClock) -> None:
    intuit = Intuit(create_app(EmulatorConfig(clock=clock, rate_limits=False)).test_client())
    tokens = intuit.connect()

    assert {companyinfo(intuit, tokens).status_code for _ in range(30)} == {200}


def test_rate_limit_per_second_is_configurable(clock: FakeClock) -> None:
    intuit = Intuit(create_app(EmulatorConfig(clock=clock, rate_limit_per_second=2)).test_client())
    tokens = intuit.connect()

    assert [companyinfo(intuit, tokens).status_code for _ in range(3)] == [200, 200, 429]


def test_limiter_refuses_an_eleventh_concurrent_request() -> None:
    limiter = RateLimiter()
    limits = Limits(per_second=100, per_minute=500, max_concurrent=10)
    # Spread over time so only concurrency can refuse.
    taken = [limiter.acquire(REALM, "app", float(n), limits) for n in range(10)]

    assert all(taken)
    assert limiter.acquire(REALM, "app", 20.0, limits) is False
    limiter.release(REALM, "app")
    assert limiter.acquire(REALM, "app", 21.0, limits) is True


def test_limiter_caps_requests_per_minute_per_realm() -> None:
    limiter = RateLimiter()
    limits = Limits(per_second=1000, per_minute=500, max_concurrent=10)
    for n in range(500):
        assert limiter.acquire(REALM, f"app-{n % 3}", n * 0.1, limits)
        limiter.release(REALM, f"app-{n % 3}")

    assert limiter.acquire(REALM, "app-9", 50.0, limits) is False
    assert limiter.acquire(REALM, "app-9", 60.1, limits) is True


def test_limiter_caps_batch_requests_per_minute_per_realm_and_app() -> None:
    limiter = RateLimiter()
    limits = Limits(per_second=1000, per_minute=500, max_concurrent=10, batch_per_minute=40)
    for n in range(40):
        assert limiter.acquire(REALM, "app", n * 0.1, limits, batch=True)
        limiter.release(REALM, "app")

    assert limiter.acquire(REALM, "app", 10.0, limits, batch=True) is False
    # Other requests, and another app's batches, still go through; the window slides after a minute.
    assert limiter.acquire(REALM, "app", 10.0, limits) is True
    limiter.release(REALM, "app")
    assert limiter.acquire(REALM, "other-app", 10.0, limits, batch=True) is True
    limiter.release(REALM, "other-app")
    assert limiter.acquire(REALM, "app", 60.1, limits, batch=True) is True


def test_the_41st_batch_request_in_a_minute_is_throttled(clock: FakeClock) -> None:
    intuit = Intuit(create_app(EmulatorConfig(clock=clock, rate_limit_per_second=1000)).test_client())
    tokens = intuit.connect()
    body = {"BatchItemRequest": [{"bId": "1", "Query": "select * from Customer"}]}

    def batch():
        return intuit.http.post(
            f"/v3/company/{REALM}/batch",
            json=body,
            headers={"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/json"},
        )

    statuses = [batch().status_code for _ in range(41)]
    assert statuses == [200] * 40 + [429]
    assert companyinfo(intuit, tokens).status_code == 200
    clock.advance(60)
    assert batch().status_code == 200
