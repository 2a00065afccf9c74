"""StrictSecretsManager on moto: failures, the 24-hour version quota and idempotency as AWS documents them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from qbo_local.faults import StrictSecretsManager

HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def raw() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


@pytest.fixture
def vault(raw: Any, clock: Clock) -> StrictSecretsManager:
    vault = StrictSecretsManager(raw, clock=clock, max_versions_per_day=5)
    vault.create_secret(Name="conn", SecretString="v0")
    return vault


def token() -> str:
    return str(uuid.uuid4())


def versions(raw: Any) -> int:
    return len(raw.list_secret_version_ids(SecretId="conn", IncludeDeprecated=True)["Versions"])


@pytest.mark.parametrize(
    ("code", "status", "modeled"),
    [("InternalServiceError", 500, True), ("ThrottlingException", 400, False), ("LimitExceededException", 400, True)],
)
def test_injected_failures_are_shaped_like_botocores_and_never_reach_moto(
    vault: StrictSecretsManager, raw: Any, code: str, status: int, modeled: bool
) -> None:
    vault.fail_next_puts(2, code)

    for _ in range(2):
        with pytest.raises(ClientError) as raised:
            vault.put_secret_value(SecretId="conn", SecretString="v1", ClientRequestToken=token())
        error = raised.value
        assert error.operation_name == "PutSecretValue"
        assert error.response["Error"]["Code"] == code
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
        assert error.response["ResponseMetadata"]["RequestId"]
        assert f"An error occurred ({code}) when calling the PutSecretValue operation" in str(error)
        # a caller that catches the modeled exception class, as boto3 users do, catches this one
        assert type(error) is (getattr(raw.exceptions, code) if modeled else ClientError)
    assert (vault.puts, versions(raw)) == (0, 1)

    vault.put_secret_value(SecretId="conn", SecretString="v1", ClientRequestToken=token())
    assert (vault.puts, versions(raw)) == (1, 2)


def test_a_retry_with_the_same_token_and_value_is_a_no_op(vault: StrictSecretsManager, raw: Any) -> None:
    same = token()
    first = vault.put_secret_value(SecretId="conn", SecretString="v1", ClientRequestToken=same)
    again = vault.put_secret_value(SecretId="conn", SecretString="v1", ClientRequestToken=same)

    assert again["VersionId"] == first["VersionId"] == same
    assert versions(raw) == 2
    assert vault.versions_created_within_a_day("conn") == 2  # create_secret's version and one put


def test_the_same_token_with_another_value_is_refused(vault: StrictSecretsManager, raw: Any) -> None:
    same = token()
    vault.put_secret_value(SecretId="conn", SecretString="v1", ClientRequestToken=same)

    with pytest.raises(raw.exceptions.ResourceExistsException) as raised:
        vault.put_secret_value(SecretId="conn", SecretString="someone else's", ClientRequestToken=same)

    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert raw.get_secret_value(SecretId="conn")["SecretString"] == "v1"


def test_a_pending_version_is_not_rewritten_as_moto_would(vault: StrictSecretsManager, raw: Any) -> None:
    pending = token()
    raw.put_secret_value(SecretId="conn", SecretString="p", ClientRequestToken=pending, VersionStages=["AWSPENDING"])

    with pytest.raises(raw.exceptions.ResourceExistsException):
        vault.put_secret_value(SecretId="conn", SecretString="other", ClientRequestToken=pending)
    no_op = vault.put_secret_value(SecretId="conn", SecretString="p", ClientRequestToken=pending)

    assert no_op["VersionStages"] == ["AWSPENDING"]
    assert raw.get_secret_value(SecretId="conn")["SecretString"] == "v0"  # AWSCURRENT did not move
    assert raw.get_secret_value(SecretId="conn", VersionStage="AWSPENDING")["SecretString"] == "p"


def test_moto_alone_would_rewrite_that_pending_version(raw: Any) -> None:
    """Why the wrapper handles AWSPENDING itself: the difference it corrects, pinned."""
    raw.create_secret(Name="conn", SecretString="v0")
    pending = token()
    raw.put_secret_value(SecretId="conn", SecretString="p", ClientRequestToken=pending, VersionStages=["AWSPENDING"])

    raw.put_secret_value(SecretId="conn", SecretString="other", ClientRequestToken=pending)

    assert raw.get_secret_value(SecretId="conn")["SecretString"] == "other"


def test_new_versions_stop_at_the_quota_until_the_oldest_is_a_day_old(
    vault: StrictSecretsManager, raw: Any, clock: Clock
) -> None:
    for i in range(1, 5):  # with create_secret's, 5 versions, one an hour
        clock.now += HOUR
        vault.put_secret_value(SecretId="conn", SecretString=f"v{i}", ClientRequestToken=token())

    clock.now += HOUR
    with pytest.raises(raw.exceptions.LimitExceededException) as raised:
        vault.put_secret_value(SecretId="conn", SecretString="v5", ClientRequestToken=token())
    assert "24 hours" in raised.value.response["Error"]["Message"]
    assert raw.get_secret_value(SecretId="conn")["SecretString"] == "v4"
    assert (vault.puts, versions(raw)) == (4, 5)

    clock.now += 19 * HOUR - 1  # the first version is one second short of a day old
    with pytest.raises(raw.exceptions.LimitExceededException):
        vault.put_secret_value(SecretId="conn", SecretString="v5", ClientRequestToken=token())
    clock.now += 1
    vault.put_secret_value(SecretId="conn", SecretString="v5", ClientRequestToken=token())
    assert raw.get_secret_value(SecretId="conn")["SecretString"] == "v5"


def test_an_idempotent_retry_still_succeeds_at_the_quota(vault: StrictSecretsManager, raw: Any) -> None:
    tokens = [token() for _ in range(4)]
    for i, t in enumerate(tokens):
        vault.put_secret_value(SecretId="conn", SecretString=f"v{i}", ClientRequestToken=t)

    again = vault.put_secret_value(SecretId="conn", SecretString="v3", ClientRequestToken=tokens[-1])

    assert again["VersionId"] == tokens[-1]
    with pytest.raises(raw.exceptions.LimitExceededException):
        vault.put_secret_value(SecretId="conn", SecretString="v4", ClientRequestToken=token())


def test_the_quota_is_per_secret_and_defaults_to_100(raw: Any, clock: Clock) -> None:
    vault = StrictSecretsManager(raw, clock=clock)
    vault.create_secret(Name="busy", SecretString="0")
    vault.create_secret(Name="quiet", SecretString="0")
    for i in range(99):
        clock.now += 60  # once a minute, as a client asking for a fresh token every minute would
        vault.put_secret_value(SecretId="busy", SecretString=str(i + 1))

    with pytest.raises(raw.exceptions.LimitExceededException):
        vault.put_secret_value(SecretId="busy", SecretString="100")
    vault.put_secret_value(SecretId="quiet", SecretString="1")
    assert vault.versions_created_within_a_day("busy") == 100


def test_anything_else_passes_through_and_unknown_secrets_fail_as_in_aws(vault: StrictSecretsManager, raw: Any) -> None:
    assert vault.get_secret_value(SecretId="conn")["SecretString"] == "v0"
    assert vault.exceptions is raw.exceptions

    with pytest.raises(raw.exceptions.ResourceNotFoundException):
        vault.put_secret_value(SecretId="missing", SecretString="x")
    with pytest.raises(ValueError):
        vault.fail_next_puts(1, "MadeUpException")
