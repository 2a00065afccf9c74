"""The connection test: sign in, read the company's name, and say what to do when that fails."""

from __future__ import annotations

import pytest
from fakes import FORCED_REFRESH_AGE, FakeWorld
from qbo_connect.domain.events import EventType
from qbo_connect.errors import IntuitUnavailable, Throttled, Unauthorized

REALM = "9341453050000001"


def _failed(world: FakeWorld, connection_id: str, code: str) -> dict:
    answer = world.tests.run(connection_id).as_json()
    assert answer["ok"] is False
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]
    assert answer["error"]["next_step"]
    return answer


def test_a_working_connection_reports_the_company_name_and_latency_and_records_it(world):
    connection = world.connected()

    answer = world.tests.run(connection.connection_id).as_json()

    assert answer["ok"] is True
    assert answer["company_name"] == "Sandbox Company_US_1"
    assert answer["realm_id"] == REALM
    assert answer["name"] == "Acme Books"
    assert isinstance(answer["latency_ms"], int) and answer["latency_ms"] >= 0
    assert "error" not in answer
    recorded = world.connection(connection.connection_id).last_test
    assert recorded.ok and recorded.company_name == "Sandbox Company_US_1"
    assert recorded.tested_at == world.clock.now()
    assert world.identity.refresh_calls == 0


def test_an_unknown_connection_says_how_to_list_them(world):
    answer = _failed(world, "qbc-000000000000", "not_found")

    assert "qbo-connect connections list" in answer["error"]["next_step"]


def test_a_connection_not_yet_connected_says_to_open_the_authorize_link(world):
    connection = world.create_connection()

    answer = _failed(world, connection.connection_id, "not_connected")

    assert "authorize-link" in answer["error"]["message"]
    assert world.connection(connection.connection_id).last_test.error_code == "not_connected"
    assert world.events.published[-1].detail_type == EventType.TEST_FAILED


def test_a_revoked_grant_says_an_administrator_must_reconnect(world):
    connection = world.connected()
    world.identity.revoke_grant(REALM)
    world.identity.invalidate_access_tokens(REALM)
    world.clock.advance(3600)

    answer = _failed(world, connection.connection_id, "needs_reauthorization")

    assert "reconnect" in answer["error"]["next_step"]


def test_a_changed_client_secret_says_to_set_the_current_one(world):
    connection = world.connected()
    world.identity.rotate_client_secret("ABfakeclientid0123456789", "a-newer-client-secret")
    world.clock.advance(3600)

    answer = _failed(world, connection.connection_id, "invalid_client")

    assert "set-secret" in answer["error"]["next_step"]


def test_a_401_is_retried_once_after_a_forced_refresh_then_reported_as_unauthorized(world):
    connection = world.connected()
    world.clock.advance(FORCED_REFRESH_AGE)
    calls_before = world.company_api.calls
    world.company_api.fail_next(2, Unauthorized("Intuit refused the access token (3200)", intuit_tid="tid-401"))

    answer = _failed(world, connection.connection_id, "unauthorized")

    assert world.identity.refresh_calls == 1
    assert world.company_api.calls - calls_before == 2
    assert answer["error"]["intuit_tid"] == "tid-401"
    assert "reconnect" in answer["error"]["next_step"]


def test_a_401_then_success_after_one_forced_refresh_is_ok(world):
    connection = world.connected()
    world.clock.advance(FORCED_REFRESH_AGE)
    world.identity.invalidate_access_tokens(REALM)  # Intuit stopped honouring the token before it expired
    calls_before = world.company_api.calls

    answer = world.tests.run(connection.connection_id).as_json()

    assert answer["ok"] is True
    assert world.identity.refresh_calls == 1
    assert world.company_api.calls - calls_before == 2
    _, token_set = world.lifecycle.valid_token(connection.connection_id)
    assert world.identity.is_access_token_valid(token_set.access_token, REALM)


@pytest.mark.parametrize(
    ("error", "code", "advice"),
    [
        (Throttled("rate limited", retry_after=60, intuit_tid="tid-429"), "throttled", "try again in a minute"),
        (IntuitUnavailable("HTTP 503", intuit_tid="tid-503"), "intuit_unavailable", "try again shortly"),
    ],
)
def test_intuit_being_busy_or_down_is_reported_with_its_support_id(world, error, code, advice):
    connection = world.connected()
    world.company_api.fail_next(1, error)

    answer = _failed(world, connection.connection_id, code)

    assert advice in answer["error"]["next_step"]
    assert answer["error"]["intuit_tid"] == error.intuit_tid
    assert world.connection(connection.connection_id).last_test.intuit_tid == error.intuit_tid
    assert world.connection(connection.connection_id).status.value == "connected"


def test_intuit_down_while_a_short_token_needs_refreshing_is_reported_as_unavailable(world):
    connection = world.connected()
    world.clock.advance(3600 - 30)
    world.identity.fail_next(world.timings.attempts, IntuitUnavailable("HTTP 502"))

    _failed(world, connection.connection_id, "intuit_unavailable")


def test_the_test_names_each_step_it_waits_on_for_a_spinner(world):
    connection = world.connected()
    world.clock.advance(FORCED_REFRESH_AGE)
    world.identity.invalidate_access_tokens(REALM)  # the first CompanyInfo gets a 401
    steps: list[str] = []

    answer = world.tests.run(connection.connection_id, on_step=steps.append).as_json()

    assert answer["ok"] is True
    assert steps == [
        "an access token (refreshed first if it is due)",
        "the company's name (CompanyInfo)",
        "a new access token after Intuit refused the old one",
        "the company's name again, with the new token",
    ]


def test_a_company_whose_subscription_lapsed_is_not_told_to_add_a_scope_it_already_has(world):
    """Intuit answers every accounting call of a company whose QuickBooks subscription lapsed (or was
    cancelled) with 403, fault 3100 ApplicationAuthorizationFailed, while its refresh token keeps working.
    The connection holds the accounting scope: "add the scope and reconnect" sends a person the wrong way."""
    from qbo_connect.adapters.quickbooks_api import error_for_fault

    connection = world.connected()
    lapsed = error_for_fault(
        403,
        {"code": "3100", "message": "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403"},
        "tid-403",
    )
    world.company_api.fail_next(1, lapsed)

    answer = _failed(world, connection.connection_id, "forbidden")

    assert "com.intuit.quickbooks.accounting" in world.token_set(connection.connection_id).scopes
    next_step = answer["error"]["next_step"]
    assert "subscription" in next_step
    assert "lacks the accounting scope" not in next_step
    assert answer["error"]["intuit_tid"] == "tid-403"
    assert world.events.published[-1].detail_type == EventType.TEST_FAILED
