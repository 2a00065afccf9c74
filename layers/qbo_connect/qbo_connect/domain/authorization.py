"""The consent flow: signed authorize links, single-use browser-bound state, and the callback.

Why these pieces: the authorize route is public, so only a link signed with the deployment's key
starts a flow; the state is 256 random bits, stored only as a hash, consumed with a conditional
delete, and bound to the starting browser by a cookie, so a code delivered to another browser, a
replay or a forged state changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import replace
from enum import StrEnum
from urllib.parse import urlencode

from qbo_connect import intuit
from qbo_connect.domain.app_company_leases import LeasePurpose
from qbo_connect.domain.connection import (
    Connection,
    ConnectionStatus,
    ConsentIdentity,
    validate_connection_id,
    validate_realm_id,
)
from qbo_connect.domain.events import EventType, connection_event
from qbo_connect.domain.leases import HeldLease, Leases
from qbo_connect.domain.metering import UsageKey
from qbo_connect.domain.revocation import Revocations
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import (
    Busy,
    CompanyBusy,
    Conflict,
    IntuitUnavailable,
    InvalidInput,
    LeaseRanOut,
    QboConnectError,
    Throttled,
    VaultUnavailable,
)
from qbo_connect.observability import logger
from qbo_connect.ports import (
    AppCompany,
    ClientCredentials,
    Clock,
    CompanyApi,
    ConnectionStore,
    EventPublisher,
    IdentityProvider,
    OAuthState,
    SigningKeys,
)
from qbo_connect.records import record

STATE_COOKIE = "__Host-qbo_oauth_state"
# Set on a completed consent, so that reloading the result page says what holds, not "already used".
RECEIPT_COOKIE = "__Host-qbo_consent_done"
RECEIPT_SECONDS = 3600
CALLBACK_PATH = "/oauth/callback"
_STATE_BYTES = 32  # 256 bits


def authorize_path(connection_id: str) -> str:
    return f"/connections/{connection_id}/authorize"


def callback_url(api_base_url: str) -> str:
    return api_base_url.rstrip("/") + CALLBACK_PATH


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class AuthorizeLinks:
    """HMAC-SHA256 signed, expiring links bound to one connection."""

    def __init__(self, keys: SigningKeys, clock: Clock, *, lifetime_seconds: float) -> None:
        self._keys = keys
        self._clock = clock
        self.lifetime_seconds = lifetime_seconds

    def create(self, api_base_url: str, connection_id: str, *, lifetime_seconds: float | None = None) -> str:
        key_id, key = self._keys.current()
        expires = int(self._clock.now() + (lifetime_seconds or self.lifetime_seconds))
        query = urlencode({"exp": expires, "kid": key_id, "sig": self._sign(key, connection_id, expires)})
        return f"{api_base_url.rstrip('/')}{authorize_path(connection_id)}?{query}"

    def verify(self, connection_id: str, *, exp: str | None, kid: str | None, sig: str | None) -> None:
        # ASCII only: str.isdigit() accepts "²" (which int() refuses), and compare_digest refuses non-ASCII str.
        if not (exp and kid and sig) or not (exp + kid + sig).isascii() or not exp.isdigit():
            raise LinkRejected(FlowError.LINK_INVALID)
        if len(exp) > 12 or len(sig) > 100 or len(kid) > 64:
            raise LinkRejected(FlowError.LINK_INVALID)
        key = self._keys.by_id(kid)
        if key is None or not hmac.compare_digest(self._sign(key, connection_id, int(exp)), sig):
            raise LinkRejected(FlowError.LINK_INVALID)
        if int(exp) < self._clock.now():
            raise LinkRejected(FlowError.LINK_EXPIRED)

    @staticmethod
    def _sign(key: bytes, connection_id: str, expires: int) -> str:
        message = f"qbo-connect authorize\n{connection_id}\n{expires}".encode()
        return _b64(hmac.new(key, message, hashlib.sha256).digest())

    def receipt(self, connection_id: str, state: str) -> str:
        """Proof that this browser completed the consent with `state`: signed, so only we can issue it."""
        key_id, key = self._keys.current()
        return f"{connection_id}.{key_id}.{self._sign_receipt(key, connection_id, state)}"

    def receipt_connection_id(self, receipt: str | None, state: str) -> str | None:
        """The connection a receipt was issued for with this state, or None if it was not."""
        receipt = receipt or ""
        if len(receipt) > 200 or not receipt.isascii():
            return None
        # Connection IDs and base64url signatures have no dots; key IDs sit between them.
        connection_id, _, signed = receipt.partition(".")
        key_id, _, sig = signed.rpartition(".")
        if not (connection_id and key_id and sig):
            return None
        key = self._keys.by_id(key_id)
        if key is None or not hmac.compare_digest(self._sign_receipt(key, connection_id, state), sig):
            return None
        return connection_id

    @staticmethod
    def _sign_receipt(key: bytes, connection_id: str, state: str) -> str:
        message = f"qbo-connect consent completed\n{connection_id}\n{_sha256(state)}".encode()
        return _b64(hmac.new(key, message, hashlib.sha256).digest())


# How long a consent waits for its connection's lease (a refresh or another change holds it for seconds).
CONNECTION_LEASE_WAIT_SECONDS = 10.0


class FlowError(StrEnum):
    """Each failure a person can meet in the browser; pages.py says what happened and what to do."""

    LINK_INVALID = "link_invalid"
    LINK_EXPIRED = "link_expired"
    CONNECTION_NOT_FOUND = "connection_not_found"
    NO_CLIENT_SECRET = "no_client_secret"
    CONSENT_DENIED = "consent_denied"
    INTUIT_ERROR = "intuit_error"
    BAD_CALLBACK = "bad_callback"
    STATE_UNKNOWN = "state_unknown"
    STATE_EXPIRED = "state_expired"
    OTHER_BROWSER = "other_browser"
    EXCHANGE_REFUSED = "exchange_refused"
    INTUIT_UNAVAILABLE = "intuit_unavailable"
    COMPANY_MISMATCH = "company_mismatch"
    BUSY = "busy"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    COMPANY_BUSY = "company_busy"
    STORED_BUT_CHANGED = "stored_but_changed"


class LinkRejected(Exception):
    def __init__(self, reason: FlowError, **details: str | None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details


@record
class FlowStart:
    """Where the authorize link sends the browser, and the cookie that ties the consent to it."""

    redirect_url: str
    state_cookie: str  # the cookie value: a hash of the state, never the state
    cookie_max_age: int


@record
class FlowResult:
    """A completed consent: the connected connection and the company it reached."""

    connection: Connection
    company_name: str | None
    realm_id: str
    receipt: str | None = None  # the RECEIPT_COOKIE value for the browser that completed the flow


class ConsentFlow:
    def __init__(
        self,
        store: ConnectionStore,
        leases: Leases,
        identity: IdentityProvider,
        company_api: CompanyApi,
        events: EventPublisher,
        links: AuthorizeLinks,
        clock: Clock,
        revocations: Revocations,
        *,
        state_seconds: float,
        exchange_call_seconds: float = 15,
        persist_seconds: float = 40,
    ) -> None:
        self._store = store
        self._leases = leases
        self._identity = identity
        self._company_api = company_api
        self._events = events
        self._links = links
        self._clock = clock
        self._revocations = revocations
        self._company_leases = revocations.leases
        self._state_seconds = state_seconds
        # What the code exchange may take, and persisting its answer: not started with less lease left.
        self._exchange_call_seconds = exchange_call_seconds
        self._persist_seconds = persist_seconds
        # How long a consent holds the app-company lease: within the callback function's timeout (template tests).
        self.company_lease_seconds = exchange_call_seconds + persist_seconds

    def start(
        self, connection_id: str, *, exp: str | None, kid: str | None, sig: str | None, redirect_uri: str
    ) -> FlowStart:
        try:
            validate_connection_id(connection_id)
        except InvalidInput:
            raise LinkRejected(FlowError.LINK_INVALID) from None
        self._links.verify(connection_id, exp=exp, kid=kid, sig=sig)
        connection = self._store.get(connection_id)
        if connection is None:
            raise LinkRejected(FlowError.CONNECTION_NOT_FOUND)
        if not connection.has_client_secret:
            raise LinkRejected(FlowError.NO_CLIENT_SECRET, name=connection.name)
        state = _b64(secrets.token_bytes(_STATE_BYTES))
        now = self._clock.now()
        self._store.put_state(
            OAuthState(
                state_hash=_sha256(state),
                connection_id=connection_id,
                redirect_uri=redirect_uri,
                browser_binding=_browser_binding(state),
                created_at=now,
                expires_at=now + self._state_seconds,
            )
        )
        url = self._identity.authorization_url(
            connection.client_id, redirect_uri=redirect_uri, scopes=connection.scopes, state=state
        )
        logger.info("Consent flow started", extra={"connection_id": connection_id})
        return FlowStart(
            redirect_url=url, state_cookie=_browser_binding(state), cookie_max_age=int(self._state_seconds)
        )

    def complete(
        self, params: dict[str, str], *, state_cookie: str | None, not_after: float | None = None
    ) -> FlowResult:
        """`not_after`: when the caller must be done (a Lambda invocation's end); the code is not exchanged unless
        Intuit's answer can be stored by then."""
        state = params.get("state") or ""
        if not (0 < len(state) <= 100) or not state.isascii():
            raise LinkRejected(FlowError.STATE_UNKNOWN)
        pending = self._store.get_state(_sha256(state))
        if pending is None:
            raise LinkRejected(FlowError.STATE_UNKNOWN)
        if (
            not state_cookie
            or not state_cookie.isascii()
            or not hmac.compare_digest(state_cookie, pending.browser_binding)
        ):
            # Leave the state in place: the browser that started the flow may still finish it.
            raise LinkRejected(FlowError.OTHER_BROWSER)
        if self._store.consume_state(pending.state_hash) is None:
            raise LinkRejected(FlowError.STATE_UNKNOWN)
        if pending.expires_at < self._clock.now():  # TTL deletes late: check in code too
            raise LinkRejected(FlowError.STATE_EXPIRED)
        connection = self._store.get(pending.connection_id)
        if connection is None:
            raise LinkRejected(FlowError.CONNECTION_NOT_FOUND)
        if params.get("error"):
            reason = FlowError.CONSENT_DENIED if params["error"] == "access_denied" else FlowError.INTUIT_ERROR
            raise LinkRejected(
                reason,
                name=connection.name,
                connection_id=connection.connection_id,
                error=params["error"][:64],
            )
        code, realm_id = params.get("code") or "", params.get("realmId") or ""
        if not code or len(code) > intuit.MAX_CODE_LENGTH:
            raise LinkRejected(FlowError.BAD_CALLBACK, name=connection.name, connection_id=connection.connection_id)
        try:
            validate_realm_id(realm_id)
        except InvalidInput:
            raise LinkRejected(
                FlowError.BAD_CALLBACK, name=connection.name, connection_id=connection.connection_id
            ) from None
        result = self._connect(
            connection, code=code, realm_id=realm_id, redirect_uri=pending.redirect_uri, not_after=not_after
        )
        return replace(result, receipt=self._links.receipt(connection.connection_id, state))

    def completed_before(self, params: dict[str, str], *, receipt: str | None) -> FlowResult | None:
        """A reload of the result page, by the browser that completed this consent: the connection as it is
        now, if it is still connected. Changes nothing; anything else gets the spent state's error page."""
        state = params.get("state") or ""
        if not (0 < len(state) <= 100) or not state.isascii():
            return None
        connection_id = self._links.receipt_connection_id(receipt, state)
        connection = self._store.get(connection_id) if connection_id else None
        if connection is None or connection.status is not ConnectionStatus.CONNECTED:
            return None
        return FlowResult(
            connection=connection, company_name=connection.company_name, realm_id=connection.realm_id or ""
        )

    def _connect(
        self, connection: Connection, *, code: str, realm_id: str, redirect_uri: str, not_after: float | None
    ) -> FlowResult:
        details = {"name": connection.name, "connection_id": connection.connection_id}
        try:
            with self._leases.hold(connection.connection_id, wait_seconds=CONNECTION_LEASE_WAIT_SECONDS) as held:
                secret = held.secret
                if secret is None or not secret.client_secret:
                    raise LinkRejected(FlowError.NO_CLIENT_SECRET, **details)
                credentials = ClientCredentials(secret.client_id, secret.client_secret)
                if self._leases.seconds_left(held) < self.company_lease_seconds:
                    # The code is single-use: an exchange whose answer could not be persisted loses it.
                    raise Busy("the lease ran short before the code exchange")
                expected = held.connection.realm_id
                wrong_company = bool(expected) and expected != realm_id
                # From the exchange until the grant is stored (or, for the wrong company, revoked), nobody decides
                # to revoke the app's access to this company: that would end the new grant unseen.
                with self._company_leases.hold(
                    AppCompany(credentials.client_id, realm_id),
                    connection_id=connection.connection_id,
                    purpose=LeasePurpose.REVOCATION if wrong_company else LeasePurpose.CONSENT,
                    seconds=self._exchange_call_seconds + self._company_leases.revocation_seconds
                    if wrong_company
                    else self.company_lease_seconds,
                ) as company:
                    if not_after is not None and not_after - self._clock.now() < self.company_lease_seconds:
                        # Waiting for the leases used the time: Lambda would stop the invocation after Intuit issued
                        # the grant, before it is stored. Unexchanged, nothing is lost but the link.
                        raise Busy("too little of the invocation is left to exchange the code and store the answer")
                    token_set = self._exchange(credentials, code, redirect_uri, held.connection, details)
                    if wrong_company:
                        revocation = self._revocations.revoke_under(
                            company, credentials, token_set.refresh_token, connection_id=connection.connection_id
                        )
                        raise LinkRejected(
                            FlowError.COMPANY_MISMATCH,
                            expected=expected,
                            chosen=realm_id,
                            revocation=revocation,
                            **details,
                        )
                    # Past its lease a revoker may have taken over and ended this grant: then it is not stored.
                    self._company_leases.ensure(company, self._persist_seconds)
                    now = self._clock.now()
                    # A reconnect replaces the previous grant without revoking it: Intuit's revocation would
                    # disconnect the app from the company, the new grant included (domain/revocation.py).
                    new_secret = secret.next(now=now, token_set=token_set, realm_id=realm_id)
                    # Persist first; the company name is looked up after the tokens are safe. A refresh of
                    # the previous grant still marked in flight cannot touch the new one: the mark goes.
                    try:
                        saved = self._leases.commit(
                            held,
                            held.connection.connected_with(
                                token_set,
                                realm_id=realm_id,
                                company_name=None,
                                now=now,
                                generation=new_secret.generation,
                            ).fenced_until(None),
                            new_secret,
                        )
                    except Conflict:
                        if held.secret is not new_secret:  # the vault took another generation: ours is not stored
                            raise
                        # The tokens are stored; the metadata met another holder's change. The next token request
                        # takes the newer vault generation up, unless that change ends the grant.
                        raise LinkRejected(FlowError.STORED_BUT_CHANGED, **details) from None
                company_name = self._company_name(saved, token_set.access_token)
                consented_by = self._consented_by(saved, token_set)
                if company_name or consented_by:
                    saved = self._described(held, saved, company_name, consented_by)
        except LinkRejected:
            raise
        except CompanyBusy as busy:
            raise LinkRejected(
                FlowError.COMPANY_BUSY,
                why=_COMPANY_BUSY_BECAUSE.get(busy.purpose, _COMPANY_BUSY_BECAUSE[LeasePurpose.CONSENT]),
                when=self._company_leases.retry_when(busy),
                **details,
            ) from None
        except LeaseRanOut:
            raise LinkRejected(FlowError.COMPANY_BUSY, why=_TOOK_TOO_LONG, when="now", **details) from None
        except (Busy, Conflict):  # Conflict: another holder changed the connection while the code was exchanged
            raise LinkRejected(FlowError.BUSY, **details) from None
        except VaultUnavailable:  # Intuit answered; AWS kept refusing to store what it gave
            raise LinkRejected(FlowError.STORAGE_UNAVAILABLE, **details) from None
        identity = saved.consented_by.as_json() if saved.consented_by else None
        self._events.publish(
            [
                connection_event(
                    EventType.AUTHORIZED, saved, now=self._clock.now(), company_name=company_name, consented_by=identity
                )
            ]
        )
        logger.info("Connection authorized", extra={"connection_id": saved.connection_id, "realm_id": realm_id})
        return FlowResult(connection=saved, company_name=company_name, realm_id=realm_id)

    def _described(
        self, held: HeldLease, saved: Connection, company_name: str | None, consented_by: ConsentIdentity | None
    ) -> Connection:
        """The company's name and who consented, saved after the tokens: best effort, as the lookups are. The
        consent is stored already; a failure here (the table throttling, the lease lost during a slow lookup)
        must not show the person an error page, nor keep Connection Authorized from going out."""
        try:
            return self._leases.commit(
                held, replace(saved, company_name=company_name or saved.company_name, consented_by=consented_by)
            )
        except Exception as error:  # whatever the write met, the consent stands
            logger.warning(
                "Connected, but the company name and consent identity were not saved",
                extra={"connection_id": saved.connection_id, "error_type": type(error).__name__},
            )
            return replace(saved, company_name=company_name or saved.company_name, consented_by=consented_by)

    def _exchange(
        self,
        credentials: ClientCredentials,
        code: str,
        redirect_uri: str,
        connection: Connection,
        details: dict[str, str],
    ) -> TokenSet:
        try:
            return self._identity.exchange_code(
                credentials, code=code, redirect_uri=redirect_uri, scopes=connection.scopes
            )
        except QboConnectError as error:
            transient = isinstance(error, IntuitUnavailable | Throttled)
            reason = FlowError.INTUIT_UNAVAILABLE if transient else FlowError.EXCHANGE_REFUSED
            raise LinkRejected(reason, error=error.code.value, **details) from None

    def _company_name(self, connection: Connection, access_token: str) -> str | None:
        try:
            info = self._company_api.company_info(
                base_url=connection.base_url,
                realm_id=connection.realm_id or "",
                access_token=access_token,
                usage=UsageKey.of(connection),
            )
        except QboConnectError as error:
            _warn_connected_but("CompanyInfo failed", connection, error)
            return None
        return info.company_name

    def _consented_by(self, connection: Connection, token_set: TokenSet) -> ConsentIdentity | None:
        """Who consented, when the openid scope was granted; an identity that cannot be learned is recorded
        as unknown (with why), and the consent stands either way."""
        if intuit.OPENID_SCOPE not in token_set.scopes:
            return None
        try:
            identity = self._identity.user_info(access_token=token_set.access_token, environment=connection.environment)
        except QboConnectError as error:
            _warn_connected_but("who consented is unknown: userinfo failed", connection, error)
            return ConsentIdentity.unknown(f"userinfo failed ({error.code.value})")
        if token_set.id_token_subject is not None and identity.sub != token_set.id_token_subject:
            # OpenID Connect Core 5.3.2: a userinfo answer about someone else must not be used.
            logger.warning(
                "Connected, but userinfo named another subject than the ID token",
                extra={"connection_id": connection.connection_id},
            )
            return ConsentIdentity.unknown("userinfo named another person than the ID token")
        logger.info("Consent identity recorded", extra={"connection_id": connection.connection_id, "sub": identity.sub})
        return identity


# Why a consent must wait for another holder of the app-company lease (its purpose), on the page a person sees.
# Other connections are not named: the page is shown to whoever completes the consent.
_COMPANY_BUSY_BECAUSE = {
    LeasePurpose.REVOCATION: "another connection of this service is revoking this app's access to the same company "
    "at Intuit (a reset, a delete, or a consent given for another company), which would end a connection made now",
    LeasePurpose.CONSENT: "another connection of this service is being connected to the same company right now",
    LeasePurpose.IMPORT: "another connection of this service is taking over tokens for the same company right now",
}
_TOOK_TOO_LONG = "storing Intuit's answer took longer than allowed, and another change to the company came in between"


def _warn_connected_but(what: str, connection: Connection, error: QboConnectError) -> None:
    """A lookup after the tokens were safe failed: the consent stands; say what is missing and why."""
    logger.warning(
        f"Connected, but {what}",
        extra={
            "connection_id": connection.connection_id,
            "error_code": error.code.value,
            "intuit_tid": error.intuit_tid,
        },
    )


def _browser_binding(state: str) -> str:
    return _sha256("qbo-connect browser binding\n" + state)
