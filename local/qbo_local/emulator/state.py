"""Everything the emulator remembers: clients, companies, codes, grants and tokens, behind one lock.

Routes stay thin: each OAuth decision (code redemption, strict refresh-token rotation, revocation,
access-token checks) is one method here, taken under the lock so concurrent callers over HTTP see
each transition whole. Every expiry decision reads now(), the injected clock plus an offset the
admin API can advance.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import facts
from .config import EmulatorConfig
from .entities import CUSTOMER, EntityBook, seed_customer_body
from .errors import AccessRejected, invalid_client, invalid_grant, invalid_scope
from .facts import INVALID_REFRESH_TOKEN_DESCRIPTION
from .faults import FaultPlan
from .openid import DEFAULT_PERSON, IdTokenSigner, Person
from .query import Condition
from .ratelimit import Limits, RateLimiter
from .stats import Stats
from .webhooks import WebhookSender


@dataclass
class Company:
    realm_id: str
    name: str
    created_at: float
    book: EntityBook = field(default_factory=EntityBook, repr=False)
    # The company's QuickBooks subscription lapsed (cancelled, expired, suspended): the accounting API refuses
    # its data (403, fault 3100) while the app's grant, and its refreshes, keep working.
    subscription_lapsed: bool = False
    # What CompanyInfo reports (NameValue SubscriptionStatus): in a read-only one (CANCELED, EXPIRED, SUSPENDED,
    # RESTRICTED) reads keep working and writes are refused (fault 6190): Intuit's documented reading.
    subscription_status: str = facts.DEFAULT_SUBSCRIPTION_STATUS


@dataclass(frozen=True)
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    realm_id: str
    scopes: tuple[str, ...]
    consented_at: float
    expires_at: float
    person: Person = DEFAULT_PERSON


@dataclass
class Grant:
    """One consent: the family of every access and refresh token issued from one authorization code."""

    grant_id: str
    client_id: str
    realm_id: str
    scopes: tuple[str, ...]
    consented_at: float
    hard_expires_at: float
    code: str
    refresh_count: int = 0
    revoked_reason: str | None = None
    person: Person = DEFAULT_PERSON  # who clicked Connect: userinfo and the ID token name them

    @property
    def revoked(self) -> bool:
        return self.revoked_reason is not None


@dataclass
class RefreshToken:
    value: str
    grant_id: str
    expires_at: float
    consumed: bool = False
    issued_at: float = 0.0


@dataclass(frozen=True)
class AccessToken:
    value: str
    grant_id: str
    expires_at: float


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    hard_expires_in: int
    id_token: str | None = None


class EmulatorState:
    def __init__(self, config: EmulatorConfig) -> None:
        self._lock = threading.RLock()
        self._config = config
        self._clock_offset = 0.0
        self._clients: dict[str, str] = dict(config.clients)
        self._companies: dict[str, Company] = {}
        self._codes: dict[str, AuthCode] = {}
        self._spent_codes: dict[str, str | None] = {}  # code -> grant issued from it, if any
        self._grants: dict[str, Grant] = {}
        self._refresh_tokens: dict[str, RefreshToken] = {}
        self._access_tokens: dict[str, AccessToken] = {}
        self.faults = FaultPlan()
        self.stats = Stats()
        self.limiter = RateLimiter()
        self.webhooks = WebhookSender(recipients=self.clients_connected_to, sleep=config.sleep)
        self.id_tokens = IdTokenSigner()
        self._person = DEFAULT_PERSON
        for realm_id, name in config.companies:
            self.add_company(realm_id, name)

    # Configuration and time.

    @property
    def config(self) -> EmulatorConfig:
        with self._lock:
            return self._config

    def update_config(self, values: Mapping[str, Any]) -> EmulatorConfig:
        with self._lock:
            self._config = self._config.with_overrides(values)
            return self._config

    def now(self) -> float:
        with self._lock:
            return self._config.clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator's time forward, for HTTP callers that cannot inject a clock."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._clock_offset += seconds
            return self.now()

    def limits(self) -> Limits | None:
        config = self.config
        if not config.rate_limits:
            return None
        return Limits(
            config.rate_limit_per_second,
            config.rate_limit_per_minute,
            config.max_concurrent,
            config.rate_limit_batch_per_minute,
        )

    # Clients.

    def register_client(self, client_id: str, client_secret: str) -> None:
        with self._lock:
            self._clients[client_id] = client_secret

    def client_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._clients)

    def may_ask_consent(self, client_id: str) -> bool:
        with self._lock:
            return client_id in self._clients or self._config.open_registration

    def authenticate_client(self, client_id: str, client_secret: str) -> None:
        """Raise invalid_client unless the pair is known; with open registration, learn a new pair."""
        if not client_id or not client_secret:
            raise invalid_client()
        with self._lock:
            known = self._clients.get(client_id)
            if known is None and self._config.open_registration:
                self._clients[client_id] = client_secret  # trust on first use
                return
        if known is None or not hmac.compare_digest(known.encode(), client_secret.encode()):
            raise invalid_client()

    # Companies.

    def add_company(self, realm_id: str, name: str) -> Company:
        with self._lock:
            if realm_id in self._companies:
                raise ValueError(f"company {realm_id} already exists")
            company = Company(realm_id, name, self.now())
            self._companies[realm_id] = company
        self.seed_customers(realm_id, self._config.seed_customers)
        return company

    def set_subscription_lapsed(self, realm_id: str, lapsed: bool) -> Company:
        with self._lock:
            company = self._companies[realm_id]
            company.subscription_lapsed = lapsed
            return company

    def set_subscription_status(self, realm_id: str, status: str) -> Company:
        if status not in facts.SUBSCRIPTION_STATUSES:
            raise ValueError(f"a subscription status is one of {', '.join(sorted(facts.SUBSCRIPTION_STATUSES))}")
        with self._lock:
            company = self._companies[realm_id]
            company.subscription_status = status
            return company

    def company(self, realm_id: str) -> Company | None:
        with self._lock:
            return self._companies.get(realm_id)

    def companies(self) -> list[Company]:
        with self._lock:
            return list(self._companies.values())

    def seed_customers(self, realm_id: str, count: int) -> int:
        """Add `count` filled-in customers with unique names; returns how many the company now has."""
        company = self.company(realm_id)
        if company is None:
            raise KeyError(realm_id)
        with self._lock:  # one seeder at a time, so generated names stay unique
            now = self.now()
            for _ in range(count):
                number = company.book.count(CUSTOMER) + 1
                names = facts.SEED_CUSTOMER_NAMES
                name = names[number - 1] if number <= len(names) else f"Customer {number:04d}"
                if company.book.select(CUSTOMER, [Condition("DisplayName", "=", name)]):
                    name = f"{name} ({secrets.token_hex(3)})"  # a caller already took the name
                company.book.create(CUSTOMER, seed_customer_body(number, name), now)
        return company.book.count(CUSTOMER)

    # Who is signed in to the emulated Intuit.

    @property
    def person(self) -> Person:
        with self._lock:
            return self._person

    def sign_in(self, person: Person) -> Person:
        """From now on this person clicks Connect; grants made before keep who made them."""
        with self._lock:
            self._person = person
            return person

    # Authorization codes and grants.

    def issue_code(self, client_id: str, redirect_uri: str, realm_id: str, scopes: Iterable[str]) -> str:
        with self._lock:
            now = self.now()
            code = AuthCode(
                code=f"emu-code-{secrets.token_urlsafe(32)}",
                client_id=client_id,
                redirect_uri=redirect_uri,
                realm_id=realm_id,
                scopes=tuple(scopes),
                consented_at=now,
                expires_at=now + self._config.auth_code_seconds,
                person=self._person,
            )
            self._codes[code.code] = code
            return code.code

    def redeem_code(self, client_id: str, code: str, redirect_uri: str) -> IssuedTokens:
        with self._lock:
            now = self.now()
            record = self._codes.pop(code, None)
            if record is None:
                if code in self._spent_codes:
                    # A replayed code may be a stolen one: kill what the first exchange produced.
                    grant_id = self._spent_codes[code]
                    if grant_id is not None:
                        self._revoke(grant_id, "authorization code used twice")
                raise invalid_grant()
            self._spent_codes[code] = None
            if record.client_id != client_id or record.redirect_uri != redirect_uri or now >= record.expires_at:
                raise invalid_grant()
            grant = Grant(
                grant_id=uuid.uuid4().hex,
                client_id=client_id,
                realm_id=record.realm_id,
                scopes=record.scopes,
                consented_at=record.consented_at,
                hard_expires_at=record.consented_at + self._config.hard_expiry_seconds,
                code=code,
                person=record.person,
            )
            self._grants[grant.grant_id] = grant
            self._spent_codes[code] = grant.grant_id
            return self._issue(grant, now, with_id_token=facts.OPENID_SCOPE in grant.scopes)

    def seed_grants(
        self, client_id: str, realm_id: str, scopes: Iterable[str], count: int
    ) -> list[tuple[str, IssuedTokens]]:
        """`count` consents at once, each through the same code and exchange as a browser's (benchmarks)."""
        if realm_id not in self._companies:
            raise KeyError(realm_id)
        redirect_uri = "http://localhost/seeded"
        seeded = []
        with self._lock:
            for _ in range(count):
                code = self.issue_code(client_id, redirect_uri, realm_id, scopes)
                issued = self.redeem_code(client_id, code, redirect_uri)
                seeded.append((self._spent_codes[code] or "", issued))
        return seeded

    def refresh(self, client_id: str, refresh_token: str, scopes: tuple[str, ...] | None = None) -> IssuedTokens:
        """Strict rotation: the presented token is consumed; presenting a consumed one kills the grant.

        `scopes`, when the request names any, may not exceed the grant's: RFC 6749 section 6 (a MUST; the
        answer is invalid_scope, section 5.2). Intuit documents no scope on refresh; a standards-compliant
        server that stands in for it refuses a wider one, and the token is not spent."""
        with self._lock:
            now = self.now()
            record = self._refresh_tokens.get(refresh_token)
            if record is None:
                raise invalid_grant(INVALID_REFRESH_TOKEN_DESCRIPTION)
            grant = self._grants[record.grant_id]
            if grant.client_id != client_id:
                raise invalid_grant(INVALID_REFRESH_TOKEN_DESCRIPTION)
            if record.consumed:
                self._revoke(grant.grant_id, "consumed refresh token presented again")
                raise invalid_grant(INVALID_REFRESH_TOKEN_DESCRIPTION)
            if grant.revoked or now >= record.expires_at or now >= grant.hard_expires_at:
                raise invalid_grant(INVALID_REFRESH_TOKEN_DESCRIPTION)
            if scopes is not None and not set(scopes) <= set(grant.scopes):
                raise invalid_scope("the requested scope exceeds the scope granted by the resource owner")
            grant.refresh_count += 1
            rotate_after = self._config.refresh_token_rotation_seconds
            if rotate_after and now - record.issued_at < rotate_after:
                # Intuit as it usually is: the same refresh token again, with what is left of its life (its
                # expiry does not move), until it is about a day old; only then a new one.
                return self._issue(grant, now, with_id_token=False, keep_refresh=record)
            record.consumed = True
            return self._issue(grant, now, with_id_token=False)

    def revoke_token(self, client_id: str, token: str) -> bool:
        """Disconnect the app from the company of an access or refresh token issued to this client;
        False if there is no such token."""
        with self._lock:
            record = self._refresh_tokens.get(token) or self._access_tokens.get(token)
            if record is None or self._grants[record.grant_id].client_id != client_id:
                return False
            return self._disconnect(record.grant_id, "revoked by the client")

    def revoke_grant(self, grant_id: str, reason: str = "disconnected by the user") -> bool:
        with self._lock:
            return self._disconnect(grant_id, reason)

    def authenticate_access(self, access_token: str, realm_id: str) -> Grant:
        """The grant behind a usable bearer token for this realm (a copy), or AccessRejected."""
        with self._lock:
            now = self.now()
            record = self._access_tokens.get(access_token)
            if record is None:
                raise AccessRejected("the access token is not recognised")
            grant = self._grants[record.grant_id]
            if grant.revoked:
                raise AccessRejected("the access token was revoked")
            if now >= record.expires_at or now >= grant.hard_expires_at:
                raise AccessRejected("the access token has expired")
            if grant.realm_id != realm_id:
                raise AccessRejected("the access token was issued for another company")
            return dataclasses.replace(grant)

    def grant_of_access_token(self, access_token: str) -> Grant:
        """The grant behind a usable bearer token, whatever its company (userinfo), or AccessRejected."""
        with self._lock:
            record = self._access_tokens.get(access_token)
            if record is None:
                raise AccessRejected("the access token is not recognised")
            return self.authenticate_access(access_token, self._grants[record.grant_id].realm_id)

    def clients_connected_to(self, realm_id: str) -> set[str]:
        """Client IDs holding a live grant on the company: the apps Intuit sends its webhooks to."""
        with self._lock:
            now = self.now()
            return {
                g.client_id
                for g in self._grants.values()
                if g.realm_id == realm_id and not g.revoked and now < g.hard_expires_at
            }

    def grants(self) -> list[dict[str, Any]]:
        """What the admin API shows about grants: lifecycle facts, never token values."""
        with self._lock:
            now = self.now()
            return [
                {
                    "grant_id": g.grant_id,
                    "client_id": g.client_id,
                    "realm_id": g.realm_id,
                    "scopes": list(g.scopes),
                    "refresh_count": g.refresh_count,
                    "revoked": g.revoked,
                    "revoked_reason": g.revoked_reason,
                    "hard_expires_in": max(0, int(g.hard_expires_at - now)),
                }
                for g in self._grants.values()
            ]

    def reset(self) -> None:
        """Forget every code, grant and token, the counters, rate windows and the clock offset."""
        with self._lock:
            self._codes.clear()
            self._spent_codes.clear()
            self._grants.clear()
            self._refresh_tokens.clear()
            self._access_tokens.clear()
            self._clock_offset = 0.0
        self.stats.reset()
        self.limiter.reset()

    # Called with the lock held.

    def _disconnect(self, grant_id: str, reason: str) -> bool:
        """Intuit's revocation (and a user's Disconnect in QuickBooks) ends the app's access to the
        company: every grant of that app on that company, whichever consent issued it."""
        grant = self._grants.get(grant_id)
        if grant is None:
            return False
        for other in self._grants.values():
            if (other.client_id, other.realm_id) == (grant.client_id, grant.realm_id):
                self._revoke(other.grant_id, reason)
        return True

    def _revoke(self, grant_id: str, reason: str) -> bool:
        grant = self._grants.get(grant_id)
        if grant is None:
            return False
        if grant.revoked_reason is None:
            grant.revoked_reason = reason
        return True

    def _issue(
        self, grant: Grant, now: float, *, with_id_token: bool, keep_refresh: RefreshToken | None = None
    ) -> IssuedTokens:
        config = self._config
        # Nothing outlives the grant's hard expiry, so lifetimes shrink as it approaches.
        hard_left = max(0.0, grant.hard_expires_at - now)
        access_life = min(float(config.access_token_seconds), hard_left)
        access = AccessToken(f"emu-at-{secrets.token_urlsafe(48)}", grant.grant_id, now + access_life)
        if keep_refresh is None:
            refresh_life = min(float(config.refresh_token_seconds), hard_left)
            refresh = RefreshToken(
                f"emu-rt-{secrets.token_urlsafe(32)}", grant.grant_id, now + refresh_life, issued_at=now
            )
        else:
            refresh, refresh_life = keep_refresh, max(0.0, keep_refresh.expires_at - now)
        self._access_tokens[access.value] = access
        self._refresh_tokens[refresh.value] = refresh
        id_token = None
        if with_id_token:
            id_token = self.id_tokens.sign(
                client_id=grant.client_id,
                realm_id=grant.realm_id,
                person=grant.person,
                issued_at=now,
                lifetime=int(access_life),
            )
        return IssuedTokens(
            access_token=access.value,
            refresh_token=refresh.value,
            expires_in=int(access_life),
            refresh_expires_in=int(refresh_life),
            hard_expires_in=int(hard_left),
            id_token=id_token,
        )
