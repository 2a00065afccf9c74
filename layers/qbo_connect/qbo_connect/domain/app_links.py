"""The URLs Intuit asks an app to publish (its portal's app settings), and what the disconnect one does.

Intuit requires, before it issues production keys, a launch URL, a disconnect URL and a connect or
reconnect URL beside the redirect URI; the webhook endpoint is entered on its own page. One
deployment serves all of them for every app and connection it holds.

The disconnect URL is public and is opened by a browser: its query alone changes nothing. When it
names a company (`realmId`), each connection of that company is checked the way a workflow's test
checks it: CompanyInfo with the stored access token; a refused token leads to one refresh through the
lease, and Intuit's invalid_grant then marks the connection `needs_reauthorization` with its event.
A connection checked within the last minute is not checked again, so reloading the page, or anyone
calling it in a loop, costs Intuit nothing more.
"""

from __future__ import annotations

import re

from qbo_connect import intuit
from qbo_connect.domain.connection import Connection, ConnectionStatus
from qbo_connect.records import record

LAUNCH_PATH = "/intuit/launch"
DISCONNECT_PATH = "/intuit/disconnect"
RECONNECT_PATH = "/intuit/reconnect"
WEBHOOK_PATH = "/intuit/webhooks"
DISCONNECT_CHECK_INTERVAL_SECONDS = 60

_REALM = re.compile(intuit.REALM_ID_PATTERN)


@record
class AppUrls:
    redirect_uri: str
    launch: str
    disconnect: str
    reconnect: str
    webhooks: str

    def as_json(self) -> dict[str, str]:
        return dict(self.__dict__)


def app_urls(api_base_url: str, redirect_uri: str) -> AppUrls:
    base = api_base_url.rstrip("/")
    return AppUrls(
        redirect_uri=redirect_uri,
        launch=base + LAUNCH_PATH,
        disconnect=base + DISCONNECT_PATH,
        reconnect=base + RECONNECT_PATH,
        webhooks=base + WEBHOOK_PATH,
    )


@record
class CheckedConnection:
    name: str
    status: str
    checked: bool


class DisconnectChecks:
    def __init__(
        self, connections, connection_tests, clock, *, interval_seconds: int = DISCONNECT_CHECK_INTERVAL_SECONDS
    ):
        self._connections = connections
        self._tests = connection_tests
        self._clock = clock
        self._interval = interval_seconds

    def check(self, realm_id: str | None, *, not_after: float | None = None) -> list[CheckedConnection]:
        """The connections of the company, each checked unless it was a moment ago; [] for no valid realm.
        `not_after`: when the caller must be done (a Lambda invocation's end); no check sends a refresh whose
        answer could not be persisted by then."""
        if not isinstance(realm_id, str) or not _REALM.fullmatch(realm_id):
            return []
        now = self._clock.now()
        found = []
        for connection in self._connections.find_by_realm(realm_id):
            if self._due(connection, now):
                self._tests.run(connection.connection_id, not_after=not_after)
                connection = self._connections.get(connection.connection_id) or connection
                found.append(CheckedConnection(connection.name, connection.status.value, True))
            else:
                found.append(CheckedConnection(connection.name, connection.status.value, False))
        return found

    def _due(self, connection: Connection, now: float) -> bool:
        if connection.status is not ConnectionStatus.CONNECTED:
            return False  # nothing to find out: it already says a person must act, or was never connected
        last = connection.last_test.tested_at if connection.last_test else None
        return last is None or now - last >= self._interval
