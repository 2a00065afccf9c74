"""Virtual time for racing threads, and an Intuit whose answers take virtual time.

A herd of workflows waiting on one slow refresh needs time to pass (Intuit's answer takes seconds, the waiters
poll), yet a test must not sleep. `VirtualClock` is discrete-event time: each thread that takes part says so
(`member()`), and time jumps to the earliest wake-up only once every member is asleep in `sleep`. A member busy
with real work (moto over HTTP, the emulator, a lock) holds time still, so nothing it does races the clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from qbo_connect.errors import OutcomeUnknown

STUCK_SECONDS = 60.0  # real seconds a sleeper waits for time to move before the test is declared stuck


class VirtualClock:
    def __init__(self, start: float) -> None:
        self._now = float(start)
        self._changed = threading.Condition()
        self._members = 0
        self._sleepers: dict[int, float] = {}  # ticket -> when it wakes
        self._tickets = 0
        self._local = threading.local()

    def now(self) -> float:
        with self._changed:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._changed:
            self._now += seconds
            self._wake()

    @contextmanager
    def member(self) -> Iterator[None]:
        """The calling thread takes part: time waits for it to sleep (or to leave) before it moves."""
        with self._changed:
            self._members += 1
        self._local.member = True
        try:
            yield
        finally:
            self._local.member = False
            with self._changed:
                self._members -= 1
                self._jump()

    def sleep(self, seconds: float) -> None:
        """Block until virtual time has moved `seconds` on. A thread that is no member (the main thread,
        the emulator's request threads) takes part for the length of its sleep."""
        guest = not getattr(self._local, "member", False)
        with self._changed:
            if guest:
                self._members += 1
            self._tickets += 1
            ticket = self._tickets
            self._sleepers[ticket] = self._now + max(0.0, seconds)
            self._jump()
            while ticket in self._sleepers:
                if not self._changed.wait(STUCK_SECONDS):
                    raise AssertionError("virtual time stuck: a member neither sleeps nor leaves")
            if guest:
                self._members -= 1
                self._jump()

    def _jump(self) -> None:
        """Called with the lock held: when every member sleeps, move to the earliest wake-up."""
        if self._sleepers and len(self._sleepers) >= self._members:
            self._now = max(self._now, min(self._sleepers.values()))
            self._wake()

    def _wake(self) -> None:
        for ticket, at in list(self._sleepers.items()):
            if at <= self._now:
                del self._sleepers[ticket]
        self._changed.notify_all()


class SlowIntuit:
    """An Intuit client (IdentityProvider) whose refresh answers take virtual time.

    The request reaches Intuit at once and is processed there (a refresh token is spent, a 503 is decided);
    its answer arrives `delay()` seconds later, or, when that is past the caller's whole-call deadline, never:
    the caller stops waiting at its deadline with OutcomeUnknown, as IntuitOAuth's deadline has it.
    """

    def __init__(self, inner: Any, clock: VirtualClock, delay: Callable[[], float]) -> None:
        self._inner = inner
        self._clock = clock
        self._delay = delay
        self._lock = threading.Lock()
        self.refreshes_sent = 0

    def refresh(self, credentials: Any, *, refresh_token: str, scopes: tuple[str, ...], deadline_seconds=None):
        with self._lock:
            self.refreshes_sent += 1
        try:
            answer: Any = self._inner.refresh(
                credentials, refresh_token=refresh_token, scopes=scopes, deadline_seconds=deadline_seconds
            )
        except Exception as error:
            answer = error
        delay = self._delay()
        if deadline_seconds is not None and delay > deadline_seconds:
            self._clock.sleep(deadline_seconds)
            raise OutcomeUnknown(f"Intuit's token endpoint gave no answer within {deadline_seconds:.0f} s")
        self._clock.sleep(delay)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def at_once(clock: VirtualClock, calls: list[Callable[[], Any]], *, wait_seconds: float = 120) -> list[Any]:
    """Run the calls in threads released together, each a member of `clock`; what each returned or raised, in
    order. Fails when one has not finished within `wait_seconds` of real time."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        with clock.member():
            start.wait()
            try:
                results[index] = calls[index]()
            except Exception as error:
                results[index] = error

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(wait_seconds)
    assert not any(t.is_alive() for t in threads), "a caller never finished"
    return results
