"""Taking a lease is idempotent for its owner: boto3 retries a lost response with the same owner, and the
retry must get the lease it already took instead of reporting the connection busy."""

from __future__ import annotations

import boto3
import pytest
from fakes import EPOCH
from moto import mock_aws
from qbo_connect import intuit
from qbo_connect.adapters.dynamodb_store import DynamoDbConnectionStore, create_table
from qbo_connect.adapters.dynamodb_table import DynamoDbTable
from qbo_connect.domain.connection import Connection
from qbo_connect.errors import Busy


@pytest.fixture
def store(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        session = boto3.Session()
        create_table(session.client("dynamodb"), "leases")
        store = DynamoDbConnectionStore(DynamoDbTable(session.client("dynamodb"), "leases"))
        store.create(
            Connection(
                connection_id="qbc-1",
                name="one",
                environment=intuit.Environment.SANDBOX,
                base_url=intuit.SANDBOX_API_BASE_URL,
                client_id="client-id",
            )
        )
        yield store


def test_a_retried_acquire_by_the_same_owner_gets_the_lease_and_others_still_wait(store):
    first = store.acquire_lease("qbc-1", owner="owner-a", now=EPOCH, seconds=60)
    retried = store.acquire_lease("qbc-1", owner="owner-a", now=EPOCH, seconds=60)

    assert first.lease_owner == retried.lease_owner == "owner-a"
    assert retried.lease_expires_at == EPOCH + 60
    with pytest.raises(Busy):
        store.acquire_lease("qbc-1", owner="owner-b", now=EPOCH + 1, seconds=60)
