"""The world the cold-start benchmark's processes run against, and each function's realistic first request.

AWS is moto in server mode and Intuit is the emulator, each a process of its own (as `make dev` has
them outside the functions), so that a measured process holds only the function's own work (or the
floor's). This module, in the benchmark's own process, starts both, creates what template.yaml
deploys (table, signing key, refresh queue, rotation key), and before every sample puts one
function's fixture back into the same state with the service's own flows:

- authorize: a connection with its client secret, not connected; the event is a freshly signed link.
- callback: the same, plus a consent started (its state stored, the browser's cookie) and the code the
  emulator's Connect button hands out; the event is Intuit's redirect to the callback.
- refresh: a connection connected through the emulator with an access token inside the refresh margin
  (due), the only due one; the events are the schedule's sweep and the queue record the sweep sends.
- test: a connection connected through the emulator; the event is `{"connection_id": ...}`.

Connections are deleted and created again (not patched back), so every sample writes a new secret
version as a first request would. Intuit's single-use values (an authorization code, a refresh
token) cannot be replayed: each sample gets fresh ones, and `single_use` names them, so that a floor
replaying the recorded calls can use the fresh value where the recording used its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from qbo_local.sample_events import http_event

from bench.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "qbo_connect"
FUNCTIONS = ("authorize", "callback", "refresh", "test")
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
STACK = "qbo-connect-cold"
TABLE = f"{STACK}-ConnectionsTable"
QUEUE = f"{STACK}-RefreshQueue"
EVENTS_TABLE = f"{STACK}-ConnectionEventsTable"
CLIENT_ID = "cold-start-client-id"
ACCESS_TOKEN_SECONDS = 3600
DUE_ACCESS_TOKEN_SECONDS = 600  # inside the 900-second refresh margin: due at once


def _timeouts() -> dict[str, int]:
    """Each benchmarked function's timeout, as template.yaml gives it: what its first request's context says is left."""
    from qbo_local.template import function_properties, load_template

    template = load_template(ROOT / "template.yaml")
    names = ("authorize", "callback", "refresh", "test")
    return {name: int(function_properties(template, f"{name.capitalize()}Function")["Timeout"]) for name in names}


TIMEOUT_SECONDS = _timeouts()


def _session(endpoint_url: str) -> Any:
    """A boto3 session whose clients all go to moto (this process's environment stays as it is: `make
    bench` runs this in its own process, before other parts that set their own)."""
    import boto3

    class LocalSession(boto3.Session):
        def client(self, *args: Any, **kwargs: Any) -> Any:
            return super().client(*args, **{"endpoint_url": endpoint_url, **kwargs})

        def resource(self, *args: Any, **kwargs: Any) -> Any:
            return super().resource(*args, **{"endpoint_url": endpoint_url, **kwargs})

    fake = "bench"
    return LocalSession(aws_access_key_id=fake, aws_secret_access_key=fake, region_name=REGION)


@dataclass
class Sample:
    """One function's first request, ready to run: its events, and the single-use values now valid."""

    events: list[dict[str, Any]]
    single_use: dict[str, str] = field(default_factory=dict)
    after: Any = None  # a check after the sample (the refresh queue must hold the sweep's record)


class World:
    api_base_url = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"  # the sample events' API

    def __init__(self) -> None:
        self._servers: list[ServerProcess] = []
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # --- set-up ---------------------------------------------------------------------------------
    def _start(self) -> None:
        import requests

        aws = ServerProcess("moto", "/moto-api/", "-m", "moto.server", "-H", "127.0.0.1", "-p")
        self._servers.append(aws)
        intuit = ServerProcess(
            "the Intuit emulator", "/_emulator/health", "-m", "qbo_local.emulator", "--no-rate-limits", "--port"
        )
        self._servers.append(intuit)
        self.aws_url, self.emulator_url = aws.url, intuit.url
        self._http = requests.Session()

        self.session = _session(self.aws_url)
        from qbo_connect.adapters.dynamodb_store import create_table

        create_table(self.session.client("dynamodb"), TABLE)
        # Every function records its connection events (template.yaml's Globals): the first request does too.
        from qbo_connect.adapters.dynamodb_event_history import create_events_table

        create_events_table(self.session.client("dynamodb"), EVENTS_TABLE)
        sqs = self.session.client("sqs")
        self.queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        self.queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{QUEUE}"
        rotation_key = self.session.client("kms").create_key(Description="qbo-connect cold start: RotationKey")
        self.settings_environment = {
            "QBO_TABLE_NAME": TABLE,
            "QBO_EVENTS_TABLE_NAME": EVENTS_TABLE,
            "QBO_SECRET_PREFIX": f"qbo-connect/{STACK}/",
            "QBO_SIGNING_KEY_SECRET_ID": f"qbo-connect/{STACK}/signing-key",
            "QBO_EVENT_BUS_NAME": "default",
            "QBO_REFRESH_MARGIN_SECONDS": "900",
            "QBO_REFRESH_SCHEDULE": "rate(5 minutes)",
            "QBO_SECRETS_WRITE_BUDGET": "40",
            "QBO_WRITE_BUDGET_SHARES": "5",
            "QBO_REFRESH_QUEUE_URL": self.queue_url,
            "QBO_ROTATION_KEY_ID": rotation_key["KeyMetadata"]["Arn"],
            # The template's Intuit overrides, pointed at the emulator (empty in a deployment: Intuit's own).
            "QBO_INTUIT_AUTHORIZATION_URL": self.emulator_url + "/connect/oauth2",
            "QBO_INTUIT_TOKEN_URL": self.emulator_url + "/oauth2/v1/tokens/bearer",
            "QBO_INTUIT_REVOCATION_URL": self.emulator_url + "/v2/oauth2/tokens/revoke",
            "QBO_PRODUCTION_API_BASE_URL": self.emulator_url,
            "QBO_SANDBOX_API_BASE_URL": self.emulator_url,
            "QBO_ALLOWED_API_HOSTS": urlsplit(self.emulator_url).netloc,
        }
        from qbo_connect.observability import logger
        from qbo_connect.runtime import build_services
        from qbo_connect.settings import Settings

        logger.setLevel("WARNING")  # the fixtures' own flows: their log lines would bury the figures

        self.services = build_services(Settings.from_environment(self.settings_environment), session=self.session)
        self.services.signing_keys.current()  # the template creates the key on deploy
        self.client_secret = "cold-" + uuid.uuid4().hex
        self._emulator("POST", "/_emulator/clients", {"client_id": CLIENT_ID, "client_secret": self.client_secret})
        self.realm_id = self._emulator("GET", "/_emulator/companies")["companies"][0]["realm_id"]

    def _emulator(self, method: str, path: str, body: Any = None) -> Any:
        answer = self._http.request(method, self.emulator_url + path, json=body, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def close(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()

    # --- what a measured process gets ---------------------------------------------------------------
    def environment(self, function: str) -> dict[str, str]:
        """What Lambda sets for the function (template.yaml's variables, Lambda's own), pointed at moto
        and the emulator. The floor of a function gets the same environment."""
        name = f"{STACK}-{function.capitalize()}Function"
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(ROOT / "functions" / function),
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_ENDPOINT_URL": self.aws_url,
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",  # Lambda runs the daemon beside the function
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=1",
            **self.settings_environment,
            "QBO_PUBLIC_BASE_URL": "",
            "POWERTOOLS_SERVICE_NAME": "qbo-connect",
            "POWERTOOLS_METRICS_NAMESPACE": "QboConnect",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
            "POWERTOOLS_LOGGER_LOG_EVENT": "false",
        }

    def context(self, function: str) -> dict[str, Any]:
        name = f"{STACK}-{function.capitalize()}Function"
        return {
            "function_name": name,
            "invoked_function_arn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}",
            "memory_limit_in_mb": "512",
            "aws_request_id": str(uuid.uuid4()),
            "log_stream_name": f"2026/01/01/[$LATEST]{uuid.uuid4().hex}",
            "timeout_seconds": TIMEOUT_SECONDS[function],
        }

    # --- fixtures -----------------------------------------------------------------------------------
    def prepare(self, function: str) -> Sample:
        """Put the function's fixture into its first-request state; the events to send and the
        single-use values they (or a floor in their place) may spend."""
        return getattr(self, f"_prepare_{function}")(f"cold-{function}")

    def _recreate(self, connection_id: str, *, connected: bool, access_token_seconds: int = ACCESS_TOKEN_SECONDS):
        """Delete the connection (items and secret, no Intuit call) and create it again with its client
        secret; connected: through the consent flow against the emulator, as a person would."""
        from qbo_connect.domain.administration import NewConnection

        table = self.session.client("dynamodb")
        for key in (f"connection#{connection_id}", f"name#{connection_id}"):
            table.delete_item(TableName=TABLE, Key={"pk": {"S": key}})
        self.services.vault.delete(connection_id)
        self.services.administration.create(
            NewConnection(
                name=connection_id, client_id=CLIENT_ID, connection_id=connection_id, client_secret=self.client_secret
            )
        )
        if connected:
            from qbo_local.consent import consent_in_emulator

            self._emulator("POST", "/_emulator/config", {"access_token_seconds": access_token_seconds})
            try:
                consent_in_emulator(
                    self.services,
                    connection_id=connection_id,
                    api_base_url=self.api_base_url,
                    emulator_url=self.emulator_url,
                    realm_id=self.realm_id,
                )
            finally:
                self._emulator("POST", "/_emulator/config", {"access_token_seconds": ACCESS_TOKEN_SECONDS})

    def _prepare_authorize(self, connection_id: str) -> Sample:
        self._recreate(connection_id, connected=False)
        link = urlsplit(self.services.authorize_links.create(self.api_base_url, connection_id))
        return Sample([http_event("authorize.json", link.path, dict(parse_qsl(link.query)))])

    def _prepare_callback(self, connection_id: str) -> Sample:
        from qbo_connect.domain.authorization import STATE_COOKIE
        from qbo_local.consent import connect_pressed_in_emulator

        self._recreate(connection_id, connected=False)
        given = connect_pressed_in_emulator(
            self.services,
            connection_id=connection_id,
            api_base_url=self.api_base_url,
            emulator_url=self.emulator_url,
            realm_id=self.realm_id,
            http=self._http,
        )
        callback = given.callback
        event = http_event(
            "callback.json",
            "/oauth/callback",
            {"code": callback["code"], "state": callback["state"], "realmId": callback["realmId"]},
            [f"{STATE_COOKIE}={given.state_cookie}"],
        )
        return Sample([event], single_use={"code": callback["code"]})

    def _prepare_refresh(self, connection_id: str) -> Sample:
        self._recreate(connection_id, connected=True, access_token_seconds=DUE_ACCESS_TOKEN_SECONDS)
        secret = self.services.vault.read(connection_id)
        assert secret is not None and secret.token_set is not None
        body = json.dumps({"connection_id": connection_id})  # what the sweep sends (SqsRefreshQueue)
        record = {
            "messageId": str(uuid.uuid4()),
            "receiptHandle": uuid.uuid4().hex,
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": str(int(time.time() * 1000)),
                "SenderId": "AROA3EXAMPLEROLEID0001:" + self.environment("refresh")["AWS_LAMBDA_FUNCTION_NAME"],
                "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": REGION,
        }
        return Sample(
            [{"action": "sweep"}, {"Records": [record]}],
            single_use={"refresh_token": secret.token_set.refresh_token},
            after=lambda: self._expect_queued([body]),
        )

    def _prepare_test(self, connection_id: str) -> Sample:
        self._recreate(connection_id, connected=True)
        return Sample([{"connection_id": connection_id}])

    # --- between samples ----------------------------------------------------------------------------
    def _expect_queued(self, bodies: list[str]) -> None:
        """The queue holds exactly these messages (the sweep's); they are deleted."""
        sqs = self.session.client("sqs")
        found = []
        while True:
            messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                break
            found += [m["Body"] for m in messages]
            sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        if found != bodies:
            raise RuntimeError(f"the refresh queue held {found}, expected {bodies}")

    def table_items(self) -> dict[str, dict[str, Any]]:
        """Every item of the table, by its key (low-level attribute values)."""
        client = self.session.client("dynamodb")
        items: dict[str, dict[str, Any]] = {}
        for page in client.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True):
            for item in page["Items"]:
                items[item["pk"]["S"]] = item
        return items

    def restore(self, snapshot: dict[str, dict[str, Any] | None]) -> None:
        """Items as they were (None: absent), e.g. the OAuth state a recorded call consumed or created."""
        client = self.session.client("dynamodb")
        for key, item in snapshot.items():
            if item is None:
                client.delete_item(TableName=TABLE, Key={"pk": {"S": key}})
            else:
                client.put_item(TableName=TABLE, Item=item)


@contextlib.contextmanager
def world() -> Iterator[World]:
    built = World()
    try:
        yield built
    finally:
        built.close()
