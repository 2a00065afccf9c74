"""The chaos soak's checks after a lost answer: delivered when the service queued them, as SQS delivers a
delayed message, and judged in the soak's time. The soak's verdict on 'time to report' is only as true
as this: a check the soak delivers late is a late report the service never made."""

from __future__ import annotations

from fakes import FakeWorld
from qbo_connect.domain.lifecycle import TokenLifecycle
from qbo_connect.errors import OutcomeUnknown

from chaos.soak import DelayedChecks, deliver_checks, time_to_report

UNTIL_DUE = 3600 - 900 + 1
LEASE_EXPIRY_JUMP = 200 + 30 + 1  # the soak's 'lease expired mid-call': lease + skew allowance + 1


class AnswerLostAfterProcessing:
    """Intuit rotates the refresh token and the answer never arrives (a reset after forwarding)."""

    def __init__(self, identity) -> None:
        self._identity = identity
        self.lose_next = True

    def refresh(self, *args, **kwargs):
        token_set = self._identity.refresh(*args, **kwargs)
        if self.lose_next:
            self.lose_next = False
            raise OutcomeUnknown("Intuit's token endpoint reset the connection after the request was sent")
        return token_set

    def __getattr__(self, name):
        return getattr(self._identity, name)


def _world_with_soak_queue() -> tuple[FakeWorld, DelayedChecks, TokenLifecycle]:
    world = FakeWorld()
    checks = DelayedChecks(now=world.clock.now)
    lifecycle = TokenLifecycle(
        world.store,
        world.vault,
        AnswerLostAfterProcessing(world.identity),
        world.events,
        world.clock,
        world.leases,
        world.timings,
        recheck=checks,
    )
    return world, checks, lifecycle


def _checker(lifecycle: TokenLifecycle, checks: DelayedChecks, clock):
    def check(connection_ids: list[str]):
        rows = [(cid, lifecycle.refresh(cid).outcome.value, clock.now(), None) for cid in connection_ids]
        return rows, checks.take()

    return check


def test_a_lost_answer_is_reported_when_the_services_check_comes_even_after_the_soak_jumped_time() -> None:
    world, checks, lifecycle = _world_with_soak_queue()
    connection_id = world.connected().connection_id
    world.clock.advance(UNTIL_DUE)
    lost = lifecycle.refresh(connection_id)
    unknown_at = world.clock.now()
    assert lost.outcome.value == "outcome_unknown"

    # The round's other calls are cut by the lease running out: the soak jumps past lease + allowance,
    # over the check the service queued for 151 s after the lost answer. No racer is left to look.
    world.clock.advance(LEASE_EXPIRY_JUMP)
    rows = deliver_checks(checks.take(), world.clock, _checker(lifecycle, checks, world.clock))

    assert [row[:2] for row in rows] == [(connection_id, "needs_reauthorization")]
    # Reported as soon as the jump let anyone run (the old soak waited a whole window more: 383 s).
    assert time_to_report(rows, connection_id, unknown_at) == LEASE_EXPIRY_JUMP
    assert world.connection(connection_id).status.value == "needs_reauthorization"


def test_without_a_jump_the_check_runs_at_the_time_the_service_asked_for_and_no_sooner() -> None:
    world, checks, lifecycle = _world_with_soak_queue()
    connection_id = world.connected().connection_id
    world.clock.advance(UNTIL_DUE)
    lifecycle.refresh(connection_id)
    unknown_at = world.clock.now()
    queued = checks.take()
    assert [cid for _, cid in queued] == [connection_id]

    rows = deliver_checks(queued, world.clock, _checker(lifecycle, checks, world.clock))

    window = 120 + world.leases.skew_seconds + 1  # Intuit's request limit, the skew allowance, a second
    assert time_to_report(rows, connection_id, unknown_at) == window
    assert world.identity.refresh_calls == 2  # the lost call and the one check: nothing sent before


def test_a_check_that_finds_the_mark_unexpired_comes_back_when_the_service_says() -> None:
    world, checks, lifecycle = _world_with_soak_queue()
    connection_id = world.connected().connection_id
    world.clock.advance(UNTIL_DUE)
    lifecycle.refresh(connection_id)
    unknown_at = world.clock.now()
    queued = checks.take()
    early = [(at - 60, cid) for at, cid in queued]  # a checker whose clock runs a minute behind the writer's

    rows = deliver_checks(early, world.clock, _checker(lifecycle, checks, world.clock))

    assert [outcome for _, outcome, _, _ in rows] == ["busy", "needs_reauthorization"]
    assert time_to_report(rows, connection_id, unknown_at) == 120 + world.leases.skew_seconds + 1


def test_time_to_report_is_read_from_the_soak_clock_not_from_the_writers_skewed_updated_at() -> None:
    rows = [
        ("c1", "outcome_unknown", 1000.0, None),
        ("c1", "busy", 1001.0, None),
        ("c1", "needs_reauthorization", 1151.0, None),  # written by a refresher a minute ahead: updated_at 1211
        ("c1", "not_refreshable", 1152.0, None),
        ("c2", "needs_reauthorization", 1100.0, None),
    ]

    assert time_to_report(rows, "c1", unknown_at=1000.0) == 151.0
