"""The app-company lease: storing a new grant and deciding to revoke never overlap for one app on one company.

Intuit's revocation disconnects the app (client ID) from the company (realm ID): every grant of it there ends,
whichever consent issued it (docs/intuit.md, "Revocation"). A revoker first makes sure no other connection of the
deployment holds such a grant (domain/revocation.py), but a grant Intuit has issued and the service not yet stored
escapes that check, and so does one issued while the revocation is on its way to Intuit. So, per client ID and
realm ID, one holder at a time:

- Storing a grant (the callback, an import) holds the lease from before the code or the imported token goes to
  Intuit until the connection item says connected. It adds its connection to the item's grant holders in the same
  write, which a revoker reads: a connection connected a moment ago is found even while the realm index lags.
- Revoking (a reset, a delete, a consent for the wrong company) holds it from before it looks for other holders
  until Intuit is certainly done with the revocation: released when Intuit answers; without an answer, kept until
  it runs out, which is no sooner than Intuit's request time limit after the call could have reached it (Intuit
  may act on a request that long). A reset or delete keeps it until its own connection is stored as reset, so a
  second reset of the last other holder sees the first one done.
- It is the connection lease's idea (domain/leases.py) on an item of its own: an owner token, an expiry on the
  holder's clock, taken with a conditional write only when free, expired by the taker's clock less the skew
  allowance, or the taker's own; given back only by its owner. Only the holder's own clock is read against the
  expiry it wrote; takers allow for the skew.
- A holder sends to Intuit or stores only while its own clock says the lease lasts past that step. Past it, it may
  go on only if renewing the lease, conditional on still owning it, succeeds: a holder whose lease ran out and was
  taken over (a paused process) neither acts nor gives back the new holder's lease.
- Its length is what the holder's steps may take: a consent's (exchange, persist) and an import's (refresh,
  persist) fit in their functions' timeouts (tests/unit/test_template.py), so an invocation Lambda stops frees it
  at most that long plus the skew allowance later; a revoker's adds Intuit's request time limit.
- Waits are short (WAIT_SECONDS): a store or a revocation takes a second or two. A revoker that still finds it
  held does not revoke, and says who held it; a callback shows a page saying when to connect again; an import is
  refused having changed nothing.
- Always taken inside the connection's own lease, never the other way round: no two holders wait for each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import field
from enum import StrEnum

from qbo_connect import intuit
from qbo_connect.domain.leases import give_back, take_waiting, utc_time
from qbo_connect.errors import CompanyBusy, LeaseRanOut
from qbo_connect.observability import logger
from qbo_connect.ports import AppCompany, AppCompanyLeaseStore, Clock, ConnectionStore
from qbo_connect.records import record

# How long a holder waits for another to finish: a consent's exchange and store, or a revocation, take a second
# or two. A callback's wait comes out of API Gateway's 30 s, and the code it holds expires within minutes.
WAIT_SECONDS = 5.0
# Finding and reading the other connections of the app on the company, before a revocation is sent.
CHECK_SECONDS = 10.0


class LeasePurpose(StrEnum):
    CONSENT = "consent"
    IMPORT = "import"
    REVOCATION = "revocation"

    @property
    def stores_a_grant(self) -> bool:
        return self is not LeasePurpose.REVOCATION

    @property
    def doing(self) -> str:
        """What a holder with this purpose is doing, after "connection 'X' is" / "was"."""
        return _DOING[self]


_DOING = {
    LeasePurpose.CONSENT: "being connected to the company",
    LeasePurpose.IMPORT: "taking over imported tokens for the company",
    LeasePurpose.REVOCATION: "revoking the app's access to the company at Intuit",
}


@record(frozen=False)
class HeldAppCompanyLease:
    """An app-company lease as its holder sees it."""

    app_company: AppCompany
    owner: str
    expires_at: float  # on the holder's clock
    grant_holders: frozenset[str]  # as the item named them when taken
    # Recorded grant holders found holding no grant: dropped from the item when the lease is given back.
    forget: set[str] = field(default_factory=set)
    # Set when a revocation got no answer: Intuit may act on it until the lease runs out, so it is not given back.
    keep_until_expiry: bool = False


class AppCompanyLeases:
    def __init__(
        self,
        store: AppCompanyLeaseStore,
        clock: Clock,
        *,
        skew_seconds: float,
        revocation_call_seconds: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self.skew_seconds = skew_seconds
        # A revocation call, from its start until Intuit has certainly finished with it.
        self.revocation_over_seconds = revocation_call_seconds + intuit.REQUEST_TIME_LIMIT_SECONDS
        self.revocation_seconds = CHECK_SECONDS + self.revocation_over_seconds

    @contextmanager
    def hold(
        self,
        app_company: AppCompany,
        *,
        connection_id: str,
        purpose: LeasePurpose,
        seconds: float,
        wait_seconds: float = WAIT_SECONDS,
    ) -> Iterator[HeldAppCompanyLease]:
        """Take the lease for `seconds` (waiting up to `wait_seconds`), yield, give it back. Raises CompanyBusy."""
        owner = f"app-company-{uuid.uuid4().hex}"

        def take(now: float) -> HeldAppCompanyLease:
            before = self._store.acquire_app_company_lease(
                app_company,
                owner=owner,
                connection_id=connection_id,
                purpose=purpose.value,
                record_grant_holder=purpose.stores_a_grant,
                now=now,
                seconds=seconds,
                skew_seconds=self.skew_seconds,
            )
            if before.owner not in (None, owner):
                logger.warning(
                    "Took over an app-company lease its holder never gave back",
                    extra={"connection_id": connection_id, "holder": before.connection_id, "purpose": before.purpose},
                )
            return HeldAppCompanyLease(app_company, owner, now + seconds, before.grant_holders)

        held = take_waiting(take, self._clock, wait_seconds)
        try:
            yield held
        finally:
            if held.keep_until_expiry:
                logger.warning(
                    "App-company lease kept until it runs out: Intuit may still act on a revocation",
                    extra={"connection_id": connection_id, "until": utc_time(held.expires_at)},
                )
            else:
                # Not given back, it runs out within its holder's function's timeout.
                give_back(
                    lambda: self._store.release_app_company_lease(
                        app_company, owner=owner, forget=frozenset(held.forget)
                    ),
                    lease="App-company lease",
                    connection_id=connection_id,
                )

    def seconds_left(self, held: HeldAppCompanyLease) -> float:
        return held.expires_at - self._clock.now()

    def ensure(self, held: HeldAppCompanyLease, seconds: float) -> None:
        """Make sure the lease lasts `seconds` more before a step: by the holder's clock, or else by renewing it,
        which works only if nobody took it meanwhile. Raises LeaseRanOut otherwise."""
        if self.seconds_left(held) >= seconds:
            return
        until = self._clock.now() + seconds
        if not self._store.renew_app_company_lease(held.app_company, owner=held.owner, until=until):
            raise LeaseRanOut(
                "The step took longer than its lease on the app and company, and someone else took the lease "
                "meanwhile: nothing was done"
            )
        held.expires_at = until

    def retry_when(self, busy: CompanyBusy) -> str:
        """When the holder is certainly done, in words: a revocation may be kept until its lease runs out."""
        if busy.purpose == LeasePurpose.REVOCATION and busy.until is not None:
            return f"after {utc_time(busy.until + self.skew_seconds + 1)}"
        return "in a minute"


def holder_of(busy: CompanyBusy, connections: ConnectionStore, *, verb: str = "is") -> str:
    """Who holds the lease and what it does, in words: "connection 'X' is being connected to the company"."""
    holder = connections.get(busy.holder_connection_id) if busy.holder_connection_id else None
    who = f"connection {holder.name!r}" if holder else "another connection of this app"
    doing = LeasePurpose(busy.purpose).doing if busy.purpose in set(LeasePurpose) else "changing its grant"
    return f"{who} {verb} {doing}"
