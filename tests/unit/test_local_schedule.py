"""The local stack's refresh schedule keeps a fixed rate, as EventBridge's rate(...) schedule does."""

from __future__ import annotations

from qbo_local.scheduler import RefreshSchedule


class Timeline:
    """A monotonic clock and a stop event whose wait passes that time at once; stops after `runs` sweeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.stop_after: int | None = None
        self.schedule: RefreshSchedule | None = None

    def monotonic(self) -> float:
        return self.now

    def wait(self, timeout: float) -> bool:
        if self.schedule is not None and self.schedule.runs >= self.stop_after:
            return True
        self.now += timeout
        return False


class SlowSweep:
    """A sweep that takes `seconds[i]` on the timeline and notes when it started."""

    def __init__(self, timeline: Timeline, seconds: list[float]) -> None:
        self.timeline = timeline
        self.seconds = list(seconds)
        self.started_at: list[float] = []

    def invoke(self, event):
        self.started_at.append(self.timeline.now)
        self.timeline.now += self.seconds.pop(0)
        return {"due": 0, "enqueued": 0}


def _run(seconds: list[float], interval: float = 60.0) -> list[float]:
    timeline = Timeline()
    sweep = SlowSweep(timeline, seconds)
    schedule = RefreshSchedule(sweep, interval, monotonic=timeline.monotonic, stop=timeline)
    timeline.schedule, timeline.stop_after = schedule, len(seconds)
    schedule._loop()
    return [at - 1000.0 for at in sweep.started_at]


def test_sweeps_start_at_a_fixed_rate_however_long_each_takes():
    # With a wait of one interval after each sweep, these would start at 60, 127, 199, 260.
    assert _run([7, 12, 1, 3]) == [60, 120, 180, 240]


def test_a_sweep_longer_than_the_interval_skips_the_runs_it_overran_instead_of_bursting():
    assert _run([150, 1, 1]) == [60, 240, 300]
