"""The token lifecycle: refresh when due, one refresher at a time, persist first, classify failures.

Intuit's refresh token is treated as single-use (docs/reliability.md): once Intuit answers, the new
token set is written to the vault before anything else happens, and nobody refreshes without the
connection's lease. The whole Intuit call has a deadline that fits in what the lease and the
invocation leave. An answer lost after the request was sent (OutcomeUnknown) is never retried at
once: the in-flight mark stays until the call is certainly over at Intuit, and one check follows.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import replace
from enum import StrEnum

from qbo_connect import intuit
from qbo_connect.domain.connection import Connection, ConnectionStatus, RefreshPolicy
from qbo_connect.domain.events import EventType, connection_event
from qbo_connect.domain.grant_end import GrantEnd
from qbo_connect.domain.leases import HeldLease, Leases, require, take_waiting, utc_time
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import (
    Busy,
    Conflict,
    ConnectionNotFound,
    InFlight,
    IntuitUnavailable,
    InvalidClient,
    InvalidInput,
    NeedsReauthorization,
    NotConnected,
    OutcomeUnknown,
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
    RefreshHandoff,
    RefreshQueue,
    TokenVault,
)
from qbo_connect.records import record
from qbo_connect.settings import AWS_THROTTLED_CALL_SECONDS

# After a hand-off's answer or a wait for another holder: reading the item and the new token (one throttled AWS
# call each), and answering.
AFTER_A_HANDOFF_SECONDS = 2 * AWS_THROTTLED_CALL_SECONDS + 1
# What a caller hears while another holder refreshes, unless that holder's state says more.
BEING_REFRESHED = "The connection is being refreshed by someone else: try again in a minute"
# A hand-off nobody can wait this long for is not made: connecting to Lambda (2 s at most) and a second to read.
MIN_HANDOFF_WAIT_SECONDS = 3.0


class RefreshOutcome(StrEnum):
    REFRESHED = "refreshed"
    RECOVERED = "recovered"  # refreshed after one or more failed runs
    NOT_DUE = "not_due"
    ALREADY_REFRESHED = "already_refreshed"  # someone else refreshed while we waited for the lease
    BUSY = "busy"
    # Handed to the refresh function, which went on past the caller's wait: it stores the new token shortly.
    HANDED_OFF = "handed_off"
    NOT_REFRESHABLE = "not_refreshable"
    TRANSIENT_FAILURE = "transient_failure"
    OUTCOME_UNKNOWN = "outcome_unknown"  # sent, answer lost: checked again once the call is certainly over
    NEEDS_REAUTHORIZATION = "needs_reauthorization"
    INVALID_CLIENT = "invalid_client"
    NOT_FOUND = "not_found"


@record
class RefreshResult:
    """How one refresh ended, as the refresh function, the CLI and the admin API report it."""

    connection_id: str
    outcome: RefreshOutcome
    message: str | None = None
    # already_refreshed for a forced refresh: when one will be accepted (minimum age, or budget).
    retry_at: float | None = None

    def as_json(self) -> dict:
        return {"connection_id": self.connection_id, "outcome": self.outcome.value, "message": self.message}


@record
class RefreshTimings:
    """The refresh schedule's and the retries' numbers (runtime.py builds them from Settings)."""

    margin_seconds: float = 900
    attempts: int = 3
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    # A forced refresh (a workflow saw a 401) is refused if the token is younger than this, and costs one
    # of `forced_refresh_burst` tokens that come back one per `forced_refresh_refill_seconds`: with the
    # schedule's refresh every 45 minutes that keeps a secret under ~85 versions a day (AWS: ~100).
    forced_refresh_min_age_seconds: float = 600
    forced_refresh_burst: float = 3
    forced_refresh_refill_seconds: float = 1800
    # A caller may ask for a token valid this long at most: a longer ask would refresh a fresh token.
    max_min_valid_seconds: float = intuit.ACCESS_TOKEN_DEFAULT_SECONDS - 1800
    # The whole Intuit call, and what must be left after it to persist its answer. A refresh is sent only with
    # all of both ahead of it: Intuit rotates the refresh token when it processes the call, and an answer the
    # caller stopped waiting for is a grant lost (shared/INTUIT.md, the strict reading). A caller with less
    # time hands the refresh to one that has it (RefreshHandoff).
    call_deadline_seconds: float = float(intuit.REQUEST_TIME_LIMIT_SECONDS)
    persist_seconds: float = 40
    # An on-demand connection nobody asked a token of is refreshed this long after its last refresh:
    # the refresh token's rolling expiry (about 100 days) keeps moving, and a revoked grant is found.
    keepalive_seconds: float = 86_400
    # At most this many keep-alives per sweep, after the eager refreshes (None: no limit): keep-alives that
    # fall due together (a bulk import, a day after an outage) wait for later sweeps instead of holding
    # eager refreshes past their margin. Set to what the write budget does in one period.
    keepalives_per_sweep: int | None = None
    # One failed run is routine (Intuit's blips; the next sweep retries); this many in a row and the access
    # token may lapse before the margin runs out: RefreshFailingRepeatedly, which an operator's alarm watches.
    failures_in_a_row_reported: int = 2

    @property
    def to_see_a_refresh_through(self) -> float:
        """What a caller needs left to send a refresh itself: the lease's write, the whole call, persisting."""
        return AWS_THROTTLED_CALL_SECONDS + self.call_deadline_seconds + self.persist_seconds


