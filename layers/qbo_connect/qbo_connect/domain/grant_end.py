"""When a grant ends, and when people hear about it: the one place for that arithmetic.

A grant (the refresh token a consent issued, and every one rotated from it) ends at the earlier of two
times: the refresh token's rolling expiry (about 100 days after the refresh that issued it; a refresh moves
it out) and Intuit's hard expiry (five years after the consent; only a reconnect moves it). On a tie the
hard end is named, since only a reconnect helps either way.

People are warned at WARNING_DAYS before that end. A mark is within reach when the days left, judged
`ahead_seconds` from now (how long until the connection is looked at again), are at most the mark: a
warning then comes early rather than late. The first mark is also the "ending soon" level that
GrantsEndingSoonAlarm and the connection's attention show.
"""

from __future__ import annotations

from enum import StrEnum

from qbo_connect.records import record

DAY_SECONDS = 86_400
WARNING_DAYS = (30, 7, 1)


class GrantEndKind(StrEnum):
    HARD = "hard"  # Intuit's five-year limit: only a company administrator reconnecting moves it
    ROLLING = "rolling"  # the refresh token's ~100 days since the refresh that issued it: a refresh moves it


@record
class GrantEnd:
    """When Intuit's grant ends (epoch seconds) and which limit ends it."""

    at: float
    by: GrantEndKind

    @classmethod
    def earliest(cls, *, rolling: float | None, hard: float | None) -> GrantEnd | None:
        """The end that comes first (None when neither is known)."""
        ends = [
            cls(at, by) for at, by in ((hard, GrantEndKind.HARD), (rolling, GrantEndKind.ROLLING)) if at is not None
        ]
        return min(ends, key=lambda end: (end.at, end.by is not GrantEndKind.HARD)) if ends else None

    def days_left(self, now: float) -> float:
        return (self.at - now) / DAY_SECONDS

    def marks_within(self, now: float, *, ahead_seconds: float = 0.0) -> tuple[int, ...]:
        """The warning marks (days before the end) this end is within, judged `ahead_seconds` from now."""
        left = self.days_left(now + ahead_seconds)
        return tuple(days for days in WARNING_DAYS if left <= days)

    def ending_soon(self, now: float, *, ahead_seconds: float = 0.0) -> bool:
        """Within the first mark: GrantEndingSoon is counted, and the attention says so."""
        return bool(self.marks_within(now, ahead_seconds=ahead_seconds))

    def described(self, now: float) -> str:
        """`the refresh token expires in 12 days (its rolling expiry)`: which end, and when."""
        days = max(0, int(self.days_left(now)))
        if self.by is GrantEndKind.HARD:
            return f"the grant ends in {days} days (Intuit's five-year limit)"
        return f"the refresh token expires in {days} days (its rolling expiry)"

    def what_to_do(self, *, client_secret_wrong: bool, ref: str | None = None) -> str:
        """What a person must do before this end: for the attention, and (with the connection's `ref`, which
        adds the commands) for the warning event. A rolling end moves out with the next refresh that succeeds;
        the hard one only with a reconnect."""
        set_secret = _with_command("set the app's current client secret", "set-secret", ref)
        reconnect = _with_command("a company administrator must reconnect", "authorize-link", ref)
        if self.by is GrantEndKind.HARD:
            return f"{set_secret}, then {reconnect} before then" if client_secret_wrong else f"{reconnect} before then"
        if client_secret_wrong:
            return f"{set_secret} before then: the refresh that follows moves it out (once it has passed, {reconnect})"
        refresh = _with_command("a refresh that succeeds moves it out", "refresh", ref, group="")
        return f"{refresh}; if refreshes keep failing, {reconnect} before then"


def _with_command(words: str, command: str, ref: str | None, *, group: str = "connections ") -> str:
    return f"{words} (`qbo-connect {group}{command} {ref}`)" if ref else words
