"""What an administrator does to connections: create, find, set the client secret, reset, delete."""

from __future__ import annotations

import contextlib
from dataclasses import field

from qbo_connect import intuit
from qbo_connect.domain.connection import (
    Connection,
    ConnectionStatus,
    RefreshPolicy,
    new_connection_id,
    parse_environment,
    parse_refresh_policy,
    validate_client_id,
    validate_client_secret,
    validate_connection_id,
    validate_name,
    validate_realm_id,
    validate_scopes,
)
from qbo_connect.domain.events import EventType, connection_event
from qbo_connect.domain.leases import Leases
from qbo_connect.domain.revocation import Revocations
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.errors import ConnectionAlreadyExists, ConnectionNotFound, InvalidInput
from qbo_connect.observability import logger
from qbo_connect.ports import (
    ClientCredentials,
    Clock,
    ConnectionStore,
    EventPublisher,
    TokenVault,
)
from qbo_connect.records import record
from qbo_connect.settings import Settings

# How long a change waits for another holder of the connection's lease (a refresh) before it answers busy.
LEASE_WAIT_SECONDS = 30.0


@record
class NewConnection:
    name: str
    client_id: str
    environment: str = intuit.Environment.SANDBOX.value
    realm_id: str | None = None
    scopes: tuple[str, ...] = intuit.DEFAULT_SCOPES
    base_url: str | None = None  # explicit override of the environment's API base URL
    connection_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_policy: str = RefreshPolicy.EAGER.value


