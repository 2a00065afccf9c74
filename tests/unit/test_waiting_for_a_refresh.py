"""Workflows waiting for another caller's refresh read the connection's item to see it given back: how often.

Waiters are threads on the in-memory fakes (each a Lambda container of its own), time a VirtualClock.
"""

from __future__ import annotations

import threading
from collections import Counter

from fakes import EPOCH, FakeWorld, StrictIdentityProvider
from qbo_connect.token_access import TokenAccess
from virtual_time import SlowIntuit, VirtualClock, at_once

WAITERS = 10
ANSWER_SECONDS = 60.0  # Intuit's slow tail; its own limit is 120 s
LATE_SECONDS = 2.5  # how long after the refresh is stored a waiter may notice


def test_a_waiter_reads_the_item_less_often_the_longer_a_slow_refresh_takes_and_still_notices_it_soon():
    """A waiter looked every 200 ms however long Intuit took: 5 strongly consistent GetItems a second each, 300
    for a one-minute answer (790 over a token function's wait), all on one item, whose partition serves 3,000
    reads a second: a herd of about 600 waiters is throttled (vault_unavailable) for waiting. Backing off
    to a few seconds between looks keeps a minute's wait to a few dozen reads, and the token still comes within
    a couple of seconds of the refresh."""
    clock = VirtualClock(EPOCH)
    world = FakeWorld(clock, identity=SlowIntuit(StrictIdentityProvider(clock), clock, lambda: ANSWER_SECONDS))
    connection_id = world.connected().connection_id
    clock.advance(3600 - 180)  # 3 minutes left; workflows ask for 5
    reads: Counter[str] = Counter()
    get = world.store.get

    def counted_get(cid: str):
        reads[threading.current_thread().name] += 1
        return get(cid)

    world.store.get = counted_get

    def workflow() -> float:
        TokenAccess(world.lifecycle, world.store, clock).answer(
            connection_id, min_valid_seconds=300, not_after=clock.now() + 198
        )
        return clock.now()

    answered_at = at_once(clock, [workflow] * WAITERS)

    assert world.identity.refreshes_sent == 1 and not [a for a in answered_at if isinstance(a, Exception)]
    refreshed_at = EPOCH + 3600 - 180 + ANSWER_SECONDS
    assert max(answered_at) - refreshed_at < LATE_SECONDS
    assert max(reads.values()) <= ANSWER_SECONDS, f"reads per waiter: {sorted(reads.values())}"
