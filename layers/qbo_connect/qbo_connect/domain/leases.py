"""One writer at a time per connection.

Every change to a connection's secret (refresh, consent, new client secret, reset) happens while
holding the connection's lease: an owner-checked, self-expiring mark on the connection item, taken
and released with conditional writes. Inside the lease the secret is written first, then the
metadata (conditional on version and owner). A crash between the two leaves the secret ahead of the
metadata; whoever takes the lease next reconciles from the secret, so nothing is lost.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from qbo_connect.domain.connection import Connection, ConnectionStatus
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.errors import Busy, ConnectionNotFound
from qbo_connect.observability import logger
from qbo_connect.ports import Clock, ConnectionStore, TokenVault


@dataclass
class HeldLease:
    owner: str
    connection: Connection
    secret: ConnectionSecret | None
    expires_at: float
    released: bool = False  # given back already (with the last commit, or with the deleted connection)


class Leases:
    def __init__(self, store: ConnectionStore, vault: TokenVault, clock: Clock, *, lease_seconds: float) -> None:
        self._store = store
        self._vault = vault
        self._clock = clock
        self.lease_seconds = lease_seconds

    @contextmanager
    def hold(self, connection_id: str, *, wait_seconds: float = 0.0, read_secret: bool = True) -> Iterator[HeldLease]:
        """Take the lease (waiting up to `wait_seconds` for another holder), re-read, reconcile, yield.

        With `read_secret=False` the caller decides from the metadata first and calls `load_secret` only
        if it goes on: a refresh that turns out not to be due costs no secret read.
        """
        owner = f"lease-{uuid.uuid4().hex}"
        connection = self._acquire(connection_id, owner, wait_seconds)
        held = HeldLease(owner, connection, secret=None, expires_at=connection.lease_expires_at or 0.0)
        try:
            if read_secret:
                self.load_secret(held)
            yield held
        finally:
            if not held.released and not self._store.release_lease(connection_id, owner=owner):
                logger.warning("Lease expired before release", extra={"connection_id": connection_id})

    def load_secret(self, held: HeldLease) -> None:
        held.secret = self._vault.read(held.connection.connection_id)
        held.connection = self._reconcile(held)

    def seconds_left(self, held: HeldLease) -> float:
        return held.expires_at - self._clock.now()

    def commit(
        self, held: HeldLease, connection: Connection, secret: ConnectionSecret | None = None, *, release: bool = False
    ) -> Connection:
        """Persist first: the secret (when it changed), then the metadata that describes it.

        `release` gives the lease back in the same conditional write as the metadata: one call fewer.
        """
        if secret is not None:
            self._vault.write(secret)
            held.secret = secret
            connection = replace(connection, secret_generation=secret.generation)
        held.connection = self._store.save(connection, lease_owner=held.owner, release_lease=release)
        held.released = held.released or release
        return held.connection

    def reread_secret(self, held: HeldLease) -> ConnectionSecret | None:
        return self._vault.read(held.connection.connection_id)

    def _acquire(self, connection_id: str, owner: str, wait_seconds: float) -> Connection:
        deadline = self._clock.now() + wait_seconds
        delay = 0.1
        while True:
            try:
                return self._store.acquire_lease(
                    connection_id, owner=owner, now=self._clock.now(), seconds=self.lease_seconds
                )
            except Busy:
                if self._clock.now() + delay > deadline:
                    raise
            self._clock.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not security
            delay = min(delay * 2, 2.0)

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
        updated = replace(updated, has_client_secret=secret.client_secret is not None)
        return self._store.save(updated, lease_owner=held.owner)


def require(connection: Connection | None, connection_id: str) -> Connection:
    if connection is None:
        raise ConnectionNotFound(f"No connection {connection_id!r}: check the ID with `qbo-connect connections list`")
    return connection
