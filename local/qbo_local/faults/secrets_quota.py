"""A Secrets Manager client (moto's, in tests) that is as strict about PutSecretValue as AWS is.

moto accepts any number of versions per secret, never fails a write, and (in one corner) overwrites a
version it should refuse. This wrapper adds, in front of put_secret_value, in this order:

1. Injected failures: fail_next_puts(n, code) makes the next n calls raise the ClientError botocore would
   raise for that code (parsed by the client's own parser, so `client.exceptions.X` matches), without
   reaching moto. Each failing call stands for a call whose SDK retries are all spent.
2. Idempotency, as the PutSecretValue reference documents it: "If you call this operation with a
   ClientRequestToken that matches an existing version's VersionId, and you specify the same secret data,
   the operation succeeds but does nothing. However, if the secret data is different, then the operation
   fails because you can't modify an existing version" (ResourceExistsException). moto agrees except when
   the matching version carries AWSPENDING: then moto silently rewrites it (secretsmanager/models.py,
   _check_with_existing_secrets_and_versions, the same at getmoto/moto 0af643a and in moto 5.2.5). Here that
   case follows AWS too. A no-op creates no version and is not counted against the quota.
3. The version quota. AWS's quotas page (docs.aws.amazon.com/secretsmanager/latest/userguide/
   reference_limits.html) and the PutSecretValue reference: "Secrets Manager removes unlabeled versions when
   there are more than 100, but it does not remove versions created less than 24 hours ago. If you update
   the secret value more than once every 10 minutes, you create more versions than Secrets Manager removes,
   and you will reach the quota for secret versions"; past it the call fails with LimitExceededException
   ("The request failed because it would exceed one of the Secrets Manager quotas"). So a put that would
   create a version fails while `max_versions_per_day` versions of that secret were created in the last 24
   hours by `clock` (create_secret's first version included). AWS also keeps its two labelled versions
   (AWSCURRENT, AWSPREVIOUS) however old, so the real ceiling can be up to two versions lower; AWS does not
   publish the message text, so the message below is ours.

The 24-hour history lives in this object (moto cannot tell it: its list_secret_version_ids reports every
version as created now), so wrap the one client every writer shares; writers in other processes, each
with its own wrapper, are each held to the quota separately.

Error codes and HTTP statuses are those of the API reference (PutSecretValue errors, Common Errors):
InternalServiceError 500, ThrottlingException 400, LimitExceededException 400, ResourceExistsException 400.
Everything else passes through to the wrapped client untouched.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from .aws_errors import client_error

DAY_SECONDS = 24 * 60 * 60
_STATUS = {
    "InternalServiceError": 500,
    "ThrottlingException": 400,
    "LimitExceededException": 400,
    "ResourceExistsException": 400,
}
_MESSAGES = {
    "InternalServiceError": "An error occurred on the server side.",
    "ThrottlingException": "Rate exceeded",
    "LimitExceededException": "The request failed because it would exceed one of the Secrets Manager quotas.",
}


class StrictSecretsManager:
    """Wraps a boto3 secretsmanager client; see the module docstring for what put_secret_value enforces.

    puts: put_secret_value calls that reached moto (injected failures and refusals by the quota or the
    idempotency rule excluded; idempotent no-ops included).
    """

    def __init__(self, client: Any, *, clock: Callable[[], float] = time.time, max_versions_per_day: int = 100) -> None:
        self._client = client
        self._clock = clock
        self._max_versions_per_day = max_versions_per_day
        self._failures: collections.deque[str] = collections.deque()
        self._created: dict[str, list[float]] = collections.defaultdict(list)  # secret ARN -> version creation times
        self._lock = threading.RLock()
        self.puts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def fail_next_puts(self, n: int, code: str = "InternalServiceError") -> None:
        if code not in _MESSAGES:
            raise ValueError(f"unsupported code {code!r}; expected one of {sorted(_MESSAGES)}")
        with self._lock:
            self._failures.extend([code] * n)

    def clear_failures(self) -> None:
        """Secrets Manager is healthy again: drop the failures not yet served."""
        with self._lock:
            self._failures.clear()

    def versions_created_within_a_day(self, secret_id: str) -> int:
        """How many versions of the secret count against the quota now."""
        with self._lock:
            return len(self._recent(self._client.describe_secret(SecretId=secret_id)["ARN"]))

    # -- the strict operations ---------------------------------------------------------------------------

    def create_secret(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            response = self._client.create_secret(**kwargs)
            if "SecretString" in kwargs or "SecretBinary" in kwargs:
                self._created[response["ARN"]].append(self._clock())
            return response

    def put_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            if self._failures:
                code = self._failures.popleft()
                raise self._error(code, _MESSAGES[code])
            try:
                arn = self._client.describe_secret(SecretId=kwargs["SecretId"])["ARN"]
            except (ClientError, KeyError):  # no such secret, a bad request: moto answers as AWS would
                self.puts += 1
                return self._client.put_secret_value(**kwargs)
            # botocore fills in a missing token with a fresh UUID; do it here so the rules below see it
            token = kwargs.setdefault("ClientRequestToken", str(uuid.uuid4()))
            existing = self._version(arn, token)
            if existing is not None:
                return self._idempotent(arn, token, existing, kwargs)
            recent = self._recent(arn)
            if len(recent) >= self._max_versions_per_day:
                raise self._error(
                    "LimitExceededException",
                    f"{_MESSAGES['LimitExceededException']} Secret {arn} already has {len(recent)} versions created"
                    " in the last 24 hours, and Secrets Manager does not remove versions younger than 24 hours.",
                )
            self.puts += 1
            response = self._client.put_secret_value(**kwargs)
            self._created[arn].append(self._clock())
            return response

    # -- helpers -----------------------------------------------------------------------------------------

    def _recent(self, arn: str) -> list[float]:
        now = self._clock()
        self._created[arn] = [t for t in self._created[arn] if now - t < DAY_SECONDS]
        return self._created[arn]

    def _version(self, arn: str, version_id: str) -> dict[str, Any] | None:
        try:
            return self._client.get_secret_value(SecretId=arn, VersionId=version_id)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise

    def _idempotent(self, arn: str, token: str, existing: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        same = existing.get("SecretString") == kwargs.get("SecretString") and existing.get(
            "SecretBinary"
        ) == kwargs.get("SecretBinary")
        if not same:
            raise self._error(
                "ResourceExistsException",
                f"You can't use ClientRequestToken {token} because that value is already in use for a version of"
                f" secret {arn}.",
            )
        self.puts += 1
        if "AWSPENDING" not in existing.get("VersionStages", []):
            return self._client.put_secret_value(**kwargs)  # moto's no-op is right here
        # moto would rewrite this version (and move AWSCURRENT onto it); AWS does nothing.
        return {
            "ARN": existing["ARN"],
            "Name": existing["Name"],
            "VersionId": token,
            "VersionStages": existing["VersionStages"],
            "ResponseMetadata": existing["ResponseMetadata"],
        }

    def _error(self, code: str, message: str) -> ClientError:
        return client_error(self._client, "PutSecretValue", code, message, _STATUS[code])
