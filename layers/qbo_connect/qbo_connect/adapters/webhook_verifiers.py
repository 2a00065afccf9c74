"""The verifier tokens of the Intuit apps whose webhooks this deployment receives, in one secret.

{"schema": "qbo-connect/webhook-verifiers/v1", "apps": {"<client id>": {"verifier_token": "...",
"updated_at": epoch}}}. Write-only for people: the CLI sets and removes tokens, nothing prints one.
The webhook function reads the document (cached briefly) and signs nothing with it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping

from botocore.exceptions import ClientError

from qbo_connect.settings import Settings

SCHEMA = "qbo-connect/webhook-verifiers/v1"


def _error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


class SecretsManagerWebhookVerifiers:
    def __init__(self, client, settings: Settings, clock, *, max_age_seconds: float = 60.0) -> None:
        self._client = client
        self._name = settings.webhook_verifiers_secret_name
        self._kms_key_id = settings.kms_key_id
        self._clock = clock
        self._max_age = max_age_seconds
        self._lock = threading.Lock()
        self._cached: dict[str, str] | None = None
        self._fetched_at = float("-inf")

    # --- the webhook function ---------------------------------------------------------------------
    def tokens(self, *, fresher_than: float | None = None) -> Mapping[str, str]:
        """client ID -> verifier token. `fresher_than` (seconds) forces a re-read of an older copy:
        a token set a moment ago must work without waiting for the cache."""
        now = self._clock.now()
        age_limit = self._max_age if fresher_than is None else min(self._max_age, fresher_than)
        with self._lock:
            if self._cached is None or now - self._fetched_at > age_limit:
                document = self._read()
                self._cached = {
                    client_id: app["verifier_token"]
                    for client_id, app in (document.get("apps") or {}).items()
                    if isinstance(app, dict) and isinstance(app.get("verifier_token"), str) and app["verifier_token"]
                }
                self._fetched_at = now
            return dict(self._cached)

    @property
    def cache_age(self) -> float:
        return self._clock.now() - self._fetched_at

    # --- the CLI ---------------------------------------------------------------------------------
    def apps(self) -> dict[str, float]:
        """client ID -> when its token was set. Never the tokens."""
        return {
            client_id: app.get("updated_at", 0)
            for client_id, app in (self._read().get("apps") or {}).items()
            if isinstance(app, dict)
        }

    def set(self, client_id: str, verifier_token: str) -> None:
        document = self._read()
        apps = dict(document.get("apps") or {})
        apps[client_id] = {"verifier_token": verifier_token, "updated_at": int(self._clock.now())}
        self._write({"schema": SCHEMA, "apps": apps}, exists=bool(document))

    def remove(self, client_id: str) -> bool:
        document = self._read()
        apps = dict(document.get("apps") or {})
        if apps.pop(client_id, None) is None:
            return False
        self._write({"schema": SCHEMA, "apps": apps}, exists=True)
        return True

    def _read(self) -> dict:
        try:
            response = self._client.get_secret_value(SecretId=self._name)
        except ClientError as error:
            if _error_code(error) == "ResourceNotFoundException":
                return {}
            raise
        document = json.loads(response["SecretString"])
        return document if isinstance(document, dict) else {}

    def _write(self, document: dict, *, exists: bool) -> None:
        text = json.dumps(document)
        if exists:
            self._client.put_secret_value(SecretId=self._name, SecretString=text)
            return
        kwargs = {
            "Name": self._name,
            "SecretString": text,
            "Description": "qbo-connect: verifier tokens of the Intuit apps whose webhooks this stack receives",
        }
        if self._kms_key_id:
            kwargs["KmsKeyId"] = self._kms_key_id
        try:
            self._client.create_secret(**kwargs)
        except ClientError as error:
            if _error_code(error) != "ResourceExistsException":
                raise
            self._client.put_secret_value(SecretId=self._name, SecretString=text)
