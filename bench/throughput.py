"""Refresh throughput: N due connections in the local stack, the whole sweep through the real fan-out path.

The local stack (qbo_local.stack.LocalStack) runs as `make dev` runs it: the Intuit emulator, the
refresh function loaded from functions/refresh/app.py, the schedule's sweep, and the SQS consumer
that mimics Lambda's event source mapping with the template's batch size (10), batching window and
MaximumConcurrency (RefreshMaxConcurrency, 5 instances). One change: moto runs in a process of its
own, because on a two-core machine moto's request handling and the functions would otherwise share
one interpreter lock and the benchmark would measure moto.

The emulator answers every token call after 150 ms (`faults.set_delay("token", 0.15)`).

Seeding writes connections the way the consent flow leaves them (connected, token set in the
secret, generation 1), with token sets from the emulator (POST /_emulator/grants: code and exchange
as in the browser flow), their access tokens due (expiring in 10 minutes, inside the 15-minute
margin). Seeding is not timed.

Measured, from one sweep until the queue is empty:
- refreshes per second and wall time;
- AWS API calls, counted by a botocore hook on the services' boto3 session: the refresh path's
  (lease UpdateItem, GetSecretValue, PutSecretValue, UpdateItem that saves and releases) per
  refresh, and apart from them the sweep's (Query pages, SendMessageBatch), amortised per refresh;
  the event source mapping's own SQS calls (ReceiveMessage, DeleteMessageBatch) on its client;
- Intuit calls per refresh, from the emulator's counters (refresh_token grants);
- connections lost: afterwards every connection must be connected, its metadata and secret at
  generation 2, its stored refresh token the rotated one, and its grant at the emulator refreshed
  exactly once and not revoked (a replayed refresh token revokes the grant). A connection this sweep
  did not refresh at all (metadata, secret and grant untouched, its stored refresh token still
  good) is counted apart as deferred: the next sweep refreshes it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKEN_DELAY_SECONDS = 0.15
SWEEP_OPERATIONS = {"dynamodb.Query", "sqs.SendMessageBatch"}
BENCH_CLIENT_ID = "bench-client-id"
DUE_IN_SECONDS = 600  # inside the 900-second margin: due at the first sweep
RUN_TIMEOUT_SECONDS = 420


@dataclass
class RunResult:
    connections: int
    due: int
    enqueued: int
    wall_seconds: float
    refreshed: int
    refreshes_per_second: float
    budget_per_second: float
    concurrency: int
    function_calls: dict[str, int]
    function_calls_per_refresh: float
    sweep_calls: dict[str, int]
    sweep_calls_per_refresh: float
    attempts_per_refresh: float
    event_source_calls: dict[str, int]
    event_source_calls_per_refresh: float
    intuit_calls_per_refresh: float
    lost: int
    deferred: int = 0
    retried_attempts: int = 0
    lost_examples: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    outcome_examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return (
            self.refreshes_per_second >= 0.9 * self.budget_per_second
            and self.function_calls_per_refresh <= 4
            and self.intuit_calls_per_refresh == 1
            and self.lost == 0
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"moto did not listen on port {port} within {timeout:g} s")


def _start_moto(parts: list, part_type: type, name: str) -> str:
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603 - our interpreter, moto's server
        [
            sys.executable,
            *os.environ.get("BENCH_MOTO", "-m bench.moto_server").split(),
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop() -> None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:  # moto's server waits for its request threads on SIGTERM
            process.kill()
            process.wait(5)

    parts.append(part_type(name, stop))
    _wait_for_port(port)
    return f"http://127.0.0.1:{port}"


def _bench_stack_class():
    from qbo_local import stack as stack_module

    class BenchStack(stack_module.LocalStack):
        """LocalStack with moto in processes of its own: one for DynamoDB and EventBridge, one for Secrets
        Manager, one for SQS (boto3's per-service endpoint variables route each client). See the module
        docstring for why."""

        def _start_aws(self) -> str:
            part = stack_module._Part
            endpoint = _start_moto(self._parts, part, "embedded AWS: DynamoDB, EventBridge")
            secrets_endpoint = _start_moto(self._parts, part, "embedded AWS: Secrets Manager")
            sqs_endpoint = _start_moto(self._parts, part, "embedded AWS: SQS")
            stack_module.use_local_aws(endpoint)
            os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = secrets_endpoint
            os.environ["AWS_ENDPOINT_URL_SQS"] = sqs_endpoint
            return endpoint

    return BenchStack


class Bench:
    """One local stack for every run: seed, sweep, wait for the queue to drain, verify."""

    def __init__(self) -> None:
        import requests
        from qbo_local.config import UpOptions

        from bench.aws_calls import AwsCallCounter

        self._requests = requests
        self._tmp = tempfile.TemporaryDirectory(prefix="qbo-bench-")
        options = UpOptions(
            root=ROOT,
            port=0,
            aws_port=0,
            intuit_port=0,
            refresh_interval=86_400.0,  # the benchmark starts each sweep itself
            state_file=Path(self._tmp.name) / "local-stack.json",
        )
        self.stack = _bench_stack_class()(options)
        self.document = self.stack.start()
        self.emulator_url = self.document["emulator_url"]

        from qbo_connect.runtime import reset_services, services

        # A fresh services object, hooked before any of its clients exist (clients copy the session's hooks).
        reset_services()
        self.services = services()
        self.function_counter = AwsCallCounter().attach(self.services.session.events)
        assert self.stack.queue_source is not None
        self.event_source_counter = AwsCallCounter().attach(self.stack.queue_source.sqs.meta.events)
        self._deleted, self._deleted_lock = 0, threading.Lock()
        # What each refresh came to (refreshed, not_due, busy, ...), recorded around the lifecycle the
        # refresh function calls.
        self.outcomes: Counter[str] = Counter()
        self.outcome_examples: dict[str, list[str]] = {}
        lifecycle = self.services.lifecycle
        refresh = lifecycle.refresh

        def recorded(connection_id: str, **kwargs: Any) -> Any:
            result = refresh(connection_id, **kwargs)
            with self._deleted_lock:
                self.outcomes[result.outcome.value] += 1
                self.outcome_examples.setdefault(result.outcome.value, [])
                if len(self.outcome_examples[result.outcome.value]) < 3:
                    self.outcome_examples[result.outcome.value].append(f"{connection_id}: {result.message}")
            return result

        lifecycle.refresh = recorded
        self.lost_details: list[str] = []
        self.stack.queue_source.sqs.meta.events.register("after-call.sqs.DeleteMessageBatch", self._count_deleted)
        self.concurrency = self.stack.queue_source.concurrency

        import boto3

        # The benchmark's own calls (seeding, watching the queue, verifying) go through another session.
        self._session = boto3.Session()
        self.client_secret = "bench-" + os.urandom(16).hex()
        self._post("/_emulator/clients", {"client_id": BENCH_CLIENT_ID, "client_secret": self.client_secret})
        companies = self._requests.get(f"{self.emulator_url}/_emulator/companies", timeout=10).json()["companies"]
        self.realm_id = companies[0]["realm_id"]

    def _post(self, path: str, body: Any) -> Any:
        response = self._requests.post(f"{self.emulator_url}{path}", json=body, timeout=120)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self.stack.stop()
        self._tmp.cleanup()

    # --- seeding ------------------------------------------------------------------------------
    def seed(self, prefix: str, count: int) -> dict[str, dict[str, str]]:
        """`count` connected connections, due now; returns {connection_id: {grant_id, refresh_token}}."""
        from qbo_connect import intuit
        from qbo_connect.adapters.dynamodb_store import connection_to_item
        from qbo_connect.adapters.secrets_vault import SecretsManagerVault
        from qbo_connect.domain.connection import Connection, ConnectionStatus
        from qbo_connect.domain.secret_document import ConnectionSecret
        from qbo_connect.domain.token_set import TokenSet
        from qbo_connect.rate_limit import RateLimiter

        settings = self.services.settings
        grants = self._post(
            "/_emulator/grants", {"client_id": BENCH_CLIENT_ID, "realm_id": self.realm_id, "count": count}
        )["grants"]
        now = time.time()
        base_url = settings.sandbox_api_base_url
        connections, secrets, seeded = [], [], {}
        for number, grant in enumerate(grants, start=1):
            connection_id = f"{prefix}-{number:06d}"
            token_set = TokenSet(
                access_token=grant["access_token"],
                refresh_token=grant["refresh_token"],
                expires_at=now + DUE_IN_SECONDS,
                refresh_token_expires_at=now + grant["x_refresh_token_expires_in"],
                refresh_token_hard_expires_at=now + grant["hard_expires_in"],
                scopes=intuit.DEFAULT_SCOPES,
                obtained_at=now + DUE_IN_SECONDS - intuit.ACCESS_TOKEN_DEFAULT_SECONDS,
            )
            secret = ConnectionSecret(
                connection_id=connection_id,
                client_id=BENCH_CLIENT_ID,
                base_url=base_url,
                client_secret=self.client_secret,
                token_set=token_set,
                realm_id=self.realm_id,
                generation=1,
                updated_at=token_set.obtained_at,
            )
            connection = Connection(
                connection_id=connection_id,
                name=f"{prefix} {number:06d}",
                environment=intuit.Environment.SANDBOX,
                base_url=base_url,
                client_id=BENCH_CLIENT_ID,
                realm_id=self.realm_id,
                status=ConnectionStatus.CONNECTED,
                has_client_secret=True,
                created_at=token_set.obtained_at,
                connected_at=token_set.obtained_at,
                version=1,
            ).with_token_times(token_set, now=token_set.obtained_at, generation=1)
            connections.append(connection)
            secrets.append(secret)
            seeded[connection_id] = {"grant_id": grant["grant_id"], "refresh_token": grant["refresh_token"]}
        table = self._session.resource("dynamodb").Table(settings.table_name)
        vault = SecretsManagerVault(self._session.client("secretsmanager"), settings, write_budget=RateLimiter(1e9))

        def write_items() -> None:
            with table.batch_writer() as batch:
                for connection in connections:
                    batch.put_item(Item=connection_to_item(connection))

        # Secrets and items live in different moto processes: write both at once.
        with ThreadPoolExecutor(9) as pool:
            items = pool.submit(write_items)
            list(pool.map(vault.create, secrets))
            items.result()
        return seeded

    # --- one run ------------------------------------------------------------------------------
    def _count_deleted(self, parsed: Any = None, model: Any = None, **_: Any) -> None:
        if model is not None and model.name == "DeleteMessageBatch" and isinstance(parsed, dict):
            with self._deleted_lock:
                self._deleted += len(parsed.get("Successful", []))

    def _wait_until_deleted(self, count: int, started: float) -> None:
        """Until the event source has deleted `count` messages: every due connection was handled."""
        while True:
            with self._deleted_lock:
                if self._deleted >= count:
                    return
            if time.monotonic() - started > RUN_TIMEOUT_SECONDS:
                raise RuntimeError(f"the refresh queue did not drain within {RUN_TIMEOUT_SECONDS} s")
            time.sleep(0.02)

    def run(self, prefix: str, count: int) -> RunResult:
        seeded = self.seed(prefix, count)
        self._post("/_emulator/faults", {"group": "token", "delay": TOKEN_DELAY_SECONDS})
        self._requests.delete(f"{self.emulator_url}/_emulator/stats", timeout=10).raise_for_status()
        self.function_counter.reset()
        self.event_source_counter.reset()
        assert self.stack.schedule is not None

        with self._deleted_lock:
            self._deleted = 0
            self.outcomes.clear()
            self.outcome_examples.clear()
        started = time.monotonic()
        sweep = self.stack.schedule.run_once() or {}
        self._wait_until_deleted(int(sweep.get("enqueued", 0)), started)
        wall = time.monotonic() - started

        calls, attempts = self.function_counter.snapshot()
        source_calls, _ = self.event_source_counter.snapshot()
        stats = self._requests.get(f"{self.emulator_url}/_emulator/stats", timeout=10).json()
        lost, deferred = self.verify(seeded)
        refreshed = count - len(lost) - len(deferred)
        function_calls = {k: v for k, v in sorted(calls.items()) if k not in SWEEP_OPERATIONS}
        sweep_calls = {k: v for k, v in sorted(calls.items()) if k in SWEEP_OPERATIONS}
        per = max(refreshed, 1)
        settings = self.services.settings
        return RunResult(
            connections=count,
            due=int(sweep.get("due", 0)),
            enqueued=int(sweep.get("enqueued", 0)),
            wall_seconds=round(wall, 2),
            refreshed=refreshed,
            refreshes_per_second=round(refreshed / wall, 2),
            budget_per_second=settings.secrets_writes_per_second_here,
            concurrency=self.concurrency,
            function_calls=function_calls,
            function_calls_per_refresh=round(sum(function_calls.values()) / per, 3),
            sweep_calls=sweep_calls,
            sweep_calls_per_refresh=round(sum(sweep_calls.values()) / per, 3),
            attempts_per_refresh=round(attempts / per, 3),
            event_source_calls=dict(sorted(source_calls.items())),
            event_source_calls_per_refresh=round(sum(source_calls.values()) / per, 3),
            intuit_calls_per_refresh=round(stats["grant_types"].get("refresh_token", 0) / per, 3),
            lost=len(lost),
            deferred=len(deferred),
            retried_attempts=attempts - sum(calls.values()),
            lost_examples=self.lost_details[-len(lost) :][:5] if lost else [],
            outcomes=dict(self.outcomes),
            outcome_examples=dict(self.outcome_examples),
        )

    # --- afterwards ---------------------------------------------------------------------------
    def verify(self, seeded: dict[str, dict[str, str]]) -> tuple[list[str], list[str]]:
        """The connections lost (not refreshed exactly once into a state that still works, see the module
        docstring), and those deferred (untouched by this sweep, their stored refresh token still good)."""
        from qbo_connect.domain.secret_document import ConnectionSecret

        settings = self.services.settings
        ids = list(seeded)
        items: dict[str, dict[str, Any]] = {}
        dynamodb = self._session.resource("dynamodb")
        for start in range(0, len(ids), 100):
            request = {
                settings.table_name: {
                    "Keys": [{"pk": f"connection#{cid}"} for cid in ids[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                answer = dynamodb.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(settings.table_name, []):
                    items[item["connection_id"]] = item
                request = answer.get("UnprocessedKeys") or {}
        secrets: dict[str, ConnectionSecret] = {}
        client = self._session.client("secretsmanager")
        for start in range(0, len(ids), 20):
            names = [settings.connection_secret_name(cid) for cid in ids[start : start + 20]]
            for value in client.batch_get_secret_value(SecretIdList=names)["SecretValues"]:
                secret = ConnectionSecret.from_json(value["SecretString"])
                secrets[secret.connection_id] = secret
        grants = {
            g["grant_id"]: g
            for g in self._requests.get(f"{self.emulator_url}/_emulator/grants", timeout=60).json()["grants"]
        }
        lost, deferred = [], []
        for cid, seed in seeded.items():
            item, secret, grant = items.get(cid), secrets.get(cid), grants.get(seed["grant_id"])
            ok = (
                item is not None
                and secret is not None
                and grant is not None
                and item.get("status") == "connected"
                and int(item.get("secret_generation", 0)) == 2
                and secret.generation == 2
                and secret.token_set is not None
                and secret.token_set.refresh_token != seed["refresh_token"]
                # The item keeps milliseconds, the secret whole seconds.
                and abs(float(item["access_token_expires_at"]) - secret.token_set.expires_at) < 1.5
                and grant["refresh_count"] == 1
                and not grant["revoked"]
                and "lease_owner" not in item
            )
            untouched = (
                not ok
                and item is not None
                and secret is not None
                and grant is not None
                and item.get("status") == "connected"
                and int(item.get("secret_generation", 0)) == secret.generation == 1
                and secret.token_set is not None
                and secret.token_set.refresh_token == seed["refresh_token"]
                and grant["refresh_count"] == 0
                and not grant["revoked"]
            )
            if untouched:
                # Not refreshed by this sweep, but its stored refresh token still works: the next sweep will.
                deferred.append(cid)
            elif not ok:
                lost.append(cid)
                self.lost_details.append(_describe_loss(cid, item, secret, grant, seed))
        return lost, deferred


def _describe_loss(cid: str, item: Any, secret: Any, grant: Any, seed: dict[str, str]) -> str:
    """What is wrong with a lost connection, without any token value."""
    facts = [cid]
    if item is None:
        facts.append("no item")
    else:
        facts.append(f"status={item.get('status')} item_generation={item.get('secret_generation')}")
        facts.append(f"lease={'held' if 'lease_owner' in item else 'free'} error={item.get('last_refresh_error')}")
    if secret is None:
        facts.append("no secret")
    else:
        rotated = secret.token_set is not None and secret.token_set.refresh_token != seed["refresh_token"]
        facts.append(f"secret_generation={secret.generation} rotated={rotated}")
    if grant is not None:
        facts.append(f"grant refresh_count={grant['refresh_count']} revoked={grant['revoked_reason']}")
    return ", ".join(facts)


def run(sizes: tuple[int, ...] = (1_000, 10_000)) -> list[RunResult]:
    bench = Bench()
    try:
        return [bench.run(f"bench-{size}", size) for size in sizes]
    finally:
        bench.close()


def main(argv: list[str]) -> int:
    # Quiet handlers: 10,000 "Connection refreshed" lines would bury the result.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    sizes = tuple(int(a) for a in argv) or (1_000, 10_000)
    results = run(sizes)
    print(json.dumps([asdict(r) | {"holds": r.holds} for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
