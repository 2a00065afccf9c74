"""IdentityProvider on Intuit's OAuth 2.0 endpoints (or any standards-compliant server), via requests-oauthlib.

Failures are classified here, once: invalid_grant and invalid_client are permanent; 5xx, 429,
timeouts and connection errors are transient. Nothing raised from here carries a token or code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import InvalidClientError, InvalidGrantError, OAuth2Error, UnauthorizedClientError
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from qbo_connect import intuit
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import (
    IntuitUnavailable,
    InvalidClient,
    NeedsReauthorization,
    QboConnectError,
    Throttled,
)
from qbo_connect.ports import ClientCredentials, Clock
from qbo_connect.settings import Settings

# Intuit may answer with fewer or other scopes than asked; that is not an error for us.
os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


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
    if response.status_code >= 500:
        raise _TransientAnswer(
            IntuitUnavailable(f"Intuit's token endpoint answered HTTP {response.status_code}", intuit_tid=tid)
        )
    return response


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
        session = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=list(scopes), state=state)
        url, _ = session.authorization_url(self._settings.authorization_url)
        return url

    def exchange_code(
        self, credentials: ClientCredentials, *, code: str, redirect_uri: str, scopes: tuple[str, ...]
    ) -> TokenSet:
        session = self._session(credentials, redirect_uri=redirect_uri, scopes=scopes)
        response = self._call(
            lambda: session.fetch_token(
                self._settings.token_url,
                code=code,
                auth=HTTPBasicAuth(credentials.client_id, credentials.client_secret),
                include_client_id=False,
                headers=intuit.HARD_EXPIRY_REQUEST_HEADER,
                timeout=self._settings.http_timeout,
            )
        )
        return TokenSet.from_token_response(response, now=self._clock.now(), scopes=scopes)

    def refresh(self, credentials: ClientCredentials, *, refresh_token: str, scopes: tuple[str, ...]) -> TokenSet:
        session = self._session(credentials, scopes=scopes)
        response = self._call(
            lambda: session.refresh_token(
                self._settings.token_url,
                refresh_token=refresh_token,
                auth=HTTPBasicAuth(credentials.client_id, credentials.client_secret),
                headers={**intuit.HARD_EXPIRY_REQUEST_HEADER, "Accept": "application/json"},
                timeout=self._settings.http_timeout,
            )
        )
        return TokenSet.from_token_response(response, now=self._clock.now(), scopes=scopes)

    def revoke(self, credentials: ClientCredentials, *, token: str) -> None:
        try:
            response = requests.post(
                self._settings.revocation_url,
                json={"token": token},
                auth=HTTPBasicAuth(credentials.client_id, credentials.client_secret),
                headers={"Accept": "application/json"},
                timeout=self._settings.http_timeout,
            )
        except requests.RequestException as error:
            raise IntuitUnavailable(f"Intuit's revocation endpoint did not answer ({type(error).__name__})") from None
        tid = response.headers.get(intuit.SUPPORT_ID_HEADER)
        if response.status_code == 401:
            raise InvalidClient("Intuit refused the client ID or secret while revoking", intuit_tid=tid)
        if response.status_code >= 400:
            raise IntuitUnavailable(
                f"Intuit's revocation endpoint answered HTTP {response.status_code}", intuit_tid=tid
            )

    def _session(
        self, credentials: ClientCredentials, *, scopes: tuple[str, ...], redirect_uri: str | None = None
    ) -> OAuth2Session:
        session = OAuth2Session(credentials.client_id, redirect_uri=redirect_uri, scope=list(scopes))
        session.register_compliance_hook("access_token_response", _reject_transient)
        session.register_compliance_hook("refresh_token_response", _reject_transient)
        return session

    @staticmethod
    def _call(request) -> dict:
        try:
            return dict(request())
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
        except OAuth2Error as error:
            # Anything else Intuit says (invalid_request, ...) is not proof the grant is dead.
            raise IntuitUnavailable(f"Intuit's token endpoint answered {error.error}") from None
        except (requests.RequestException, ValueError) as error:
            raise IntuitUnavailable(
                f"Intuit's token endpoint did not answer usefully ({type(error).__name__})"
            ) from None
