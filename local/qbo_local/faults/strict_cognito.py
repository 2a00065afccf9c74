"""Cognito's sign-in as strict as AWS's, in front of moto's Cognito, which is not.

moto 5.2.5 (cognitoidp/models.py; the same at getmoto/moto 0af643a) is too kind in three ways that matter to the
console's sign-in:
- USER_SRP_AUTH answers with a random SALT and SRP_B that no password relates to, and its PASSWORD_VERIFIER step
  accepts any PASSWORD_CLAIM_SIGNATURE: any password signs in, and a client's SRP arithmetic is never checked.
- It names the user by its `sub` in USER_ID_FOR_SRP, then cannot find the user by that name in the next step.
- It ignores the app client's ExplicitAuthFlows: a client without ALLOW_USER_PASSWORD_AUTH still signs in with a
  plain password.

`StrictCognito` wraps moto's server application (WSGI) in the local stack and takes over exactly those calls:
- InitiateAuth is refused (InvalidParameterException) when the client does not allow the flow, as Cognito does.
- USER_SRP_AUTH gets a real challenge: a random salt, B = k*v + g^b with v = g^x derived from the user's password
  (moto keeps passwords; Cognito keeps only v: the client cannot tell the difference), USER_ID_FOR_SRP = the user
  name (as Cognito gives it in a pool without username attributes), and a random SECRET_BLOCK.
- PASSWORD_VERIFIER recomputes the password claim; a wrong one is NotAuthorizedException "Incorrect username or
  password.", as is an unknown user (the pool's PreventUserExistenceErrors: the challenge looks the same). A secret
  block is good for one answer. A right one, and a password USER_PASSWORD_AUTH moto checked, go on to what Cognito
  asks next: a new password, the second factor (cognito_challenges.py: moto lets a password alone through a pool
  whose MFA is required), or tokens. Those challenges, AssociateSoftwareToken, VerifySoftwareToken and
  AdminDeleteSoftwareToken are answered there.

Cognito's SRP-6a, as its clients (amazon-cognito-identity-js, and pycognito, which the tests use as an independent
client) compute it: N the 3072-bit MODP prime of RFC 3526, g = 2, H = SHA-256 over the bytes of hex strings, every
number hashed as even-length hex with a 00 in front when its top bit is set; k = H(N, g); u = H(A, B);
x = H(salt, SHA-256(pool name + user id + ":" + password)); S = (A * v^u)^b; the key is HKDF-SHA256(ikm S, salt u,
info "Caldera Derived Key") truncated to 16 bytes; the claim is HMAC-SHA256(key, pool name + user id +
secret block + timestamp), base64, the timestamp as "Sun Dec 6 20:26:11 UTC 2026". The pool name is the part of the
pool ID after the underscore.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from qbo_local.faults.cognito_challenges import Challenges, CognitoRefusal

N = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)
G = 2
DERIVED_KEY_INFO = b"Caldera Derived Key"
TIMESTAMP = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [1-9][0-9]? [0-9]{2}:[0-9]{2}:[0-9]{2} UTC [0-9]{4}$"
)
TARGET_PREFIX = "AWSCognitoIdentityProviderService."
# Which ExplicitAuthFlows entry lets a client use which InitiateAuth flow.
ALLOWING = {
    "USER_SRP_AUTH": "ALLOW_USER_SRP_AUTH",
    "USER_PASSWORD_AUTH": "ALLOW_USER_PASSWORD_AUTH",
    "REFRESH_TOKEN_AUTH": "ALLOW_REFRESH_TOKEN_AUTH",
    "REFRESH_TOKEN": "ALLOW_REFRESH_TOKEN_AUTH",
}
# What a client created without ExplicitAuthFlows allows (CreateUserPoolClient's reference).
DEFAULT_FLOWS = ("ALLOW_USER_SRP_AUTH", "ALLOW_CUSTOM_AUTH", "ALLOW_REFRESH_TOKEN_AUTH")
# The challenges after the password, answered by cognito_challenges.Challenges.
AFTER_PASSWORD = {"NEW_PASSWORD_REQUIRED", "MFA_SETUP", "SOFTWARE_TOKEN_MFA"}
HANDLED = {
    "InitiateAuth",
    "RespondToAuthChallenge",
    "AssociateSoftwareToken",
    "VerifySoftwareToken",
    "AdminDeleteSoftwareToken",
}


# --- the arithmetic -----------------------------------------------------------------------------------------
def padded_hex(number: int) -> str:
    text = format(number, "x")
    if len(text) % 2:
        text = "0" + text
    return "00" + text if text[0] in "89abcdef" else text


def hash_hex(*numbers_as_hex: str) -> int:
    return int(hashlib.sha256(bytes.fromhex("".join(numbers_as_hex))).hexdigest(), 16)


K = hash_hex(padded_hex(N), padded_hex(G))


def private_key(pool_name: str, user_id: str, password: str, salt: int) -> int:
    identity = hashlib.sha256(f"{pool_name}{user_id}:{password}".encode()).hexdigest()
    return hash_hex(padded_hex(salt), identity)


def password_claim(
    *, pool_name: str, user_id: str, secret_block: str, timestamp: str, shared: int, scrambler: int
) -> str:
    """The signature both sides compute from the shared secret S and u."""
    prk = hmac.new(bytes.fromhex(padded_hex(scrambler)), bytes.fromhex(padded_hex(shared)), hashlib.sha256).digest()
    key = hmac.new(prk, DERIVED_KEY_INFO + b"\x01", hashlib.sha256).digest()[:16]
    message = pool_name.encode() + user_id.encode() + base64.b64decode(secret_block) + timestamp.encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


@dataclass
class _Challenge:
    moto_session: str | None  # None: an unknown user, answered like any other so as not to tell
    client_id: str
    pool_name: str
    username: str
    a: int
    b: int
    big_b: int
    verifier: int


class StrictCognito:
    """WSGI middleware around moto's server app; `backend` gives moto's Cognito backend (in this process); `clock`
    (seconds since the epoch) is what it judges time by, which tests move."""

    def __init__(self, app: Callable, backend: Callable[[], Any], clock: Callable[[], float] = time.time) -> None:
        self._app = app
        self._backend = backend
        self._clock = clock
        self._challenges: dict[str, _Challenge] = {}
        self._after_password = Challenges(backend, clock)
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if environ.get("REQUEST_METHOD") != "POST" or not target.startswith(TARGET_PREFIX):
            return self._app(environ, start_response)
        action = target.removeprefix(TARGET_PREFIX)
        if action not in HANDLED:
            return self._app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            request = json.loads(body or b"{}")
            answer = self._handle(action, request) if isinstance(request, dict) else None
        except CognitoRefusal as refusal:
            return _respond(start_response, 400, {"__type": refusal.kind, "message": refusal.message})
        except ValueError:
            answer = None
        except Exception as error:  # moto's own refusal (a user not confirmed, ...), said as moto would
            kind = getattr(error, "error_type", None) or "InternalErrorException"
            return _respond(start_response, 400, {"__type": kind, "message": getattr(error, "message", str(error))})
        if answer is None:  # not ours to judge: moto answers, from the body we read
            environ["wsgi.input"] = _Body(body)
            return self._app(environ, start_response)
        return _respond(start_response, 200, answer)

    # --- the calls ----------------------------------------------------------------------------------------
    def _handle(self, action: str, request: dict[str, Any]) -> dict[str, Any] | None:
        if action == "AssociateSoftwareToken":
            return self._after_password.associate(request)
        if action == "VerifySoftwareToken":
            return self._after_password.verify(request)
        if action == "AdminDeleteSoftwareToken":
            return self._after_password.delete_authenticator(request)
        client_id = request.get("ClientId")
        pool = self._pool_of(client_id)
        if pool is None:
            return None
        if action == "InitiateAuth":
            flow = request.get("AuthFlow")
            allowed = pool.clients[client_id].extended_config.get("ExplicitAuthFlows") or DEFAULT_FLOWS
            if flow in ALLOWING and ALLOWING[flow] not in allowed:
                raise CognitoRefusal("InvalidParameterException", f"{flow} flow not enabled for this client")
            if flow == "USER_SRP_AUTH":
                return self._challenge(pool, client_id, request.get("AuthParameters") or {})
            if flow == "USER_PASSWORD_AUTH":
                return self._password_checked_by_moto(pool, client_id, request.get("AuthParameters") or {})
            return None
        challenge, responses = request.get("ChallengeName"), request.get("ChallengeResponses") or {}
        if challenge == "PASSWORD_VERIFIER":
            return self._verify(client_id, responses)
        if challenge in AFTER_PASSWORD:
            return self._after_password.respond(client_id, challenge, request.get("Session"), responses)
        return None

    def _challenge(self, pool: Any, client_id: str, parameters: dict[str, Any]) -> dict[str, Any]:
        username, srp_a = parameters.get("USERNAME"), parameters.get("SRP_A")
        if not isinstance(username, str) or not isinstance(srp_a, str) or not srp_a:
            raise CognitoRefusal("InvalidParameterException", "Missing required parameter SRP_A or USERNAME")
        try:
            a = int(srp_a, 16)
        except ValueError:
            raise CognitoRefusal("InvalidParameterException", "SRP_A is not a hexadecimal number") from None
        if a % N == 0:
            raise CognitoRefusal("InvalidParameterException", "SRP_A is invalid")
        user = pool._get_user(username)
        salt = secrets.randbits(128)
        moto_session = None
        if user is not None and user.enabled:
            # moto's own session, for the tokens (or the new-password challenge) once the claim checks out.
            moto_session = self._backend().initiate_auth(
                client_id, "USER_SRP_AUTH", {"USERNAME": user.username, "SRP_A": srp_a}
            )["Session"]
            username = user.username
            password = user.password or ""
        else:
            password = secrets.token_urlsafe(16)  # nobody knows it: the claim can never match
        pool_name = pool.id.partition("_")[2]
        verifier = pow(G, private_key(pool_name, username, password, salt), N)
        b = secrets.randbits(1024)
        big_b = (K * verifier + pow(G, b, N)) % N
        secret_block = base64.b64encode(secrets.token_bytes(64)).decode()
        with self._lock:
            self._challenges[secret_block] = _Challenge(
                moto_session, client_id, pool_name, username, a, b, big_b, verifier
            )
        return {
            "ChallengeName": "PASSWORD_VERIFIER",
            "ChallengeParameters": {
                "SALT": format(salt, "x"),
                "SRP_B": format(big_b, "x"),
                "USERNAME": username,
                "USER_ID_FOR_SRP": username,
                "SECRET_BLOCK": secret_block,
            },
        }

    def _verify(self, client_id: str, responses: dict[str, Any]) -> dict[str, Any]:
        secret_block = responses.get("PASSWORD_CLAIM_SECRET_BLOCK")
        with self._lock:
            challenge = self._challenges.pop(secret_block, None) if isinstance(secret_block, str) else None
        if challenge is None or challenge.client_id != client_id:
            raise CognitoRefusal("NotAuthorizedException", "Invalid session for the user.")
        timestamp, signature = responses.get("TIMESTAMP"), responses.get("PASSWORD_CLAIM_SIGNATURE")
        if not isinstance(timestamp, str) or not TIMESTAMP.match(timestamp) or not isinstance(signature, str):
            raise CognitoRefusal("InvalidParameterException", "TIMESTAMP or PASSWORD_CLAIM_SIGNATURE is malformed")
        scrambler = hash_hex(padded_hex(challenge.a), padded_hex(challenge.big_b))
        shared = pow(challenge.a * pow(challenge.verifier, scrambler, N), challenge.b, N)
        expected = password_claim(
            pool_name=challenge.pool_name,
            user_id=challenge.username,
            secret_block=secret_block,
            timestamp=timestamp,
            shared=shared,
            scrambler=scrambler,
        )
        if challenge.moto_session is None or not hmac.compare_digest(expected, signature):
            raise CognitoRefusal("NotAuthorizedException", "Incorrect username or password.")
        pool = self._pool_of(client_id)
        user = pool._get_user(challenge.username) if pool is not None else None
        if user is None or not user.enabled:
            raise CognitoRefusal("NotAuthorizedException", "Incorrect username or password.")
        return self._after_password.after_password(pool, client_id, user, challenge.moto_session)

    def _password_checked_by_moto(self, pool: Any, client_id: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """USER_PASSWORD_AUTH, for a client that allows it: moto compares the password, and would then sign in a
        user of a pool whose MFA is required without any second factor."""
        answer = self._backend().initiate_auth(client_id, "USER_PASSWORD_AUTH", parameters)
        user = pool._get_user(parameters.get("USERNAME") or "")
        return self._after_password.after_password(pool, client_id, user, answer.get("Session"))

    def _pool_of(self, client_id: Any) -> Any:
        if not isinstance(client_id, str):
            return None
        for pool in list(self._backend().user_pools.values()):
            if client_id in pool.clients:
                return pool
        return None


class _Body:
    """The request body, read once already, for moto to read again."""

    def __init__(self, data: bytes) -> None:
        self._data, self._offset = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._offset + size
        chunk, self._offset = self._data[self._offset : end], min(end, len(self._data))
        return chunk

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def _respond(start_response: Callable, status: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("Content-Length", str(len(data))),
        # moto's server allows every origin (flask-cors); the console calls it from the API's origin.
        ("Access-Control-Allow-Origin", "*"),
    ]
    if status != 200:
        headers.append(("x-amzn-ErrorType", body["__type"]))
    start_response(f"{status} {'OK' if status == 200 else 'Bad Request'}", headers)
    return [data]


def moto_cognito_backend(account_id: str, region: str) -> Callable[[], Any]:
    def backend() -> Any:
        from moto.cognitoidp.models import cognitoidp_backends

        return cognitoidp_backends[account_id][region]

    return backend


__all__ = ["StrictCognito", "moto_cognito_backend"]
