"""Wiring: a cold start creates the AWS clients its request calls, no others, each once, from one thread at a time."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fakes import FakeClock
from qbo_connect.runtime import Services
from qbo_connect.settings import Settings


class FakeClient:
    """Answers any API call with {} (Secrets Manager: no such secret) and records it."""

    def __init__(self, service: str, calls: list[str]) -> None:
        self._service = service
        self._calls = calls

    def __getattr__(self, operation: str) -> Any:
        def call(**_: Any) -> dict:
            self._calls.append(f"{self._service}.{operation}")
            if operation == "get_secret_value":
                raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "GetSecretValue")
            return {}

        return call


class RecordingSession:
    """A session that records the clients it creates, and fails if two threads create one at once."""

    def __init__(self, creation_seconds: float = 0.0) -> None:
        self.created: list[str] = []
        self.calls: list[str] = []
        self._creating = 0
        self._creation_seconds = creation_seconds

    def client(self, service: str, **_: Any) -> FakeClient:
        self._creating += 1
        try:
            assert self._creating == 1, "two threads created clients from one session at once"
            time.sleep(self._creation_seconds)
            self.created.append(service)
            return FakeClient(service, self.calls)
        finally:
            self._creating -= 1


def services(session: RecordingSession) -> Services:
    settings = Settings(
        table_name="connections",
        refresh_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/refresh",
        rotation_key_id="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    )
    return Services(settings=settings, session=session, clock=FakeClock())  # type: ignore[arg-type]


def test_building_every_service_a_function_uses_creates_no_client():
    session = RecordingSession()
    built = services(session)

    # What the four functions build: the refresh runs (lifecycle, leases, sealer, queue, events), the consent
    # flow (signing keys, identity, company API) and the connection test.
    assert built.refresh_runs and built.consent and built.connection_tests and built.authorize_links

    assert session.created == []


def test_a_client_is_created_at_its_first_call_once_per_service_and_shared_by_its_adapters():
    session = RecordingSession()
    built = services(session)
    built.lifecycle  # noqa: B018 - wires the vault, the sealer, the queue and the event bus

    built.vault.read("qbc-1")
    built.authorize_links  # noqa: B018 - wires the signing keys
    built.vault.read("qbc-2")

    assert session.created == ["secretsmanager"]
    assert built.signing_keys._client is built.vault._client
    assert session.calls == ["secretsmanager.get_secret_value"] * 2


def test_threads_that_first_call_clients_at_once_create_each_once_and_never_two_at_a_time():
    session = RecordingSession(creation_seconds=0.05)
    built = services(session)
    queue, vault = built.refresh_queue, built.vault
    assert queue is not None
    start = threading.Barrier(8)

    def call(number: int) -> None:
        start.wait()
        if number % 2:
            queue.enqueue([f"qbc-{number}"])
        else:
            vault.read(f"qbc-{number}")

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # RecordingSession.client fails the call if a second thread enters it while one creates a client.
    assert sorted(session.created) == ["secretsmanager", "sqs"]
    assert sorted(session.calls) == ["secretsmanager.get_secret_value"] * 4 + ["sqs.send_message_batch"] * 4


def test_a_client_of_a_service_the_layer_has_no_model_for_is_refused_here_as_it_would_fail_in_lambda():
    # The layer's botocore has the models of qbo_connect.aws_services.AWS_SERVICES only (tests/unit/test_layer_sdk.py).
    session = RecordingSession()

    with pytest.raises(ValueError, match=r"no AWS client for 's3': add it to qbo_connect.aws_services.AWS_SERVICES"):
        services(session)._client("s3").list_buckets()

    assert session.created == []
