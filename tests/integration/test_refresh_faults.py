"""Intuit failing: an hour-long storm of transient faults, and the permanent answers.

The services and the emulator share a manual_clock; the lifecycle's backoff sleeps move it. Timeouts are
real: the emulator stalls (moving the clock by the simulated time) longer than the refresher's whole-call
deadline, then answers 504 without processing the request, so nothing rotates. The refresher cannot know
that: a timeout or a 500 is an unknown outcome, sent once and checked again after the in-flight window;
a 503 or 429 was certainly not processed and is retried at once.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter

import pytest
from qbo_connect import intuit
from qbo_connect.domain.lifecycle import RefreshTimings
from qbo_connect.errors import IntuitUnavailable, InvalidClient, NeedsReauthorization
from qbo_connect_cli import output
from refresh_support import (
    ACCESS_TOKEN_SECONDS,
    REALM_ID,
    SKEW_SECONDS,
    Stack,
    manual_clock,
)

PERIOD = 300
SWEEP = {"action": "sweep"}  # the schedule's event (events/refresh-sweep.json)
STORM_KINDS = ("http_500", "http_503", "http_429", "timeout")
STALL_REAL_SECONDS = 0.45
STALL_SIMULATED_SECONDS = 30
STORM_CALL_DEADLINE = 0.3  # the refresher gives up long before the stalled emulator answers
UNKNOWN_OUTCOME_KINDS = {"http_500", "timeout"}
# Of twelve failed runs in a row, those Connection Refresh Failed announces (lifecycle.announces_failure_streak).
ANNOUNCED_RUNS = [1, 2, 4, 8]


def test_an_hour_of_5xx_429_and_timeouts_keeps_the_connection_and_it_recovers(make_stack) -> None:
    clock = manual_clock()

    def stall(seconds: float) -> None:
        clock.advance(seconds)
        time.sleep(STALL_REAL_SECONDS)

    stack: Stack = make_stack(clock, emulator_sleep=stall)
    connection_id = stack.connect().connection_id
    before = stack.token_set(connection_id)
    clock.advance(ACCESS_TOKEN_SECONDS - 600)  # due: 10 minutes left
    storm = stack.services(
        settings=dataclasses.replace(stack.settings, refresh_call_deadline_seconds=STORM_CALL_DEADLINE)
    )
    faults = stack.emulator.faults

    runs = 12  # every 5 minutes for an hour
    first_run = clock.now()
    errors: Counter[str] = Counter()
    for run in range(runs):
        faults.clear("token")
        kind = STORM_KINDS[run % len(STORM_KINDS)]
        faults.inject("token", kind, times=None, process=False, seconds=STALL_SIMULATED_SECONDS)
        calls = stack.refresh_calls()

        unknown = kind in UNKNOWN_OUTCOME_KINDS
        outcome = "outcome_unknown" if unknown else "transient_failure"
        assert storm.refresh_runs.handle(SWEEP) == {"due": 1, "outcomes": {outcome: 1}}

        if unknown:
            assert stack.refresh_calls() - calls == 1  # never re-sent in the same run
        else:
            assert 1 <= stack.refresh_calls() - calls <= RefreshTimings().attempts  # bounded retries
        connection = stack.connection(connection_id)
        assert connection.status.value == "connected"
        assert connection.consecutive_refresh_failures == run + 1
        assert connection.lease_owner is None
        errors[connection.last_refresh_error or ""] += 1
        failed = storm.events.of_type("Connection Refresh Failed")
        assert failed[-1]["consecutive_failures"] == max(n for n in ANNOUNCED_RUNS if n <= run + 1)
        detail = json.dumps(failed[-1])
        assert before.access_token not in detail and before.refresh_token not in detail
        clock.advance(max(0.0, first_run + (run + 1) * PERIOD - clock.now()))

    assert set(errors) == {"intuit_unavailable", "throttled", "outcome_unknown"}, errors
    assert stack.grant()["refresh_count"] == 0  # no attempt was processed: nothing rotated, nothing lost
    assert stack.token_set(connection_id).refresh_token == before.refresh_token
    assert clock.sleeps and max(clock.sleeps) <= RefreshTimings().backoff_max_seconds  # waits on our clock
    # The streak is announced when it starts, when it repeats, then at 4 and 8 runs in a row: not every run.
    assert [e["consecutive_failures"] for e in storm.events.of_type("Connection Refresh Failed")] == ANNOUNCED_RUNS
    assert set(storm.events.detail_types) == {"Connection Refresh Failed"}

    # The access token expired during the storm: a workflow is told to retry, not to reconnect.
    assert stack.token_set(connection_id).expires_at < clock.now()
    with pytest.raises(IntuitUnavailable, match="try again"):
        storm.lifecycle.valid_token(connection_id)
    assert stack.connection(connection_id).status.value == "connected"

    faults.clear()
    calls_before_recovery = stack.refresh_calls()
    services = stack.services()
    # That read tried a refresh into the last stall: its outcome is unknown, so nothing is sent until the
    # in-flight window has passed.
    assert services.refresh_runs.handle(SWEEP) == {"due": 1, "outcomes": {"busy": 1}}
    clock.advance(intuit.REQUEST_TIME_LIMIT_SECONDS + SKEW_SECONDS + 1)
    assert services.refresh_runs.handle(SWEEP) == {"due": 1, "outcomes": {"recovered": 1}}
    recovered = services.events.of_type("Connection Recovered")
    assert len(recovered) == 1 and f"after {runs + 1} failed runs" in recovered[0]["reason"]
    assert stack.refresh_calls() - calls_before_recovery == 1
    connection = stack.connection(connection_id)
    assert connection.status.value == "connected" and connection.consecutive_refresh_failures == 0
    assert connection.last_refresh_error is None
    stack.assert_token_works_and_refreshes(connection_id)


PERMANENT = {
    # The company's administrator disconnected the app in QuickBooks: the refresh token is dead.
    "grant revoked": ("needs_reauthorization", "Connection Needs Reauthorization", NeedsReauthorization),
    # The app's client secret was rotated in the developer portal.
    "client secret changed": ("invalid_client", "Connection Invalid Client", InvalidClient),
}


@pytest.mark.parametrize("cause", PERMANENT, ids=list(PERMANENT))
def test_a_permanent_answer_stops_refreshing_after_one_call(make_stack, cause: str) -> None:
    status, detail_type, raised = PERMANENT[cause]
    clock = manual_clock()
    stack: Stack = make_stack(clock)
    connection_id = stack.connect().connection_id
    if cause == "grant revoked":
        stack.emulator.revoke_grant(stack.grant()["grant_id"])
    else:
        stack.emulator.faults.inject("token", "invalid_client", times=None)
    clock.advance(ACCESS_TOKEN_SECONDS - 600)
    services = stack.services()

    assert services.refresh_runs.handle(SWEEP) == {"due": 1, "outcomes": {status: 1}}
    assert stack.refresh_calls() == 1  # no retries for a permanent answer
    connection = stack.connection(connection_id)
    assert connection.status.value == status and connection.lease_owner is None
    assert services.events.detail_types == [detail_type]

    # An hour of runs, a workflow and an explicit refresh later: not one more call to Intuit.
    for _ in range(12):
        clock.advance(PERIOD)
        assert services.refresh_runs.handle(SWEEP) == {"due": 0, "outcomes": {}}
    assert services.lifecycle.refresh(connection_id).outcome.value == "not_refreshable"
    with pytest.raises(raised, match="qbo-connect connections"):
        services.lifecycle.valid_token(connection_id)
    assert stack.refresh_calls() == 1
    assert services.events.detail_types == [detail_type]


def test_intuit_answering_the_same_refresh_token_for_a_day_keeps_the_grant_and_moves_its_expiry(make_stack) -> None:
    """Intuit as it usually is (the emulator's daily rotation): a refresh answers the same refresh token, its
    expiry unmoved, until the token is about a day old. Three days of the schedule's refreshes: each one is
    stored (nothing takes "the same token" for a lost or stale answer), the rolling expiry stays put within a
    day and moves out at each rotation, and an answer lost in flight on a day the token did not rotate is
    checked once and recovers: the token the vault still holds is the one Intuit still honours."""
    clock = manual_clock()

    def stall(seconds: float) -> None:
        clock.advance(seconds)
        time.sleep(STALL_REAL_SECONDS)

    stack: Stack = make_stack(clock, emulator_sleep=stall)
    stack.emulator.update_config({"refresh_token_rotation_seconds": 86_400})
    connection_id = stack.connect().connection_id
    first = stack.token_set(connection_id)
    services = stack.services()

    tokens, ends = {first.refresh_token}, [first.refresh_token_expires_at]
    while clock.now() < first.obtained_at + 3 * 86_400:
        clock.advance(stack.token_set(connection_id).expires_at - clock.now() - 900 + 1)  # due
        before = stack.token_set(connection_id)
        assert services.lifecycle.refresh(connection_id).outcome.value == "refreshed"
        after = stack.token_set(connection_id)
        assert after.access_token != before.access_token
        if after.refresh_token == before.refresh_token:
            assert abs(after.refresh_token_expires_at - before.refresh_token_expires_at) <= 1  # unmoved
        else:
            assert after.refresh_token_expires_at > before.refresh_token_expires_at + 86_000
        tokens.add(after.refresh_token)
        ends.append(after.refresh_token_expires_at)
        assert stack.connection(connection_id).refresh_token_expires_at == after.refresh_token_expires_at
    assert len(tokens) in (3, 4)  # about one a day
    assert ends[-1] >= ends[0] + 2 * 86_000

    # A lost answer (processed, never seen) early in the token's day: Intuit answered the same token.
    clock.advance(stack.token_set(connection_id).expires_at - clock.now() - 900 + 1)
    stack.emulator.faults.inject("token", "timeout", times=1, process=True, seconds=STALL_SIMULATED_SECONDS)
    storm = stack.services(
        settings=dataclasses.replace(stack.settings, refresh_call_deadline_seconds=STORM_CALL_DEADLINE)
    )
    assert storm.lifecycle.refresh(connection_id).outcome.value == "outcome_unknown"
    clock.advance(intuit.REQUEST_TIME_LIMIT_SECONDS + SKEW_SECONDS + 1)
    assert services.lifecycle.refresh(connection_id).outcome.value == "recovered"
    assert stack.connection(connection_id).status.value == "connected"
    assert not stack.grant()["revoked"]


def test_a_company_whose_subscription_lapsed_is_flagged_for_a_person_and_alarmed(make_stack, emitted) -> None:
    """The company's QuickBooks subscription lapses: Intuit refuses its data (403, fault 3100) while the grant
    keeps refreshing, so the connection stays connected. A company administrator must renew it: the test says
    forbidden, an alarm's metric counts it, and list/show/the admin API say what to do until a test passes."""
    clock = manual_clock()
    stack: Stack = make_stack(clock)
    connection_id = stack.connect().connection_id
    services = stack.services()
    stack.emulator.set_subscription_lapsed(REALM_ID, True)

    report = services.admin.test(connection_id)

    assert report.result.error_code == "forbidden"
    assert sum(value for _, value in emitted().get("CompanyDataRefused", [])) == 1
    view = services.admin.show(connection_id)
    assert view["status"] == "connected"
    assert view["attention"] and "subscription" in view["attention"]

    stack.emulator.set_subscription_lapsed(REALM_ID, False)  # renewed
    assert services.admin.test(connection_id).result.ok
    assert services.admin.show(connection_id)["attention"] is None
    assert "CompanyDataRefused" not in emitted()


def test_a_company_whose_companyinfo_says_its_subscription_ended_is_flagged_for_a_person_and_alarmed(
    make_stack, emitted
) -> None:
    """Intuit's documented shape of a lapsed subscription ("Understand QuickBooks Online subscription statuses"):
    CompanyInfo's SubscriptionStatus says SUSPENDED (or canceled, expired, restricted) and the company is read
    only: reads answer, writes are refused (fault 6190). The test still reads the company's name, but must say
    the company is read only; and as for the 403, the alarm's metric counts it and list/show (and the admin
    API) tell a person to renew until a test finds it renewed."""
    clock = manual_clock()
    stack: Stack = make_stack(clock)
    connection_id = stack.connect().connection_id
    services = stack.services()
    stack.emulator.set_subscription_status(REALM_ID, "SUSPENDED")

    answer = services.admin.test(connection_id).as_json()

    assert answer["ok"] is True and answer["company_name"]
    assert (answer.get("subscription_status"), answer.get("read_only")) == ("SUSPENDED", True)
    assert "read only" in output.test_report(answer) and "SUSPENDED" in output.test_report(answer)
    assert sum(value for _, value in emitted().get("CompanyDataRefused", [])) == 1
    view = services.admin.show(connection_id)
    assert view["status"] == "connected"
    assert view["attention"] and "SUSPENDED" in view["attention"] and "renew" in view["attention"]

    stack.emulator.set_subscription_status(REALM_ID, "SUBSCRIBED")  # renewed
    renewed = services.admin.test(connection_id).as_json()
    assert (renewed["ok"], renewed.get("subscription_status"), renewed.get("read_only")) == (True, "SUBSCRIBED", False)
    assert services.admin.show(connection_id)["attention"] is None
    assert "CompanyDataRefused" not in emitted()
