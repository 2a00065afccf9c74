"""TokenVault and SigningKeys on Secrets Manager.

One secret per connection. Each write carries a ClientRequestToken derived from the connection and
the document's generation: a retried write is a no-op, and a second writer of the same generation
(a holder whose lease expired while it was slow) is refused instead of overwriting newer tokens.

A write after a refresh must not be lost: it is retried with the same token until the vault write
deadline (throttling, 5xx, connection errors), then VaultUnavailable lets the caller keep the token
set elsewhere. A version quota refusal (LimitExceededException) will not pass within a deadline, so
it is reported at once.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from qbo_connect.adapters.aws_faults import TRANSIENT_CODES, error_code
from qbo_connect.adapters.clock import SystemClock
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.errors import Conflict, ConnectionAlreadyExists, VaultUnavailable
from qbo_connect.observability import logger
from qbo_connect.ports import Clock
from qbo_connect.rate_limit import RateLimiter
from qbo_connect.settings import Settings

_TOKEN_NAMESPACE = uuid.UUID("8f7a3c1e-5b7d-4a51-9d0e-3c2b1a0f9e88")


def client_request_token(connection_id: str, generation: int) -> str:
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{connection_id}/{generation}"))


class SecretsManagerVault:
    def __init__(
        self, client, settings: Settings, write_budget: RateLimiter | None = None, clock: Clock | None = None
    ) -> None:
        self._client = client
        self._settings = settings
        self._clock = clock or SystemClock()
        # PutSecretValue and friends share 50 requests per second per region: stay below our share.
        self._write_budget = write_budget or RateLimiter(settings.secrets_writes_per_second_here)

    def create(self, secret: ConnectionSecret) -> None:
        kwargs = {
            "Name": self._settings.connection_secret_name(secret.connection_id),
            "SecretString": secret.to_json(),
            "ClientRequestToken": client_request_token(secret.connection_id, secret.generation),
            "Description": "qbo-connect connection: client secret and OAuth token set (JSON, see README)",
            "Tags": [{"Key": "qbo-connect:connection-id", "Value": secret.connection_id}],
        }
        if self._settings.kms_key_id:
            kwargs["KmsKeyId"] = self._settings.kms_key_id
        self._write_budget.acquire()
        try:
            self._client.create_secret(**kwargs)
        except ClientError as error:
            if error_code(error) == "ResourceExistsException":
                raise ConnectionAlreadyExists(
                    f"A secret for connection {secret.connection_id!r} already exists: choose another ID"
                ) from None
            raise

    def read(self, connection_id: str) -> ConnectionSecret | None:
        try:
            response = self._client.get_secret_value(SecretId=self._settings.connection_secret_name(connection_id))
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return None
            raise
        return ConnectionSecret.from_json(response["SecretString"])

    def write(self, secret: ConnectionSecret) -> None:
        deadline = self._clock.now() + self._settings.vault_write_deadline_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._put(secret)
            except ClientError as error:
                code = error_code(error)
                if code in {"ResourceExistsException", "InvalidRequestException"}:
                    logger.warning(
                        "Secret generation already written by another holder",
                        extra={"connection_id": secret.connection_id, "generation": secret.generation},
                    )
                    raise Conflict(
                        f"Connection {secret.connection_id!r} was changed by someone else meanwhile: try again"
                    ) from None
                if code not in TRANSIENT_CODES:
                    raise self._unavailable(secret, code) from None
            except BotoCoreError as error:  # connection errors, read timeouts: the write may or may not have landed
                code = type(error).__name__
            pause = random.uniform(0, min(2.0, 0.1 * 2**attempt))  # noqa: S311 - jitter, not security
            if self._clock.now() + pause >= deadline:
                raise self._unavailable(secret, code) from None
            logger.warning(
                "Secrets Manager write failed; retrying with the same request token",
                extra={"connection_id": secret.connection_id, "attempt": attempt, "error_code": code},
            )
            self._clock.sleep(pause)

    def _put(self, secret: ConnectionSecret) -> None:
        self._write_budget.acquire()
        self._client.put_secret_value(
            SecretId=self._settings.connection_secret_name(secret.connection_id),
            SecretString=secret.to_json(),
            ClientRequestToken=client_request_token(secret.connection_id, secret.generation),
        )

    @staticmethod
    def _unavailable(secret: ConnectionSecret, code: str) -> VaultUnavailable:
        logger.error(
            "Secrets Manager refused a write",
            extra={"connection_id": secret.connection_id, "generation": secret.generation, "error_code": code},
        )
        return VaultUnavailable(f"Secrets Manager refused the write for connection {secret.connection_id!r} ({code})")

    def delete(self, connection_id: str) -> None:
        try:
            self._client.delete_secret(
                SecretId=self._settings.connection_secret_name(connection_id), ForceDeleteWithoutRecovery=True
            )
        except ClientError as error:
            if error_code(error) != "ResourceNotFoundException":
                raise


class SecretsManagerSigningKeys:
    """The HMAC key for authorize links: {"kid": ..., "key": ..., "previous": [{"kid", "key"}]}.

    The template creates it on deploy; the local stack creates it on first use. Rotation: put a new
    kid/key and move the old pair into `previous`, so links already handed out keep working until
    they expire. A container reads it at most once per `max_age_seconds`, so a rotation reaches every
    container within that time.

    Cached here, not through Powertools' parameters utility: a cache of one value does not need the
    utility, and importing it (every provider it has) cost the two consent routes' cold start more than
    the read itself.
    """

    def __init__(
        self, client, settings: Settings, *, max_age_seconds: int = 300, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._name = settings.signing_key_name
        self._max_age = max_age_seconds
        self._now = now
        self._cached: tuple[float, dict[str, Any]] | None = None  # (read at, document)

    def current(self) -> tuple[str, bytes]:
        document = self._document()
        return document["kid"], document["key"].encode()

    def by_id(self, key_id: str) -> bytes | None:
        document = self._document()
        for pair in [document, *document.get("previous", [])]:
            if pair.get("kid") == key_id:
                return pair["key"].encode()
        return None

    def _document(self) -> dict[str, Any]:
        now = self._now()
        if self._cached is not None and now - self._cached[0] < self._max_age:
            return self._cached[1]
        try:
            text = self._client.get_secret_value(SecretId=self._name)["SecretString"]
        except ClientError as error:
            if error_code(error) != "ResourceNotFoundException":
                raise
            self._create()
            text = self._client.get_secret_value(SecretId=self._name)["SecretString"]
        self._cached = (now, json.loads(text))
        return self._cached[1]

    def _create(self) -> None:
        key = base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")
        try:
            self._client.create_secret(
                Name=self._name,
                SecretString=json.dumps({"kid": "k1", "key": key}),
                Description="qbo-connect: HMAC key that signs authorize links",
            )
        except ClientError as error:
            if error_code(error) != "ResourceExistsException":  # someone else created it first: fine
                raise
