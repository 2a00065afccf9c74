"""Access tokens for workflows: a valid one from memory while it lasts, else from the vault.

The vault (Secrets Manager) always holds a token the schedule keeps valid for longer than the refresh
margin minus one period, so a cold read is one GetItem and one GetSecretValue and no refresh (and a
cached token one GetItem a minute, to see a reset, delete or reconnect). A
refresh happens only when the token cannot serve the caller, and then through the connection's lease
(TokenLifecycle.refresh): this module never talks to Intuit's token endpoint itself.

    from qbo_connect.token_access import get_access_token
    token = get_access_token("qbc-1a2b3c4d5e6f")                  # valid for at least 300 s

When Intuit answers 401 with a token from here, call `token_rejected(connection_id, token)`: it asks
for one forced refresh (still under the lease), at most once per connection per
`RefreshTimings.forced_refresh_min_age_seconds` (ten minutes) in this process; the lifecycle also refuses
to force a refresh of a token younger than that, whoever asks, and keeps a per-connection budget of
forced refreshes so the secret stays within Secrets Manager's version quota. A caller looping on 401s therefore gets the same
token back and sees its 401 as an error, instead of making the service refresh in a loop.
"""

from __future__ import annotations

import threading
from dataclasses import field
from typing import Any

from qbo_connect import intuit, invocation
from qbo_connect.adapters.aws_faults import raised_as_vault_unavailable
from qbo_connect.domain.connection import Connection, ConnectionStatus
from qbo_connect.domain.lifecycle import RefreshTimings, TokenLifecycle
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import InvalidInput, QboConnectError, VaultUnavailable
from qbo_connect.invocation import error_body, invocation_end
from qbo_connect.observability import logger
from qbo_connect.ports import Clock, ConnectionStore
from qbo_connect.records import record

DEFAULT_MIN_VALID_SECONDS = float(invocation.DEFAULT_MIN_VALID_SECONDS)
# A fresh access token lives an hour. Asking for nearly all of it would refresh a token minutes old on
# every read, and each refresh writes a Secrets Manager version (about 100 a day is the quota): the
# lifecycle's cap keeps one refresh per half hour at most.
MAX_MIN_VALID_SECONDS = RefreshTimings.max_min_valid_seconds
# How long a cached token is handed out before one GetItem checks that the connection was not reset,
# deleted or reconnected meanwhile (Intuit may go on honouring the token: nothing was revoked).
RECHECK_SECONDS = 60.0


@record
class ConnectionAccess:
    """What a request to one company's accounting API needs: where to send it, and the bearer token."""

    connection_id: str
    realm_id: str
    base_url: str
    access_token: str = field(repr=False)
    expires_at: float
    scopes: tuple[str, ...] = ()
    refresh_policy: str = "eager"
    # Whose calls these are, for metering (domain/metering.py): the app Intuit meters, and the environment.
    client_id: str = ""
    environment: intuit.Environment = intuit.Environment.SANDBOX

    def seconds_valid(self, now: float) -> float:
        return self.expires_at - now

    def as_invocation_answer(self) -> dict[str, Any]:
        """The token function's answer (docs/schemas/token-function.response.schema.json)."""
        return {
            "ok": True,
            "connection_id": self.connection_id,
            "realm_id": self.realm_id,
            "base_url": self.base_url,
            "token_type": "bearer",
            "access_token": self.access_token,
            "expires_at": int(self.expires_at),
            "scopes": list(self.scopes),
            "refresh_policy": self.refresh_policy,
        }


@record(frozen=False)
class _Cached:
    access: ConnectionAccess
    generation: int  # the secret's generation the token came from
    checked_at: float  # when the stored state last said this token is the connection's


