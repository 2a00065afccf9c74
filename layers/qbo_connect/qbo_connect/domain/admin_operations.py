"""What an administrator can do to connections, in one place for every way in: the CLI, the admin API and
the console all call these operations, so they cannot drift apart.

Rules that hold for every operation:
- Bad input is refused before anything changes.
- Every change is announced as a `Connection Changed` event: who (`actor`), what (`action`, the names of
  the fields that changed), when. Never a value that is secret: not the client secret, not a token.
- Changes to a connection's secret happen under its lease (domain/leases.py), as everywhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import field, replace
from typing import Any

from qbo_connect.domain.administration import Administration, NewConnection
from qbo_connect.domain.app_company_leases import AppCompanyLeases, HeldAppCompanyLease, LeasePurpose, holder_of
from qbo_connect.domain.authorization import AuthorizeLinks
from qbo_connect.domain.connection import (
    GRANT_ENDED,
    Connection,
    ConnectionStatus,
    RefreshPolicy,
    parse_environment,
    parse_refresh_policy,
    validate_client_id,
    validate_connection_id,
    validate_name,
    validate_realm_id,
    validate_scopes,
)
from qbo_connect.domain.connection_test import ConnectionTests, TestReport
from qbo_connect.domain.event_history import EventPage, RecordingPublisher
from qbo_connect.domain.events import EventType, connection_event
from qbo_connect.domain.grant_end import DAY_SECONDS
from qbo_connect.domain.leases import Leases, utc_time
from qbo_connect.domain.lifecycle import RefreshOutcome, RefreshResult, TokenLifecycle
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.errors import (
    Busy,
    CompanyBusy,
    ConnectionAlreadyExists,
    ConnectionNotFound,
    ErrorCode,
    InvalidInput,
    LeaseRanOut,
    NeedsReauthorization,
)
from qbo_connect.observability import logger
from qbo_connect.ports import AppCompany, ClientCredentials, Clock, ConnectionStore, EventPublisher, IdentityProvider
from qbo_connect.records import record
from qbo_connect.settings import Settings

# A link mailed to a company administrator may live longer than the default, but not for ever.
MAX_AUTHORIZE_LINK_SECONDS = 7 * DAY_SECONDS
MIN_AUTHORIZE_LINK_SECONDS = 60
MAX_IMPORTED_TOKEN_LENGTH = 4096
LEASE_WAIT_SECONDS = 30
# Refresh outcomes that mean Intuit was asked (and the connection's tokens or status may have changed).
ASKED_INTUIT = frozenset(
    {
        RefreshOutcome.REFRESHED,
        RefreshOutcome.RECOVERED,
        RefreshOutcome.HANDED_OFF,
        RefreshOutcome.TRANSIENT_FAILURE,
        RefreshOutcome.OUTCOME_UNKNOWN,
        RefreshOutcome.NEEDS_REAUTHORIZATION,
        RefreshOutcome.INVALID_CLIENT,
    }
)


@record
class ConnectionUpdate:
    """The fields an administrator may change; None leaves a field as it is. `realm_id=""` removes the pin."""

    name: str | None = None
    client_id: str | None = None
    scopes: tuple[str, ...] | None = None
    environment: str | None = None
    base_url: str | None = None
    realm_id: str | None = None
    refresh_policy: str | None = None


@record
class AuthorizeLink:
    connection_id: str
    name: str
    url: str
    expires_at: int
    callback_url: str
    lifetime_seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "name": self.name,
            "authorize_url": self.url,
            "expires_at": self.expires_at,
            "callback_url": self.callback_url,
        }


@record
class ImportedTokens:
    refresh_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    realm_id: str | None = None


def connection_view(connection: Connection, now: float) -> dict[str, Any]:
    """A connection as the API and the console show it: its summary plus what a person should notice."""
    hard = connection.refresh_token_hard_expires_at
    end = connection.grant_end
    return {
        **connection.summary(),
        "days_to_hard_expiry": None if hard is None else int((hard - now) // DAY_SECONDS),
        "reauthorize_by": None if end is None else int(end.at),
        # Which end comes first (rolling: a refresh moves it; hard: only a reconnect), and whether it is within
        # the first warning mark (GrantsEndingSoonAlarm's level).
        "grant_ends_by": None if end is None else end.by.value,
        "grant_ending_soon": end is not None and end.ending_soon(now),
        "attention": attention(connection, now),
    }


def attention(connection: Connection, now: float) -> str | None:
    """Why a person should look at the connection, in a few words; None when all is well."""
    if not connection.has_client_secret:
        return "client secret not set"
    if connection.status is ConnectionStatus.NEEDS_REAUTHORIZATION:
        why = connection.last_refresh_error or "Intuit refused the refresh token"
        if why == GRANT_ENDED:
            why = "the grant ended while the client secret was wrong; a company administrator must reconnect"
        return f"needs reauthorization: {why}"
    if connection.status is ConnectionStatus.NOT_CONNECTED:
        return "not connected: open the authorize link and click Connect"
    ends_at, end = connection.grant_ends_at, connection.grant_end
    if connection.status is ConnectionStatus.INVALID_CLIENT:
        if connection.grant_ended(now):
            return (
                f"invalid client, and the grant ended {utc_time(ends_at)}: set the current secret, then a company "
                "administrator must reconnect"
            )
        if end is not None and end.ending_soon(now):
            # Nothing refreshes it meanwhile: the end comes nearer every day (the sweep warns at each mark).
            return f"invalid client, and {end.described(now)}: {end.what_to_do(client_secret_wrong=True)}"
        return "invalid client: Intuit refused the client ID or secret; set the current secret"
    if connection.grant_ended(now):
        return f"grant ended {utc_time(ends_at)}: a company administrator must reconnect"
    if end is not None and end.ending_soon(now):
        return f"{end.described(now)}: {end.what_to_do(client_secret_wrong=False)}"
    if refused := _company_data_refused(connection):
        return refused
    if connection.consecutive_refresh_failures:
        return f"refresh failing ({connection.consecutive_refresh_failures} in a row): {connection.last_refresh_error}"
    return None


def _company_data_refused(connection: Connection) -> str | None:
    """What the last test of this grant found of a lapsed subscription, in either of Intuit's shapes, until a test
    finds it renewed: a 403 (fault 3100), or CompanyInfo's status leaving the company read only."""
    test = connection.last_test
    if test is None or test.tested_at < (connection.connected_at or 0):
        return None
    if not test.ok and test.error_code == ErrorCode.FORBIDDEN:
        return (
            "company data refused at the last test (403, fault 3100): a company administrator must renew the "
            "QuickBooks subscription (or, if a deep test says so, add the accounting scope and reconnect)"
        )
    if test.company_read_only:
        return (
            f"QuickBooks subscription {test.subscription_status} at the last test: the company is read only "
            "(writes are refused) until a company administrator renews the subscription"
        )
    return None


