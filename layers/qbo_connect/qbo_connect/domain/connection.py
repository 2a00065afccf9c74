"""A connection: everything needed to sign into one QuickBooks Online company, minus the secrets.

Secrets (client secret, tokens) live in the vault; this is the metadata kept in the table.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import field, replace
from enum import StrEnum
from typing import Any, Self

from qbo_connect import intuit
from qbo_connect.domain.grant_end import GrantEnd
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import InvalidInput
from qbo_connect.records import record


class ConnectionStatus(StrEnum):
    NOT_CONNECTED = "not_connected"  # new, or reset: a person must run the consent flow
    CONNECTED = "connected"
    NEEDS_REAUTHORIZATION = "needs_reauthorization"  # Intuit said invalid_grant: only a person helps
    INVALID_CLIENT = "invalid_client"  # Intuit refused the client ID/secret: fix the secret


# last_refresh_error of a connection whose refresh token expired (rolling or hard) before it could be refreshed.
GRANT_ENDED = "grant_ended"


class RefreshPolicy(StrEnum):
    """When a connection's access token is refreshed (README, "Refresh policies").

    eager: by the schedule, before it comes within the refresh margin of expiring: the secret always
    holds an access token valid for at least the margin minus one sweep period, for readers that take
    it straight from Secrets Manager. Every access-token lifetime costs one Secrets Manager write.
    on_demand: when a workflow asks for a token (the Python client, the test or token function) and
    the stored one cannot serve it, under the lease; plus a keep-alive refresh a day after the last
    one, which keeps the refresh token's rolling expiry moving and finds a revoked grant within a day.
    About one write a day, so a region holds many more connections.
    """

    EAGER = "eager"
    ON_DEMAND = "on_demand"


def parse_refresh_policy(value: str) -> RefreshPolicy:
    try:
        return RefreshPolicy(value)
    except ValueError:
        raise InvalidInput(
            "The refresh policy is `eager` (the secret always holds a valid access token) or `on_demand` "
            "(refreshed when a workflow asks for a token, and once a day)"
        ) from None


# Checked with fullmatch: `$` alone also matches before a final newline, which a line read from a file keeps.
CONNECTION_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{4,128}$")
REALM_ID_PATTERN = re.compile(intuit.REALM_ID_PATTERN)
CLIENT_SECRET_PATTERN = re.compile(r"^[\x21-\x7e]{8,256}$")


def new_connection_id() -> str:
    return "qbc-" + secrets.token_hex(6)


def validate_connection_id(connection_id: str) -> str:
    if not isinstance(connection_id, str) or not CONNECTION_ID_PATTERN.fullmatch(connection_id):
        raise InvalidInput(
            "A connection ID is 2 to 63 lowercase letters, digits or dashes, starting with a letter or digit: "
            "check the ID (`qbo-connect connections list` shows them)"
        )
    return connection_id


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            "A connection name is 1 to 64 letters, digits, spaces, dots, underscores or dashes, "
            "starting with a letter or digit: choose another name"
        )
    return name


def validate_realm_id(realm_id: str) -> str:
    if not isinstance(realm_id, str) or not REALM_ID_PATTERN.fullmatch(realm_id):
        raise InvalidInput(
            "A company ID (realm ID) is a number of up to 32 digits: copy it from QuickBooks "
            "(Settings > Account and settings > Billing & subscription) or leave it out"
        )
    return realm_id


def validate_client_id(client_id: str) -> str:
    if not isinstance(client_id, str) or not CLIENT_ID_PATTERN.fullmatch(client_id):
        raise InvalidInput(
            "The client ID looks wrong: copy it from your app's Keys & credentials page in Intuit's developer portal"
        )
    return client_id


def validate_client_secret(client_secret: str) -> str:
    if not isinstance(client_secret, str) or not CLIENT_SECRET_PATTERN.fullmatch(client_secret):
        raise InvalidInput(
            "The client secret must be 8 to 256 printable characters without spaces: copy it from your app's "
            "Keys & credentials page in Intuit's developer portal"
        )
    return client_secret


def validate_scopes(scopes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    unknown = [s for s in cleaned if s not in intuit.KNOWN_SCOPES]
    if not cleaned or unknown:
        raise InvalidInput(
            f"Unknown or missing scopes {unknown!r}: use any of {', '.join(sorted(intuit.KNOWN_SCOPES))} "
            f"(default {intuit.ACCOUNTING_SCOPE})"
        )
    if not intuit.COMPANY_SCOPES.intersection(cleaned):
        # Intuit names the company (realmId) on the callback only for these: without one, no consent completes.
        raise InvalidInput(
            f"A connection is one QuickBooks company: add {intuit.ACCOUNTING_SCOPE} (or {intuit.PAYMENT_SCOPE}) "
            "to the scopes; Intuit names the company only for those"
        )
    return cleaned


def parse_environment(value: str) -> intuit.Environment:
    try:
        return intuit.Environment(value)
    except ValueError:
        raise InvalidInput("The environment is `sandbox` or `production`") from None


class _ItemRecord:
    """A record kept on the connection item as one map: the fields that are set, read back by name."""

    def to_item(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Self:
        return cls(**{k: item.get(k) for k in cls.__dataclass_fields__})  # type: ignore[attr-defined]


@record
class TestResult(_ItemRecord):
    """The outcome of signing in and reading CompanyInfo; recorded on the connection."""

    ok: bool
    tested_at: float
    latency_ms: int | None = None
    company_name: str | None = None
    error_code: str | None = None
    message: str | None = None
    intuit_tid: str | None = None
    # CompanyInfo's SubscriptionStatus (None: not reported); some leave the company read only (intuit.py).
    subscription_status: str | None = None

    @property
    def company_read_only(self) -> bool:
        return self.ok and intuit.subscription_is_read_only(self.subscription_status)


@record
class ConsentIdentity(_ItemRecord):
    """Who consented, from Intuit's userinfo (openid scopes): `sub` is stable, `email` as Intuit holds it.
    When it could not be learned, both are None and `unknown_reason` says why; the consent stands."""

    sub: str | None = None
    email: str | None = None
    email_verified: bool | None = None
    unknown_reason: str | None = None

    @classmethod
    def unknown(cls, reason: str) -> ConsentIdentity:
        return cls(unknown_reason=reason)

    def as_json(self) -> dict[str, Any]:
        return {"sub": self.sub, "email": self.email, "email_verified": self.email_verified} | (
            {"unknown_reason": self.unknown_reason} if self.unknown_reason else {}
        )


@record
class Connection:
    """One QuickBooks Online company's connection as the table keeps it: identity, status and token facts, never a secret."""

    connection_id: str
    name: str
    environment: intuit.Environment
    base_url: str
    client_id: str
    scopes: tuple[str, ...] = intuit.DEFAULT_SCOPES
    realm_id: str | None = None
    refresh_policy: RefreshPolicy = RefreshPolicy.EAGER
    status: ConnectionStatus = ConnectionStatus.NOT_CONNECTED
    has_client_secret: bool = False
    company_name: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    connected_at: float | None = None
    # Token bookkeeping: times only, never the tokens themselves.
    access_token_expires_at: float | None = None
    refresh_token_expires_at: float | None = None
    refresh_token_hard_expires_at: float | None = None
    last_refreshed_at: float | None = None
    consecutive_refresh_failures: int = 0
    last_refresh_error: str | None = None
    last_revocation: str | None = None
    # Optimistic concurrency: every save is conditional on the version it read.
    version: int = 0
    # The vault document's generation this metadata describes (see secret_document.py).
    secret_generation: int = 0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    # Fencing (docs/reliability.md): a refresh call may be in flight at Intuit until this time, so
    # nobody may send the refresh token before it (plus the clock skew allowance) has passed.
    refresh_in_flight_until: float | None = None
    # A rotated token set the vault refused, sealed with KMS; reconciliation reads it before the vault.
    pending_rotation: str | None = field(default=None, repr=False)
    # The per-connection budget of forced refreshes (a token bucket: count, and when it was last counted).
    forced_refresh_budget: float | None = None
    forced_refresh_budget_at: float | None = None
    last_test: TestResult | None = field(default=None, compare=False)
    expiry_warnings_sent: tuple[str, ...] = ()
    # Who gave the current consent (openid scopes only; None when they were not granted).
    consented_by: ConsentIdentity | None = None

    @property
    def is_refreshable(self) -> bool:
        return self.status is ConnectionStatus.CONNECTED and self.has_client_secret

    @property
    def grant_end(self) -> GrantEnd | None:
        """The earlier of the rolling and the hard expiry, and which one it is (None: not known)."""
        return GrantEnd.earliest(rolling=self.refresh_token_expires_at, hard=self.refresh_token_hard_expires_at)

    @property
    def grant_ends_at(self) -> float | None:
        """When only a person reconnecting helps (None: not known)."""
        end = self.grant_end
        return None if end is None else end.at

    def grant_ended(self, now: float) -> bool:
        """The refresh token's rolling or hard expiry has passed: whatever else is fixed, only a reconnect helps."""
        ends = self.grant_ends_at
        return ends is not None and ends <= now

    def is_refresh_due(self, now: float, margin_seconds: float) -> bool:
        return self.access_token_expires_at is None or self.access_token_expires_at - now <= margin_seconds

    def lease_is_held(self, now: float) -> bool:
        return self.lease_owner is not None and (self.lease_expires_at or 0) > now

    def fenced_until(self, until: float | None) -> Connection:
        return replace(self, refresh_in_flight_until=until)

    def connected_with(
        self, token_set: TokenSet, *, realm_id: str, company_name: str | None, now: float, generation: int
    ) -> Connection:
        return replace(
            self.with_token_times(token_set, now=now, generation=generation),
            status=ConnectionStatus.CONNECTED,
            realm_id=realm_id,
            company_name=company_name or self.company_name,
            connected_at=now,
            expiry_warnings_sent=(),
            consented_by=None,  # this consent's person is learned after the tokens are safe
        )

    def with_token_times(self, token_set: TokenSet, *, now: float, generation: int) -> Connection:
        return replace(
            self,
            access_token_expires_at=token_set.expires_at,
            refresh_token_expires_at=token_set.refresh_token_expires_at,
            refresh_token_hard_expires_at=token_set.refresh_token_hard_expires_at,
            last_refreshed_at=token_set.obtained_at,
            consecutive_refresh_failures=0,
            last_refresh_error=None,
            secret_generation=generation,
            updated_at=now,
        )

    def disconnected(self, *, now: float, generation: int, revocation: str | None) -> Connection:
        return replace(
            self,
            status=ConnectionStatus.NOT_CONNECTED,
            access_token_expires_at=None,
            refresh_token_expires_at=None,
            refresh_token_hard_expires_at=None,
            consecutive_refresh_failures=0,
            last_refresh_error=None,
            last_revocation=revocation,
            secret_generation=generation,
            expiry_warnings_sent=(),
            consented_by=None,
            updated_at=now,
        )

    def with_status(self, status: ConnectionStatus, *, now: float, error: str | None = None) -> Connection:
        return replace(self, status=status, last_refresh_error=error, updated_at=now)

    def with_refresh_failure(self, error: str, *, now: float) -> Connection:
        return replace(
            self,
            consecutive_refresh_failures=self.consecutive_refresh_failures + 1,
            last_refresh_error=error,
            updated_at=now,
        )

    def with_client_secret(self, *, now: float, generation: int) -> Connection:
        # A new secret is the fix for invalid_client: the connection becomes refreshable again, unless its grant
        # ended while nothing could refresh it (then only a reconnect helps, and saying "connected" would lie).
        status, error = self.status, self.last_refresh_error
        if self.status is ConnectionStatus.INVALID_CLIENT:
            status, error = (
                (ConnectionStatus.NEEDS_REAUTHORIZATION, GRANT_ENDED)
                if self.grant_ended(now)
                else (ConnectionStatus.CONNECTED, None)
            )
        return replace(
            self,
            has_client_secret=True,
            status=status,
            secret_generation=generation,
            updated_at=now,
            last_refresh_error=error,
        )

    def summary(self) -> dict[str, Any]:
        """What `list`, `show` and the API may show: no secrets exist on this object to leak."""
        return {
            "connection_id": self.connection_id,
            "name": self.name,
            "environment": self.environment.value,
            "base_url": self.base_url,
            "realm_id": self.realm_id,
            "client_id": self.client_id,
            "scopes": list(self.scopes),
            "refresh_policy": self.refresh_policy.value,
            "status": self.status.value,
            "client_secret_set": self.has_client_secret,
            "company_name": self.company_name,
            "created_at": self.created_at,
            "connected_at": self.connected_at,
            "access_token_expires_at": self.access_token_expires_at,
            "refresh_token_expires_at": self.refresh_token_expires_at,
            "refresh_token_hard_expires_at": self.refresh_token_hard_expires_at,
            "last_refreshed_at": self.last_refreshed_at,
            "consecutive_refresh_failures": self.consecutive_refresh_failures,
            "last_refresh_error": self.last_refresh_error,
            "last_revocation": self.last_revocation,
            "last_test": self.last_test.to_item() if self.last_test else None,
            "consented_by": self.consented_by.as_json() if self.consented_by else None,
        }