class TokenAccess:
    """Thread-safe, per-process cache of access tokens in front of TokenLifecycle.valid_token."""

    def __init__(
        self,
        lifecycle: TokenLifecycle,
        store: ConnectionStore,
        clock: Clock,
    ) -> None:
        self._lifecycle = lifecycle
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._connection_locks: dict[str, threading.Lock] = {}
        self._cache: dict[str, _Cached] = {}
        self._forced_at: dict[str, float] = {}

    def access(
        self,
        connection_id: str,
        *,
        min_valid_seconds: float = DEFAULT_MIN_VALID_SECONDS,
        not_after: float | None = None,
    ) -> ConnectionAccess:
        """The connection's realm, base URL and an access token valid for at least `min_valid_seconds`.

        `not_after` is when the caller must be done (its Lambda invocation's end, see `invocation_end`): a
        refresh is not sent unless its answer can be read and persisted by then.
        Raises NotConnected, NeedsReauthorization, InvalidClient, ConnectionNotFound, IntuitUnavailable or
        Busy (each says what to do) when no valid token can be had."""
        _check_min_valid(min_valid_seconds)
        cached = self._cached(connection_id, min_valid_seconds)
        if cached is not None:
            return cached
        # One reader per connection: threads that miss together share one GetItem and one GetSecretValue.
        with self._connection_lock(connection_id):
            return (
                self._cached(connection_id, min_valid_seconds)
                or self._still_current(connection_id, min_valid_seconds)
                or self._load(connection_id, min_valid_seconds, not_after=not_after)
            )

    def answer(self, connection_id: str, *, min_valid_seconds: float, not_after: float | None = None) -> dict[str, Any]:
        """The token function's answer: the access token and where to use it, or why none can be had.

        Never from this process's cache: a warm instance would go on handing out a reset or revoked
        connection's token for the rest of its hour. Each answer reads the connection and its secret
        (one GetItem, one GetSecretValue), so the status it reports is the stored one."""
        _check_min_valid(min_valid_seconds)
        try:
            with self._connection_lock(connection_id):
                granted = self._load(connection_id, min_valid_seconds, not_after=not_after)
        except QboConnectError as error:
            return error_body(error.code, str(error), connection_id=connection_id)
        return granted.as_invocation_answer()

    def access_token(
        self,
        connection_id: str,
        *,
        min_valid_seconds: float = DEFAULT_MIN_VALID_SECONDS,
        not_after: float | None = None,
    ) -> str:
        return self.access(connection_id, min_valid_seconds=min_valid_seconds, not_after=not_after).access_token

    def token_rejected(
        self,
        connection_id: str,
        access_token: str | None = None,
        *,
        min_valid_seconds: float = DEFAULT_MIN_VALID_SECONDS,
        not_after: float | None = None,
    ) -> ConnectionAccess:
        """Intuit answered 401 to `access_token`: a token to retry with, after a forced refresh if one is allowed
        (TokenLifecycle.token_after_rejection: another caller's refresh under way is waited for while `not_after`
        leaves time, and Busy raised if it still is).

        The answer may hold the same token (a forced refresh ran less than ten minutes ago): a second 401
        with it is then an authentication problem to report, not a reason to refresh again."""
        _check_min_valid(min_valid_seconds)
        with self._connection_lock(connection_id):
            cached = self._cache.get(connection_id)
            if access_token is not None and cached is not None and cached.access.access_token != access_token:
                return cached.access  # another thread already replaced the rejected token
            self._forget(connection_id)
            current = self._load(connection_id, min_valid_seconds, not_after=not_after)
            if access_token is not None and current.access_token != access_token:
                return current  # the vault moved on (the schedule refreshed): no need to force anything
            now = self._clock.now()
            last_forced = self._forced_at.get(connection_id)
            if last_forced is not None and now - last_forced < self._lifecycle.timings.forced_refresh_min_age_seconds:
                logger.warning(
                    "Access token rejected again soon after a forced refresh; not refreshing again",
                    extra={"connection_id": connection_id},
                )
                return current
            self._forget(connection_id)
            connection, token_set = self._lifecycle.token_after_rejection(
                connection_id, current.access_token, min_valid_seconds=min_valid_seconds, not_after=not_after
            )
            self._forced_at[connection_id] = now  # not when it raised: a refresh still under way was not ours
            return self._remember(connection, token_set)

    def forget(self, connection_id: str | None = None) -> None:
        """Drop cached tokens (of one connection, or all)."""
        with self._lock:
            if connection_id is None:
                self._cache.clear()
            else:
                self._cache.pop(connection_id, None)

    # --- internals ----------------------------------------------------------------------------
    def _cached(self, connection_id: str, min_valid_seconds: float) -> ConnectionAccess | None:
        """From memory, if valid for long enough and checked against the stored state within a minute."""
        now = self._clock.now()
        with self._lock:
            cached = self._cache.get(connection_id)
        if (
            cached is not None
            and cached.access.seconds_valid(now) >= min_valid_seconds
            and now - cached.checked_at < RECHECK_SECONDS
        ):
            return cached.access
        return None

    def _still_current(self, connection_id: str, min_valid_seconds: float) -> ConnectionAccess | None:
        """A cached token valid for long enough whose check is due: one GetItem says whether the connection
        still stands on it (not reset, deleted, reconnected or marked as needing a person)."""
        now = self._clock.now()
        with self._lock:
            cached = self._cache.get(connection_id)
        if cached is None or cached.access.seconds_valid(now) < min_valid_seconds:
            return None
        try:
            with raised_as_vault_unavailable():
                connection = self._store.get(connection_id)
        except VaultUnavailable as error:
            # AWS throttling or failing past botocore's retries: the token was current a minute ago and is
            # still valid, so it serves as it did before the check existed; the check is tried again in a
            # minute rather than at every request, each of which would wait out the retries under the lock.
            logger.warning(
                "Could not check the cached token against the stored state; serving it and checking later",
                extra={"connection_id": connection_id, "error": str(error)},
            )
            with self._lock:
                cached.checked_at = now
            return cached.access
        if (
            connection is None
            or connection.status is not ConnectionStatus.CONNECTED
            or connection.secret_generation != cached.generation
        ):
            self._forget(connection_id)
            return None
        with self._lock:
            cached.checked_at = now
        return cached.access

    def _load(
        self, connection_id: str, min_valid_seconds: float, *, not_after: float | None = None
    ) -> ConnectionAccess:
        connection, token_set = self._lifecycle.valid_token(
            connection_id, min_valid_seconds=min_valid_seconds, not_after=not_after
        )
        return self._remember(connection, token_set)

    def _remember(self, connection: Connection, token_set: TokenSet) -> ConnectionAccess:
        access = ConnectionAccess(
            connection_id=connection.connection_id,
            realm_id=connection.realm_id or "",
            base_url=connection.base_url,
            access_token=token_set.access_token,
            expires_at=token_set.expires_at,
            scopes=token_set.scopes,
            refresh_policy=connection.refresh_policy.value,
            client_id=connection.client_id,
            environment=connection.environment,
        )
        with self._lock:
            self._cache[connection.connection_id] = _Cached(access, connection.secret_generation, self._clock.now())
        return access

    def _forget(self, connection_id: str) -> None:
        with self._lock:
            self._cache.pop(connection_id, None)

    def _connection_lock(self, connection_id: str) -> threading.Lock:
        with self._lock:
            return self._connection_locks.setdefault(connection_id, threading.Lock())