class AdminOperations:
    def __init__(
        self,
        administration: Administration,
        store: ConnectionStore,
        leases: Leases,
        lifecycle: TokenLifecycle,
        tests: ConnectionTests,
        links: AuthorizeLinks,
        identity: IdentityProvider,
        events: EventPublisher,
        clock: Clock,
        settings: Settings,
        company_leases: AppCompanyLeases,
        history: RecordingPublisher | None = None,
    ) -> None:
        self._administration = administration
        self._company_leases = company_leases
        self._store = store
        self._leases = leases
        self._lifecycle = lifecycle
        self._tests = tests
        self._links = links
        self._identity = identity
        self._events = events
        self._clock = clock
        self._settings = settings
        self._history = history

    # --- reading ----------------------------------------------------------------------------------
    def find(self, name_or_id: str) -> Connection:
        return self._administration.find(name_or_id)

    def connections(self) -> list[Connection]:
        return self._administration.list()

    def list(self) -> list[dict[str, Any]]:
        now = self._clock.now()
        return [connection_view(c, now) for c in self.connections()]

    def due_connection_ids(self) -> list[str]:
        return self._lifecycle.due_connection_ids()

    def events(self, name_or_id: str, *, limit: int | None = None, before: str | None = None) -> EventPage:
        """The connection's event history, newest first. A deleted connection's history stays readable by its
        ID until it expires: who deleted it, and what happened before."""
        if self._history is None:
            raise InvalidInput(
                "This deployment keeps no event history (QBO_EVENTS_TABLE_NAME is not set): deploy the current "
                "template, or read the events on EventBridge"
            )
        try:
            connection_id = self.find(name_or_id).connection_id
        except ConnectionNotFound:
            with contextlib.suppress(InvalidInput):
                page = self._history.page(validate_connection_id(name_or_id), limit=limit, before=before)
                if page.events:
                    return page
            raise
        return self._history.page(connection_id, limit=limit, before=before)

    def show(self, name_or_id: str) -> dict[str, Any]:
        return connection_view(self.find(name_or_id), self._clock.now())

    # --- changing ---------------------------------------------------------------------------------
    def check_new(self, request: NewConnection) -> None:
        """What create() would refuse, without creating anything (the CLI asks before prompting for a secret)."""
        self._administration.check_new(request)

    def create(self, request: NewConnection, *, actor: str) -> Connection:
        created = self._administration.create(request)
        self._changed(created, actor, "created", fields=["client_secret"] if request.client_secret else [])
        return created

    def update(
        self, name_or_id: str, change: ConnectionUpdate, *, actor: str, not_after: float | None = None
    ) -> Connection:
        """`not_after`: when the caller must be done (a Lambda invocation's end); a refresh this change calls
        for is not sent unless its answer can be read and persisted by then (the schedule's will be)."""
        connection = self.find(name_or_id)
        wanted = self._validated(change, connection)
        with self._leases.hold(connection.connection_id, wait_seconds=LEASE_WAIT_SECONDS) as held:
            current = held.connection
            changed = [name for name, value in wanted.items() if getattr(current, name) != value]
            if not changed:
                return current
            self._refuse_while_connected(current, changed)
            if "name" in changed:
                self._refuse_taken_name(current, wanted["name"])
            now = self._clock.now()
            updated = replace(current, **wanted, updated_at=now)
            base = held.secret or Administration._empty_secret(held.connection)
            # The secret tells readers who take the token straight from it whether it is kept valid: they
            # learn at once that it no longer is (on_demand), but `eager` goes on a token only once it is
            # valid for the margin, here if it already is, else with the refresh below.
            label = updated.refresh_policy
            if label is RefreshPolicy.EAGER and not self._serves_eagerly(base, now):
                label = base.refresh_policy
            secret = None
            if {"client_id", "base_url", "realm_id"} & set(changed) or label is not base.refresh_policy:
                secret = base.next(
                    now=now,
                    client_id=updated.client_id,
                    base_url=updated.base_url,
                    realm_id=updated.realm_id,
                    refresh_policy=label,
                )
            # The name moves in the metadata's own write: a commit the vault refuses leaves the old name, and a
            # name claimed by another in between refuses the whole change, not just the rename.
            renamed_from = current.name if "name" in changed else None
            saved = self._leases.commit(held, updated, secret, renamed_from=renamed_from)
        if label is not saved.refresh_policy and saved.is_refreshable:
            # Now eager with a token too short for the promise: refreshed at once (under its own lease),
            # which writes the eager label with a valid token; if Intuit cannot answer now, the label
            # stays until the schedule's next refresh succeeds.
            self._lifecycle.refresh(saved.connection_id, not_after=not_after)
            saved = self._store.get(saved.connection_id) or saved
        self._changed(saved, actor, "updated", fields=sorted(changed))
        return saved

    def _refuse_taken_name(self, connection: Connection, name: str) -> None:
        holder = self._store.find_by_name(name)
        if holder is not None and holder.connection_id != connection.connection_id:
            raise ConnectionAlreadyExists(
                f"A connection named {name!r} already exists (ID {holder.connection_id}): choose another name"
            )

    def _serves_eagerly(self, secret: ConnectionSecret, now: float) -> bool:
        """Whether the stored token keeps an eager connection's promise (valid for the refresh margin)."""
        token_set = secret.token_set
        return token_set is None or token_set.is_valid_for(self._lifecycle.timings.margin_seconds, now)

    def set_client_secret(self, name_or_id: str, client_secret: str, *, actor: str) -> Connection:
        saved = self._administration.set_client_secret(name_or_id, client_secret)
        self._changed(saved, actor, "client_secret_set", fields=["client_secret"])
        return saved

    def authorize_link(
        self, name_or_id: str, *, api_base_url: str, callback_url: str, lifetime_seconds: float | None = None
    ) -> AuthorizeLink:
        lifetime = self._links.lifetime_seconds if lifetime_seconds is None else lifetime_seconds
        if not (
            isinstance(lifetime, int | float)
            and not isinstance(lifetime, bool)
            and MIN_AUTHORIZE_LINK_SECONDS <= lifetime <= MAX_AUTHORIZE_LINK_SECONDS
        ):
            raise InvalidInput(
                f"A link lives from {MIN_AUTHORIZE_LINK_SECONDS} seconds to 7 days "
                f"({MAX_AUTHORIZE_LINK_SECONDS} seconds): choose a lifetime in between"
            )
        connection = self.find(name_or_id)
        now = self._clock.now()
        url = self._links.create(api_base_url, connection.connection_id, lifetime_seconds=lifetime)
        return AuthorizeLink(
            connection.connection_id, connection.name, url, int(now + lifetime), callback_url, lifetime
        )

    def reset(self, name_or_id: str, *, actor: str, not_after: float | None = None) -> Connection:
        saved = self._administration.reset(name_or_id, not_after=not_after)
        self._changed(saved, actor, "reset", fields=["token_set"], revocation=saved.last_revocation)
        return saved

    def delete(self, name_or_id: str, *, actor: str, not_after: float | None = None) -> str:
        connection = self.find(name_or_id)
        revocation = self._administration.delete(connection.connection_id, not_after=not_after)
        self._changed(connection, actor, "deleted", fields=[], revocation=revocation)
        return revocation

    def test(
        self,
        name_or_id: str,
        *,
        deep: bool = False,
        on_step: Callable[[str], None] | None = None,
        not_after: float | None = None,
    ) -> TestReport:
        return self._tests.run(self.find(name_or_id).connection_id, deep=deep, on_step=on_step, not_after=not_after)

    def refresh(
        self, name_or_id: str, *, actor: str, force: bool = True, not_after: float | None = None
    ) -> RefreshResult:
        """Refresh now (`force`: even if not due), if it can be answered and persisted by `not_after`. Recorded
        when Intuit was asked, whatever it answered; a refresh that was not due, not allowed yet or not
        possible changed nothing and is not recorded."""
        connection = self.find(name_or_id)
        result = self._lifecycle.refresh(connection.connection_id, force=force, not_after=not_after)
        if result.outcome in ASKED_INTUIT:
            after = self._store.get(connection.connection_id) or connection
            self._changed(after, actor, "refreshed", fields=["token_set"], outcome=result.outcome.value)
        return result

    def check_import(self, name_or_id: str, *, realm_id: str | None = None) -> Connection:
        """What an import is refused for whatever the token: the CLI asks before anyone pastes one; import_tokens
        checks again (and the status once more under the lease)."""
        connection = self.find(name_or_id)
        if realm_id is not None:
            validate_realm_id(realm_id)
        if connection.realm_id and realm_id and realm_id != connection.realm_id:
            raise InvalidInput(
                f"The connection is pinned to company {connection.realm_id}; the tokens are for {realm_id}: "
                "import into the right connection, or change its company ID first"
            )
        if not (realm_id or connection.realm_id):
            raise InvalidInput("Give the company ID (realm ID) the tokens belong to: Intuit's token answer has none")
        if realm_id is None and connection.status is not ConnectionStatus.NOT_CONNECTED:
            # The tokens replace a grant: the company they belong to is said, not assumed from the pin.
            raise InvalidInput(
                f"The connection is {connection.status.value}: give the company ID the tokens belong to "
                f"({connection.realm_id} if they are for the same company), so that another company's tokens "
                "cannot replace its grant"
            )
        if not connection.has_client_secret:
            raise InvalidInput("Set the connection's client secret first: the refresh needs it")
        return connection

    def import_tokens(
        self, name_or_id: str, tokens: ImportedTokens, *, actor: str, not_after: float | None = None
    ) -> Connection:
        """Take over a grant from another tool: one refresh under the lease proves the refresh token works.

        Nothing is stored unless Intuit accepts the token; the access token, if given, is replaced by the
        refresh's own and never stored (the other tool may still hold it). `not_after`: when the caller must
        be done (a Lambda invocation's end); the refresh is not sent unless its answer can be persisted by
        then, since Intuit rotates the imported token and the other tool's copy is spent with it.
        """
        _validate_imported(tokens)
        connection = self.check_import(name_or_id, realm_id=tokens.realm_id)
        realm_id = tokens.realm_id or connection.realm_id
        with self._leases.hold(connection.connection_id, wait_seconds=LEASE_WAIT_SECONDS) as held:
            current = held.connection
            secret = held.secret or Administration._empty_secret(current)
            if not secret.client_secret:
                raise InvalidInput("Set the connection's client secret first: the refresh needs it")
            with self._importing(secret.client_id, realm_id, connection.connection_id) as company:
                persist = self._lifecycle.timings.persist_seconds
                deadline = self._import_call_seconds
                if not_after is not None and not_after - self._clock.now() - persist < deadline:
                    raise Busy(
                        "Waiting for the connection's lease left too little time to refresh the imported token and "
                        "store Intuit's answer: nothing was changed and the token was not used; try again"
                    )
                try:
                    token_set = self._identity.refresh(
                        ClientCredentials(secret.client_id, secret.client_secret),
                        refresh_token=tokens.refresh_token,
                        scopes=current.scopes,
                        deadline_seconds=min(deadline, self._company_leases.seconds_left(company) - persist),
                    )
                except NeedsReauthorization:
                    raise NeedsReauthorization(
                        "Intuit refused the imported refresh token (invalid_grant: used already, revoked, expired or "
                        "issued to another app): nothing was changed; export a current one, or reconnect instead"
                    ) from None
                try:
                    # Past its lease a revoker may have taken over and ended this grant unseen.
                    self._company_leases.ensure(company, persist)
                except LeaseRanOut:
                    raise LeaseRanOut(
                        "The import took longer than its lease on the app and company, and another connection's "
                        "reset, delete or consent came in between: Intuit's new token was not stored (the imported "
                        "one is spent); connect the connection with a consent instead"
                    ) from None
                # Persist first: Intuit has rotated the imported token; the new one exists only here. Tokens the
                # connection held are replaced, not revoked, as by a reconnect: the same app on the same company
                # (the pinned company is checked above), and revoking them would end the imported grant too.
                now = self._clock.now()
                new_secret = secret.next(now=now, token_set=token_set, realm_id=realm_id)
                saved = self._leases.commit(
                    held,
                    current.connected_with(
                        token_set, realm_id=realm_id, company_name=None, now=now, generation=new_secret.generation
                    ).fenced_until(None),
                    new_secret,
                )
        self._changed(saved, actor, "imported", fields=["token_set"])
        logger.info("Tokens imported", extra={"connection_id": saved.connection_id})
        return saved

    # --- helpers ----------------------------------------------------------------------------------
    @property
    def import_lease_seconds(self) -> float:
        """How long an import holds the app-company lease: its refresh call, then persisting the answer (within the
        admin function's timeout: template tests)."""
        return self._import_call_seconds + self._lifecycle.timings.persist_seconds

    @property
    def _import_call_seconds(self) -> float:
        """An import's refresh cannot be handed to the refresh function (no grant is stored yet): it has a deadline
        of its own, within the admin API's 30 s."""
        return self._settings.import_call_deadline_seconds

    @contextlib.contextmanager
    def _importing(self, client_id: str, realm_id: str, connection_id: str) -> Iterator[HeldAppCompanyLease]:
        """The app-company lease for an import: from the refresh until its answer is stored, no revocation of the
        app on the company is decided (it would end the imported grant unseen)."""
        with contextlib.ExitStack() as stack:
            try:
                company = stack.enter_context(
                    self._company_leases.hold(
                        AppCompany(client_id, realm_id),
                        connection_id=connection_id,
                        purpose=LeasePurpose.IMPORT,
                        seconds=self.import_lease_seconds,
                    )
                )
            except CompanyBusy as busy:
                holder = holder_of(busy, self._store)
                raise Busy(
                    f"{holder[0].upper()}{holder[1:]} right now: nothing was changed and the token was not used; "
                    f"try again {self._company_leases.retry_when(busy)}"
                ) from None
            yield company

    def _validated(self, change: ConnectionUpdate, connection: Connection) -> dict[str, Any]:
        wanted: dict[str, Any] = {}
        if change.name is not None:
            wanted["name"] = validate_name(change.name)
        if change.client_id is not None:
            wanted["client_id"] = validate_client_id(change.client_id)
        if change.scopes is not None:
            wanted["scopes"] = validate_scopes(change.scopes)
        if change.realm_id is not None:
            wanted["realm_id"] = validate_realm_id(change.realm_id) if change.realm_id else None
        if change.refresh_policy is not None:
            wanted["refresh_policy"] = parse_refresh_policy(change.refresh_policy)
        if change.environment is not None or change.base_url is not None:
            given = change.environment
            environment = connection.environment if given is None else parse_environment(given)
            base_url = (change.base_url or self._settings.api_base_url(environment)).rstrip("/")
            if not self._settings.is_allowed_api_base_url(base_url):
                raise InvalidInput(
                    f"The base URL {base_url!r} is not one of Intuit's API hosts over https: choose the environment "
                    "sandbox or production, or ask the deployment to allow the host (QBO_ALLOWED_API_HOSTS)"
                )
            wanted["environment"], wanted["base_url"] = environment, base_url
        if not wanted:
            raise InvalidInput(
                "Nothing to change: give at least one of name, client_id, scopes, environment, base_url, realm_id, "
                "refresh_policy"
            )
        return wanted

    @staticmethod
    def _refuse_while_connected(connection: Connection, changed: list[str]) -> None:
        """Tokens belong to one app, one environment and one company: changing those under live tokens would
        leave a grant nobody can refresh."""
        binding = {"client_id", "environment", "base_url", "realm_id"} & set(changed)
        if binding and connection.status is not ConnectionStatus.NOT_CONNECTED:
            raise InvalidInput(
                f"{', '.join(sorted(binding))} cannot change while the connection is {connection.status.value}: "
                "reset it first (its tokens belong to the current app, environment and company)"
            )

    def _changed(self, connection: Connection, actor: str, action: str, *, fields: list[str], **extra: Any) -> None:
        event = connection_event(
            EventType.CHANGED, connection, now=self._clock.now(), actor=actor, action=action, fields=fields, **extra
        )
        self._events.publish([event])


def _validate_imported(tokens: ImportedTokens) -> None:
    for label, value, required in (
        ("refresh_token", tokens.refresh_token, True),
        ("access_token", tokens.access_token, False),
    ):
        if value is None and not required:
            continue
        if not isinstance(value, str) or not value.isascii() or not value.isprintable() or " " in value:
            raise InvalidInput(f"The {label} must be the token text as the other tool exported it (printable ASCII)")
        if not 8 <= len(value) <= MAX_IMPORTED_TOKEN_LENGTH:
            raise InvalidInput(f"The {label} must be 8 to {MAX_IMPORTED_TOKEN_LENGTH} characters")
