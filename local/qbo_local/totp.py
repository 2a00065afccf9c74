"""Time-based one-time passwords as Cognito's software token MFA uses them (RFC 6238 over RFC 4226's HOTP).

Cognito's parameters, which every authenticator app assumes when a secret is typed in: HMAC-SHA-1, a 30-second
step counted from the Unix epoch, 6 digits; the secret is handed out in base32 (RFC 4648, upper case, no padding),
32 characters for 160 random bits as RFC 4226 recommends. A code is accepted one step either side of the verifier's
own, for clocks that differ and for the seconds it takes to type (RFC 6238 section 5.2; Cognito accepts a code
shortly after its step ended).

The local stack's strict Cognito checks codes with this, and `qbo-connect-local totp` prints the local
administrator's current code with it. The tests judge it against an implementation of their own choosing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct

STEP_SECONDS = 30
DIGITS = 6
SECRET_BYTES = 20
TOLERATED_STEPS = 1


def new_secret() -> str:
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def secret_bytes(secret: str) -> bytes:
    """The key behind a base32 secret as people type it: any case, spaces and padding optional."""
    cleaned = secret.replace(" ", "").upper().rstrip("=")
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def code_at(secret: str, at: float) -> str:
    return _hotp(secret_bytes(secret), int(at // STEP_SECONDS))


def accepts(secret: str, code: str, at: float) -> bool:
    """Whether `code` is the secret's code for the step of `at` or one step either side of it."""
    if len(code) != DIGITS or not (code.isascii() and code.isdigit()):
        return False
    key, step = secret_bytes(secret), int(at // STEP_SECONDS)
    matches = [
        hmac.compare_digest(_hotp(key, step + offset), code) for offset in range(-TOLERATED_STEPS, TOLERATED_STEPS + 1)
    ]
    return any(matches)


def seconds_left(at: float) -> int:
    """How long the code of `at` is still the current one."""
    return STEP_SECONDS - int(at % STEP_SECONDS)


def _hotp(key: bytes, counter: int) -> str:
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 10**DIGITS:0{DIGITS}d}"


__all__ = ["STEP_SECONDS", "accepts", "code_at", "new_secret", "seconds_left"]
