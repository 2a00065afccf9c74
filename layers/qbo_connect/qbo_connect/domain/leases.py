"""One writer at a time per connection.

Every change to a connection's secret (refresh, consent, new client secret, reset) happens while
holding the connection's lease: an owner-checked, self-expiring mark on the connection item, taken
and released with conditional writes. Inside the lease the secret is written first, then the
metadata (conditional on version and owner). A crash between the two leaves the secret ahead of the
metadata; whoever takes the lease next reconciles from the secret, so nothing is lost.

Clocks differ between machines: nobody takes over a lease until its expiry plus the skew allowance.
A refresh also fences itself (docs/reliability.md): the lease write marks a refresh call in flight
until the call is certainly over at Intuit, and nobody sends the refresh token before that mark has
passed. A rotation the vault refuses is sealed onto the item in the metadata write, and the next
holder reads it before the vault: a rotated token set is never only in memory when the lease goes.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from qbo_connect import intuit
from qbo_connect.domain.connection import Connection, ConnectionStatus
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.errors import Busy, ConnectionNotFound, InFlight, VaultUnavailable
from qbo_connect.observability import MetricUnit, logger, metrics
from qbo_connect.ports import Clock, ConnectionStore, TokenSealer, TokenVault
from qbo_connect.records import record

T = TypeVar("T")


@record(frozen=False)
class HeldLease:
    """A connection's lease as its holder sees it: the item and secret read when it was taken."""

    owner: str
    connection: Connection
    secret: ConnectionSecret | None
    expires_at: float
    released: bool = False  # given back already (with the last commit, or with the deleted connection)
    # Taken by a refresh (fence=True): its lease write marked a refresh call in flight.
    fenced: bool = False
    # Set when a refresh's rotation could be neither written nor sealed: the lease must run out rather than be
    # given back, so its in-flight mark keeps everyone from sending the consumed refresh token.
    keep_until_expiry: bool = False
    call_started_at: float | None = None  # when the last Intuit call under this lease was sent