class Administration:
    def __init__(
        self,
        store: ConnectionStore,
        vault: TokenVault,
        leases: Leases,
        revocations: Revocations,
        events: EventPublisher,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._store = store
        self._vault = vault
        self._leases = leases
        self._revocations = revocations
        self._events = events
        self._clock = clock
        self._settings = settings

    def find(self, name_or_id: str) -> Connection:
        """By ID first, then by name, so scripts can use either."""
        if not isinstance(name_or_id, str) or not name_or_id.strip():
            raise InvalidInput("Give a connection name or ID (`qbo-connect connections list` shows them)")
        connection = None
        with contextlib.suppress(InvalidInput):
            connection = self._store.get(validate_connection_id(name_or_id))
        connection = connection or self._store.find_by_name(name_or_id)
        if connection is None:
            raise ConnectionNotFound(
                f"No connection named or with ID {name_or_id!r}: `qbo-connect connections list` shows them"
            )
        return connection

    def list(self) -> list[Connection]:
        return self._store.list()

    def check_new(self, request: NewConnection) -> None:
        """What create() would refuse, without creating anything (the CLI asks before prompting for a secret)."""
        self._new_connection(request)

    def _new_connection(self, request: NewConnection) -> Connection:
        environment = parse_environment(request.environment)
        base_url = (request.base_url or self._settings.api_base_url(environment)).rstrip("/")
        if not self._settings.is_allowed_api_base_url(base_url):
            raise InvalidInput(
                f"The base URL {base_url!r} is not one of Intuit's API hosts over https: use --environment "
                "sandbox or production, or ask the deployment to allow the host (QBO_ALLOWED_API_HOSTS)"
            )
        now = self._clock.now()
        connection = Connection(
            connection_id=validate_connection_id(request.connection_id or new_connection_id()),
            name=validate_name(request.name),
            environment=environment,
            base_url=base_url,
            client_id=validate_client_id(request.client_id),
            scopes=validate_scopes(request.scopes),
            realm_id=validate_realm_id(request.realm_id) if request.realm_id else None,
            refresh_policy=parse_refresh_policy(request.refresh_policy),
            has_client_secret=request.client_secret is not None,
            created_at=now,
            updated_at=now,
        )
        if request.client_secret is not None:
            validate_client_secret(request.client_secret)
        self._refuse_if_taken(connection.name, request.connection_id)
        return connection

    def _refuse_if_taken(self, name: str, connection_id: str | None) -> None:
        """Name the connection that holds the name or ID, so the user can go and use it."""
        existing = self._store.find_by_name(name)
        if existing is not None:
            raise ConnectionAlreadyExists(
                f"A connection named {name!r} already exists (ID {existing.connection_id}): choose another "
                f"name, or use that one (`qbo-connect connections show {existing.connection_id}`)"
            )
        existing = self._store.get(connection_id) if connection_id else None
        if existing is not None:
            raise ConnectionAlreadyExists(
                f"The connection ID {connection_id!r} is taken by the connection {existing.name!r}: choose "
                "another --id, or leave it out to have one generated"
            )

    def create(self, request: NewConnection) -> Connection:
        """Validate everything first: bad input changes nothing."""
        connection = self._new_connection(request)
        now = connection.created_at
        try:
            created = self._store.create(connection)
        except ConnectionAlreadyExists:
            # Taken between the check and the write: say by whom, as the check would have.
            self._refuse_if_taken(connection.name, connection.connection_id)
            raise
        try:
            self._vault.create(
                ConnectionSecret(
                    connection_id=created.connection_id,
                    client_id=created.client_id,
                    base_url=created.base_url,
                    client_secret=request.client_secret,
                    realm_id=created.realm_id,
                    updated_at=now,
                    refresh_policy=created.refresh_policy,
                )
            )
        except Exception:
            # No half-made connection: without its secret it could never be used.
            with self._leases.hold(created.connection_id) as held:
                self._store.delete(held.connection, lease_owner=held.owner)
                held.released = True
            raise
        logger.info("Connection created", extra={"connection_id": created.connection_id})
        return created

    def set_client_secret(self, name_or_id: str, client_secret: str) -> Connection:
        validate_client_secret(client_secret)
        connection = self.find(name_or_id)
        with self._leases.hold(connection.connection_id, wait_seconds=LEASE_WAIT_SECONDS) as held:
            status_before = held.connection.status
            current = held.secret or self._empty_secret(held.connection)
            new_secret = current.next(now=self._clock.now(), client_secret=client_secret)
            saved = self._leases.commit(
                held,
                held.connection.with_client_secret(now=self._clock.now(), generation=new_secret.generation),
                new_secret,
            )
        logger.info("Client secret set", extra={"connection_id": saved.connection_id})
        if saved.status is ConnectionStatus.NEEDS_REAUTHORIZATION and status_before is not saved.status:
            # The grant ended while the secret was wrong: a reconnect is now the fix, which its subscribers route.
            self._events.publish(
                [
                    connection_event(
                        EventType.NEEDS_REAUTHORIZATION,
                        saved,
                        now=self._clock.now(),
                        reason="the refresh token expired while Intuit refused the client secret: a company "
                        "administrator must reconnect",
                    )
                ]
            )
        return saved

    def reset(self, name_or_id: str, *, not_after: float | None = None) -> Connection:
        """Revoke at Intuit (best effort, outcome recorded), clear the tokens, keep the client secret. `not_after`:
        when the caller must be done (a Lambda invocation's end); no revocation goes out that could not be stored."""
        connection = self.find(name_or_id)
        send_by = self._revocation_sent_by(not_after)
        with self._leases.hold(connection.connection_id, wait_seconds=self._lease_wait(send_by)) as held:
            current = held.secret or self._empty_secret(held.connection)
            with self._revoking(current, held.connection, send_by) as revocation:
                now = self._clock.now()
                new_secret = current.next(now=now, token_set=None)
                saved = self._leases.commit(
                    held,
                    held.connection.disconnected(now=now, generation=new_secret.generation, revocation=revocation),
                    new_secret,
                )
        self._events.publish([connection_event(EventType.RESET, saved, now=self._clock.now(), revocation=revocation)])
        logger.info("Connection reset", extra={"connection_id": saved.connection_id, "revocation": revocation})
        return saved

    def delete(self, name_or_id: str, *, not_after: float | None = None) -> str:
        """Revoke, then remove the metadata and the secret. Returns the revocation outcome. `not_after`: as reset's."""
        connection = self.find(name_or_id)
        send_by = self._revocation_sent_by(not_after)
        with self._leases.hold(connection.connection_id, wait_seconds=self._lease_wait(send_by)) as held:
            with self._revoking(held.secret, held.connection, send_by) as revocation:
                self._store.delete(held.connection, lease_owner=held.owner)
                held.released = True
            self._vault.delete(connection.connection_id)
        logger.info("Connection deleted", extra={"connection_id": connection.connection_id, "revocation": revocation})
        return revocation

    def _revocation_sent_by(self, not_after: float | None) -> float | None:
        """The last moment a revocation may go out for its outcome to be stored by `not_after`: before the revocation
        call's deadline and persisting."""
        if not_after is None:
            return None
        return not_after - self._settings.consent_call_deadline_seconds - self._settings.persist_seconds

    def _lease_wait(self, send_by: float | None) -> float:
        """How long to wait for the connection's lease: a while, but never past the moment a revocation must go out."""
        if send_by is None:
            return LEASE_WAIT_SECONDS
        return max(0.0, min(LEASE_WAIT_SECONDS, send_by - self._clock.now()))

    def _revoking(
        self, secret: ConnectionSecret | None, connection: Connection, send_by: float | None = None
    ) -> contextlib.AbstractContextManager[str]:
        """The revocation's outcome, while the caller stores it (Revocations.deciding)."""
        if secret is None or secret.token_set is None:
            return contextlib.nullcontext("nothing to revoke")
        if not secret.client_secret:
            return contextlib.nullcontext("not revoked: no client secret")
        return self._revocations.deciding(
            ClientCredentials(secret.client_id, secret.client_secret),
            secret.token_set.refresh_token,
            realm_id=secret.realm_id or connection.realm_id,
            connection_id=connection.connection_id,
            send_by=send_by,
        )

    @staticmethod
    def _empty_secret(connection: Connection) -> ConnectionSecret:
        return ConnectionSecret(
            connection_id=connection.connection_id,
            client_id=connection.client_id,
            base_url=connection.base_url,
            realm_id=connection.realm_id,
            generation=connection.secret_generation,
            refresh_policy=connection.refresh_policy,
        )
