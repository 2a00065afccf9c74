"""The long-tailed latency profile: answers drawn from a lognormal with a slow tail, repeatable by seed."""

from __future__ import annotations

from typing import Any

import pytest
from emulator_support import FakeSleep, Intuit
from flask import Flask
from qbo_local.emulator.latency import LatencyProfile


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def test_long_tail_has_the_median_p99_and_slow_share_it_names() -> None:
    profile = LatencyProfile.long_tail(seed=11)
    draws = [profile.draw() for _ in range(40_000)]
    fast = [d for d in draws if d < profile.slow_min_seconds]
    slow = [d for d in draws if d >= profile.slow_min_seconds]

    assert percentile(draws, 0.5) == pytest.approx(0.15, rel=0.05)
    assert percentile(fast, 0.99) == pytest.approx(2.0, rel=0.1)
    assert len(slow) / len(draws) == pytest.approx(0.01, rel=0.2)
    assert all(10.0 <= d <= 30.0 for d in slow)


def test_the_same_seed_gives_the_same_answers() -> None:
    first, second = LatencyProfile.long_tail(seed=3), LatencyProfile.long_tail(seed=3)

    assert [first.draw() for _ in range(100)] == [second.draw() for _ in range(100)]


def test_a_token_answer_waits_a_drawn_delay(app: Flask, intuit: Intuit, tokens: dict, sleep: FakeSleep) -> None:
    profile = LatencyProfile(median_seconds=0.2, p99_seconds=0.2, seed=1)  # sigma 0: every draw is the median
    app.emulator.faults.set_latency("token", profile)

    intuit.refresh(tokens["refresh_token"])

    assert sleep.calls == [pytest.approx(0.2)]


def test_latency_over_http_then_cleared(admin: Any, intuit: Intuit, tokens: dict, sleep: FakeSleep) -> None:
    knobs = admin.post("/_emulator/faults", json={"group": "token", "latency": "long_tail"}).get_json()

    assert knobs["delays"]["token"]["median_seconds"] == 0.15
    assert knobs["delays"]["token"]["slow_share"] == 0.01
    rotated = intuit.refresh(tokens["refresh_token"]).get_json()["refresh_token"]
    assert len(sleep.calls) == 1 and sleep.calls[0] > 0

    admin.delete("/_emulator/faults?group=token")
    assert intuit.refresh(rotated).status_code == 200
    assert len(sleep.calls) == 1


@pytest.mark.parametrize(
    "latency",
    [
        "short_tail",
        {"median_seconds": 2, "p99_seconds": 1},
        {"median_seconds": 0.1, "p99_seconds": 1, "slow_share": 1.5},
        {"median_seconds": 0.1, "p99_seconds": 1, "colour": "red"},
        {"median_seconds": "fast", "p99_seconds": 1},
        [0.1, 1],
    ],
)
def test_bad_latency_profiles_are_400_and_change_nothing(admin: Any, latency: Any) -> None:
    response = admin.post("/_emulator/faults", json={"group": "token", "latency": latency})

    assert response.status_code == 400
    assert "error" in response.get_json()
    assert admin.get("/_emulator/faults").get_json()["delays"] == {}


def test_delay_and_latency_together_are_refused(admin: Any) -> None:
    response = admin.post("/_emulator/faults", json={"group": "token", "delay": 0.1, "latency": "long_tail"})

    assert response.status_code == 400
