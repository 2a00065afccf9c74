"""What Cognito asks after the password, as strict as Cognito: a new password, then the second factor (TOTP).

moto 5.2.5 (cognitoidp/models.py; the same at getmoto/moto 0af643a) lets a password alone through a pool whose MFA
is required (MfaConfiguration ON, as template.yaml's AdminUserPool):
- RespondToAuthChallenge MFA_SETUP signs in with any live session, the password proof's included: no authenticator
  need ever be set up.
- AssociateSoftwareToken hands every user the same secret ("asdfasdfasdf"), and VerifySoftwareToken and the
  SOFTWARE_TOKEN_MFA answer accept any code (unless MOTO_COGNITO_IDP_USER_POOL_ENABLE_TOTP is set, and then
  against that one shared secret, with no step either side).
- A SOFTWARE_TOKEN_MFA or NEW_PASSWORD_REQUIRED answer acts for whoever its USERNAME names, not the session's user:
  one person's session signs in (or sets the password of) another.
- Sessions never expire, and an MFA_SETUP session still signs in after it has been used.
- AdminDeleteSoftwareToken (how an administrator resets a lost authenticator) does not exist.

`Challenges` takes these over for StrictCognito, which hands it every sign-in once the password is proven (and
leaves moto only what moto gets right: checking and changing passwords, minting tokens, its user records):
- Each challenge gets a session of its own: good for its user, its app client and its challenge only, for the app
  client's AuthSessionValidity (3 minutes unless set; Cognito's default), and spent by its successful answer.
  A wrong code leaves it standing, so the person may try again until it expires.
- In a pool with MFA ON a user without a verified authenticator gets MFA_SETUP; one with it, SOFTWARE_TOKEN_MFA
  (also with MFA OPTIONAL, where only users who set one up are asked).
- MFA_SETUP: AssociateSoftwareToken with the session hands out a new random secret (160 bits, base32) and a new
  session; VerifySoftwareToken with that session checks a code from that secret (RFC 6238 in ../totp.py: SHA-1,
  30 s, 6 digits, a step either side), records the authenticator as the user's (moto's user shows it in
  AdminGetUser) and gives the session that MFA_SETUP must be answered with. A verified authenticator replaces the
  one before it. The same with an access token instead of a session (a signed-in user adding one), without
  sessions.
- SOFTWARE_TOKEN_MFA: the current code of the user's own secret.
- AdminDeleteSoftwareToken forgets the user's authenticator: the next sign-in sets one up again.

The error codes and messages are Cognito's: NotAuthorizedException "Invalid session for the user, session is
expired.", CodeMismatchException "Invalid code or auth state for the user.", EnableSoftwareTokenMFAException "Code
mismatch and fail enable Software Token MFA", SoftwareTokenMFANotFoundException when the pool has TOTP off.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qbo_local import totp

DEFAULT_SESSION_MINUTES = 3  # a client's AuthSessionValidity when it was created without one
FORGET_SPENT_AFTER_SECONDS = 15 * 60  # how long a spent or expired session is still told apart from an unknown one
MFA_SETTING = "SOFTWARE_TOKEN_MFA"


class CognitoRefusal(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def invalid_session(detail: str = "") -> CognitoRefusal:
    return CognitoRefusal("NotAuthorizedException", f"Invalid session for the user{detail}.")


@dataclass
class _Session:
    challenge: str  # the one challenge it answers: NEW_PASSWORD_REQUIRED, MFA_SETUP or SOFTWARE_TOKEN_MFA
    pool_id: str
    client_id: str
    username: str
    expires_at: float
    moto_session: str | None = None  # NEW_PASSWORD_REQUIRED: moto's, for moto to change the password
    secret: str | None = None  # MFA_SETUP: what AssociateSoftwareToken handed out
    verified: bool = False  # MFA_SETUP: VerifySoftwareToken accepted a code of that secret
    spent: bool = False


class Challenges:
    """The challenges after the password. `backend` gives moto's Cognito backend; `clock` is epoch seconds."""

    def __init__(self, backend: Callable[[], Any], clock: Callable[[], float]) -> None:
        self._backend = backend
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._authenticators: dict[tuple[str, str], str] = {}  # (pool, user name) -> verified secret
        self._pending: dict[tuple[str, str], str] = {}  # associated with an access token, not yet verified
        self._lock = threading.Lock()

    # --- after the password -------------------------------------------------------------------------------
    def after_password(self, pool: Any, client_id: str, user: Any, moto_session: str | None) -> dict[str, Any]:
        """The answer to a proven password: a new password first if the user has a temporary one, then the
        second factor the pool asks for, else tokens."""
        if user.status == "FORCE_CHANGE_PASSWORD":
            parameters = {"USER_ID_FOR_SRP": user.username, "requiredAttributes": "[]", "userAttributes": "{}"}
            return self._challenge("NEW_PASSWORD_REQUIRED", pool, client_id, user, parameters, moto_session)
        return self._second_factor(pool, client_id, user)

    def _second_factor(self, pool: Any, client_id: str, user: Any) -> dict[str, Any]:
        if pool.mfa_config in ("ON", "OPTIONAL") and self._authenticator(pool, user) is not None:
            return self._challenge(MFA_SETTING, pool, client_id, user, {"USER_ID_FOR_SRP": user.username})
        if pool.mfa_config == "ON":
            return self._challenge("MFA_SETUP", pool, client_id, user, {"MFAS_CAN_SETUP": f'["{MFA_SETTING}"]'})
        return tokens(pool, client_id, user.username)

    def respond(self, client_id: str, challenge: str, session: Any, responses: dict[str, Any]) -> dict[str, Any]:
        """RespondToAuthChallenge for the challenges above."""
        taken = self._take(session, client_id, challenge)
        named = responses.get("USERNAME")
        if named is not None and named != taken.username:
            raise invalid_session()
        pool = self._backend().user_pools[taken.pool_id]
        user = pool._get_user(taken.username)
        if challenge == "NEW_PASSWORD_REQUIRED":
            # moto checks the password policy and changes it (refusals leave this session standing); what it
            # would ask next is decided here.
            self._backend().respond_to_auth_challenge(
                taken.moto_session,
                client_id,
                challenge,
                {"USERNAME": taken.username, "NEW_PASSWORD": responses.get("NEW_PASSWORD") or ""},
            )
            self._spend(taken)
            return self._second_factor(pool, client_id, user)
        if challenge == "MFA_SETUP":
            if not taken.verified:
                raise invalid_session()
            self._spend(taken)
            return tokens(pool, client_id, taken.username)
        secret = self._authenticator(pool, user)
        if secret is None or not totp.accepts(secret, str(responses.get(f"{MFA_SETTING}_CODE") or ""), self._clock()):
            raise CognitoRefusal("CodeMismatchException", "Invalid code or auth state for the user.")
        self._spend(taken)
        return tokens(pool, client_id, taken.username)

    # --- setting up an authenticator --------------------------------------------------------------------
    def associate(self, request: dict[str, Any]) -> dict[str, Any]:
        secret = totp.new_secret()
        if request.get("Session") is not None:
            taken = self._take(request["Session"], None, "MFA_SETUP")
            self._require_totp(self._backend().user_pools[taken.pool_id])
            self._spend(taken)
            session = self._issue(taken, secret=secret, verified=False)
            return {"SecretCode": secret, "Session": session}
        pool, user = self._signed_in(request.get("AccessToken"))
        self._require_totp(pool)
        with self._lock:
            self._pending[(pool.id, user.username)] = secret
        return {"SecretCode": secret}

    def verify(self, request: dict[str, Any]) -> dict[str, Any]:
        code = str(request.get("UserCode") or "")
        if request.get("Session") is not None:
            taken = self._take(request["Session"], None, "MFA_SETUP")
            if taken.secret is None:
                raise invalid_session()
            self._check_setup_code(taken.secret, code)
            pool = self._backend().user_pools[taken.pool_id]
            self._record(pool, pool._get_user(taken.username), taken.secret)
            self._spend(taken)
            return {"Status": "SUCCESS", "Session": self._issue(taken, secret=taken.secret, verified=True)}
        pool, user = self._signed_in(request.get("AccessToken"))
        with self._lock:
            secret = self._pending.get((pool.id, user.username))
        if secret is None:
            raise CognitoRefusal("SoftwareTokenMFANotFoundException", "Software Token MFA not associated")
        self._check_setup_code(secret, code)
        self._record(pool, user, secret)
        return {"Status": "SUCCESS"}

    def delete_authenticator(self, request: dict[str, Any]) -> dict[str, Any]:
        """AdminDeleteSoftwareToken: the user sets one up again at the next sign-in."""
        pool = self._backend().user_pools.get(request.get("UserPoolId"))
        if pool is None:
            raise CognitoRefusal("ResourceNotFoundException", f"User pool {request.get('UserPoolId')} does not exist.")
        user = pool._get_user(request.get("Username") or "")
        if user is None:
            raise CognitoRefusal("UserNotFoundException", "User does not exist.")
        with self._lock:
            self._authenticators.pop((pool.id, user.username), None)
            self._pending.pop((pool.id, user.username), None)
        user.token_verified = user.software_token_mfa_enabled = False
        user.preferred_mfa_setting = ""
        return {}

    def _check_setup_code(self, secret: str, code: str) -> None:
        if not totp.accepts(secret, code, self._clock()):
            raise CognitoRefusal("EnableSoftwareTokenMFAException", "Code mismatch and fail enable Software Token MFA")

    def _record(self, pool: Any, user: Any, secret: str) -> None:
        with self._lock:
            self._authenticators[(pool.id, user.username)] = secret
            self._pending.pop((pool.id, user.username), None)
        # moto's own record, which AdminGetUser reports (UserMFASettingList, PreferredMfaSetting)
        user.token_verified = user.software_token_mfa_enabled = True
        user.preferred_mfa_setting = MFA_SETTING

    def _authenticator(self, pool: Any, user: Any) -> str | None:
        """The user's verified secret; none for a user moto no longer counts as set up (deleted, made anew)."""
        with self._lock:
            secret = self._authenticators.get((pool.id, user.username))
        return secret if user.token_verified else None

    @staticmethod
    def _require_totp(pool: Any) -> None:
        if not (pool.token_mfa_config or {}).get("Enabled"):
            raise CognitoRefusal(
                "SoftwareTokenMFANotFoundException", "Software Token MFA has not been enabled by the userPool."
            )

    def _signed_in(self, access_token: Any) -> tuple[Any, Any]:
        for pool in list(self._backend().user_pools.values()):
            if isinstance(access_token, str) and access_token in pool.access_tokens:
                user = pool._get_user(pool.access_tokens[access_token][1])
                if user is not None:
                    return pool, user
        raise CognitoRefusal("NotAuthorizedException", "Invalid Access Token")

    # --- sessions -----------------------------------------------------------------------------------------
    def _challenge(
        self,
        challenge: str,
        pool: Any,
        client_id: str,
        user: Any,
        parameters: dict[str, str],
        moto_session: str | None = None,
    ) -> dict[str, Any]:
        session = _Session(challenge, pool.id, client_id, user.username, self._expiry(pool, client_id), moto_session)
        return {"ChallengeName": challenge, "ChallengeParameters": parameters, "Session": self._store(session)}

    def _issue(self, after: _Session, **changes: Any) -> str:
        """The next session of a challenge, for as long again as the first."""
        expires_at = self._expiry(self._backend().user_pools[after.pool_id], after.client_id)
        return self._store(_Session(**{**after.__dict__, "expires_at": expires_at, "spent": False, **changes}))

    def _expiry(self, pool: Any, client_id: str) -> float:
        minutes = pool.clients[client_id].extended_config.get("AuthSessionValidity") or DEFAULT_SESSION_MINUTES
        return self._clock() + 60 * minutes

    def _store(self, session: _Session) -> str:
        name = secrets.token_urlsafe(96)
        now = self._clock()
        with self._lock:
            for old in [k for k, s in self._sessions.items() if s.expires_at + FORGET_SPENT_AFTER_SECONDS < now]:
                del self._sessions[old]
            self._sessions[name] = session
        return name

    def _take(self, name: Any, client_id: str | None, challenge: str) -> _Session:
        with self._lock:
            session = self._sessions.get(name) if isinstance(name, str) else None
        if session is None or session.challenge != challenge or client_id not in (None, session.client_id):
            raise invalid_session()
        if session.spent:
            raise invalid_session(", session can only be used once")
        if self._clock() >= session.expires_at:
            raise invalid_session(", session is expired")
        return session

    def _spend(self, session: _Session) -> None:
        """Once only, even for two right answers racing each other."""
        with self._lock:
            if session.spent:
                raise invalid_session(", session can only be used once")
            session.spent = True


def tokens(pool: Any, client_id: str, username: str) -> dict[str, Any]:
    """Signed in: moto mints the tokens, as its own sign-in does."""
    refresh_token, _ = pool.create_refresh_token(client_id, username)
    access_token, id_token, expires_in = pool.create_tokens_from_refresh_token(refresh_token)
    return {
        "ChallengeParameters": {},
        "AuthenticationResult": {
            "IdToken": id_token,
            "AccessToken": access_token,
            "RefreshToken": refresh_token,
            "ExpiresIn": expires_in,
            "TokenType": "Bearer",
        },
    }


__all__ = ["Challenges", "CognitoRefusal", "tokens"]
