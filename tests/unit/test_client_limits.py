"""Intuit's per-realm limits inside one process: requests per window and requests at a time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from qbo_connect.client import PROCESS_LIMITERS, QuickBooksClient, RealmLimiters, RealmLimits, WindowLimit
from qbo_connect.settings import Settings
from test_client import FakeTokens, response


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def most_in_any_window(starts: list[float], seconds: float) -> int:
    starts = sorted(starts)
    return max(sum(1 for t in starts if first <= t < first + seconds) for first in starts)


def test_a_window_limit_lets_a_burst_go_then_counts_each_request_until_a_window_after_its_answer():
    clock = FakeMonotonic()
    window = WindowLimit(10, 1.0, monotonic=clock, sleep=clock.sleep)
    sent, answered = [], []
    for _ in range(35):
        ticket = window.acquire()
        sent.append(clock.now)
        clock.now += 0.3  # the request's round trip
        answered.append(clock.now)
        window.release(ticket)
    # Wherever in [sent, answered] Intuit saw each request, no one-second window saw more than ten:
    # request k+10 leaves only a full second after request k's answer.
    assert all(sent[k + 10] >= answered[k] + 1.0 for k in range(25))
    assert sent[9] - sent[0] == pytest.approx(9 * 0.3)  # no waiting while there is room


def test_a_window_limit_waits_for_an_answer_when_every_place_is_out():
    window = WindowLimit(2, 0.05)
    first, second = window.acquire(), window.acquire()
    threading.Timer(0.1, window.release, [first]).start()
    started = time.monotonic()
    third = window.acquire()  # blocks until the first answer, then one window more
    assert time.monotonic() - started >= 0.15 - 0.01
    window.release(second)
    window.release(third)


def test_the_default_limits_are_intuits():
    limits = PROCESS_LIMITERS.limits
    assert (limits.requests_per_second, limits.requests_per_minute, limits.max_concurrent) == (10, 500, 10)


def test_each_realm_has_its_own_gate_shared_by_every_client_of_the_registry():
    limiters = RealmLimiters()
    assert limiters.gate("1") is limiters.gate("1")
    assert limiters.gate("1") is not limiters.gate("2")


class SlowSession:
    """Takes a little time per request and records when each started and how many ran at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.starts: list[float] = []

    def request(self, method, url, params=None, json=None, data=None, headers=None, timeout=None):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.starts.append(time.monotonic())
        time.sleep(self.seconds)  # a real request's latency: these are real threads
        with self.lock:
            self.in_flight -= 1
        return response(200, {"Customer": {"Id": "1"}})


def test_concurrent_clients_in_one_process_stay_within_the_realms_limits():
    limits = RealmLimits(requests_per_second=20, requests_per_minute=500, max_concurrent=4)
    limiters = RealmLimiters(limits)
    session = SlowSession(0.02)
    clients = [
        QuickBooksClient(
            "acme", tokens=FakeTokens(), settings=Settings(table_name="t"), session=session, limiters=limiters
        )
        for _ in range(6)
    ]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda n: clients[n % 6].get("Customer", "1"), range(30)))
    assert results == [{"Id": "1"}] * 30
    assert session.most_in_flight <= 4
    assert most_in_any_window(session.starts, 1.0) <= 20
    assert max(session.starts) - min(session.starts) >= 1.0  # the last ten had to wait for the next window
