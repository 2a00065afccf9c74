"""OpenID Connect as Intuit serves it: who is signed in, ID tokens signed with RS256, their key set, userinfo.

The ID token and the userinfo answer name the same person (`sub`), as OpenID Connect requires, so a
client can check one against the other. The signing key is made on first use (only grants with the
openid scope need it) and published at Intuit's JWKS path.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from . import facts


@dataclass(frozen=True)
class Person:
    """Someone signed in to Intuit: `sub` is stable for an email, as Intuit's user IDs are for an account."""

    email: str
    given_name: str
    family_name: str
    email_verified: bool = True

    @property
    def sub(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"intuit-emulator:{self.email.casefold()}"))

    def public_dict(self) -> dict[str, Any]:
        return {"sub": self.sub, "email": self.email, "given_name": self.given_name, "family_name": self.family_name}

    def claims(self, scopes: tuple[str, ...]) -> dict[str, Any]:
        """Intuit's userinfo body for a grant of `scopes` (camelCase, as Intuit writes it)."""
        claims: dict[str, Any] = {"sub": self.sub}
        if "email" in scopes:
            claims |= {"email": self.email, "emailVerified": self.email_verified}
        if "profile" in scopes:
            claims |= {"givenName": self.given_name, "familyName": self.family_name}
        return claims


DEFAULT_PERSON = Person(*facts.DEFAULT_PERSON)


class IdTokenSigner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: RSAKey | None = None

    def _signing_key(self) -> RSAKey:
        with self._lock:
            if self._key is None:
                self._key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
            return self._key

    def sign(self, *, client_id: str, realm_id: str, person: Person, issued_at: float, lifetime: int) -> str:
        key = self._signing_key()
        claims = {
            "iss": facts.OPENID_ISSUER,
            "sub": person.sub,
            "aud": [client_id],
            "realmid": realm_id,
            "auth_time": int(issued_at),
            "iat": int(issued_at),
            "exp": int(issued_at) + lifetime,
        }
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    def key_set(self) -> dict[str, Any]:
        """The public keys, as Intuit's jwks_uri serves them."""
        return KeySet([self._signing_key()]).as_dict(private=False)
