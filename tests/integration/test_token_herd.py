"""Many workflows ask for one on-demand connection's token at the moment it needs a refresh, while Intuit is slow.

Each racer is a token function invocation in a Lambda container of its own (its own services, boto3 session and
TokenAccess) against moto and the strict emulator. Time is a VirtualClock the services and the emulator share:
Intuit's answers take virtual seconds drawn from the emulator's long-tailed latency profile (median 150 ms, p99
2 s, 1 % 10 to 30 s), the waiters' polls and backoffs move it, and nothing sleeps for real.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from qbo_connect.domain.admin_operations import ConnectionUpdate
from qbo_connect.invocation import work_deadline
from qbo_connect.token_access import TokenAccess
from qbo_local.emulator.latency import LatencyProfile
from refresh_support import CallLog, Crash, Stack, run_queued_checks
from test_handlers import LambdaContext
from virtual_time import SlowIntuit, VirtualClock, at_once

from chaos.soak import DelayedChecks

HERD = 20
TOKEN_FUNCTION_TIMEOUT_MILLIS = 200_000  # template.yaml: TokenFunction's Timeout
LEFT_WHEN_THE_HERD_ASKS = 180  # seconds of access token left; workflows ask for the default 300


def on_demand_and_due(stack: Stack) -> str:
    services = stack.services()
    connection_id = stack.connect(services).connection_id
    services.admin.update(connection_id, ConnectionUpdate(refresh_policy="on_demand"), actor="test")
    expires_at = stack.token_set(connection_id).expires_at
    stack.clock.advance(expires_at - stack.clock.now() - LEFT_WHEN_THE_HERD_ASKS)
    return connection_id


def token_function_herd(
    stack: Stack, connection_id: str, clock: VirtualClock, size: int = HERD, checks: DelayedChecks | None = None
) -> list[dict]:
    """`size` token function invocations at once, each in a container of its own, Intuit's answers slow; `checks`
    stands in for their refresh queue. Returns what each answered (without the token), when, and its end."""
    containers = []
    for index in range(size):
        latency = LatencyProfile.long_tail(seed=index)
        services = stack.services(identity_wrapper=lambda real, latency=latency: SlowIntuit(real, clock, latency.draw))
        services.refresh_queue = checks
        services.store.get(connection_id)  # a warm container: clients made, connections open
        containers.append(TokenAccess(services.lifecycle, services.store, clock))

    def invoke(access: TokenAccess) -> dict[str, Any]:
        context = LambdaContext(remaining_millis=TOKEN_FUNCTION_TIMEOUT_MILLIS)
        ends_at = clock.now() + TOKEN_FUNCTION_TIMEOUT_MILLIS / 1000
        answer = access.answer(connection_id, min_valid_seconds=300, not_after=work_deadline(context, clock.now()))
        answer.pop("access_token", None)
        return {**answer, "answered_at": clock.now(), "ends_at": ends_at}

    answers = at_once(clock, [lambda access=access: invoke(access) for access in containers], wait_seconds=300)
    assert not [a for a in answers if isinstance(a, Exception)], "an invocation never answered"
    return answers


def codes(answers: list[dict]) -> Counter:
    return Counter(a["error"]["code"] if not a["ok"] else "ok" for a in answers)


def test_a_herd_meeting_an_intuit_outage_hears_of_one_failed_refresh_instead_of_sending_one_each(make_stack):
    """Intuit's token endpoint answers 503 (slowly, in its long-tailed shape) while twenty workflows ask for the
    token at once. One of them holds the lease and runs the refresh with its bounded retries; the others waited for
    it and must hear that it failed (intuit_unavailable: retry shortly), not take the lease one after another and
    send the refresh again each: that multiplies Intuit's load by the herd, keeps the last ones waiting minutes to
    hear 'busy', and counts twenty failed runs in a row, which raises RefreshFailingRepeatedly for a blip."""
    clock = VirtualClock(int(time.time()))
    stack = make_stack(clock)
    connection_id = on_demand_and_due(stack)
    stack.emulator.faults.inject("token", "http_503", times=None, grant_type="refresh_token")
    attempts = stack.services().lifecycle.timings.attempts
    sent_before = stack.refresh_calls()

    answers = token_function_herd(stack, connection_id, clock)

    connection = stack.connection(connection_id)
    seen = {
        "answers": codes(answers),
        "refresh runs failed": connection.consecutive_refresh_failures,
        "refresh requests within one run's retries": stack.refresh_calls() - sent_before <= attempts,
    }
    assert seen == {
        "answers": {"intuit_unavailable": HERD},
        "refresh runs failed": 1,
        "refresh requests within one run's retries": True,
    }
    assert all(a["answered_at"] < a["ends_at"] for a in answers)
    assert connection.status.value == "connected" and connection.lease_owner is None


def test_a_holder_killed_mid_refresh_leaves_the_herd_busy_and_the_service_finds_the_lost_grant_by_itself(make_stack):
    """A workflow's refresh of an on-demand connection reached Intuit, which rotated the refresh token, and then its
    invocation was killed (Lambda's timeout for a workflow that did not pass its context, an out-of-memory kill)
    before the answer was stored: the grant is lost under the strict reading. The herd asking meanwhile hears busy
    within its own time and sends nothing. Once the dead call is certainly over, the service must check the grant
    by itself and report it (needs_reauthorization and its event), as it does after an answer lost in flight:
    no sweep looks at an on-demand connection, so it would show `connected` until its keep-alive, a day later."""
    clock = VirtualClock(int(time.time()))
    stack = make_stack(clock)
    connection_id = on_demand_and_due(stack)
    checks = DelayedChecks(now=clock.now)  # the refresh queue: SQS delivers each check when it is due
    killed = stack.services(log=CallLog(crash_at=("identity.refresh", "after")))
    killed.refresh_queue = checks
    with pytest.raises(Crash):
        TokenAccess(killed.lifecycle, killed.store, clock).answer(
            connection_id, min_valid_seconds=300, not_after=clock.now() + 198
        )
    assert stack.refresh_calls() == 1

    answers = token_function_herd(stack, connection_id, clock, checks=checks)

    assert codes(answers) == {"busy": HERD}
    assert all(a["answered_at"] < a["ends_at"] for a in answers)
    assert stack.refresh_calls() == 1, "the consumed refresh token was sent while the dead call could be in flight"
    reported = run_queued_checks(stack, checks, clock)

    assert stack.connection(connection_id).status.value == "needs_reauthorization"
    assert reported == ["Connection Needs Reauthorization"]
