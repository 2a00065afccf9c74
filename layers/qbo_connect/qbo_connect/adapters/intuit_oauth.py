"""IdentityProvider on Intuit's OAuth 2.0 endpoints (or any standards-compliant server), via requests-oauthlib.

Failures are classified here, once (docs/reliability.md):
- invalid_grant and invalid_client are permanent;
- the request certainly did not reach Intuit's processing (connection refused, DNS, connect timeout,
  TLS, 429, 503): transient, safe to send again at once (Throttled, IntuitUnavailable);
- the request was sent and the answer was lost (read timeout, reset, 500/502/504, an unreadable 200,
  the whole-call deadline): OutcomeUnknown. Intuit may have rotated the refresh token meanwhile.
Nothing raised from here carries a token or code.

requests and requests-oauthlib are imported by the calls that send something, not with the module:
the authorize function only builds the consent URL, and the test function builds this adapter for a
refresh it seldom needs; neither should spend its cold start importing them.

Who consented (openid scopes): the ID token's `sub`, checked against the client (aud), the issuer and
its expiry, then Intuit's userinfo, whose `sub` must be the same person (OpenID Connect Core 5.3.2).
The ID token is read, never stored or logged; its signature is not checked here because it came
straight from the token endpoint over TLS (Core 3.1.3.7: the code flow may rely on that), which keeps
a crypto library out of the layer.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from qbo_connect import intuit
from qbo_connect.adapters.deadline import DeadlineExceeded, call_with_deadline
from qbo_connect.adapters.quickbooks_api import certainly_not_sent
from qbo_connect.domain.connection import ConsentIdentity
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import (
    Forbidden,
    IntuitUnavailable,
    InvalidClient,
    NeedsReauthorization,
    OutcomeUnknown,
    QboConnectError,
    RevocationRefused,
    Throttled,
    Unauthorized,
)
from qbo_connect.ports import ClientCredentials, Clock
from qbo_connect.settings import Settings, SettingsError

if TYPE_CHECKING:
    import requests
    from requests_oauthlib import OAuth2Session

# Intuit may answer with fewer or other scopes than asked; that is not an error for us.
os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
# Who consented is a nicety: the callback must not wait long for it.
USERINFO_READ_TIMEOUT_SECONDS = 5.0
# An ID token that expired a moment ago (clocks differ) is still read.
ID_TOKEN_LEEWAY_SECONDS = 300
# Answers that say the request was not processed: 429 (rate limited), 503 (refused at the door).
NOT_PROCESSED_STATUSES = {429, 503}


class _TransientAnswer(Exception):
    def __init__(self, error: QboConnectError) -> None:
        super().__init__(error.code.value)
        self.error = error


def _reject_transient(response: requests.Response) -> requests.Response:
    """Compliance hook: oauthlib would try to parse a 5xx or 429 page as a token; classify it first."""
    tid = response.headers.get(intuit.SUPPORT_ID_HEADER)
    if response.status_code == 429:
        retry_after = response.headers.get("Retry-After", "")
        raise _TransientAnswer(
            Throttled(
                "Intuit's token endpoint is rate limiting: retrying later",
                retry_after=float(retry_after) if retry_after.isdigit() else None,
                intuit_tid=tid,
            )
        )
    if response.status_code in NOT_PROCESSED_STATUSES:
        raise _TransientAnswer(
            IntuitUnavailable(f"Intuit's token endpoint answered HTTP {response.status_code}", intuit_tid=tid)
        )
    if response.status_code >= 500:
        # A 500, or a gateway's 502/504, may come after Intuit rotated the refresh token.
        raise _TransientAnswer(
            OutcomeUnknown(f"Intuit's token endpoint answered HTTP {response.status_code}", intuit_tid=tid)
        )
    return response


# Both token requests (code exchange, refresh): JSON asked for as Intuit's token request shows it, and the
# refresh token's hard expiry. Given headers replace requests-oauthlib's defaults, so Accept is named here.
TOKEN_REQUEST_HEADERS = {**intuit.HARD_EXPIRY_REQUEST_HEADER, "Accept": "application/json"}


class IntuitOAuth:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        if any(
            urlsplit(u).scheme == "http" and urlsplit(u).hostname in LOOPBACK_HOSTS
            for u in (settings.token_url, settings.authorization_url)
        ):
            # Only a local emulator is served over http; oauthlib refuses http unless told.
            os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

    def authorization_url(self, client_id: str, *, redirect_uri: str, scopes: Iterable[str], state: str) -> str:
        """RFC 6749 section 4.1.1: the request's parameters, form-encoded in the query, as oauthlib's
        prepare_grant_uri builds them (and with its rule: https, or http to a loopback emulator). Built here
        because importing oauthlib for one query string was a tenth of the authorize function's first request."""
        url = self._settings.authorization_url
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
            raise SettingsError(f"The authorization URL {url!r} is not https: fix QBO_INTUIT_AUTHORIZATION_URL")
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(scopes),
                "state": state,
            }
        )
        return f"{url}{'&' if parts.query else '?'}{query}"

    def exchange_code(
        self,
        credentials: ClientCredentials,
        *,
        code: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        deadline_seconds: float | None = None,
    ) -> TokenSet:
        from requests.auth import HTTPBasicAuth

        session = self._session(credentials, redirect_uri=redirect_uri, scopes=scopes)
        deadline = deadline_seconds or self._settings.consent_call_deadline_seconds
        sent_at = self._clock.now()  # Intuit counts the lifetimes from its issue, after this and before its answer
        response = self._call(
            lambda: session.fetch_token(
                self._settings.token_url,
                code=code,
                auth=HTTPBasicAuth(credentials.client_id, credentials.client_secret),
                include_client_id=False,
                headers=TOKEN_REQUEST_HEADERS,
                timeout=self._timeout(deadline),
            ),
            deadline,
        )
        token_set = TokenSet.from_token_response(response, now=sent_at, scopes=scopes)
        subject = id_token_subject(response.get("id_token"), client_id=credentials.client_id, now=self._clock.now())
        return replace(token_set, id_token_subject=subject)

    def refresh(
        self,
        credentials: ClientCredentials,
        *,
        refresh_token: str,
        scopes: tuple[str, ...],
        deadline_seconds: float | None = None,
    ) -> TokenSet:
        from requests.auth import HTTPBasicAuth

        # No scope in the request: RFC 6749 section 6 treats that as the grant's own, and refuses more than it
        # (invalid_scope); `scopes` only labels the new token set with what was granted.
        session = self._session(credentials, scopes=None)
        deadline = deadline_seconds or self._settings.refresh_call_deadline_seconds
        sent_at = self._clock.now()  # as in exchange_code: a slow answer must not lengthen the token's life
        response = self._call(
            lambda: session.refresh_token(
                self._settings.token_url,
                refresh_token=refresh_token,
                auth=HTTPBasicAuth(credentials.client_id, credentials.client_secret),
                headers=TOKEN_REQUEST_HEADERS,
                timeout=self._timeout(deadline),
            ),
            deadline,
        )
        return TokenSet.from_token_response(response, now=sent_at, scopes=scopes)

    def revoke(self, credentials: ClientCredentials, *, token: str) -> None:
        """Intuit documents a JSON body; RFC 7009 servers take a form body with a type hint."""
        import requests
        from requests.auth import HTTPBasicAuth

        body = (
            {"json": {"token": token}}
            if urlsplit(self._settings.revocation_url).hostname in intuit.REVOCATION_JSON_HOSTS
            else {"data": {"token": token, "token_type_hint": "refresh_token"}}
        )
        deadline = self._settings.consent_call_deadline_seconds
        try:
            response = call_with_deadline(
                lambda: requests.post(
                    self._settings.revocation_url,
                    **body,
                    auth=HTTPBasicAuth(credentials.client_id, credentials.client_secret),
                    headers={"Accept": "application/json"},
                    timeout=self._timeout(deadline),
                ),
                deadline,
            )
        except (requests.RequestException, DeadlineExceeded) as error:
            raise IntuitUnavailable(f"Intuit's revocation endpoint did not answer ({type(error).__name__})") from None
        tid = response.headers.get(intuit.SUPPORT_ID_HEADER)
        status = response.status_code
        if status < 400:
            return
        if status == 401 or _oauth_error(response) == "invalid_client":
            raise InvalidClient("Intuit refused the client ID or secret while revoking", intuit_tid=tid)
        if status == 429:
            raise Throttled("Intuit's revocation endpoint is rate limiting: try again later", intuit_tid=tid)
        if status >= 500:
            raise IntuitUnavailable(f"Intuit's revocation endpoint answered HTTP {status}", intuit_tid=tid)
        said = _oauth_error(response)
        raise RevocationRefused(
            f"The revocation endpoint refused the request (HTTP {status}{f' {said}' if said else ''}): "
            "the token was not revoked; a company administrator can disconnect the app in QuickBooks",
            intuit_tid=tid,
        )

    def user_info(self, *, access_token: str, environment: intuit.Environment) -> ConsentIdentity:
        """Intuit's userinfo for the grant's access token: who consented. Raises Unauthorized, Forbidden
        (no openid scope) or IntuitUnavailable; never carries the token."""
        import requests

        try:
            response = requests.get(
                self._settings.userinfo_url_for(environment),
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                timeout=(self._settings.connect_timeout_seconds, USERINFO_READ_TIMEOUT_SECONDS),
            )
        except requests.RequestException as error:
            failure = type(error).__name__
        else:
            failure = None
        if failure is not None:
            raise IntuitUnavailable(f"Intuit's userinfo endpoint did not answer ({failure})")
        tid = response.headers.get(intuit.SUPPORT_ID_HEADER)
        if response.status_code == 401:
            raise Unauthorized("Intuit's userinfo endpoint refused the access token", intuit_tid=tid)
        if response.status_code == 403:
            raise Forbidden("Intuit's userinfo endpoint needs the openid scope", intuit_tid=tid)
        if response.status_code >= 300:
            raise IntuitUnavailable(f"Intuit's userinfo endpoint answered HTTP {response.status_code}", intuit_tid=tid)
        try:
            claims = response.json()
        except ValueError:
            claims = None
        sub = claims.get("sub") if isinstance(claims, dict) else None
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise IntuitUnavailable("Intuit's userinfo answer names no subject", intuit_tid=tid)
        email = claims.get("email")
        verified = claims.get("emailVerified", claims.get("email_verified"))
        return ConsentIdentity(
            sub=sub,
            email=email if isinstance(email, str) and 0 < len(email) <= 320 else None,
            email_verified=verified if isinstance(verified, bool) else None,
        )

    def _timeout(self, deadline: float) -> tuple[float, float]:
        # Each read may take as long as the whole call: the deadline, not the read, ends a slow answer.
        return (self._settings.connect_timeout_seconds, deadline)

    def _session(
        self, credentials: ClientCredentials, *, scopes: tuple[str, ...] | None, redirect_uri: str | None = None
    ) -> OAuth2Session:
        from requests_oauthlib import OAuth2Session

        scope = None if scopes is None else list(scopes)
        session = OAuth2Session(credentials.client_id, redirect_uri=redirect_uri, scope=scope)
        session.register_compliance_hook("access_token_response", _reject_transient)
        session.register_compliance_hook("refresh_token_response", _reject_transient)
        return session

    @staticmethod
    def _call(request, deadline: float) -> dict:
        import requests
        from oauthlib.oauth2 import (
            InvalidClientError,
            InvalidGrantError,
            MissingTokenError,
            OAuth2Error,
            UnauthorizedClientError,
        )

        try:
            return dict(call_with_deadline(request, deadline))
        except DeadlineExceeded:
            raise OutcomeUnknown(f"Intuit's token endpoint gave no answer within {deadline:.0f} s") from None
        except _TransientAnswer as answer:
            raise answer.error from None
        except InvalidGrantError:
            raise NeedsReauthorization(
                "Intuit answered invalid_grant: the grant was revoked, expired or already used; "
                "a company administrator must reconnect"
            ) from None
        except (InvalidClientError, UnauthorizedClientError):
            raise InvalidClient(
                "Intuit answered invalid_client: set the app's current client secret "
                "(`qbo-connect connections set-secret`)"
            ) from None
        except MissingTokenError:
            # A success status whose body holds no token: the refresh may well have happened.
            raise OutcomeUnknown("Intuit's token endpoint answered without a token") from None
        except OAuth2Error as error:
            # Anything else Intuit says (invalid_request, ...) is not proof the grant is dead.
            raise IntuitUnavailable(f"Intuit's token endpoint answered {error.error}") from None
        except requests.RequestException as error:
            if certainly_not_sent(error):
                raise IntuitUnavailable(
                    f"Intuit's token endpoint could not be reached ({type(error).__name__})"
                ) from None
            raise OutcomeUnknown(f"Intuit's token endpoint's answer was lost ({type(error).__name__})") from None
        except ValueError as error:
            raise OutcomeUnknown(f"Intuit's token endpoint's answer was unreadable ({type(error).__name__})") from None


def _oauth_error(response: requests.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, str) and error.isascii() and len(error) < 64 else None


def id_token_subject(id_token: Any, *, client_id: str, now: float, issuer: str = intuit.OPENID_ISSUER) -> str | None:
    """The `sub` of an ID token issued by `issuer` for `client_id` and not yet expired; None otherwise."""
    if not isinstance(id_token, str) or id_token.count(".") != 2 or len(id_token) > 16_384:
        return None
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    expires = claims.get("exp")
    sub = claims.get("sub")
    if (
        claims.get("iss") != issuer
        or client_id not in audiences
        or not isinstance(expires, int | float)
        or expires + ID_TOKEN_LEEWAY_SECONDS < now
        or not isinstance(sub, str)
        or not sub
    ):
        return None
    return sub