class TokenLifecycle:
    def __init__(
        self,
        store: ConnectionStore,
        vault: TokenVault,
        identity: IdentityProvider,
        events: EventPublisher,
        clock: Clock,
        leases: Leases,
        timings: RefreshTimings,
        recheck: RefreshQueue | None = None,
        handoff: RefreshHandoff | None = None,
    ) -> None:
        self._store = store
        self._vault = vault
        self._identity = identity
        self._events = events
        self._clock = clock
        self._leases = leases
        self.timings = timings
        # Where a check after an unknown outcome is queued for when the call is certainly over.
        self._recheck = recheck
        # Where a refresh goes when this caller's invocation could not see one through (the refresh function).
        self._handoff = handoff

    # --- finding work -------------------------------------------------------------------------
    def due_connection_ids(self) -> list[str]:
        """Eager connections whose access token expires within the margin, and on-demand connections last
        refreshed a keep-alive period ago: one index query each."""
        now = self._clock.now()
        eager = self._store.due_connection_ids(due_before=now + self.timings.margin_seconds)
        room = self.timings.keepalives_per_sweep
        if room is not None:
            room -= len(eager)
            if room <= 0:
                return eager  # the budget goes to eager refreshes first; keep-alives can wait a sweep
        # The index orders by access-token expiry, which a refresh sets an access-token lifetime after it
        # (Intuit's is an hour; another lifetime moves the keep-alive by the difference).
        last_refreshed_before = now - self.timings.keepalive_seconds
        keepalive = self._store.due_connection_ids(
            due_before=last_refreshed_before + intuit.ACCESS_TOKEN_DEFAULT_SECONDS,
            policy=RefreshPolicy.ON_DEMAND,
            limit=room,
        )
        return eager + keepalive

    # --- grants nobody refreshes ------------------------------------------------------------------
    def watch_unrefreshed_grants(self, *, not_after: float | None = None) -> int:
        """Warn about the end of each grant the service holds but does not refresh, as a refresh warns about its
        own (the marks once each, GrantEndingSoon at every look within 30 days): an invalid_client connection's
        grant lives on at Intuit, and its rolling expiry comes nearer every day until a person sets the right
        client secret. Every sweep calls this; one index query, one read per such connection, and a write under
        the lease only when a mark is crossed. Stops `UNREFRESHED_LOOK_SECONDS` before `not_after` (the
        invocation's end); in a new order each time, so that sweeps out of time still reach every grant within
        a few (a warning is about days, a sweep every few minutes). Returns how many it looked at."""
        connection_ids = list(self._store.connection_ids_with_status(ConnectionStatus.INVALID_CLIENT))
        random.shuffle(connection_ids)
        looked = 0
        for connection_id in connection_ids:
            if not_after is not None and self._clock.now() > not_after - UNREFRESHED_LOOK_SECONDS:
                logger.warning(
                    "Out of time to look at every grant nobody refreshes; the next sweeps look at the rest",
                    extra={"looked_at": looked, "not_looked_at": len(connection_ids) - looked},
                )
                break
            looked += 1
            try:
                self._watch_unrefreshed(connection_id)
            except Exception as error:  # AWS refusing one read or write must not keep the others from being looked at
                logger.error(
                    "Could not look at a grant nobody refreshes; the next sweep looks again",
                    extra={"connection_id": connection_id, "error": type(error).__name__},
                )
        return looked

    def _watch_unrefreshed(self, connection_id: str) -> None:
        connection = self._store.get(connection_id)
        if connection is None or connection.status is not ConnectionStatus.INVALID_CLIENT:
            return  # the index lags: fixed, reset or deleted meanwhile
        warning = None
        if expiry_warning(connection, self._clock.now(), ahead_seconds=self._looked_at_again_within(connection)):
            # Marking a warning sent races another sweep looking at the same moment: under the lease, re-read.
            try:
                with self._leases.hold(connection_id, read_secret=False) as held:
                    if held.connection.status is ConnectionStatus.INVALID_CLIENT:
                        updated, warning = self._with_expiry_warning(held.connection, self._clock.now())
                        connection = self._leases.commit(held, updated, release=True) if warning else held.connection
            except (Busy, ConnectionNotFound):
                pass  # being changed (a new secret, a reset) or warned by another sweep: the next sweep looks again
        self._announce_expiry(warning, connection)

    # --- refreshing ---------------------------------------------------------------------------
    def refresh(
        self,
        connection_id: str,
        *,
        force: bool = False,
        min_valid_seconds: float | None = None,
        not_after: float | None = None,
        requeue_if_in_flight: bool = False,
    ) -> RefreshResult:
        """Refresh one connection if it is due (or `force`), under its lease. Never raises for Intuit's answers:
        the outcome says what happened and the connection's status records it. `not_after` is when the
        caller must be done (a Lambda invocation's end): no Intuit call starts that could not finish and
        be persisted by then. `requeue_if_in_flight`: the refresh queue's own work (the check queued after a
        lost answer may come early, by a clock behind the writer's); anyone else finding a call in flight
        is answered busy, and the check queued when its answer was lost stands."""
        if self._handoff is not None and not self._can_see_a_refresh_through(not_after):
            return self._hand_off(connection_id, force=force, min_valid_seconds=min_valid_seconds, not_after=not_after)
        needed = max(self.timings.margin_seconds, min(min_valid_seconds or 0, self.timings.max_min_valid_seconds))
        try:
            # No read first: callers (the sweep, a workflow whose token is short) already know it is due,
            # and the lease write fails fast when someone else is refreshing.
            with self._leases.hold(connection_id, read_secret=False, fence=True) as held:
                skip = self._skip_reason(held.connection, force=force, needed=needed)
                if (
                    skip
                    and held.connection.status is not ConnectionStatus.NOT_CONNECTED
                    and held.connection.pending_rotation is None
                ):
                    return skip
                # Due, or "not connected" by metadata that can lag the vault after a crashed consent, or a
                # sealed rotation waiting for the vault: reading the secret reconciles all three.
                self._leases.load_secret(held)
                skip = self._skip_reason(held.connection, force=force, needed=needed)
                return skip or self._refresh_held(held, force=force, not_after=not_after)
        except InFlight as busy:
            if requeue_if_in_flight:  # a check that came early (a writer's clock ahead of ours): come back
                self._check_after(connection_id, busy.until)
            return RefreshResult(connection_id, RefreshOutcome.BUSY, str(busy))
        except Busy as busy:
            return RefreshResult(connection_id, RefreshOutcome.BUSY, str(busy))
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
        if force and age < self.timings.forced_refresh_min_age_seconds:
            return RefreshResult(
                cid,
                RefreshOutcome.ALREADY_REFRESHED,
                f"refreshed {int(age)} s ago",
                retry_at=now + self.timings.forced_refresh_min_age_seconds - age,
            )
        budget = self._forced_refresh_budget(connection, now) if force else None
        if budget is not None and budget < 1:
            wait = (1 - budget) * self.timings.forced_refresh_refill_seconds
            return RefreshResult(
                cid,
                RefreshOutcome.ALREADY_REFRESHED,
                "the connection's forced-refresh budget is spent (it keeps the secret within Secrets Manager's "
                "version quota)",
                retry_at=now + wait,
            )
        if not force and not connection.is_refresh_due(now, needed):
            return RefreshResult(cid, RefreshOutcome.NOT_DUE)
        return None

    def _forced_refresh_budget(self, connection: Connection, now: float) -> float:
        if connection.forced_refresh_budget is None:
            return self.timings.forced_refresh_burst
        regained = (now - (connection.forced_refresh_budget_at or now)) / self.timings.forced_refresh_refill_seconds
        return min(self.timings.forced_refresh_burst, connection.forced_refresh_budget + max(0.0, regained))

    def _refresh_held(self, held: HeldLease, *, force: bool, not_after: float | None) -> RefreshResult:
        connection, secret = held.connection, held.secret
        if secret is None or secret.token_set is None or not secret.client_secret:
            # Metadata says connected but the vault has nothing to refresh with: only a person can fix it.
            return self._permanent_failure(held, NeedsReauthorization("The connection secret holds no refresh token"))
        if self.deadline_for_a_call(held, not_after) is None:
            # The call could outlive the lease or the invocation, and a refresh answer nobody persists is lost.
            # Said to workflows too: an on-demand connection has no schedule to leave the refresh to.
            needed = int(self.timings.to_see_a_refresh_through)
            return RefreshResult(
                connection.connection_id,
                RefreshOutcome.BUSY,
                f"too little time was left to call Intuit and persist its answer (a refresh may take up to {needed} s):"
                " nothing was sent; ask with that much time left (the token function always has it), set "
                "QBO_REFRESH_FUNCTION_NAME so that a caller with less hands the refresh to the refresh function, or, "
                "for an eager connection, let the schedule refresh it",
            )
        if connection.refresh_policy is RefreshPolicy.ON_DEMAND and connection.refresh_in_flight_until is not None:
            # No sweep looks at an on-demand connection: should this holder be killed mid-call (Lambda's timeout, out
            # of memory) after Intuit rotated, the check it would queue after a lost answer is on its way already.
            self._check_after(connection.connection_id, connection.refresh_in_flight_until)
        started = time.monotonic()
        try:
            token_set = self._call_intuit(held, not_after)
        except OutcomeUnknown as error:
            return self._outcome_unknown(held, error)
        except (NeedsReauthorization, InvalidClient) as error:
            if self._lost_race(held):
                return RefreshResult(connection.connection_id, RefreshOutcome.ALREADY_REFRESHED)
            return self._permanent_failure(held, error)
        except (IntuitUnavailable, Throttled) as error:
            return self._transient_failure(held, error)

        now = self._clock.now()
        # The connection's policy goes into the secret with every refresh: after a switch to eager it is
        # labelled so only once its token keeps the promise (admin_operations.update).
        new_secret = secret.next(
            now=now,
            token_set=token_set.with_hard_expiry_from(secret.token_set),
            refresh_policy=connection.refresh_policy,
        )
        updated, warning = self._with_expiry_warning(
            connection.with_token_times(new_secret.token_set, now=now, generation=new_secret.generation),
            now,
            before=connection,
        )
        if force:
            updated = replace(
                updated,
                forced_refresh_budget=self._forced_refresh_budget(connection, now) - 1,
                forced_refresh_budget_at=now,
            )
        # Persist first: the vault write happens before any other work (see Leases.commit).
        saved = self._leases.commit(held, updated.fenced_until(None), new_secret, release=True)
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

    def _can_see_a_refresh_through(self, not_after: float | None) -> bool:
        return not_after is None or not_after - self._clock.now() >= self.timings.to_see_a_refresh_through

    def _hand_off(
        self, connection_id: str, *, force: bool, min_valid_seconds: float | None, not_after: float | None
    ) -> RefreshResult:
        """Have the refresh function (which always has the time) refresh, and wait for it while `not_after` leaves
        time to read its token and answer. Past that, it goes on alone and stores the new token."""
        assert self._handoff is not None and not_after is not None
        connection = self._store.get(connection_id)
        if connection is not None and connection.lease_is_held(self._clock.now()):
            # Someone is refreshing (or changing) it already: a herd waits for that holder rather than invoking the
            # refresh function once each, only to hear busy from it.
            return RefreshResult(
                connection_id, RefreshOutcome.BUSY, "the connection is being refreshed by someone else"
            )
        wait = not_after - self._clock.now() - AFTER_A_HANDOFF_SECONDS
        if wait < MIN_HANDOFF_WAIT_SECONDS:
            return RefreshResult(
                connection_id,
                RefreshOutcome.BUSY,
                "too little of this invocation was left to wait for a refresh, so none was asked for: try again in a "
                "minute",
            )
        payload = {"connection_id": connection_id, "force": force, "min_valid_seconds": int(min_valid_seconds or 0)}
        logger.info("Refresh handed to the refresh function", extra={"connection_id": connection_id, "force": force})
        answer = self._handoff.refresh(payload, wait_seconds=wait)
        if answer is None:
            return RefreshResult(
                connection_id,
                RefreshOutcome.HANDED_OFF,
                "the refresh was handed to the refresh function, which is still waiting for Intuit and will store the "
                "new token: try again in a minute",
            )
        try:
            return RefreshResult(connection_id, RefreshOutcome(answer["outcome"]), answer.get("message"))
        except (KeyError, TypeError, ValueError):
            failure = str(answer.get("errorType") or (answer.get("error") or {}).get("code") or "no outcome")[:100]
            logger.error(
                "The refresh function answered a hand-off without an outcome",
                extra={"connection_id": connection_id, "error": failure},
            )
            return RefreshResult(
                connection_id,
                RefreshOutcome.TRANSIENT_FAILURE,
                f"the refresh function could not refresh ({failure}): its log says why",
            )

    def _time_for_calls(self, held: HeldLease, not_after: float | None) -> float:
        """What the lease and the invocation leave for calling Intuit, after keeping time to persist."""
        left = self._leases.seconds_left(held)
        if not_after is not None:
            left = min(left, not_after - self._clock.now())
        return left - self.timings.persist_seconds

    def _call_deadline(self, held: HeldLease, not_after: float | None) -> float:
        return min(self.timings.call_deadline_seconds, self._time_for_calls(held, not_after))

    def deadline_for_a_call(self, held: HeldLease, not_after: float | None) -> float | None:
        """The whole-call deadline for one refresh under `held` whose answer must be persisted by `not_after`
        (and within the lease); None when too little is left to start one: an answer nobody persists is a
        grant lost."""
        deadline = self._call_deadline(held, not_after)
        return deadline if deadline >= self.timings.call_deadline_seconds else None

    def _call_intuit(self, held: HeldLease, not_after: float | None) -> TokenSet:
        """Retries, with backoff and full jitter, only what certainly never reached Intuit's processing."""
        secret = held.secret
        assert secret is not None and secret.token_set is not None and secret.client_secret
        credentials = ClientCredentials(secret.client_id, secret.client_secret)
        attempt = 0
        while True:
            attempt += 1
            held.call_started_at = self._clock.now()
            try:
                return self._identity.refresh(
                    credentials,
                    refresh_token=secret.token_set.refresh_token,
                    # What the person granted, not what the connection asks for at its next consent.
                    scopes=secret.token_set.scopes or held.connection.scopes,
                    deadline_seconds=self._call_deadline(held, not_after),
                )
            except OutcomeUnknown:
                raise  # Intuit may have rotated: sending the same token again could spend a consumed one
            except (IntuitUnavailable, Throttled) as error:
                delay = self._backoff(attempt, error)
                if (
                    attempt >= self.timings.attempts
                    or self._time_for_calls(held, not_after) - delay < self.timings.call_deadline_seconds
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
            return min(error.retry_after, self.timings.backoff_max_seconds)
        ceiling = min(self.timings.backoff_max_seconds, self.timings.backoff_base_seconds * 2 ** (attempt - 1))
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

    def _outcome_unknown(self, held: HeldLease, error: OutcomeUnknown) -> RefreshResult:
        """Keep the in-flight mark until the call is certainly over at Intuit, then check once (re-queued)."""
        now = self._clock.now()
        sent_at = held.call_started_at if held.call_started_at is not None else now
        over_at = max(now, sent_at + intuit.REQUEST_TIME_LIMIT_SECONDS)
        updated, warning = self._with_expiry_warning(
            held.connection.with_refresh_failure(error.code.value, now=now).fenced_until(over_at), now
        )
        saved = self._leases.commit(held, updated, release=True)
        self._announce_expiry(warning, saved)
        check_at = self._check_after(saved.connection_id, over_at)
        metrics.add_metric(name="RefreshOutcomeUnknown", unit=MetricUnit.Count, value=1)
        self._report_failures_in_a_row(saved)
        reason = (
            f"{error}: Intuit may have rotated the refresh token; nothing is sent with it before "
            f"{utc_time(check_at)}, then the service checks once and reports at once if the grant is gone"
        )
        self._announce_failure(saved, reason=reason, intuit_tid=error.intuit_tid)
        logger.error(
            "Refresh answer lost in flight",
            extra={"connection_id": saved.connection_id, "check_at": int(check_at), "intuit_tid": error.intuit_tid},
        )
        return RefreshResult(saved.connection_id, RefreshOutcome.OUTCOME_UNKNOWN, reason)

    def _check_after(self, connection_id: str, in_flight_until: float) -> float:
        """Queue one check for when a call in flight is certainly over by every clock; returns when."""
        now = self._clock.now()
        check_at = in_flight_until + self._leases.skew_seconds + 1
        if self._recheck is not None:
            self._recheck.enqueue([connection_id], delay_seconds=math.ceil(max(1.0, check_at - now)))
        return check_at

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
            held, held.connection.with_status(status, now=now, error=error.code.value).fenced_until(None), release=True
        )
        metrics.add_metric(name="RefreshPermanentFailure", unit=MetricUnit.Count, value=1)
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
            held.connection.with_refresh_failure(error.code.value, now=now).fenced_until(None), now
        )
        saved = self._leases.commit(held, updated, release=True)
        self._announce_expiry(warning, saved)
        metrics.add_metric(name="RefreshTransientFailure", unit=MetricUnit.Count, value=1)
        self._report_failures_in_a_row(saved)
        self._announce_failure(saved, reason=str(error), intuit_tid=error.intuit_tid)
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

    def _report_failures_in_a_row(self, connection: Connection) -> None:
        if connection.consecutive_refresh_failures >= self.timings.failures_in_a_row_reported:
            metrics.add_metric(name="RefreshFailingRepeatedly", unit=MetricUnit.Count, value=1)

    def _announce_failure(self, connection: Connection, *, reason: str, intuit_tid: str | None) -> None:
        """Connection Refresh Failed for the runs of a streak that are news (announces_failure_streak); the
        metrics above count every run, and the connection's item (`connections show`) holds the latest."""
        in_a_row = connection.consecutive_refresh_failures
        if not announces_failure_streak(in_a_row, escalation=self.timings.failures_in_a_row_reported):
            return
        self._publish(
            EventType.REFRESH_FAILED, connection, reason=reason, consecutive_failures=in_a_row, intuit_tid=intuit_tid
        )

    def _with_expiry_warning(
        self, connection: Connection, now: float, *, before: Connection | None = None
    ) -> tuple[Connection, ExpiryWarning | None]:
        """Mark a warning threshold (30, 7, 1 days before the grant ends) the first time it is crossed. An
        on-demand connection may not be looked at again for a keep-alive period: its thresholds are judged
        that much ahead, so a warning comes early rather than too late. `before`: the connection before a
        refresh, whose grant end may have moved out since (see rearmed)."""
        ahead = self._looked_at_again_within(connection)
        if before is not None:
            connection = rearmed(connection, before, now, ahead_seconds=ahead)
        warning = expiry_warning(connection, now, ahead_seconds=ahead)
        if warning is None:
            return connection, None
        return replace(connection, expiry_warnings_sent=warning.sent_after), warning

    def _looked_at_again_within(self, connection: Connection) -> float:
        """An on-demand connection may not be refreshed again for a keep-alive period; an eager one is soon, and
        one nobody refreshes is looked at by the next sweep."""
        on_demand = connection.refresh_policy is RefreshPolicy.ON_DEMAND and connection.is_refreshable
        return self.timings.keepalive_seconds if on_demand else 0.0

    def _announce_expiry(self, warning: ExpiryWarning | None, connection: Connection) -> None:
        end = connection.grant_end
        if end is not None and end.ending_soon(
            self._clock.now(), ahead_seconds=self._looked_at_again_within(connection)
        ):
            # A level, not a mark: counted at every refresh of the grant (an on-demand one's daily keep-alive
            # at least) until a reconnect moves its end out, so GrantsEndingSoonAlarm stays raised meanwhile.
            metrics.add_metric(name="GrantEndingSoon", unit=MetricUnit.Count, value=1)
        if warning is None:
            return
        metrics.add_metric(name="ReauthorizationDue", unit=MetricUnit.Count, value=1)
        self._publish(
            EventType.REAUTHORIZATION_DUE,
            connection,
            reason=f"{warning.end.described(self._clock.now())}: "
            + warning.end.what_to_do(
                client_secret_wrong=connection.status is ConnectionStatus.INVALID_CLIENT, ref=connection.connection_id
            ),
            days_left=round(warning.days_left, 2),
            threshold_days=warning.threshold_days,
            grant_ends_at=int(warning.end.at),
            expiry=warning.end.by.value,
        )
        logger.warning(
            "Reauthorization due",
            extra={"connection_id": connection.connection_id, "days_left": round(warning.days_left, 2)},
        )

    def _publish(self, kind: EventType, connection: Connection, **detail) -> None:
        self._events.publish([connection_event(kind, connection, now=self._clock.now(), **detail)])

    # --- handing out tokens -------------------------------------------------------------------
    def valid_token(
        self, connection_id: str, *, min_valid_seconds: float = 300, not_after: float | None = None
    ) -> tuple[Connection, TokenSet]:
        """A token valid for at least `min_valid_seconds`: from the vault, refreshed through the lease only
        when needed. Raises a QboConnectError that says what a person must do when none can be had."""
        busy = BEING_REFRESHED
        fresh = False  # a refresh just happened (ours or another's): its token is the best there is
        failed_runs_before_waiting: int | None = None  # while another holder refreshed
        out_of_time = False  # a wait for another holder ran to the reserve kept for one last look and the answer
        for attempt in range(3):
            connection = require(self._store.get(connection_id), connection_id)
            if attempt == 0 and connection.status is ConnectionStatus.NOT_CONNECTED and connection.has_client_secret:
                # A consent whose metadata write was lost is reconciled here.
                self.refresh(connection_id, not_after=not_after)
                continue
            _raise_for_status(connection)
            secret = self._leases.current_secret(connection)
            now = self._clock.now()
            if secret and secret.token_set and secret.token_set.is_valid_for(min_valid_seconds, now):
                return connection, secret.token_set
            if failed_by_another(connection, failed_runs_before_waiting):
                # The refresh we waited for ran its bounded retries and failed: a herd of waiters sending it again
                # one after another would multiply Intuit's load and count a failed run each.
                raise IntuitUnavailable(
                    "Intuit could not refresh the token: the refresh another caller sent while this one waited "
                    f"failed ({connection.last_refresh_error}): try again shortly"
                )
            if out_of_time:
                raise Busy(busy)  # the look the reserve was kept for: nothing better can be had in time
            if fresh and secret and secret.token_set:
                # Refreshing again would only rotate the grant and spend a secret version for nothing.
                raise InvalidInput(
                    f"A token valid for {int(min_valid_seconds)} s was asked for, but Intuit's newest token is valid "
                    f"for {int(secret.token_set.seconds_valid(now))} s: ask for less (min_valid_seconds)"
                )
            result = self.refresh(connection_id, min_valid_seconds=min_valid_seconds, not_after=not_after)
            fresh = result.outcome in {
                RefreshOutcome.REFRESHED,
                RefreshOutcome.RECOVERED,
                RefreshOutcome.ALREADY_REFRESHED,
            }
            if result.outcome is RefreshOutcome.HANDED_OFF:
                raise Busy(result.message or busy)  # nothing more can be had within this invocation
            if result.outcome is RefreshOutcome.BUSY:
                busy = result.message or busy
                failed_runs_before_waiting = connection.consecutive_refresh_failures
                out_of_time = not self._wait_for_lease(connection_id, not_after)
            elif result.outcome in {RefreshOutcome.TRANSIENT_FAILURE, RefreshOutcome.OUTCOME_UNKNOWN}:
                raise IntuitUnavailable(f"Intuit could not refresh the token ({result.message}): try again shortly")
        connection = require(self._store.get(connection_id), connection_id)
        _raise_for_status(connection)
        raise Busy(busy)

    def token_after_rejection(
        self, connection_id: str, rejected: str, *, min_valid_seconds: float = 300, not_after: float | None = None
    ) -> tuple[Connection, TokenSet]:
        """Intuit answered 401 to the access token `rejected`: a token to try once more with, after a forced
        refresh under the lease if one is allowed, or after another holder's refresh under way (waited for while
        `not_after` leaves time). The answer may hold the same token (a forced refresh ran minutes ago, or the
        budget is spent): a second 401 with it is then an authentication problem to report, not a reason to
        refresh again. Raises Busy when another holder's refresh is still under way at the end of the wait (the
        refused token would only be refused again), IntuitUnavailable when the refresh failed."""
        for _ in range(2):  # the holder waited for may have changed nothing (not due, say): then ours goes after all
            result = self.refresh(connection_id, force=True, not_after=not_after)
            logger.info(
                "Access token rejected by Intuit; forced refresh",
                extra={"connection_id": connection_id, "outcome": result.outcome.value},
            )
            if result.outcome is RefreshOutcome.HANDED_OFF:
                raise Busy(result.message or BEING_REFRESHED)
            if result.outcome is not RefreshOutcome.BUSY:
                break
            if not self._wait_for_lease(connection_id, not_after):
                # Still held at the reserve kept for answering: the vault still holds the refused token.
                raise Busy(result.message or BEING_REFRESHED)
            connection, token_set = self.valid_token(
                connection_id, min_valid_seconds=min_valid_seconds, not_after=not_after
            )
            if token_set.access_token != rejected:
                return connection, token_set
        else:
            raise Busy(result.message or BEING_REFRESHED)
        if result.outcome in {RefreshOutcome.TRANSIENT_FAILURE, RefreshOutcome.OUTCOME_UNKNOWN}:
            # The vault still holds the refused token; nothing newer can be had until the call is over and checked.
            raise IntuitUnavailable(f"Intuit could not refresh the token ({result.message}): try again shortly")
        return self.valid_token(connection_id, min_valid_seconds=min_valid_seconds, not_after=not_after)

    def _wait_for_lease(self, connection_id: str, not_after: float | None) -> bool:
        """Until the holder gives the lease back or it lapses, looking less often the longer it takes (take_waiting's
        backoff, up to 2 s): a herd waiting out Intuit's slow tail reads the item a few dozen times each, not 5 a
        second. Gives up while `not_after` still leaves time to answer. True when the lease was given back in time."""
        wait = self._leases.lease_seconds
        if not_after is not None:
            # What follows a wait needs no more than reading the new token and answering: a caller left too little
            # for a refresh of its own hands it off or answers busy.
            wait = min(wait, not_after - AFTER_A_HANDOFF_SECONDS - self._clock.now())

        def given_back(now: float) -> None:
            connection = self._store.get(connection_id)
            if connection is not None and connection.lease_is_held(now):
                raise Busy("the lease is still held")

        try:
            take_waiting(given_back, self._clock, wait)
        except Busy:
            return False  # still held: what is left is for one look at the token and the answer
        return True


