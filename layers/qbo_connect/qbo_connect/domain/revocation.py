"""Revoking at Intuit, and when the service may ask for it.

Intuit's revocation is its "disconnect": it ends the app's access to the company, every grant the app
holds there, not only the token presented (docs/intuit.md, "Revocation"). So a reconnect never revokes
the grant it replaces (that would end the new one too), and a token is revoked only while no other
connection of this deployment holds the same app's access to the same company.
"""

from __future__ import annotations

from qbo_connect.domain.connection import Connection, ConnectionStatus
from qbo_connect.errors import QboConnectError
from qbo_connect.observability import logger
from qbo_connect.ports import ClientCredentials, ConnectionStore, IdentityProvider


def revoke_unless_shared(
    identity: IdentityProvider,
    store: ConnectionStore,
    credentials: ClientCredentials,
    token: str,
    *,
    realm_id: str | None,
    connection_id: str,
) -> str:
    """Revoke `token` at Intuit unless that would disconnect another connection; the outcome, in words
    (a connection's `last_revocation`, the CLI's and the pages' "Revocation at Intuit")."""
    sharing = _other_holder(store, realm_id, client_id=credentials.client_id, connection_id=connection_id)
    if sharing is not None:
        return f"not revoked: connection {sharing.name!r} uses this app on the same company"
    try:
        identity.revoke(credentials, token=token)
    except QboConnectError as error:
        logger.warning(
            "Could not revoke at Intuit", extra={"connection_id": connection_id, "error_code": error.code.value}
        )
        return f"not revoked: {error.code.value}"
    return "revoked"


def _other_holder(
    store: ConnectionStore, realm_id: str | None, *, client_id: str, connection_id: str
) -> Connection | None:
    if not realm_id:
        return None
    for listed in store.find_by_realm(realm_id, client_id=client_id):
        if listed.connection_id == connection_id:
            continue
        # The index lags its table: it finds who may hold the company; each one's own item (a consistent read)
        # says whether it holds it now, so a sibling connected a moment ago is not taken as not connected.
        current = store.get(listed.connection_id)
        if (
            current is not None
            and (current.realm_id, current.client_id) == (realm_id, client_id)
            and current.status in _HOLDS_A_LIVE_GRANT
        ):
            return current
    return None


# Not connected (new or reset) holds no grant; needs_reauthorization holds one Intuit already ended.
# invalid_client's grant lives on at Intuit: only the client secret stored with it is wrong.
_HOLDS_A_LIVE_GRANT = frozenset({ConnectionStatus.CONNECTED, ConnectionStatus.INVALID_CLIENT})
