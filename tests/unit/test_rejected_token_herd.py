"""Many callers meet Intuit's 401 for one connection's access token at once, while Intuit's refresh is slow.

Intuit stopped accepting the connection's access token before its expiry (StrictIdentityProvider's
invalidate_access_tokens), so each caller's first call is refused and asks for a forced refresh under the lease.
Callers are threads on the in-memory fakes (each a Lambda container of its own); time is a VirtualClock that moves
only when every caller sleeps, and Intuit's refresh answer takes the time each test gives.
"""

from __future__ import annotations

from collections import Counter

import pytest
from fakes import EPOCH, FORCED_REFRESH_AGE, FakeWorld, StrictIdentityProvider
from qbo_connect.errors import Busy
from qbo_connect.token_access import TokenAccess
from virtual_time import SlowIntuit, VirtualClock, at_once

REALM = "9341453050000001"
HERD = 20
MEDIAN_ANSWER = 0.15  # seconds: Intuit's median (the emulator's long-tailed profile)
SLOW_ANSWER = 8.0  # seconds: Intuit's tail (1 % of answers take 10 to 30 s), well inside its 120 s
TEST_FUNCTION_SECONDS = 198.0  # template.yaml: TestFunction's 200 s, less the time kept to answer


def slow_world(answer_seconds: float = SLOW_ANSWER) -> tuple[FakeWorld, VirtualClock, str]:
    """A connection whose access token Intuit has just stopped accepting, old enough for a forced refresh."""
    clock = VirtualClock(EPOCH)
    world = FakeWorld(clock, identity=SlowIntuit(StrictIdentityProvider(clock), clock, lambda: answer_seconds))
    connection_id = world.connected().connection_id
    clock.advance(FORCED_REFRESH_AGE)
    world.identity.invalidate_access_tokens(REALM)
    return world, clock, connection_id


@pytest.mark.parametrize("answer_seconds", [MEDIAN_ANSWER, SLOW_ANSWER])
def test_tests_run_together_after_a_401_pass_on_the_one_forced_refresh_instead_of_reporting_unauthorized(
    answer_seconds,
):
    """Twenty workflows invoke the test function as Intuit starts refusing the connection's access token. One
    forced refresh runs (Intuit answers in its median time, or its tail's); the others found the lease held and went straight back to the refused
    token: Intuit refused it again, and each reported `unauthorized` ('if it persists, reconnect') and published
    Connection Test Failed, nineteen alarms for a connection that works. Each must wait for the refresh and pass."""
    world, clock, connection_id = slow_world(answer_seconds)

    def test_function() -> dict:
        return world.tests.run(connection_id, not_after=clock.now() + TEST_FUNCTION_SECONDS).as_json()

    reports = at_once(clock, [test_function] * HERD)

    outcomes = Counter("ok" if r["ok"] else r["error"]["code"] for r in reports)
    assert outcomes == {"ok": HERD}
    assert world.identity.refreshes_sent == 1
    assert "Connection Test Failed" not in world.events.detail_types


@pytest.mark.parametrize("seconds_left", [20.0, 120.0])
def test_a_workflow_whose_token_was_refused_while_another_refreshes_gets_the_new_token_or_busy_within_its_time(
    seconds_left,
):
    """Two workflows' Python clients (QuickBooksClient, through token_rejected) met Intuit's 401 together; one
    holds the forced refresh, whose answer takes a minute (Intuit's limit is 120 s). The other waited 30 s whatever
    its invocation had left, past the end of one with 20 s (Lambda stops it mid-wait: Task timed out), and then
    handed back the refused token, which Intuit refused again: the client raised Unauthorized ('reconnect if it
    persists') for a connection being refreshed. It must get the new token if its time allows, else Busy (retry in
    a minute), and answer before its invocation ends."""
    world, clock, connection_id = slow_world(answer_seconds=60.0)
    holder, waiter = (TokenAccess(world.lifecycle, world.store, clock) for _ in range(2))
    refused = holder.access_token(connection_id)
    assert waiter.access_token(connection_id) == refused
    ends_at: list[float] = []
    answered_at: list[float] = []

    def hold() -> str:
        return holder.token_rejected(connection_id, refused, not_after=clock.now() + 198).access_token

    def wait() -> str:
        clock.sleep(0.05)  # the holder has the lease by now
        ends_at.append(clock.now() + seconds_left)
        try:
            return waiter.token_rejected(connection_id, refused, not_after=ends_at[0]).access_token
        finally:
            answered_at.append(clock.now())

    held, waited = at_once(clock, [hold, wait])

    # Booleans only: a failing comparison of tokens would print them.
    refreshed, refused_again, new_token = held != refused, waited == refused, waited == held
    assert refreshed and world.identity.refreshes_sent == 1
    assert not refused_again, "the refused token came back, to be refused again"
    assert new_token if seconds_left > 60 else isinstance(waited, Busy)
    assert answered_at[0] < ends_at[0], "still waiting when Lambda stops the invocation"
