"""API Gateway's two authorizers, as the local router applies them to the routes template.yaml gives them.

- JWT (the `AdminJwt` authorizer): the `Authorization` header holds a Cognito token (with or without
  "Bearer "). Checked as API Gateway does: RS256 signature against the pool's JWKS (here moto's, fetched
  over HTTP like API Gateway fetches Cognito's) by the header's `kid`, issuer, audience (`aud` of an ID
  token, `client_id` of an access token), expiry, not-before and issued-at (before now). The claims go into
  requestContext.authorizer.jwt.
- IAM (`AWS_IAM`): a SigV4 signature for the service `execute-api`, recomputed with the secret key of the
  one local identity (the fake credentials the local stack gives everything), within 15 minutes of now,
  over the body that arrived (never the X-Amz-Content-SHA256 the client claims for it).
  The caller goes into requestContext.authorizer.iam.

A refused request never reaches the function: 401 (JWT) or 403 (IAM) with API Gateway's bodies.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

SIGV4_SERVICE = "execute-api"
SIGV4_MAX_SKEW_SECONDS = 15 * 60
JWKS_TIMEOUT_SECONDS = 5


class Refused(Exception):
    """The authorizer does not vouch for the request; `status` and `message` are API Gateway's answer."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class SignedRequest:
    method: str
    url: str  # scheme://host/path?query as the client signed it
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass
class JwtAuthorizer:
    issuer: str
    audience: tuple[str, ...]
    jwks_url: str
    clock: Callable[[], float] = time.time
    _keys: KeySet | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def authorize(self, request: SignedRequest) -> dict[str, Any]:
        header = find_header(request.headers, "authorization")
        if not header:
            raise Refused(401, "Unauthorized", "no Authorization header")
        token = (header[7:] if header[:7].lower() == "bearer " else header).strip()
        keys = self._key_set()
        try:
            kid = jws.extract_compact(token.encode()).headers().get("kid")
            if not isinstance(kid, str) or kid not in {key.kid for key in keys.keys}:
                raise Refused(401, "Unauthorized", "the token names no key of the pool's key set (kid)")
            decoded = jwt.decode(token, keys, algorithms=["RS256"])
        except (JoseError, ValueError) as error:
            raise Refused(401, "Unauthorized", f"the token does not verify: {type(error).__name__}") from None
        claims = decoded.claims
        now = self.clock()
        if claims.get("iss") != self.issuer:
            raise Refused(401, "Unauthorized", "the token is from another issuer")
        audience = claims.get("aud") if "aud" in claims else claims.get("client_id")
        audiences = audience if isinstance(audience, list) else [audience]
        if not {a for a in audiences if isinstance(a, str)} & set(self.audience):
            raise Refused(401, "Unauthorized", "the token is for another audience")
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
            raise Refused(401, "Unauthorized", "the token has expired")
        if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now:
            raise Refused(401, "Unauthorized", "the token is not valid yet")
        if not isinstance(claims.get("iat"), int | float) or claims["iat"] > now:
            raise Refused(401, "Unauthorized", "the token was not issued before now (iat)")
        return {"jwt": {"claims": {k: _claim_text(v) for k, v in claims.items()}, "scopes": None}}

    def _key_set(self) -> KeySet:
        with self._lock:
            if self._keys is None:
                answer = requests.get(self.jwks_url, timeout=JWKS_TIMEOUT_SECONDS)
                answer.raise_for_status()
                self._keys = KeySet.import_key_set(answer.json())
            return self._keys


def _claim_text(value: Any) -> str:
    # API Gateway hands claims to the function as strings; lists as "[a b]".
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class IamAuthorizer:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str
    account_id: str
    clock: Callable[[], float] = time.time

    def authorize(self, request: SignedRequest) -> dict[str, Any]:
        header = find_header(request.headers, "authorization") or ""
        fields = _sigv4_fields(header)
        if fields is None:
            raise Refused(403, "Forbidden", "no SigV4 Authorization header")
        credential, signed_headers, signature = fields
        access_key, _, scope = credential.partition("/")
        date, region, service, terminator = [*scope.split("/"), "", "", "", ""][:4]
        if access_key != self.access_key_id or terminator != "aws4_request":
            raise Refused(403, "Forbidden", "unknown access key")
        if (region, service) != (self.region, SIGV4_SERVICE):
            raise Refused(403, "Forbidden", "signed for another region or service")
        amz_date = find_header(request.headers, "x-amz-date") or ""
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise Refused(403, "Forbidden", "no valid X-Amz-Date") from None
        if not amz_date.startswith(date) or abs(self.clock() - signed_at) > SIGV4_MAX_SKEW_SECONDS:
            raise Refused(403, "Forbidden", "the signature is too old or from the future")
        expected = self._signature(request, signed_headers, amz_date)
        if not hmac.compare_digest(expected, signature):
            raise Refused(403, "Forbidden", "the signature does not match")
        arn = f"arn:aws:iam::{self.account_id}:user/qbo-connect-local-admin"
        return {
            "iam": {
                "accessKey": access_key,
                "accountId": self.account_id,
                "callerId": access_key,
                "principalOrgId": None,
                "userArn": arn,
                "userId": access_key,
            }
        }

    def _signature(self, request: SignedRequest, signed_headers: list[str], amz_date: str) -> str:
        wanted = set(signed_headers)
        headers = {name: value for name, value in request.headers if name.lower() in wanted}
        aws_request = AWSRequest(method=request.method, url=request.url, headers=headers, data=request.body)
        aws_request.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(self.access_key_id, self.secret_access_key), SIGV4_SERVICE, self.region)
        # botocore lets a signed X-Amz-Content-SHA256 stand for the body (S3's rule); API Gateway hashes the
        # body it received, so a body swapped under a replayed signature, or UNSIGNED-PAYLOAD, never matches.
        without_payload, _, _ = signer.canonical_request(aws_request).rpartition("\n")
        canonical = f"{without_payload}\n{hashlib.sha256(request.body).hexdigest()}"
        return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)


def _sigv4_fields(header: str) -> tuple[str, list[str], str] | None:
    if not header.startswith("AWS4-HMAC-SHA256 "):
        return None
    parts = dict(
        part.strip().split("=", 1) for part in header.removeprefix("AWS4-HMAC-SHA256 ").split(",") if "=" in part
    )
    if not {"Credential", "SignedHeaders", "Signature"} <= set(parts):
        return None
    return parts["Credential"], parts["SignedHeaders"].split(";"), parts["Signature"]


def find_header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def request_url(host: str, path: str, raw_query: str) -> str:
    """The URL a client signed: the path as sent (percent-encoded), the query as sent."""
    base = f"http://{host}{quote(path, safe='/~')}"
    return f"{base}?{raw_query}" if raw_query else base


__all__ = ["IamAuthorizer", "JwtAuthorizer", "Refused", "SignedRequest", "find_header", "request_url"]