class Leases:
    def __init__(
        self,
        store: ConnectionStore,
        vault: TokenVault,
        clock: Clock,
        *,
        lease_seconds: float,
        skew_seconds: float = 0.0,
        sealer: TokenSealer | None = None,
    ) -> None:
        self._store = store
        self._vault = vault
        self._clock = clock
        self._sealer = sealer
        self.lease_seconds = lease_seconds
        self.skew_seconds = skew_seconds

    @contextmanager
    def hold(
        self,
        connection_id: str,
        *,
        wait_seconds: float = 0.0,
        read_secret: bool = True,
        fence: bool = False,
    ) -> Iterator[HeldLease]:
        """Take the lease (waiting up to `wait_seconds` for another holder), re-read, reconcile, yield.

        With `read_secret=False` the caller decides from the metadata first and calls `load_secret` only
        if it goes on: a refresh that turns out not to be due costs no secret read. With `fence=True`
        (a holder that may send the refresh token) the lease write also marks a call in flight until
        it is certainly over at Intuit even if this holder dies mid-call; an earlier mark still unexpired
        makes the lease Busy.
        """
        owner = f"lease-{uuid.uuid4().hex}"
        connection = self._acquire(connection_id, owner, wait_seconds, fence=fence)
        held = HeldLease(owner, connection, secret=None, expires_at=connection.lease_expires_at or 0.0, fenced=fence)
        try:
            if read_secret:
                self.load_secret(held)
            yield held
        finally:
            if held.keep_until_expiry:
                logger.error(
                    "Lease kept until it expires: a rotation is not persisted", extra={"connection_id": connection_id}
                )
            elif not held.released:
                give_back(
                    lambda: self._store.release_lease(connection_id, owner=owner, clear_fence=fence),
                    lease="Lease",
                    connection_id=connection_id,
                )

    def load_secret(self, held: HeldLease) -> None:
        held.secret = self._vault.read(held.connection.connection_id)
        self._apply_pending_rotation(held)
        held.connection = self._reconcile(held)

    def seconds_left(self, held: HeldLease) -> float:
        """What the lease leaves us. Others add the skew allowance before taking over, so by our clock it is
        ours until `expires_at` even if theirs runs ahead by up to the allowance."""
        return held.expires_at - self._clock.now()

    def commit(
        self,
        held: HeldLease,
        connection: Connection,
        secret: ConnectionSecret | None = None,
        *,
        release: bool = False,
        renamed_from: str | None = None,
    ) -> Connection:
        """Persist first: the secret (when it changed), then the metadata that describes it.

        `release` gives the lease back in the same conditional write as the metadata: one call fewer.
        `renamed_from`: the connection's name changes (from that one) in the same write, or nothing does.
        If the vault refuses the secret until its deadline, the secret is sealed onto the metadata
        instead (same conditional write); if even that fails, a refresh's lease is kept until it expires.
        Any other holder's (a consent, an administrator's change) is given back: it marked nothing in flight,
        the vault still holds what it held, and whoever is told to try again must not wait out the lease.
        """
        if secret is not None:
            connection = replace(connection, secret_generation=secret.generation, pending_rotation=None)
            try:
                self._vault.write(secret)
            except VaultUnavailable:
                held.keep_until_expiry = held.fenced  # until the sealed copy is saved
                connection = self._sealed(connection, secret)
            held.secret = secret
        held.connection = self._store.save(
            connection, lease_owner=held.owner, release_lease=release, renamed_from=renamed_from
        )
        held.keep_until_expiry = False
        held.released = held.released or release
        return held.connection

    def current_secret(self, connection: Connection) -> ConnectionSecret | None:
        """The newest secret without the lease: the vault's, or a sealed rotation the vault has not taken yet."""
        secret = self._vault.read(connection.connection_id)
        pending = self._sealed_rotation(connection)
        return pending if _newer(pending, than=secret) else secret

    def reread_secret(self, held: HeldLease) -> ConnectionSecret | None:
        return self._vault.read(held.connection.connection_id)

    def _acquire(self, connection_id: str, owner: str, wait_seconds: float, *, fence: bool) -> Connection:
        def take(now: float) -> Connection:
            return self._store.acquire_lease(
                connection_id,
                owner=owner,
                now=now,
                seconds=self.lease_seconds,
                skew_seconds=self.skew_seconds,
                # A call sent while we hold the lease is over at Intuit by the lease's end plus
                # Intuit's request time limit, whatever happens to us; plus the skew allowance for
                # our own clock, since a pause between our last check and the send is ours to cover.
                fence_until=now + self.lease_seconds + intuit.REQUEST_TIME_LIMIT_SECONDS + self.skew_seconds
                if fence
                else None,
            )

        return take_waiting(take, self._clock, wait_seconds)

    def _sealed(self, connection: Connection, secret: ConnectionSecret) -> Connection:
        if self._sealer is None:
            raise VaultUnavailable(
                f"Secrets Manager refused the new token set of connection {connection.connection_id!r} and no "
                "key is configured to keep it elsewhere"
            )
        try:
            sealed = self._sealer.seal(secret)
        except Exception as error:
            raise VaultUnavailable(
                f"Secrets Manager refused the new token set of connection {connection.connection_id!r} and "
                f"sealing it failed too ({type(error).__name__}): the lease is kept until it expires"
            ) from None
        metrics.add_metric(name="RotationPending", unit=MetricUnit.Count, value=1)
        logger.error(
            "Secrets Manager refused a rotated token set; sealed it onto the connection item",
            extra={"connection_id": connection.connection_id, "generation": secret.generation},
        )
        return replace(connection, pending_rotation=sealed)

    def _sealed_rotation(self, connection: Connection) -> ConnectionSecret | None:
        if connection.pending_rotation is None or self._sealer is None:
            return None
        return self._sealer.open(connection.connection_id, connection.pending_rotation)

    def _apply_pending_rotation(self, held: HeldLease) -> None:
        """A sealed rotation newer than the vault is the truth: write it to the vault, or use it as is."""
        pending = self._sealed_rotation(held.connection)
        if pending is None:
            return
        if _newer(pending, than=held.secret):
            held.secret = pending
            try:
                self._vault.write(pending)
            except VaultUnavailable:
                logger.error(
                    "Secrets Manager still refuses a pending rotation; using the sealed copy",
                    extra={"connection_id": held.connection.connection_id, "generation": pending.generation},
                )
                return
            logger.warning(
                "Pending rotation written to Secrets Manager",
                extra={"connection_id": held.connection.connection_id, "generation": pending.generation},
            )
        # Written now, or the vault had caught up (a write whose answer was lost had landed): spent.
        held.connection = self._store.save(replace(held.connection, pending_rotation=None), lease_owner=held.owner)

    def _reconcile(self, held: HeldLease) -> Connection:
        """The secret is the truth: if a holder crashed after writing it, bring the metadata up to it."""
        connection, secret = held.connection, held.secret
        if secret is None or secret.generation <= connection.secret_generation:
            return connection
        logger.warning(
            "Connection metadata was behind its secret; reconciling",
            extra={"connection_id": connection.connection_id, "generation": secret.generation},
        )
        now = self._clock.now()
        if secret.token_set is None:
            updated = connection.disconnected(
                now=now, generation=secret.generation, revocation=connection.last_revocation
            )
        else:
            updated = connection.with_token_times(secret.token_set, now=now, generation=secret.generation)
            if connection.status is ConnectionStatus.NOT_CONNECTED:
                updated = replace(updated, status=ConnectionStatus.CONNECTED, realm_id=secret.realm_id)
        # The refresh policy too: a reader of the secret is told it, so the schedule must follow it.
        updated = replace(
            updated, has_client_secret=secret.client_secret is not None, refresh_policy=secret.refresh_policy
        )
        return self._store.save(updated, lease_owner=held.owner)


