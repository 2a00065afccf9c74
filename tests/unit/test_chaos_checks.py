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


class LostAnswer:
    """A due connection whose refresh Intuit processed and whose answer was lost, on the soak's queue."""

    def __init__(self) -> None:
        self.world = FakeWorld()
        self.checks = DelayedChecks(now=self.world.clock.now)
        self.lifecycle = TokenLifecycle(
            self.world.store,
            self.world.vault,
            AnswerLostAfterProcessing(self.world.identity),
            self.world.events,
            self.world.clock,
            self.world.leases,
            self.world.timings,
            recheck=self.checks,
        )
        self.connection_id = self.world.connected().connection_id
        self.world.clock.advance(UNTIL_DUE)
        assert self.lifecycle.refresh(self.connection_id).outcome.value == "outcome_unknown"
        self.unknown_at = self.world.clock.now()

    def deliver(self, queued: list[tuple[float, str]]) -> list:
        """The soak's delivery of the queued checks, each run by the real lifecycle."""

        def check(connection_ids: list[str]):
            now = self.world.clock.now
            rows = [(cid, self._check(cid), now(), None) for cid in connection_ids]
            return rows, self.checks.take()

        return deliver_checks(queued, self.world.clock, check)

    def _check(self, connection_id: str) -> str:
        """As the refresh function's worker takes a queued check."""
        return self.lifecycle.refresh(connection_id, requeue_if_in_flight=True).outcome.value

    def time_to_report(self, rows: list) -> float:
        return time_to_report(rows, self.connection_id, self.unknown_at)


def test_a_lost_answer_is_reported_when_the_services_check_comes_even_after_the_soak_jumped_time() -> None:
    lost = LostAnswer()

    # The round's other calls are cut by the lease running out: the soak jumps past lease + allowance,
    # over the check the service queued for 151 s after the lost answer. No racer is left to look.
    lost.world.clock.advance(LEASE_EXPIRY_JUMP)
    rows = lost.deliver(lost.checks.take())

    assert [row[:2] for row in rows] == [(lost.connection_id, "needs_reauthorization")]
    # Reported as soon as the jump let anyone run (the old soak waited a whole window more: 383 s).
    assert lost.time_to_report(rows) == LEASE_EXPIRY_JUMP
    assert lost.world.connection(lost.connection_id).status.value == "needs_reauthorization"


def test_without_a_jump_the_check_runs_at_the_time_the_service_asked_for_and_no_sooner() -> None:
    lost = LostAnswer()
    queued = lost.checks.take()
    assert [cid for _, cid in queued] == [lost.connection_id]

    rows = lost.deliver(queued)

    window = 120 + lost.world.leases.skew_seconds + 1  # Intuit's request limit, the skew allowance, a second
    assert lost.time_to_report(rows) == window
    assert lost.world.identity.refresh_calls == 2  # the lost call and the one check: nothing sent before


def test_a_check_that_finds_the_mark_unexpired_comes_back_when_the_service_says() -> None:
    lost = LostAnswer()
    early = [(at - 60, cid) for at, cid in lost.checks.take()]  # a checker whose clock runs a minute behind

    rows = lost.deliver(early)

    assert [outcome for _, outcome, _, _ in rows] == ["busy", "needs_reauthorization"]
    assert lost.time_to_report(rows) == 120 + lost.world.leases.skew_seconds + 1


def test_time_to_report_is_read_from_the_soak_clock_not_from_the_writers_skewed_updated_at() -> None:
    rows = [
        ("c1", "outcome_unknown", 1000.0, None),
        ("c1", "busy", 1001.0, None),
        ("c1", "needs_reauthorization", 1151.0, None),  # written by a refresher a minute ahead: updated_at 1211
        ("c1", "not_refreshable", 1152.0, None),
        ("c2", "needs_reauthorization", 1100.0, None),
    ]

    assert time_to_report(rows, "c1", unknown_at=1000.0) == 151.0
