"""The small interfaces the domain speaks to. Adapters implement them for AWS and HTTP;
tests implement them in memory."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any, Protocol

from qbo_connect import intuit
from qbo_connect.domain.connection import Connection, ConnectionStatus, ConsentIdentity, RefreshPolicy, TestResult
from qbo_connect.domain.metering import UsageKey
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.records import record


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@record
class OAuthState:
    """A pending consent flow. Stored under a hash of the state value, never the value itself."""

    state_hash: str
    connection_id: str
    redirect_uri: str
    browser_binding: str
    created_at: float
    expires_at: float


class ConnectionStore(Protocol):
    def create(self, connection: Connection) -> Connection:
        """Raises ConnectionAlreadyExists when the ID or the name is taken."""

    def get(self, connection_id: str) -> Connection | None: ...

    def find_by_name(self, name: str) -> Connection | None: ...

    def list(self) -> list[Connection]: ...

    def find_by_realm(self, realm_id: str, *, client_id: str | None = None) -> list[Connection]:
        """The connections that hold this company (of the app `client_id`, if given), from an index."""

    def save(
        self, connection: Connection, *, lease_owner: str, release_lease: bool = False, renamed_from: str | None = None
    ) -> Connection:
        """Write the metadata if the stored version is `connection.version` and `lease_owner` holds the
        lease (and give the lease back in the same write if `release_lease`); returns the stored
        connection with the next version. Raises Conflict otherwise. With `renamed_from` (its name as stored),
        the name moves to `connection.name` in the same write, or nothing is written: ConnectionAlreadyExists
        when another connection holds the name."""

    def delete(self, connection: Connection, *, lease_owner: str) -> None: ...

    def acquire_lease(
        self,
        connection_id: str,
        *,
        owner: str,
        now: float,
        seconds: float,
        skew_seconds: float = 0.0,
        fence_until: float | None = None,
    ) -> Connection:
        """Take the lease if nobody holds one unexpired by `now - skew_seconds`; returns the connection as
        stored. With `fence_until`, also require no refresh in flight by the same test, and mark one in
        flight until then in the same write. Raises Busy (someone holds it) or ConnectionNotFound."""

    def release_lease(self, connection_id: str, *, owner: str, clear_fence: bool = True) -> bool:
        """Release only if `owner` still holds it, clearing the in-flight mark if `clear_fence` (only a holder
        that set one may: another holder's mark may still guard a call at Intuit); returns whether it did."""

    def record_test(self, connection_id: str, result: TestResult) -> None: ...

    def due_connection_ids(
        self, *, due_before: float, policy: RefreshPolicy = RefreshPolicy.EAGER, limit: int | None = None
    ) -> list[str]:
        """IDs of connected connections with this refresh policy whose access token expires at or before
        `due_before`, read from an index (never a scan)."""

    def connection_ids_with_status(self, status: ConnectionStatus) -> list[str]:
        """IDs of the connections in `status`, from an index (never a scan; it may lag a write by a moment)."""

    def count_by_status(self, statuses: Iterable[ConnectionStatus] | None = None) -> dict[ConnectionStatus, int]:
        """How many connections are in each of these statuses (None: every status), from an index (never a
        scan). It reads every entry it counts."""

    def put_state(self, state: OAuthState) -> None: ...

    def get_state(self, state_hash: str) -> OAuthState | None: ...

    def consume_state(self, state_hash: str) -> OAuthState | None:
        """Delete the state if it exists and return it; None if someone consumed it first."""


@record
class AppCompany:
    """One app (client ID) on one company (realm ID): what Intuit's revocation disconnects as a whole."""

    client_id: str
    realm_id: str


@record
class AppCompanyLeaseRecord:
    """The app-company lease's item as a writer found it: its holder (if any) and the connections that stored a
    grant of the app on the company under it."""

    owner: str | None = None
    expires_at: float | None = None
    connection_id: str | None = None
    purpose: str | None = None
    grant_holders: frozenset[str] = frozenset()


class AppCompanyLeaseStore(Protocol):
    """The app-company lease (domain/app_company_leases.py): the connection lease's conditions on an item of its own."""

    def acquire_app_company_lease(
        self,
        app_company: AppCompany,
        *,
        owner: str,
        connection_id: str,
        purpose: str,
        record_grant_holder: bool,
        now: float,
        seconds: float,
        skew_seconds: float,
    ) -> AppCompanyLeaseRecord:
        """Take the lease if nobody holds one unexpired by `now - skew_seconds` (or `owner` does), naming the holder's
        connection and purpose, and with `record_grant_holder` adding the connection to the grant holders, in one
        write; returns the item as it was before. Raises CompanyBusy naming the holder otherwise."""

    def renew_app_company_lease(self, app_company: AppCompany, *, owner: str, until: float) -> bool:
        """Move the lease's expiry to `until` only if `owner` still holds it; returns whether it did."""

    def release_app_company_lease(
        self, app_company: AppCompany, *, owner: str, forget: frozenset[str] = frozenset()
    ) -> bool:
        """Release only if `owner` still holds it, removing `forget` from the grant holders in the same write;
        returns whether it did."""


class TokenVault(Protocol):
    def create(self, secret: ConnectionSecret) -> None: ...

    def read(self, connection_id: str) -> ConnectionSecret | None: ...

    def write(self, secret: ConnectionSecret) -> None:
        """Store `secret` as its generation, retrying until the write deadline; raises Conflict if another
        document already holds it, VaultUnavailable if the vault kept failing."""

    def delete(self, connection_id: str) -> None: ...


class TokenSealer(Protocol):
    """Seals a connection secret for keeping outside the vault (KMS in AWS) while the vault refuses writes."""

    def seal(self, secret: ConnectionSecret) -> str: ...

    def open(self, connection_id: str, sealed: str) -> ConnectionSecret: ...


class RefreshQueue(Protocol):
    """Fan-out of due connections to parallel refreshers (SQS in AWS and in the local stack)."""

    def enqueue(self, connection_ids: list[str], *, delay_seconds: int = 0) -> int:
        """Returns how many were enqueued; `delay_seconds` (at most 900) holds them back that long."""


class RefreshHandoff(Protocol):
    """A refresh sent on a caller's behalf by a function with the time to see it through (the refresh function,
    through Lambda's synchronous Invoke), which goes on to the end when the caller stops waiting."""

    def refresh(self, payload: dict[str, Any], *, wait_seconds: float) -> dict[str, Any] | None:
        """The refresh function's answer to `payload` ({"connection_id", "force", "min_valid_seconds"}), or None
        when none came within `wait_seconds`."""


class SigningKeys(Protocol):
    def current(self) -> tuple[str, bytes]:
        """(key id, key) to sign new authorize links with."""

    def by_id(self, key_id: str) -> bytes | None: ...


class AdministratorDirectory(Protocol):
    def is_administrator(self, username: str, sub: str) -> bool:
        """Whether the pool has this person now: its user `username` is the one `sub` names (not a user created
        again under the name, nor one the name is an alias of), enabled, and in the administrators' group."""


@record
class ClientCredentials:
    """An app's OAuth client: its ID and secret."""

    client_id: str
    client_secret: str = field(repr=False)


class IdentityProvider(Protocol):
    """Intuit's OAuth 2.0 server, or any standards-compliant stand-in."""

    def authorization_url(self, client_id: str, *, redirect_uri: str, scopes: Iterable[str], state: str) -> str: ...

    def exchange_code(
        self,
        credentials: ClientCredentials,
        *,
        code: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        deadline_seconds: float | None = None,
    ) -> TokenSet: ...

    def refresh(
        self,
        credentials: ClientCredentials,
        *,
        refresh_token: str,
        scopes: tuple[str, ...],
        deadline_seconds: float | None = None,
    ) -> TokenSet:
        """Raises NeedsReauthorization, InvalidClient, Throttled, IntuitUnavailable (certainly not processed)
        or OutcomeUnknown (sent, answer lost). `deadline_seconds` bounds the whole call. The refresh keeps the
        grant's scopes (none are asked for); `scopes` is what the new token set records as granted."""

    def revoke(self, credentials: ClientCredentials, *, token: str) -> None: ...

    def user_info(self, *, access_token: str, environment: intuit.Environment) -> ConsentIdentity:
        """Who consented to the grant of `access_token` (openid scope): Intuit's userinfo. Raises
        Unauthorized, Forbidden or IntuitUnavailable."""


@record
class CompanyInfo:
    """The company facts a connection test reads from QuickBooks Online's CompanyInfo."""

    company_name: str
    realm_id: str
    intuit_tid: str | None = None
    legal_name: str | None = None
    country: str | None = None
    # The company's QuickBooks subscription as CompanyInfo reports it (None: not reported); see intuit.py.
    subscription_status: str | None = None

    @property
    def read_only(self) -> bool:
        return intuit.subscription_is_read_only(self.subscription_status)


class CompanyApi(Protocol):
    def company_info(
        self,
        *,
        base_url: str,
        realm_id: str,
        access_token: str,
        usage: UsageKey,
        deadline_seconds: float | None = None,
    ) -> CompanyInfo:
        """Raises Unauthorized, Forbidden, Throttled or IntuitUnavailable (each with intuit_tid; the latter also when
        no answer came within `deadline_seconds`, the whole call). The call is metered as `usage`'s
        (domain/metering.py)."""


@record
class ConnectionEvent:
    """An EventBridge event; `detail` follows the documented shape and never holds secrets."""

    detail_type: str
    detail: Mapping[str, Any]


class EventPublisher(Protocol):
    def publish(self, events: list[ConnectionEvent]) -> None: ...


class StrictPublisher(EventPublisher, Protocol):
    def deliver(self, events: list[ConnectionEvent]) -> list[ConnectionEvent]:
        """Publish; return the events EventBridge did not accept."""


@record
class RecordedEvent:
    """An event as the connection's history keeps it: the published detail verbatim (never a secret)."""

    connection_id: str
    event_id: str
    detail_type: str
    detail: Mapping[str, Any]
    occurred_at: float
    published: bool = False

    def as_event(self) -> ConnectionEvent:
        return ConnectionEvent(detail_type=self.detail_type, detail=self.detail)


class EventHistory(Protocol):
    """Every connection's events, newest first, kept for the retention (DynamoDB in AWS)."""

    def record(self, events: list[RecordedEvent], *, expires_at: float) -> None:
        """Store the events as not yet published; raises if any could not be stored."""

    def mark_published(self, events: list[RecordedEvent]) -> None:
        """Mark stored events published (an event no longer stored stays gone)."""

    def page(
        self, connection_id: str, *, limit: int, before: str | None, now: float
    ) -> tuple[list[RecordedEvent], str | None]:
        """Up to `limit` unexpired events older than the event ID `before`, newest first, and the cursor of
        the next page (None when there is none)."""

    def unpublished(self, *, recorded_before: float, limit: int) -> list[RecordedEvent]:
        """Events still marked not published that were recorded before `recorded_before`, oldest first."""
