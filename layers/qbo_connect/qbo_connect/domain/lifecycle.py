"""The token lifecycle: refresh when due, one refresher at a time, persist first, classify failures.

Intuit's refresh token is treated as single-use (shared/INTUIT.md): once Intuit answers, the new
token set is written to the vault before anything else happens, and nobody refreshes without the
connection's lease.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from enum import StrEnum

from qbo_connect.domain.connection import Connection, ConnectionStatus
from qbo_connect.domain.events import EventType, connection_event
from qbo_connect.domain.leases import HeldLease, Leases, require
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import (
    Busy,
    Conflict,
    ConnectionNotFound,
    IntuitUnavailable,
    InvalidClient,
    NeedsReauthorization,
    NotConnected,
    QboConnectError,
    Throttled,
)
from qbo_connect.observability import MetricUnit, logger, metrics
from qbo_connect.ports import (
    ClientCredentials,
    Clock,
    ConnectionStore,
    EventPublisher,
    IdentityProvider,
    TokenVault,
)


class RefreshOutcome(StrEnum):
    REFRESHED = "refreshed"
    RECOVERED = "recovered"  # refreshed after one or more failed runs
    NOT_DUE = "not_due"
    ALREADY_REFRESHED = "already_refreshed"  # someone else refreshed while we waited for the lease
    BUSY = "busy"
    NOT_REFRESHABLE = "not_refreshable"
    TRANSIENT_FAILURE = "transient_failure"
    NEEDS_REAUTHORIZATION = "needs_reauthorization"
    INVALID_CLIENT = "invalid_client"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class RefreshResult:
    connection_id: str
    outcome: RefreshOutcome
    message: str | None = None

    def as_json(self) -> dict:
        return {"connection_id": self.connection_id, "outcome": self.outcome.value, "message": self.message}


@dataclass(frozen=True)
class RefreshPolicy:
    margin_seconds: float = 900
    attempts: int = 3
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    # A forced refresh (a workflow saw a 401) is refused if the token is younger than this.
    forced_refresh_min_age_seconds: float = 60
    # Don't start an Intuit call that could outlive the lease.
    call_budget_seconds: float = 35


class TokenLifecycle:
    def __init__(
        self,
        store: ConnectionStore,
        vault: TokenVault,
        identity: IdentityProvider,
        events: EventPublisher,
        clock: Clock,
        leases: Leases,
        policy: RefreshPolicy,
    ) -> None:
        self._store = store
        self._vault = vault
        self._identity = identity
        self._events = events
        self._clock = clock
        self._leases = leases
        self.policy = policy

    # --- finding work -------------------------------------------------------------------------
    def due_connection_ids(self) -> list[str]:
        return self._store.due_connection_ids(due_before=self._clock.now() + self.policy.margin_seconds)

    # --- refreshing ---------------------------------------------------------------------------
    def refresh(
        self, connection_id: str, *, force: bool = False, min_valid_seconds: float | None = None
    ) -> RefreshResult:
        """Refresh one connection if it is due (or `force`), under its lease. Never raises for Intuit's answers:
        the outcome says what happened and the connection's status records it."""
        needed = max(self.policy.margin_seconds, min_valid_seconds or 0)
        try:
            # No read first: callers (the sweep, a workflow whose token is short) already know it is due,
            # and the lease write fails fast when someone else is refreshing.
            with self._leases.hold(connection_id, read_secret=False) as held:
                skip = self._skip_reason(held.connection, force=force, needed=needed)
                if skip and held.connection.status is not ConnectionStatus.NOT_CONNECTED:
                    return skip
                # Due, or "not connected" by metadata that can lag the vault after a crashed consent:
                # reading the secret reconciles a crashed holder's newer token set.
                self._leases.load_secret(held)
                skip = self._skip_reason(held.connection, force=force, needed=needed)
                return skip or self._refresh_held(held)
        except Busy:
            return RefreshResult(connection_id, RefreshOutcome.BUSY, "another refresher holds the lease")
        except Conflict:
            # Our lease ran out mid-call and another holder wrote first; its newer token set stays.
            return RefreshResult(connection_id, RefreshOutcome.BUSY, "another refresher changed the connection first")
        except ConnectionNotFound:
            return RefreshResult(connection_id, RefreshOutcome.NOT_FOUND, "no such connection")

    def _skip_reason(self, connection: Connection, *, force: bool, needed: float) -> RefreshResult | None:
        now = self._clock.now()
        cid = connection.connection_id
        if not connection.is_refreshable:
            return RefreshResult(cid, RefreshOutcome.NOT_REFRESHABLE, f"status is {connection.status.value}")
        age = now - (connection.last_refreshed_at or 0)
        if force and age < self.policy.forced_refresh_min_age_seconds:
            return RefreshResult(cid, RefreshOutcome.ALREADY_REFRESHED, f"refreshed {int(age)} s ago")
        if not force and not connection.is_refresh_due(now, needed):
            return RefreshResult(cid, RefreshOutcome.NOT_DUE)
        return None

    def _refresh_held(self, held: HeldLease) -> RefreshResult:
        connection, secret = held.connection, held.secret
        if secret is None or secret.token_set is None or not secret.client_secret:
            # Metadata says connected but the vault has nothing to refresh with: only a person can fix it.
            return self._permanent_failure(held, NeedsReauthorization("The connection secret holds no refresh token"))
        if self._leases.seconds_left(held) < self.policy.call_budget_seconds:
            # The call could outlive the lease, and a holder taking over would send the same refresh token.
            return RefreshResult(
                connection.connection_id, RefreshOutcome.BUSY, "the lease ran short before calling Intuit: try again"
            )
        started = time.monotonic()
        try:
            token_set = self._call_intuit(held)
        except (NeedsReauthorization, InvalidClient) as error:
            if self._lost_race(held):
                return RefreshResult(connection.connection_id, RefreshOutcome.ALREADY_REFRESHED)
            return self._permanent_failure(held, error)
        except (IntuitUnavailable, Throttled) as error:
            return self._transient_failure(held, error)

        now = self._clock.now()
        new_secret = secret.next(now=now, token_set=token_set.with_hard_expiry_from(secret.token_set))
        updated, warning = self._with_expiry_warning(
            connection.with_token_times(new_secret.token_set, now=now, generation=new_secret.generation), now
        )
        # Persist first: the vault write happens before any other work (see Leases.commit).
        saved = self._leases.commit(held, updated, new_secret, release=True)
        self._announce_expiry(warning, saved)
        metrics.add_metric(name="RefreshSuccess", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="RefreshLatency", unit=MetricUnit.Milliseconds, value=(time.monotonic() - started) * 1000
        )
        if connection.consecutive_refresh_failures:
            self._publish(
                EventType.RECOVERED,
                saved,
                reason=f"refreshed after {connection.consecutive_refresh_failures} failed runs",
            )
            logger.info("Connection recovered", extra={"connection_id": saved.connection_id})
            return RefreshResult(saved.connection_id, RefreshOutcome.RECOVERED)
        logger.info("Connection refreshed", extra={"connection_id": saved.connection_id})
        return RefreshResult(saved.connection_id, RefreshOutcome.REFRESHED)

    def _call_intuit(self, held: HeldLease) -> TokenSet:
        """Bounded retries with backoff and full jitter, never past what the lease leaves us."""
        secret = held.secret
        assert secret is not None and secret.token_set is not None and secret.client_secret
        credentials = ClientCredentials(secret.client_id, secret.client_secret)
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._identity.refresh(
                    credentials, refresh_token=secret.token_set.refresh_token, scopes=held.connection.scopes
                )
            except (IntuitUnavailable, Throttled) as error:
                delay = self._backoff(attempt, error)
                if (
                    attempt >= self.policy.attempts
                    or self._leases.seconds_left(held) - delay < self.policy.call_budget_seconds
                ):
                    raise
                logger.info(
                    "Transient refresh failure; retrying",
                    extra={
                        "connection_id": held.connection.connection_id,
                        "attempt": attempt,
                        "error_code": error.code.value,
                    },
                )
                self._clock.sleep(delay)

    def _backoff(self, attempt: int, error: QboConnectError) -> float:
        if isinstance(error, Throttled) and error.retry_after:
            return min(error.retry_after, self.policy.backoff_max_seconds)
        ceiling = min(self.policy.backoff_max_seconds, self.policy.backoff_base_seconds * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security

    def _lost_race(self, held: HeldLease) -> bool:
        """An invalid_grant right after someone else rotated the token is not the grant dying.

        Only a holder whose lease expired mid-call can have written in between; if the vault moved on,
        bring the metadata up to it instead of marking the connection dead.
        """
        latest = self._leases.reread_secret(held)
        if latest is None or held.secret is None or latest.generation == held.secret.generation:
            return False
        logger.warning(
            "Refresh token was rotated by another holder",
            extra={"connection_id": held.connection.connection_id},
        )
        held.secret = latest
        if latest.token_set is not None:
            now = self._clock.now()
            self._leases.commit(
                held,
                held.connection.with_token_times(latest.token_set, now=now, generation=latest.generation),
            )
        return True

    def _permanent_failure(self, held: HeldLease, error: QboConnectError) -> RefreshResult:
        now = self._clock.now()
        if isinstance(error, InvalidClient):
            status, outcome, event = (
                ConnectionStatus.INVALID_CLIENT,
                RefreshOutcome.INVALID_CLIENT,
                EventType.INVALID_CLIENT,
            )
        else:
            status, outcome, event = (
                ConnectionStatus.NEEDS_REAUTHORIZATION,
                RefreshOutcome.NEEDS_REAUTHORIZATION,
                EventType.NEEDS_REAUTHORIZATION,
            )
        saved = self._leases.commit(
            held, held.connection.with_status(status, now=now, error=error.code.value), release=True
        )
        metrics.add_metric(name="RefreshPermanentFailure", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ConnectionsNeedingReauthorization", unit=MetricUnit.Count, value=1)
        self._publish(event, saved, reason=str(error))
        logger.error(
            "Refresh failed permanently",
            extra={"connection_id": saved.connection_id, "error_code": error.code.value},
        )
        return RefreshResult(saved.connection_id, outcome, str(error))

    def _transient_failure(self, held: HeldLease, error: QboConnectError) -> RefreshResult:
        now = self._clock.now()
        # Refreshes failing for weeks bring the rolling expiry near: warn about that too.
        updated, warning = self._with_expiry_warning(
            held.connection.with_refresh_failure(error.code.value, now=now), now
        )
        saved = self._leases.commit(held, updated, release=True)
        self._announce_expiry(warning, saved)
        metrics.add_metric(name="RefreshTransientFailure", unit=MetricUnit.Count, value=1)
        self._publish(
            EventType.REFRESH_FAILED,
            saved,
            reason=str(error),
            consecutive_failures=saved.consecutive_refresh_failures,
            intuit_tid=error.intuit_tid,
        )
        logger.warning(
            "Refresh failed; will retry next run",
            extra={
                "connection_id": saved.connection_id,
                "error_code": error.code.value,
                "consecutive_failures": saved.consecutive_refresh_failures,
                "intuit_tid": error.intuit_tid,
            },
        )
        return RefreshResult(saved.connection_id, RefreshOutcome.TRANSIENT_FAILURE, str(error))

    def _with_expiry_warning(self, connection: Connection, now: float) -> tuple[Connection, ExpiryWarning | None]:
        """Mark a warning threshold (30, 7, 1 days before the grant ends) the first time it is crossed."""
        warning = expiry_warning(connection, now)
        if warning is None:
            return connection, None
        return replace(connection, expiry_warnings_sent=warning.sent_after), warning

    def _announce_expiry(self, warning: ExpiryWarning | None, connection: Connection) -> None:
        if warning is None:
            return
        metrics.add_metric(name="ReauthorizationDue", unit=MetricUnit.Count, value=1)
        self._publish(
            EventType.REAUTHORIZATION_DUE,
            connection,
            reason=f"the grant ends in {warning.days_left:.1f} days ({warning.ends_by} expiry): a company "
            "administrator must reconnect before then",
            days_left=round(warning.days_left, 2),
            threshold_days=warning.threshold_days,
            grant_ends_at=int(warning.ends_at),
            expiry=warning.ends_by,
        )
        logger.warning(
            "Reauthorization due",
            extra={"connection_id": connection.connection_id, "days_left": round(warning.days_left, 2)},
        )

    def _publish(self, kind: EventType, connection: Connection, **detail) -> None:
        self._events.publish([connection_event(kind, connection, now=self._clock.now(), **detail)])

    # --- handing out tokens -------------------------------------------------------------------
    def valid_token(self, connection_id: str, *, min_valid_seconds: float = 300) -> tuple[Connection, TokenSet]:
        """A token valid for at least `min_valid_seconds`: from the vault, refreshed through the lease only
        when needed. Raises a QboConnectError that says what a person must do when none can be had."""
        for attempt in range(3):
            connection = require(self._store.get(connection_id), connection_id)
            if attempt == 0 and connection.status is ConnectionStatus.NOT_CONNECTED and connection.has_client_secret:
                self.refresh(connection_id)  # a consent whose metadata write was lost is reconciled here
                continue
            _raise_for_status(connection)
            secret = self._vault.read(connection_id)
            now = self._clock.now()
            if secret and secret.token_set and secret.token_set.is_valid_for(min_valid_seconds, now):
                return connection, secret.token_set
            result = self.refresh(connection_id, min_valid_seconds=min_valid_seconds)
            if result.outcome is RefreshOutcome.BUSY:
                self._wait_for_lease(connection_id)
            elif result.outcome is RefreshOutcome.TRANSIENT_FAILURE:
                raise IntuitUnavailable(f"Intuit could not refresh the token ({result.message}): try again shortly")
        connection = require(self._store.get(connection_id), connection_id)
        _raise_for_status(connection)
        raise Busy("The connection is being refreshed by someone else: try again in a minute")

    def _wait_for_lease(self, connection_id: str) -> None:
        deadline = self._clock.now() + self._leases.lease_seconds
        while self._clock.now() < deadline:
            connection = self._store.get(connection_id)
            if connection is None or not connection.lease_is_held(self._clock.now()):
                return
            self._clock.sleep(0.2)


WARNING_DAYS = (30, 7, 1)


@dataclass(frozen=True)
class ExpiryWarning:
    threshold_days: int
    days_left: float
    ends_at: float
    ends_by: str  # "hard" (five-year limit) or "rolling" (unused refresh token)
    sent_after: tuple[str, ...]


def expiry_warning(connection: Connection, now: float) -> ExpiryWarning | None:
    """The warning due now, if a threshold was crossed that hasn't been announced for this grant."""
    ends = [
        (t, by)
        for t, by in (
            (connection.refresh_token_hard_expires_at, "hard"),
            (connection.refresh_token_expires_at, "rolling"),
        )
        if t is not None
    ]
    if not ends:
        return None
    ends_at, ends_by = min(ends)
    days_left = (ends_at - now) / 86400
    crossed = [d for d in WARNING_DAYS if days_left <= d]
    fresh = [d for d in crossed if f"{d}d" not in connection.expiry_warnings_sent]
    if not fresh:
        return None
    # One event for the closest threshold; thresholds crossed at once are marked sent together.
    sent = tuple(sorted({*connection.expiry_warnings_sent, *(f"{d}d" for d in crossed)}))
    return ExpiryWarning(min(fresh), days_left, ends_at, ends_by, sent)


def _raise_for_status(connection: Connection) -> None:
    if connection.status is ConnectionStatus.NOT_CONNECTED:
        raise NotConnected(
            f"Connection {connection.name!r} is not connected: open the link from "
            f"`qbo-connect connections authorize-link {connection.connection_id}` and click Connect"
        )
    if connection.status is ConnectionStatus.NEEDS_REAUTHORIZATION:
        raise NeedsReauthorization(
            f"Intuit no longer accepts connection {connection.name!r} (consent revoked or expired): a company "
            f"administrator must reconnect with `qbo-connect connections authorize-link {connection.connection_id}`"
        )
    if connection.status is ConnectionStatus.INVALID_CLIENT:
        raise InvalidClient(
            f"Intuit refused the client ID or secret of connection {connection.name!r}: set the current secret "
            f"with `qbo-connect connections set-secret {connection.connection_id}`"
        )
