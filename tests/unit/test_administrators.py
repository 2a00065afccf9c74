"""Whether a signed-in person is still an administrator: the pool is asked at most once a minute per person,
and only a yes is remembered."""

from __future__ import annotations

from fakes import FakeClock
from qbo_connect.domain.administrators import RECHECK_SECONDS, StillAdministrators


class Pool:
    """The administrators the pool has now (each user name's sub is `sub-NAME`), and how often it was asked."""

    def __init__(self, *members: str) -> None:
        self.members = set(members)
        self.asked = 0

    def is_administrator(self, username: str, sub: str) -> bool:
        self.asked += 1
        return username in self.members and sub == f"sub-{username}"


def test_a_confirmed_administrator_is_asked_about_again_only_after_a_minute():
    pool, clock = Pool("alice"), FakeClock()
    still = StillAdministrators(pool, clock)

    assert still.confirm("alice", "sub-alice")
    clock.advance(RECHECK_SECONDS - 1)
    assert still.confirm("alice", "sub-alice") and pool.asked == 1  # a warm console's every click costs no Cognito call

    pool.members.discard("alice")
    clock.advance(1)
    assert not still.confirm("alice", "sub-alice") and pool.asked == 2


def test_someone_refused_is_let_in_as_soon_as_they_are_added_back():
    pool, clock = Pool(), FakeClock()
    still = StillAdministrators(pool, clock)
    assert not still.confirm("bob", "sub-bob")

    pool.members.add("bob")

    assert still.confirm("bob", "sub-bob")  # no minute's wait: a no is never remembered


def test_a_clock_stepped_back_does_not_stretch_a_confirmation():
    # The function's clock can step back (NTP): a confirmation "from the future" is asked about again.
    pool, clock = Pool("alice"), FakeClock()
    still = StillAdministrators(pool, clock)
    still.confirm("alice", "sub-alice")
    pool.members.clear()

    clock.advance(-RECHECK_SECONDS * 10)

    assert not still.confirm("alice", "sub-alice")


def test_a_confirmed_name_does_not_let_in_another_persons_token_within_the_minute():
    # A user deleted and created again under the same name has a new sub: the old person's confirmation is theirs.
    pool, clock = Pool("alice"), FakeClock()
    still = StillAdministrators(pool, clock)
    assert still.confirm("alice", "sub-alice")

    assert not still.confirm("alice", "sub-of-the-deleted-alice")
