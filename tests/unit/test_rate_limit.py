"""The Secrets Manager write budget: a token bucket per refresher process, on an injected monotonic clock.

"Within the budget" is checked the way a token-bucket quota is enforced: in any window of length T
there are at most burst + rate * T writes. A bucket of rate r and burst r never exceeds a quota bucket
with a larger rate and burst (AWS: 50 PutSecretValue and friends per second per region).
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qbo_connect.adapters import secrets_vault
from qbo_connect.adapters.secrets_vault import SecretsManagerVault
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.rate_limit import RateLimiter
from qbo_connect.settings import Settings

REGIONAL_QUOTA_PER_SECOND = 50  # PutSecretValue, CreateSecret, ... share it (Secrets Manager's regional quota)
EPSILON = 1e-6


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def assert_within_bucket(times: list[float], rate: float, burst: float) -> None:
    """Any window [t_i, t_j] holds at most burst + rate * (t_j - t_i) acquisitions."""
    times = sorted(times)
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + rate * (times[j] - times[i]) + EPSILON, (i, j, times[i], times[j])


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=50),
    burst=st.one_of(st.none(), st.floats(min_value=1, max_value=20)),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=120),
)
def test_acquisitions_never_exceed_the_bucket_whatever_the_arrivals(rate, burst, gaps) -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(rate, burst=burst, monotonic=clock, sleep=clock.sleep)
    times = []
    for gap in gaps:
        clock.now += gap
        limiter.acquire()
        times.append(clock.now)
    assert_within_bucket(times, rate, burst if burst is not None else max(1.0, rate))


def test_back_to_back_writes_run_at_exactly_the_rate_after_the_burst() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(10, monotonic=clock, sleep=clock.sleep)
    start = clock.now
    waits = [limiter.acquire() for _ in range(110)]
    assert waits[:10] == [0.0] * 10  # the burst goes through at once
    assert clock.now - start == pytest.approx(10.0)  # then 100 more at 10 per second, not slower
    assert all(wait == pytest.approx(0.1) for wait in waits[10:])


def test_threads_of_one_process_share_one_budget() -> None:
    """Concurrent callers each get their own slot: the bucket hands out waits one after another."""
    clock = FakeMonotonic()  # frozen: every caller arrives at the same instant
    waits: list[float] = []
    lock = threading.Lock()
    limiter = RateLimiter(20, monotonic=clock, sleep=lambda seconds: None)
    start = threading.Barrier(8)

    def writer() -> None:
        start.wait()
        for _ in range(25):
            wait = limiter.acquire()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    expected = [max(0.0, (k + 1 - 20) / 20) for k in range(200)]
    assert sorted(waits) == pytest.approx(expected)
    assert_within_bucket([clock.now + wait for wait in waits], rate=20, burst=20)


class RecordingSecretsManager:
    """The two write calls of the Secrets Manager client, recording when each was sent."""

    def __init__(self, clock: FakeMonotonic) -> None:
        self._clock = clock
        self.sent: list[tuple[str, float]] = []

    def create_secret(self, **kwargs) -> dict:
        self.sent.append(("CreateSecret", self._clock.now))
        return {}

    def put_secret_value(self, **kwargs) -> dict:
        self.sent.append(("PutSecretValue", self._clock.now))
        return {}


def test_the_vault_keeps_its_writes_within_its_share_of_the_regional_budget(monkeypatch) -> None:
    settings = Settings.from_environment(
        {"QBO_TABLE_NAME": "connections", "QBO_SECRETS_WRITE_BUDGET": "40", "QBO_WRITE_BUDGET_SHARES": "4"}
    )
    assert settings.secrets_writes_per_second_here == 10
    clock = FakeMonotonic()
    # The vault builds its own limiter from the settings; only the clock it reads is ours.
    monkeypatch.setattr(
        secrets_vault, "RateLimiter", lambda rate: RateLimiter(rate, monotonic=clock, sleep=clock.sleep)
    )
    client = RecordingSecretsManager(clock)
    vault = SecretsManagerVault(client, settings)

    for index in range(30):
        secret = ConnectionSecret(connection_id=f"qbc-{index:04d}", client_id="ABclient0001", base_url="https://x")
        vault.create(secret)
        for _ in range(3):  # consent, two refreshes
            secret = secret.next(now=clock.now)
            vault.write(secret)

    times = [sent_at for _, sent_at in client.sent]
    assert len(times) == 120 and {name for name, _ in client.sent} == {"CreateSecret", "PutSecretValue"}
    assert_within_bucket(times, rate=10, burst=10)
    assert times[-1] - times[0] == pytest.approx((120 - 10) / 10)  # and it uses the share it has


def test_the_default_budget_and_its_shares_fit_the_regional_quota() -> None:
    defaults = Settings(table_name="connections")
    assert defaults.secrets_write_budget_per_second <= REGIONAL_QUOTA_PER_SECOND
    for shares in (1, 2, 5, 10, 50):
        share = Settings(table_name="connections", write_budget_shares=shares).secrets_writes_per_second_here
        assert share * shares <= REGIONAL_QUOTA_PER_SECOND  # every refresher at full speed stays inside