def _check_min_valid(min_valid_seconds: float) -> None:
    if not 0 <= min_valid_seconds <= MAX_MIN_VALID_SECONDS:
        raise InvalidInput(
            f"min_valid_seconds must be between 0 and {int(MAX_MIN_VALID_SECONDS)}: an access token lives an hour, "
            "and asking for more would refresh a fresh token on every read"
        )


# --- the process-wide instance ----------------------------------------------------------------------
_default_lock = threading.Lock()
_default: tuple[object, TokenAccess] | None = None


def default_token_access() -> TokenAccess:
    """The process-wide TokenAccess on `runtime.services()`; rebuilt when the services are."""
    from qbo_connect.runtime import services  # the wiring imports the domain, not the other way round

    global _default
    current = services()
    with _default_lock:
        if _default is None or _default[0] is not current:
            _default = (current, TokenAccess(current.lifecycle, current.store, current.clock))
        return _default[1]


def get_access_token(
    connection_id: str, *, min_valid_seconds: float = DEFAULT_MIN_VALID_SECONDS, lambda_context: Any = None
) -> str:
    """An access token for the connection, valid for at least `min_valid_seconds` (default 300, at most 1800).
    In a Lambda handler pass its `context`: a refresh is then sent only if the invocation can see it through."""
    return default_token_access().access_token(
        connection_id, min_valid_seconds=min_valid_seconds, not_after=invocation_end(lambda_context)
    )


def token_rejected(connection_id: str, access_token: str | None = None, *, lambda_context: Any = None) -> str:
    """Intuit answered 401 to `access_token`: the token to retry with once (see TokenAccess.token_rejected)."""
    return (
        default_token_access()
        .token_rejected(connection_id, access_token, not_after=invocation_end(lambda_context))
        .access_token
    )
