"""In-memory implementations of the ports in qbo_connect.ports, for fast unit tests.

They keep the conditional semantics of the AWS adapters, because those semantics are what the
lifecycle relies on: the store's save is checked against version and lease owner, the lease is taken
only when free or expired and released only by its owner, an OAuth state is consumed once; the vault
refuses a second document for a generation it already holds (Secrets Manager's ClientRequestToken).
The identity provider rotates refresh tokens strictly, the reading of Intuit's rules the design
is built for (docs/intuit.md).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from qbo_connect import intuit
from qbo_connect.domain.admin_operations import AdminOperations
from qbo_connect.domain.administration import Administration, NewConnection
from qbo_connect.domain.app_company_leases import AppCompanyLeases
from qbo_connect.domain.authorization import AuthorizeLinks, ConsentFlow, FlowResult, callback_url
from qbo_connect.domain.connection import Connection, ConnectionStatus, ConsentIdentity, RefreshPolicy, TestResult
from qbo_connect.domain.connection_test import ConnectionTests
from qbo_connect.domain.event_history import RecordingPublisher
from qbo_connect.domain.leases import Leases, busy_because
from qbo_connect.domain.lifecycle import RefreshTimings, TokenLifecycle
from qbo_connect.domain.metering import AppUsage, ConnectionUsage, Flush, Tally, UsageKey
from qbo_connect.domain.revocation import Revocations
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import (
    CompanyBusy,
    Conflict,
    ConnectionAlreadyExists,
    ConnectionNotFound,
    Forbidden,
    InvalidClient,
    NeedsReauthorization,
    QboConnectError,
    Unauthorized,
)
from qbo_connect.ports import (
    AppCompany,
    AppCompanyLeaseRecord,
    ClientCredentials,
    CompanyInfo,
    ConnectionEvent,
    OAuthState,
    RecordedEvent,
)
from qbo_connect.settings import Settings
from qbo_connect.token_access import TokenAccess

# 2026-01-01T00:00:00Z: a fixed start keeps times in failure messages readable.
EPOCH = 1_767_225_600.0
DAY = 86_400.0


class FakeClock:
    """Time moves only when told to: `sleep` advances it instead of waiting."""

    def __init__(self, start: float = EPOCH) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def _raise_next(failures: deque[QboConnectError | type[QboConnectError]]) -> None:
    if failures:
        error = failures.popleft()
        raise error(f"injected {error.__name__}") if isinstance(error, type) else error


class InMemoryConnectionStore:
    """ConnectionStore with DynamoDbConnectionStore's conditions, one lock standing in for DynamoDB's atomicity."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._connections: dict[str, Connection] = {}
        self._names: dict[str, str] = {}
        self._states: dict[str, OAuthState] = {}
        self._app_companies: dict[AppCompany, AppCompanyLeaseRecord] = {}
        self._save_failures: deque[Exception] = deque()

    def fail_next_save(self, error: Exception) -> None:
        """The next save raises `error` before writing anything (a crash, a lost connection)."""
        self._save_failures.append(error)

    def create(self, connection: Connection) -> Connection:
        with self._lock:
            if connection.connection_id in self._connections or connection.name.casefold() in self._names:
                raise ConnectionAlreadyExists(
                    f"A connection with ID {connection.connection_id!r} or name {connection.name!r} already exists"
                )
            self._connections[connection.connection_id] = connection
            self._names[connection.name.casefold()] = connection.connection_id
            return connection

    def get(self, connection_id: str) -> Connection | None:
        with self._lock:
            return self._connections.get(connection_id)

    def find_by_name(self, name: str) -> Connection | None:
        with self._lock:
            connection_id = self._names.get(name.casefold())
            return self._connections.get(connection_id) if connection_id else None

    def list(self) -> list[Connection]:
        with self._lock:
            # The by-name index orders by the name's bytes.
            return sorted(self._connections.values(), key=lambda c: c.name.encode())

    def find_by_realm(self, realm_id: str, *, client_id: str | None = None) -> list[Connection]:
        return [c for c in self.list() if c.realm_id == realm_id and (client_id is None or c.client_id == client_id)]

    def save(
        self, connection: Connection, *, lease_owner: str, release_lease: bool = False, renamed_from: str | None = None
    ) -> Connection:
        with self._lock:
            if self._save_failures:
                raise self._save_failures.popleft()
            stored = self._connections.get(connection.connection_id)
            if renamed_from is not None and self._names.get(connection.name.casefold()) not in (
                None,
                connection.connection_id,
            ):
                raise ConnectionAlreadyExists(f"A connection named {connection.name!r} already exists")
            # Like the DynamoDB condition: the owner must match; whether the lease has expired is not checked.
            if stored is None or stored.version != connection.version or stored.lease_owner != lease_owner:
                raise Conflict(f"Connection {connection.connection_id!r} changed meanwhile, or the lease was lost")
            if renamed_from is not None:
                self._names.pop(stored.name.casefold(), None)
                self._names[connection.name.casefold()] = connection.connection_id
                stored = replace(stored, name=connection.name)
            # save() writes the metadata; identity, lease and the last test have their own writes.
            saved = replace(
                connection,
                name=stored.name,
                created_at=stored.created_at,
                lease_owner=None if release_lease else stored.lease_owner,
                lease_expires_at=None if release_lease else stored.lease_expires_at,
                last_test=stored.last_test,
                version=stored.version + 1,
            )
            self._connections[connection.connection_id] = saved
            return saved

    def delete(self, connection: Connection, *, lease_owner: str) -> None:
        with self._lock:
            stored = self._connections.get(connection.connection_id)
            if stored is None or stored.lease_owner != lease_owner:
                raise Conflict(f"Connection {connection.connection_id!r} lease was lost")
            del self._connections[connection.connection_id]
            self._names.pop(stored.name.casefold(), None)

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
        with self._lock:
            stored = self._connections.get(connection_id)
            if stored is None:
                raise ConnectionNotFound(f"No connection {connection_id!r}")
            settled = now - skew_seconds  # like the DynamoDB condition: expired by our clock less the allowance
            lease_free = stored.lease_owner in (None, owner) or (
                stored.lease_expires_at is not None and stored.lease_expires_at < settled
            )
            fence_free = fence_until is None or (
                stored.refresh_in_flight_until is None or stored.refresh_in_flight_until < settled
            )
            if not (lease_free and fence_free):
                raise busy_because(stored, connection_id, now=now)
            leased = replace(stored, lease_owner=owner, lease_expires_at=now + seconds)
            if fence_until is not None:
                leased = leased.fenced_until(fence_until)
            self._connections[connection_id] = leased
            return leased

    def release_lease(self, connection_id: str, *, owner: str, clear_fence: bool = True) -> bool:
        with self._lock:
            stored = self._connections.get(connection_id)
            if stored is None or stored.lease_owner != owner:
                return False
            released = replace(stored, lease_owner=None, lease_expires_at=None)
            self._connections[connection_id] = released.fenced_until(None) if clear_fence else released
            return True

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
        with self._lock:
            before = self._app_companies.get(app_company, AppCompanyLeaseRecord())
            # Like the DynamoDB condition: free, expired by our clock less the allowance, or ours.
            free = before.owner in (None, owner) or (before.expires_at or 0) < now - skew_seconds
            if not free:
                raise CompanyBusy(
                    "held", holder_connection_id=before.connection_id, purpose=before.purpose, until=before.expires_at
                )
            holders = before.grant_holders | ({connection_id} if record_grant_holder else set())
            self._app_companies[app_company] = AppCompanyLeaseRecord(
                owner, now + seconds, connection_id, purpose, frozenset(holders)
            )
            return before

    def renew_app_company_lease(self, app_company: AppCompany, *, owner: str, until: float) -> bool:
        with self._lock:
            record = self._app_companies.get(app_company)
            if record is None or record.owner != owner:
                return False
            self._app_companies[app_company] = replace(record, expires_at=until)
            return True

    def release_app_company_lease(
        self, app_company: AppCompany, *, owner: str, forget: frozenset[str] = frozenset()
    ) -> bool:
        with self._lock:
            record = self._app_companies.get(app_company)
            if record is None or record.owner != owner:
                return False
            self._app_companies[app_company] = AppCompanyLeaseRecord(grant_holders=record.grant_holders - forget)
            return True

    def app_company_lease(self, app_company: AppCompany) -> AppCompanyLeaseRecord:
        with self._lock:
            return self._app_companies.get(app_company, AppCompanyLeaseRecord())

    def record_test(self, connection_id: str, result: TestResult) -> None:
        with self._lock:
            stored = self._connections.get(connection_id)
            if stored is not None:
                self._connections[connection_id] = replace(stored, last_test=result)

    def due_connection_ids(
        self, *, due_before: float, policy: RefreshPolicy = RefreshPolicy.EAGER, limit: int | None = None
    ) -> list[str]:
        with self._lock:
            due = sorted(
                (c.access_token_expires_at, c.connection_id)
                for c in self._connections.values()
                if c.status is ConnectionStatus.CONNECTED
                and c.refresh_policy is policy
                and c.access_token_expires_at is not None
                and c.access_token_expires_at <= due_before
            )
        ids = [connection_id for _, connection_id in due]
        return ids[:limit] if limit else ids

    def connection_ids_with_status(self, status: ConnectionStatus) -> list[str]:
        with self._lock:
            return sorted(c.connection_id for c in self._connections.values() if c.status is status)

    def count_by_status(self, statuses: Iterable[ConnectionStatus] | None = None) -> dict[ConnectionStatus, int]:
        with self._lock:
            stored = [c.status for c in self._connections.values()]
        return {status: stored.count(status) for status in (ConnectionStatus if statuses is None else statuses)}

    def put_state(self, state: OAuthState) -> None:
        with self._lock:
            if state.state_hash in self._states:
                raise Conflict("state exists")
            self._states[state.state_hash] = state

    def get_state(self, state_hash: str) -> OAuthState | None:
        with self._lock:
            return self._states.get(state_hash)

    def consume_state(self, state_hash: str) -> OAuthState | None:
        with self._lock:
            return self._states.pop(state_hash, None)

    @property
    def pending_states(self) -> int:
        with self._lock:
            return len(self._states)


