"""Is this machine's clock close enough to AWS's to take a connection's lease?

Leases expire by wall clock: a holder whose clock runs behind keeps a lease others think has expired.
The service tolerates `Settings.clock_skew_seconds` of disagreement (nobody takes over before expiry
plus that); a workstation further off must not take leases at all. AWS's answer carries its clock in
the HTTP `Date` header, to the second.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any


class ClockSkewTooLarge(Exception):
    pass


def seconds_ahead_of_aws(session: Any) -> float | None:
    """How far this machine's clock runs ahead of AWS's (negative: behind); None if AWS gave no Date."""
    sent = time.time()
    response = session.client("sts").get_caller_identity()
    received = time.time()
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not date:
        return None
    # The Date header has whole seconds: compare with the middle of the round trip.
    return (sent + received) / 2 - parsedate_to_datetime(date).timestamp()


def require_agreement(session: Any, allowance_seconds: float) -> None:
    ahead = seconds_ahead_of_aws(session)
    # One second of the header's rounding is not skew.
    if ahead is None or abs(ahead) <= allowance_seconds + 1:
        return
    direction = "ahead of" if ahead > 0 else "behind"
    raise ClockSkewTooLarge(
        f"this machine's clock is {abs(ahead):.0f} s {direction} AWS's, more than the {allowance_seconds:.0f} s "
        "the service allows: with it, this command could hold a connection's lease while a refresher takes it "
        "over. Synchronise the clock (enable NTP, e.g. `timedatectl set-ntp true`) and run the command again"
    )