def give_back(release: Callable[[], bool], *, lease: str, connection_id: str) -> None:
    """Give a lease back early (`release` says whether it was still ours). Best effort: what was done under it is
    stored, and a lease not given back expires on its own; a release the table throttles must not turn that work
    into an error."""
    try:
        released = release()
    except Exception as error:
        logger.warning(
            f"{lease} not released: it expires on its own",
            extra={"connection_id": connection_id, "error_type": type(error).__name__},
        )
        return
    if not released:
        logger.warning(f"{lease} expired before release", extra={"connection_id": connection_id})


def take_waiting(take: Callable[[float], T], clock: Clock, wait_seconds: float) -> T:
    """`take(now)` until it stops raising Busy, backing off with jitter, for up to `wait_seconds`; then its Busy."""
    deadline = clock.now() + wait_seconds
    delay = 0.1
    while True:
        try:
            return take(clock.now())
        except Busy:
            if clock.now() + delay > deadline:
                raise
        clock.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not security
        delay = min(delay * 2, 2.0)


def _newer(pending: ConnectionSecret | None, *, than: ConnectionSecret | None) -> bool:
    return pending is not None and (than is None or pending.generation > than.generation)


def utc_time(epoch: float) -> str:
    """A time in the messages people read: ISO 8601, UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def busy_because(connection: Connection | None, connection_id: str, *, now: float) -> Busy:
    """Why a lease could not be had, in words a person can act on."""
    fence = connection.refresh_in_flight_until if connection else None
    if connection is not None and fence is not None and not connection.lease_is_held(now):
        return InFlight(
            f"Intuit's answer to a refresh of connection {connection_id!r} was lost in flight: nothing is sent "
            f"with its refresh token before {utc_time(fence)}, when the service checks again by itself",
            until=fence,
        )
    return Busy(f"Connection {connection_id!r} is being changed by someone else: try again shortly")


def require(connection: Connection | None, connection_id: str) -> Connection:
    if connection is None:
        raise ConnectionNotFound(f"No connection {connection_id!r}: check the ID with `qbo-connect connections list`")
    return connection