def failed_by_another(connection: Connection, failed_runs_before_waiting: int | None) -> bool:
    """Whether a refresh run another holder made while we waited failed transiently (a failed run counts one more
    in a row). An answer lost in flight is not meant: its mark stands, and meeting it says until when."""
    return (
        failed_runs_before_waiting is not None
        and connection.consecutive_refresh_failures > failed_runs_before_waiting
        and connection.refresh_in_flight_until is None
    )


def announces_failure_streak(in_a_row: int, *, escalation: int) -> bool:
    """Whether the `in_a_row`th failed run in a row is announced: its first (a blip, maybe), every run up to
    `escalation` (RefreshFailingRepeatedlyAlarm's), then at 4, 8, 16, ... in a row: about nine events in a day
    of five-minute runs instead of 288, each saying how long it has lasted. Connection Recovered ends it."""
    return in_a_row <= escalation or in_a_row & (in_a_row - 1) == 0


# Two refreshers compute the same end a few seconds apart (their clocks, Intuit's whole seconds): only a
# move further than this is the grant's end moving.
END_MOVED_SECONDS = 3600
# What one look at a grant nobody refreshes may take: its read, then, when a mark is crossed, the lease, the write
# that marks it and gives the lease back, and the event (recorded, published, marked published), each call
# throttled. None starts closer than this to the invocation's end: Lambda would stop the sweep mid-look (a failed
# sweep, run again, then parked as "did not run"; a lease left to expire, a warning marked sent and never sent).
UNREFRESHED_LOOK_SECONDS = 6 * AWS_THROTTLED_CALL_SECONDS