class InMemorySealer:
    """TokenSealer without KMS: the sealed text is opaque (base64) and bound to its connection."""

    def __init__(self) -> None:
        self._failures: deque[Exception] = deque()
        self.sealed = 0

    def fail_next(self, count: int, error: Exception) -> None:
        self._failures.extend([error] * count)

    def seal(self, secret: ConnectionSecret) -> str:
        if self._failures:
            raise self._failures.popleft()
        self.sealed += 1
        return base64.b64encode(f"{secret.connection_id}\n{secret.to_json()}".encode()).decode()

    def open(self, connection_id: str, sealed: str) -> ConnectionSecret:
        owner, _, document = base64.b64decode(sealed).decode().partition("\n")
        assert owner == connection_id, "a sealed rotation opened for another connection"
        return ConnectionSecret.from_json(document)


class InMemoryVault:
    """TokenVault keeping every generation as JSON text, as Secrets Manager keeps versions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, dict[int, str]] = {}
        self._current: dict[str, int] = {}
        self._write_failures: deque[Exception] = deque()
        self.writes = 0

    def fail_next_writes(self, count: int, error: Exception) -> None:
        """The next `count` writes fail with `error` (as the adapter raises after its retries)."""
        self._write_failures.extend([error] * count)

    def create(self, secret: ConnectionSecret) -> None:
        with self._lock:
            if secret.connection_id in self._versions:
                raise ConnectionAlreadyExists(f"A secret for connection {secret.connection_id!r} already exists")
            self._versions[secret.connection_id] = {secret.generation: secret.to_json()}
            self._current[secret.connection_id] = secret.generation

    def read(self, connection_id: str) -> ConnectionSecret | None:
        with self._lock:
            if connection_id not in self._versions:
                return None
            return ConnectionSecret.from_json(self._versions[connection_id][self._current[connection_id]])

    def write(self, secret: ConnectionSecret) -> None:
        document = secret.to_json()
        with self._lock:
            if self._write_failures:
                raise self._write_failures.popleft()
            versions = self._versions.get(secret.connection_id)
            if versions is None:
                raise ConnectionNotFound(f"No secret for connection {secret.connection_id!r}")
            existing = versions.get(secret.generation)
            if existing == document:
                return  # a retried write: same token, same content
            if existing is not None:
                raise Conflict(f"Connection {secret.connection_id!r} was changed by someone else meanwhile")
            versions[secret.generation] = document
            self._current[secret.connection_id] = secret.generation
            self.writes += 1

    def delete(self, connection_id: str) -> None:
        with self._lock:
            self._versions.pop(connection_id, None)
            self._current.pop(connection_id, None)


class InMemorySigningKeys:
    def __init__(self) -> None:
        self._current = ("k1", secrets.token_bytes(32))
        self._previous: list[tuple[str, bytes]] = []

    def current(self) -> tuple[str, bytes]:
        return self._current

    def by_id(self, key_id: str) -> bytes | None:
        return next((key for kid, key in [self._current, *self._previous] if kid == key_id), None)

    def rotate(self, new_key_id: str) -> None:
        """Put a new key in place and keep the old one under `previous`, as the documented rotation does."""
        self._previous.insert(0, self._current)
        self._current = (new_key_id, secrets.token_bytes(32))


@dataclass
class _Grant:
    client_id: str
    realm_id: str
    scopes: tuple[str, ...]
    refresh_token: str
    refresh_expires_at: float
    hard_expires_at: float
    access_tokens: dict[str, float] = field(default_factory=dict)
    consumed: dict[str, float] = field(default_factory=dict)  # old refresh token -> when it was replaced
    revoked: bool = False


@dataclass(frozen=True)
class _PendingCode:
    client_id: str
    redirect_uri: str
    realm_id: str
    scopes: tuple[str, ...]
    expires_at: float


class StrictIdentityProvider:
    """An OAuth 2.0 server with Intuit's token shapes and the strict reading of its rotation rules.

    A refresh always rotates the refresh token; presenting a consumed one is taken as theft: the answer
    is invalid_grant and the whole grant is revoked. `rotation_grace_seconds` models the lenient reading
    (Intuit's JS SDK: the previous token keeps working for a while) for tests that need two refreshes
    of the same token to succeed.
    """

    AUTHORIZATION_URL = "https://appcenter.intuit.test/connect/oauth2"
    CODE_SECONDS = 300

    def __init__(
        self,
        clock: FakeClock,
        *,
        access_seconds: float = intuit.ACCESS_TOKEN_DEFAULT_SECONDS,
        refresh_seconds: float = 100 * DAY,
        hard_seconds: float = 5 * 365 * DAY,
        hard_expiry_in_refresh: bool = True,
        rotation_grace_seconds: float = 0.0,
    ) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        self.hard_seconds = hard_seconds
        self.hard_expiry_in_refresh = hard_expiry_in_refresh
        self.rotation_grace_seconds = rotation_grace_seconds
        # False: Intuit answers a refresh with the same refresh token and what is left of its life (the
        # rolling expiry does not move), as users of Intuit's SDKs have seen for weeks on end
        # (intuit/oauth-pythonclient#17, intuit/oauth-jsclient#74).
        self.rotates_refresh_tokens = True
        self._clients: dict[str, str] = {}
        self._codes: dict[str, _PendingCode] = {}
        self._used_codes: dict[str, _Grant | None] = {}
        self._grants: list[_Grant] = []
        self._failures: deque[QboConnectError | type[QboConnectError]] = deque()
        self._issued: set[str] = set()
        self.before_refresh: list[Callable[[], None]] = []  # one-shot hooks, run as a refresh call arrives
        self.refresh_calls = 0
        self.deadlines: list[float | None] = []  # the whole-call deadline each refresh was given
        self.exchange_calls = 0
        self.revoked_tokens: list[str] = []
        # The person who clicks Connect (OpenID Connect): userinfo and the ID token both name them.
        self.person = ConsentIdentity(
            sub="person-" + secrets.token_hex(8), email="owner@acme.test", email_verified=True
        )
        self.user_info_calls = 0
        self._user_info_failures: deque[QboConnectError | type[QboConnectError]] = deque()
        self.id_token_subject_override: str | None = None  # an ID token naming someone else

    # --- set-up ---------------------------------------------------------------------------------
    def register_client(self, client_id: str, client_secret: str) -> None:
        with self._lock:
            self._clients[client_id] = client_secret
            self._issued.add(client_secret)

    def rotate_client_secret(self, client_id: str, new_secret: str) -> None:
        """The app's secret was regenerated in Intuit's developer portal: the old one stops working."""
        self.register_client(client_id, new_secret)

    def fail_next(self, count: int, error: QboConnectError | type[QboConnectError]) -> None:
        """The next `count` token endpoint calls (exchange or refresh) fail with `error`, consuming nothing."""
        with self._lock:
            self._failures.extend([error] * count)

    def fail_user_info(self, count: int, error: QboConnectError | type[QboConnectError]) -> None:
        with self._lock:
            self._user_info_failures.extend([error] * count)

    # --- what a person does in the browser ------------------------------------------------------
    def authorization_url(self, client_id: str, *, redirect_uri: str, scopes: Iterable[str], state: str) -> str:
        with self._lock:
            self._issued.add(state)
        query = urlencode(
            {
                "client_id": client_id,
                "response_type": "code",
                "scope": " ".join(scopes),
                "redirect_uri": redirect_uri,
                "state": state,
            }
        )
        return f"{self.AUTHORIZATION_URL}?{query}"

    def approve(self, authorization_url: str, *, realm_id: str = "9341453050000001") -> dict[str, str]:
        """A company administrator clicks Connect: the callback's query parameters."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        code = "AB11" + secrets.token_urlsafe(40)
        with self._lock:
            self._codes[code] = _PendingCode(
                client_id=query["client_id"],
                redirect_uri=query["redirect_uri"],
                realm_id=realm_id,
                scopes=tuple(query["scope"].split()),
                expires_at=self._clock.now() + self.CODE_SECONDS,
            )
            self._issued.add(code)
        return {"code": code, "state": query["state"], "realmId": realm_id}

    @staticmethod
    def deny(authorization_url: str) -> dict[str, str]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        return {"error": "access_denied", "state": query["state"]}

    # --- the token endpoint -----------------------------------------------------------------------
    def exchange_code(
        self,
        credentials: ClientCredentials,
        *,
        code: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        deadline_seconds: float | None = None,
    ) -> TokenSet:
        with self._lock:
            self.exchange_calls += 1
            _raise_next(self._failures)
            self._authenticate(credentials)
            if code in self._used_codes:
                # A second exchange of a code poisons the grant it made.
                grant = self._used_codes[code]
                if grant is not None:
                    grant.revoked = True
                raise NeedsReauthorization("invalid_grant: the authorization code was already used")
            pending = self._codes.pop(code, None)
            if pending is None or pending.expires_at < self._clock.now():
                raise NeedsReauthorization("invalid_grant: unknown or expired authorization code")
            if pending.client_id != credentials.client_id or pending.redirect_uri != redirect_uri:
                self._used_codes[code] = None
                raise NeedsReauthorization("invalid_grant: the code was issued to another client or redirect URI")
            now = self._clock.now()
            grant = _Grant(
                client_id=pending.client_id,
                realm_id=pending.realm_id,
                scopes=pending.scopes,
                refresh_token="",
                refresh_expires_at=0.0,
                hard_expires_at=now + self.hard_seconds,
            )
            self._grants.append(grant)
            self._used_codes[code] = grant
            return self._issue(grant, include_hard_expiry=True)

    def refresh(
        self,
        credentials: ClientCredentials,
        *,
        refresh_token: str,
        scopes: tuple[str, ...],
        deadline_seconds: float | None = None,
    ) -> TokenSet:
        with self._lock:
            self.refresh_calls += 1
            self.deadlines.append(deadline_seconds)
            hooks, self.before_refresh = self.before_refresh, []
        for hook in hooks:  # outside the lock: a hook may run another refresh
            hook()
        with self._lock:
            _raise_next(self._failures)
            self._authenticate(credentials)
            now = self._clock.now()
            grant = next((g for g in self._grants if refresh_token in (g.refresh_token, *g.consumed)), None)
            if grant is None or grant.client_id != credentials.client_id:
                raise NeedsReauthorization("invalid_grant: unknown refresh token")
            if grant.revoked or grant.refresh_expires_at <= now or grant.hard_expires_at <= now:
                raise NeedsReauthorization("invalid_grant: the grant was revoked or has expired")
            replaced_at = grant.consumed.get(refresh_token)
            if replaced_at is not None and now - replaced_at >= self.rotation_grace_seconds:
                grant.revoked = True  # reuse of a consumed refresh token: treated as theft
                raise NeedsReauthorization("invalid_grant: the refresh token was already used")
            return self._issue(grant, include_hard_expiry=self.hard_expiry_in_refresh)

    def revoke(self, credentials: ClientCredentials, *, token: str) -> None:
        with self._lock:
            self._authenticate(credentials)
            self.revoked_tokens.append(token)
            holder = next((g for g in self._grants if token == g.refresh_token or token in g.access_tokens), None)
            if holder is None:
                return
            # Intuit's revocation disconnects the app from the company: every grant the app holds there
            # ends, the token's own and any other consent's (docs/intuit.md, "Revocation").
            for grant in self._grants:
                if (grant.client_id, grant.realm_id) == (holder.client_id, holder.realm_id):
                    grant.revoked = True

    def user_info(self, *, access_token: str, environment: intuit.Environment) -> ConsentIdentity:
        with self._lock:
            self.user_info_calls += 1
            _raise_next(self._user_info_failures)
            grant = next((g for g in self._grants if access_token in g.access_tokens), None)
            if grant is None or grant.revoked or grant.access_tokens[access_token] <= self._clock.now():
                raise Unauthorized("userinfo refused the access token")
            if intuit.OPENID_SCOPE not in grant.scopes:
                raise Forbidden("userinfo needs the openid scope")
            return self.person if "email" in grant.scopes else replace(self.person, email=None, email_verified=None)

    def _authenticate(self, credentials: ClientCredentials) -> None:
        if self._clients.get(credentials.client_id) != credentials.client_secret:
            raise InvalidClient("invalid_client: the client ID or secret was refused")

    def _issue(self, grant: _Grant, *, include_hard_expiry: bool) -> TokenSet:
        now = self._clock.now()
        exchange = not grant.refresh_token  # the code exchange: the only answer with an ID token
        access_token = "eyJ" + secrets.token_urlsafe(48)
        if exchange or self.rotates_refresh_tokens:
            if grant.refresh_token:
                grant.consumed[grant.refresh_token] = now
            grant.refresh_token = "AB11" + secrets.token_urlsafe(36)
            grant.refresh_expires_at = min(now + self.refresh_seconds, grant.hard_expires_at)
        grant.access_tokens[access_token] = now + self.access_seconds
        self._issued.update({access_token, grant.refresh_token})
        response: dict[str, object] = {
            "token_type": "bearer",
            "access_token": access_token,
            "refresh_token": grant.refresh_token,
            "expires_in": int(self.access_seconds),
            intuit.REFRESH_TOKEN_EXPIRES_IN_FIELD: int(grant.refresh_expires_at - now),
        }
        if include_hard_expiry:
            response[intuit.REFRESH_TOKEN_HARD_EXPIRES_IN_FIELD] = int(grant.hard_expires_at - now)
        token_set = TokenSet.from_token_response(response, now=now, scopes=grant.scopes)
        if intuit.OPENID_SCOPE in grant.scopes and exchange:
            token_set = replace(token_set, id_token_subject=self.id_token_subject_override or self.person.sub)
        return token_set

    # --- what tests look at -----------------------------------------------------------------------
    def _grant_for(self, realm_id: str) -> _Grant:
        return [g for g in self._grants if g.realm_id == realm_id][-1]

    def current_refresh_token(self, realm_id: str) -> str:
        with self._lock:
            return self._grant_for(realm_id).refresh_token

    @property
    def revocation_calls(self) -> int:
        """How many revocations were asked for (a count, so that a failing test prints no token)."""
        with self._lock:
            return len(self.revoked_tokens)

    def grant_revoked(self, realm_id: str) -> bool:
        with self._lock:
            return self._grant_for(realm_id).revoked

    def revoke_grant(self, realm_id: str) -> None:
        """A company administrator disconnects the app in QuickBooks: all its grants on the company end."""
        with self._lock:
            for grant in self._grants:
                if grant.realm_id == realm_id:
                    grant.revoked = True

    def invalidate_access_tokens(self, realm_id: str) -> None:
        """Intuit stops honouring the access tokens early (a 401 before they expire)."""
        with self._lock:
            self._grant_for(realm_id).access_tokens.clear()

    def is_access_token_valid(self, access_token: str, realm_id: str) -> bool:
        with self._lock:
            return any(
                g.realm_id == realm_id and not g.revoked and g.access_tokens.get(access_token, 0) > self._clock.now()
                for g in self._grants
            )

    def issued_values(self) -> set[str]:
        """Every token, code, state and client secret this server has seen or handed out."""
        with self._lock:
            return set(self._issued)


class FakeCompanyApi:
    """CompanyApi that honours exactly the access tokens the identity provider considers valid."""

    def __init__(self, identity: StrictIdentityProvider, *, company_name: str = "Sandbox Company_US_1") -> None:
        self._identity = identity
        self.company_name = company_name
        self.calls = 0
        self.usages: list[UsageKey] = []  # whose call each was, for metering
        self.deadlines: list[float | None] = []  # each call's whole-call deadline
        self._failures: deque[QboConnectError | type[QboConnectError]] = deque()

    def fail_next(self, count: int, error: QboConnectError | type[QboConnectError]) -> None:
        self._failures.extend([error] * count)

    def company_info(
        self, *, base_url: str, realm_id: str, access_token: str, usage: UsageKey, deadline_seconds: float | None = None
    ) -> CompanyInfo:
        self.calls += 1
        self.deadlines.append(deadline_seconds)
        self.usages.append(usage)
        tid = f"1-fake-{self.calls}"
        _raise_next(self._failures)
        if not self._identity.is_access_token_valid(access_token, realm_id):
            raise Unauthorized("Intuit refused the access token (3200: AuthenticationFailed)", intuit_tid=tid)
        return CompanyInfo(company_name=self.company_name, realm_id=realm_id, intuit_tid=tid)


class RecordingEvents:
    """EventBridge: what it took, in order. `fail_next` makes the next calls raise (an outage, throttling past
    the SDK's retries) or, with `refuse`, answer with every entry refused (FailedEntryCount)."""

    def __init__(self) -> None:
        self.published: list[ConnectionEvent] = []
        self._failures: deque[Exception | None] = deque()

    def fail_next(self, count: int, error: Exception | None = None, *, refuse: bool = False) -> None:
        self._failures.extend([None if refuse else (error or RuntimeError("EventBridge unavailable"))] * count)

    def deliver(self, events: list[ConnectionEvent]) -> list[ConnectionEvent]:
        if self._failures:
            failure = self._failures.popleft()
            if failure is not None:
                raise failure
            return list(events)
        self.published.extend(events)
        return []

    def publish(self, events: list[ConnectionEvent]) -> None:
        with contextlib.suppress(Exception):
            self.deliver(events)

    @property
    def detail_types(self) -> list[str]:
        return [e.detail_type for e in self.published]


class InMemoryEventHistory:
    """The DynamoDB history's semantics: newest first by event ID, expired records skipped on read (TTL deletes
    late), an update never recreates a deleted record. `fail_next_records` fails the next record calls."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], tuple[RecordedEvent, float]] = {}
        self._record_failures: deque[Exception] = deque()
        self._mark_failures: deque[Exception] = deque()

    def fail_next_records(self, count: int, error: Exception | None = None) -> None:
        self._record_failures.extend([error or RuntimeError("DynamoDB unavailable")] * count)

    def fail_next_marks(self, count: int) -> None:
        self._mark_failures.extend([RuntimeError("DynamoDB unavailable")] * count)

    def record(self, events: list[RecordedEvent], *, expires_at: float) -> None:
        if self._record_failures:
            raise self._record_failures.popleft()
        for event in events:
            self.items[(event.connection_id, event.event_id)] = (replace(event, published=False), expires_at)

    def mark_published(self, events: list[RecordedEvent]) -> None:
        if self._mark_failures:
            raise self._mark_failures.popleft()
        for event in events:
            key = (event.connection_id, event.event_id)
            if key in self.items:
                stored, expires_at = self.items[key]
                self.items[key] = (replace(stored, published=True), expires_at)

    def page(
        self, connection_id: str, *, limit: int, before: str | None, now: float
    ) -> tuple[list[RecordedEvent], str | None]:
        found = sorted(
            (
                event
                for (cid, event_id), (event, expires_at) in self.items.items()
                if cid == connection_id and (before is None or event_id < before) and expires_at > now
            ),
            key=lambda e: e.event_id,
            reverse=True,
        )
        page = found[:limit]
        return page, (page[-1].event_id if len(found) > limit else None)

    def unpublished(self, *, recorded_before: float, limit: int) -> list[RecordedEvent]:
        waiting = sorted(
            (e for e, _ in self.items.values() if not e.published and e.occurred_at < recorded_before),
            key=lambda e: e.event_id,
        )
        return waiting[:limit]

    def expire(self, connection_id: str) -> None:
        """Remove the connection's records, as TTL does in the end."""
        for key in [k for k in self.items if k[0] == connection_id]:
            del self.items[key]


API_BASE_URL = "https://api.qbo-connect.test"
# Older than the lifecycle's forced-refresh minimum age: a 401 may force a refresh again.
FORCED_REFRESH_AGE = RefreshTimings.forced_refresh_min_age_seconds + 60
CLIENT_ID = "ABfakeclientid0123456789"


class FakeWorld:
    """The domain services wired on the fakes, plus the few steps most tests start with."""

    def __init__(self, clock: FakeClock | None = None, identity: StrictIdentityProvider | None = None) -> None:
        self.clock = clock or FakeClock()
        self.settings = Settings(table_name="connections")
        self.store = InMemoryConnectionStore()
        self.vault = InMemoryVault()
        self.sealer = InMemorySealer()
        self.keys = InMemorySigningKeys()
        self.identity = identity or StrictIdentityProvider(self.clock)
        self.company_api = FakeCompanyApi(self.identity)
        # `events` is EventBridge (what it took); the services publish through `recorder`, which keeps the history.
        self.events = RecordingEvents()
        self.history = InMemoryEventHistory()
        self.recorder = RecordingPublisher(self.history, self.events, self.clock)
        self.leases = Leases(
            self.store,
            self.vault,
            self.clock,
            lease_seconds=self.settings.lease_seconds,
            skew_seconds=self.settings.clock_skew_seconds,
            sealer=self.sealer,
        )
        self.timings = RefreshTimings(margin_seconds=self.settings.refresh_margin_seconds)
        self.lifecycle = TokenLifecycle(
            self.store, self.vault, self.identity, self.recorder, self.clock, self.leases, self.timings
        )
        self.links = AuthorizeLinks(self.keys, self.clock, lifetime_seconds=self.settings.authorize_link_seconds)
        self.company_leases = AppCompanyLeases(
            self.store,
            self.clock,
            skew_seconds=self.settings.clock_skew_seconds,
            revocation_call_seconds=self.settings.consent_call_deadline_seconds,
        )
        self.revocations = Revocations(self.identity, self.store, self.company_leases, self.clock)
        self.consent = ConsentFlow(
            self.store,
            self.leases,
            self.identity,
            self.company_api,
            self.recorder,
            self.links,
            self.clock,
            self.revocations,
            state_seconds=self.settings.oauth_state_seconds,
            exchange_call_seconds=self.settings.consent_call_deadline_seconds,
            persist_seconds=self.settings.persist_seconds,
        )
        self.administration = Administration(
            self.store, self.vault, self.leases, self.revocations, self.recorder, self.clock, self.settings
        )
        self.tests = ConnectionTests(self.store, self.lifecycle, self.company_api, self.recorder, self.clock)
        self.admin = AdminOperations(
            self.administration,
            self.store,
            self.leases,
            self.lifecycle,
            self.tests,
            self.links,
            self.identity,
            self.recorder,
            self.clock,
            self.settings,
            self.company_leases,
            history=self.recorder,
        )
        self.redirect_uri = callback_url(API_BASE_URL)
        self.client_secret = "cs-" + secrets.token_urlsafe(24)

    def create_connection(
        self,
        name: str = "Acme Books",
        *,
        realm_id: str | None = None,
        client_secret: str | None = None,
        scopes: tuple[str, ...] = intuit.DEFAULT_SCOPES,
    ) -> Connection:
        # One app per world: every connection uses its client ID and current secret.
        if client_secret is not None:
            self.client_secret = client_secret
        self.identity.register_client(CLIENT_ID, self.client_secret)
        return self.administration.create(
            NewConnection(
                name=name, client_id=CLIENT_ID, realm_id=realm_id, client_secret=self.client_secret, scopes=scopes
            )
        )

    def start(self, connection_id: str):
        """Open a freshly signed authorize link: (where the browser goes, the state cookie it keeps)."""
        query = parse_qs(urlsplit(self.links.create(API_BASE_URL, connection_id)).query)
        start = self.consent.start(
            connection_id,
            exp=query["exp"][0],
            kid=query["kid"][0],
            sig=query["sig"][0],
            redirect_uri=self.redirect_uri,
        )
        return start.redirect_url, start.state_cookie

    def connect(self, connection_id: str, *, realm_id: str = "9341453050000001") -> FlowResult:
        url, cookie = self.start(connection_id)
        return self.consent.complete(self.identity.approve(url, realm_id=realm_id), state_cookie=cookie)

    def container(self, *, handoff: Any = None) -> TokenAccess:
        """Another Lambda container's token access: its own lifecycle (handing refreshes to `handoff`, if given) on
        the world's store, vault, Intuit and leases."""
        lifecycle = TokenLifecycle(
            self.store, self.vault, self.identity, self.recorder, self.clock, self.leases, self.timings, handoff=handoff
        )
        return TokenAccess(lifecycle, self.store, self.clock)

    def connected(self, name: str = "Acme Books", *, realm_id: str = "9341453050000001") -> Connection:
        connection = self.create_connection(name)
        return self.connect(connection.connection_id, realm_id=realm_id).connection

    def token_set(self, connection_id: str) -> TokenSet | None:
        secret = self.vault.read(connection_id)
        return secret.token_set if secret else None

    def connection(self, connection_id: str) -> Connection:
        connection = self.store.get(connection_id)
        assert connection is not None
        return connection


class InMemoryUsageLedger:
    """UsageLedger with DynamoDB's transaction semantics: all of a flush or none, and a token seen before
    adds nothing again. `fail_next` makes the next adds fail before writing; `lose_next_answers` makes
    them write and then fail, as a transaction whose answer was lost on the way back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tallies: dict[tuple[str, UsageKey], Tally] = {}
        self.tokens: list[str] = []
        self.writes = 0
        self._failures: deque[Exception] = deque()
        self._lost: deque[Exception] = deque()

    def fail_next(self, count: int, error: Exception) -> None:
        self._failures.extend([error] * count)

    def lose_next_answers(self, count: int, error: Exception) -> None:
        self._lost.extend([error] * count)

    def add(self, flush: Flush) -> None:
        with self._lock:
            self.writes += 1
            if self._failures:
                raise self._failures.popleft()
            if flush.token not in self.tokens:
                self.tokens.append(flush.token)
                for key, tally in flush.counts.items():
                    self.tallies.setdefault(key, Tally()).add(tally.reads, tally.writes)
            if self._lost:
                raise self._lost.popleft()

    def month(self, month: str, *, connections_too: bool = True) -> list[AppUsage]:
        with self._lock:
            apps: dict[str, dict[str, int]] = {}
            connections: dict[str, dict[str, ConnectionUsage]] = {}
            for (at, key), tally in self.tallies.items():
                if at != month:
                    continue
                prefix = "production" if key.metered else "sandbox"
                app = apps.setdefault(key.client_id, {})
                app[f"{prefix}_reads"] = app.get(f"{prefix}_reads", 0) + tally.reads
                app[f"{prefix}_writes"] = app.get(f"{prefix}_writes", 0) + tally.writes
                known = connections.setdefault(key.client_id, {}).get(key.connection_id)
                connections[key.client_id][key.connection_id] = ConnectionUsage(
                    key.connection_id,
                    key.environment.value,
                    (known.reads if known else 0) + tally.reads,
                    (known.writes if known else 0) + tally.writes,
                )
            return [
                AppUsage(
                    client_id,
                    month,
                    **figures,
                    connections=tuple(connections[client_id].values()) if connections_too else (),
                )
                for client_id, figures in sorted(apps.items())
            ]

    def calls(self, key: UsageKey) -> Tally:
        """Everything counted for `key`, over all months."""
        total = Tally()
        for (_, counted), tally in self.tallies.items():
            if counted == key:
                total.add(tally.reads, tally.writes)
        return total
