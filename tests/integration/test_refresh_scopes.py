"""A refresh keeps the grant's own scopes: RFC 6749 section 6 forbids asking for more than the person
granted (invalid_scope), and a scope added to a connected connection takes effect at its next consent."""

from __future__ import annotations

from fakes import FORCED_REFRESH_AGE
from qbo_connect import intuit
from qbo_connect.domain.admin_operations import ConnectionUpdate
from qbo_connect.domain.connection import ConnectionStatus
from qbo_connect.domain.lifecycle import RefreshOutcome
from test_client_emulator import world  # noqa: F401 - the fixture

WIDER = (intuit.ACCOUNTING_SCOPE, "openid", "email")


def test_scopes_added_while_connected_do_not_stop_the_refreshes(world) -> None:  # noqa: F811
    admin = world.services.admin
    admin.update(world.connection_id, ConnectionUpdate(scopes=WIDER), actor="test")
    world.clock.advance(FORCED_REFRESH_AGE)

    result = admin.refresh(world.connection_id, actor="test")

    assert result.outcome is RefreshOutcome.REFRESHED, result
    connection = world.services.store.get(world.connection_id)
    assert connection.status is ConnectionStatus.CONNECTED and not connection.consecutive_refresh_failures
    # The token set says what was granted, not what the connection will ask for at its next consent.
    assert world.stored_secret()["token_set"]["scopes"] == [intuit.ACCOUNTING_SCOPE]
    assert world.client().company_info()["CompanyName"]
