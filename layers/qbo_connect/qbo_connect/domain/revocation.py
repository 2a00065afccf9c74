"""Revoking at Intuit, and when the service may ask for it.

Intuit's revocation is its "disconnect": it ends the app's access to the company, every grant the app
holds there, not only the token presented (docs/intuit.md, "Revocation"). So a reconnect never revokes
the grant it replaces (that would end the new one too), and a token is revoked only while no other
connection of this deployment holds the same app's access to the same company. The check and the
revocation run under the app-company lease (domain/app_company_leases.py), so no grant of the app on the
company is being stored meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from qbo_connect.domain.app_company_leases import AppCompanyLeases, HeldAppCompanyLease, LeasePurpose, holder_of
from qbo_connect.domain.connection import Connection, ConnectionStatus
from qbo_connect.errors import Busy, CompanyBusy, IntuitUnavailable, LeaseRanOut, QboConnectError
from qbo_connect.observability import logger
from qbo_connect.ports import AppCompany, ClientCredentials, Clock, ConnectionStore, IdentityProvider


class Revocations:
    def __init__(
        self, identity: IdentityProvider, store: ConnectionStore, leases: AppCompanyLeases, clock: Clock
    ) -> None:
        self._identity = identity
        self._store = store
        self.leases = leases
        self._clock = clock

    @contextmanager
    def deciding(
        self,
        credentials: ClientCredentials,
        token: str,
        *,
        realm_id: str | None,
        connection_id: str,
        send_by: float | None = None,
    ) -> Iterator[str]:
        """Revoke `token` at Intuit unless that would disconnect another connection; yields the outcome in words (a
        connection's `last_revocation`, the CLI's and the pages' "Revocation at Intuit"). Until the block ends, in
        which the caller stores what it did, no other connection of the app stores a grant on the company or
        decides to revoke. `send_by`: the last moment the revocation may go out for the caller to store its outcome
        in time (a Lambda invocation's end less the call and the store); later, Busy, and nothing is sent."""
        if not realm_id:  # no company known: no grant of it to share
            yield self._send(None, credentials, token, connection_id=connection_id, send_by=send_by)
            return
        with ExitStack() as stack:
            try:
                held = stack.enter_context(
                    self.leases.hold(
                        AppCompany(credentials.client_id, realm_id),
                        connection_id=connection_id,
                        purpose=LeasePurpose.REVOCATION,
                        seconds=self.leases.revocation_seconds,
                    )
                )
            except CompanyBusy as busy:
                # Whoever holds it is storing a grant the revocation would end, or revoking itself.
                yield f"not revoked: {holder_of(busy, self._store, verb='was')} at the same moment"
                return
            yield self.revoke_under(held, credentials, token, connection_id=connection_id, send_by=send_by)

    def revoke_under(
        self,
        held: HeldAppCompanyLease,
        credentials: ClientCredentials,
        token: str,
        *,
        connection_id: str,
        send_by: float | None = None,
    ) -> str:
        """The check and the revocation, under a lease the caller holds (a consent for the wrong company)."""
        sharing = self._other_holder(held, connection_id)
        if sharing is not None:
            return f"not revoked: connection {sharing.name!r} uses this app on the same company"
        try:
            # Once sent, Intuit may act on it until its request time limit: the lease must last that long.
            self.leases.ensure(held, self.leases.revocation_over_seconds)
        except LeaseRanOut:
            return "not revoked: finding the other connections took longer than the lease allows"
        return self._send(held, credentials, token, connection_id=connection_id, send_by=send_by)

    def _send(
        self,
        held: HeldAppCompanyLease | None,
        credentials: ClientCredentials,
        token: str,
        *,
        connection_id: str,
        send_by: float | None,
    ) -> str:
        if send_by is not None and self._clock.now() > send_by:
            # Intuit acts on a revocation at once: sent now, Lambda could stop the caller before it stores the outcome,
            # leaving a connection that looks connected with a grant Intuit ended.
            raise Busy(
                "Too little of this request's time is left to revoke at Intuit and store the outcome (waiting for "
                "the connection or the company took it): nothing was changed; try again"
            )
        try:
            self._identity.revoke(credentials, token=token)
        except QboConnectError as error:
            logger.warning(
                "Could not revoke at Intuit", extra={"connection_id": connection_id, "error_code": error.code.value}
            )
            if isinstance(error, IntuitUnavailable):
                if held is not None:
                    held.keep_until_expiry = True  # no answer: Intuit may still act on it
                # A read timeout or a 5xx can come after Intuit acted on the request.
                return f"unknown: Intuit did not answer ({error.code.value}), and may have revoked"
            return f"not revoked: {error.code.value}"
        return "revoked"

    def _other_holder(self, held: HeldAppCompanyLease, connection_id: str) -> Connection | None:
        app = held.app_company
        listed = [c.connection_id for c in self._store.find_by_realm(app.realm_id, client_id=app.client_id)]
        # The index lags its table; the lease's item names who stored a grant under it, so a connection connected a
        # moment ago is found too. Each one's own item (a consistent read) says whether it holds a grant now.
        for candidate in dict.fromkeys([*listed, *sorted(held.grant_holders)]):
            if candidate == connection_id:
                continue
            current = self._store.get(candidate)
            if (
                current is not None
                and (current.realm_id, current.client_id) == (app.realm_id, app.client_id)
                and current.status in _HOLDS_A_LIVE_GRANT
            ):
                return current
            if candidate in held.grant_holders:
                held.forget.add(candidate)  # holds none now; a grant it stores later records it again
        return None


# Not connected (new or reset) holds no grant; needs_reauthorization holds one Intuit already ended.
# invalid_client's grant lives on at Intuit: only the client secret stored with it is wrong.
_HOLDS_A_LIVE_GRANT = frozenset({ConnectionStatus.CONNECTED, ConnectionStatus.INVALID_CLIENT})