@record
class ExpiryWarning:
    """A reconnect warning that is due: the threshold crossed, the days left and the end that comes first."""

    threshold_days: int
    days_left: float
    end: GrantEnd
    sent_after: tuple[str, ...]


def expiry_warning(connection: Connection, now: float, *, ahead_seconds: float = 0.0) -> ExpiryWarning | None:
    """The warning due now, if a mark was crossed (by `ahead_seconds` from now) that hasn't been announced for
    this grant's end (domain/grant_end.py)."""
    end = connection.grant_end
    if end is None:
        return None
    crossed = end.marks_within(now, ahead_seconds=ahead_seconds)
    fresh = [d for d in crossed if f"{d}d" not in connection.expiry_warnings_sent]
    if not fresh:
        return None
    # One event for the closest mark; marks crossed at once are marked sent together.
    sent = tuple(sorted({*connection.expiry_warnings_sent, *(f"{d}d" for d in crossed)}))
    return ExpiryWarning(min(fresh), end.days_left(now), end, sent)


def rearmed(connection: Connection, before: Connection, now: float, *, ahead_seconds: float = 0.0) -> Connection:
    """The warnings of an end that moved out, re-armed: Intuit answered with the same refresh token for weeks
    (its rolling expiry came near and was announced), then rotated again, and the grant now ends later
    (another rolling end, or the five-year hard one). Marks the new end is not within are announced again
    when it comes within them: each end gets its own warnings."""
    end, was = connection.grant_end, before.grant_ends_at
    if not connection.expiry_warnings_sent or end is None or was is None or end.at - was <= END_MOVED_SECONDS:
        return connection
    within = {f"{d}d" for d in end.marks_within(now, ahead_seconds=ahead_seconds)}
    return replace(connection, expiry_warnings_sent=tuple(sorted(set(connection.expiry_warnings_sent) & within)))


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
