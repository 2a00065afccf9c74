"""Refresh throughput: N due connections in the local stack, the whole sweep through the real fan-out path.

The local stack (qbo_local.stack.LocalStack) runs as `make dev` runs it: the Intuit emulator, the
refresh function loaded from functions/refresh/app.py, the schedule's sweep, and the SQS consumer
that mimics Lambda's event source mapping with the template's batch size, batching window and
MaximumConcurrency (RefreshBatchSize, RefreshMaxConcurrency). Two changes, so that the figures
measure the service and can be told apart from the machine:
- moto runs in processes of its own, because on a two-core machine moto's request handling and the
  functions would otherwise share one interpreter lock and the benchmark would measure moto;
- each refresh function instance runs in a process of its own (qbo_local.functions.ProcessFunction),
  as each Lambda instance does, holding its share of the write budget as in AWS; its CPU time is
  read from /proc apart from moto's and the stack's (the emulator, the event source, the router).

Intuit's answer times follow a profile: `constant` (every token call after 150 ms) or `long_tail`
(lognormal, median 150 ms, p99 2 s, and 1 % of answers 10 to 30 s: qbo_local.emulator.latency).

Seeding writes connections the way the consent flow leaves them (connected, token set in the
secret, generation 1), with token sets from the emulator (POST /_emulator/grants: code and exchange
as in the browser flow), their access tokens due (expiring in 10 minutes, inside the 15-minute
margin). Seeding is not timed.

Measured, from one sweep until the queue is empty:
- refreshes per second and wall time; for each connection, the time from the sweep that found it due
  to its refresh being saved (when the refresh, vault write and metadata save included, returned in its
  instance), as p50, p99 and maximum;
- CPU time per refresh: the function instances' processes, moto's, and the stack's own process;
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
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.percentiles import percentile
from bench.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
# The emulator's token endpoint: what each answer waits (POST /_emulator/faults).
PROFILES: dict[str, dict[str, Any]] = {
    "constant": {"group": "token", "delay": 0.15},
    "long_tail": {"group": "token", "latency": "long_tail"},
}
SWEEP_OPERATIONS = {"dynamodb.Query", "sqs.SendMessageBatch"}
BENCH_CLIENT_ID = "bench-client-id"
DUE_IN_SECONDS = 600  # inside the 900-second margin: due at the first sweep
RUN_TIMEOUT_SECONDS = 900
# The share of a region's default refresh capacity the benchmark runs (instances, write budget and
# due connections together): see the module docstring for why a slice, not the whole region.
DEFAULT_SLICE = 0.25
# The rate is judged when every instance takes at least this many batches: fewer is mostly ramp-up and
# drain (the last batches finishing alone), not the steady rate.
RATE_JUDGED_FROM_ROUNDS = 4
FUNCTION_CPU_MS_FLOOR = 20.0  # per refresh: in Lambda the write budget, not the service's CPU, must bind


@dataclass
class RunResult:
    connections: int  # due in this run (the slice's share of `region_connections`)
    region_connections: int
    slice: float
    profile: str
    due: int
    enqueued: int
    wall_seconds: float
    refreshed: int
    refreshes_per_second: float
    budget_per_second: float
    concurrency: int
    batch_size: int
    period_seconds: float
    function_calls: dict[str, int]
    function_calls_per_refresh: float
    sweep_calls: dict[str, int]
    sweep_calls_per_refresh: float
    attempts_per_refresh: float
    event_source_calls: dict[str, int]
    event_source_calls_per_refresh: float
    intuit_calls_per_refresh: float
    lost: int
    # CPU milliseconds per refresh: the refresh function's instances, moto, and the stack's own process
    # (the emulator, the event source, the router; the benchmark's own bookkeeping too).
    function_cpu_ms_per_refresh: float = 0.0
    moto_cpu_ms_per_refresh: float = 0.0
    stack_cpu_ms_per_refresh: float = 0.0
    moto_cpu_ms_by_service: dict[str, float] = field(default_factory=dict)
    # Refreshes per second while the burst is under way (from the 5th to the 95th percentile save): the
    # rate the design sustains, reported beside the whole sweep's (which the floor judges).
    sustained_per_second: float = 0.0
    # From the sweep that found a connection due to its refresh being saved, in seconds.
    due_to_saved_p50: float = 0.0
    due_to_saved_p99: float = 0.0
    due_to_saved_max: float = 0.0
    deferred: int = 0
    retried_attempts: int = 0
    lost_examples: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    outcome_examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def rate_judged(self) -> bool:
        return self.connections >= RATE_JUDGED_FROM_ROUNDS * self.concurrency * self.batch_size

    @property
    def duplicate_deliveries(self) -> int:
        """Messages SQS delivered twice (it may: at least once): each costs one lease attempt, answered busy
        or not due; a connection deferred to the next sweep answered so too, and is not a duplicate."""
        return self.outcomes.get("busy", 0) + self.outcomes.get("not_due", 0) - self.deferred

    @property
    def checks(self) -> dict[str, bool | None]:
        """Each floor and whether it holds; None where this run is too small to judge it."""
        judged = self.rate_judged
        duplicates = self.duplicate_deliveries
        return {
            # The whole sweep, ramp-up and drain (where Intuit's slowest answers land) included.
            "rate": self.refreshes_per_second >= 0.9 * self.budget_per_second if judged else None,
            "due_to_saved_p99": self.due_to_saved_p99 <= self.period_seconds if judged else None,
            "function_cpu": self.function_cpu_ms_per_refresh <= FUNCTION_CPU_MS_FLOOR,
            "aws_calls": sum(self.function_calls.values()) <= 4 * self.refreshed + duplicates,
            "intuit_calls": self.intuit_calls_per_refresh == 1,
            "lost": self.lost == 0,
            # A connection left for the next sweep is refreshed a period late at best.
            "deferred": self.deferred == 0,
        }

    @property
    def holds(self) -> bool:
        return all(check is not False for check in self.checks.values())


def _start_moto(parts: list, part_type: type, name: str, pids: dict[str, int]) -> str:
    server = ServerProcess(
        name, "/moto-api/", *os.environ.get("BENCH_MOTO", "-m bench.moto_server").split(), "-H", "127.0.0.1", "-p"
    )
    pids[name.removeprefix("embedded AWS: ")] = server.pid
    parts.append(part_type(name, server.stop))
    return server.url


def _bench_stack_class():
    from qbo_local import stack as stack_module
    from qbo_local.functions import ProcessFunction

    class BenchStack(stack_module.LocalStack):
        """LocalStack with moto in processes of its own (one for DynamoDB and EventBridge, one for Secrets
        Manager, one for SQS: boto3's per-service endpoint variables route each client), and each refresh
        function instance in a process of its own. See the module docstring for why."""

        moto_pids: dict[str, int]

        def _start_aws(self) -> str:
            part, self.moto_pids = stack_module._Part, {}
            endpoint = _start_moto(self._parts, part, "embedded AWS: DynamoDB, EventBridge", self.moto_pids)
            secrets_endpoint = _start_moto(self._parts, part, "embedded AWS: Secrets Manager", self.moto_pids)
            sqs_endpoint = _start_moto(self._parts, part, "embedded AWS: SQS", self.moto_pids)
            stack_module.use_local_aws(endpoint)
            os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = secrets_endpoint
            os.environ["AWS_ENDPOINT_URL_SQS"] = sqs_endpoint
            return endpoint

        def _start_queue_source(self, function_name: str, queue_url: str, queue_arn: str) -> None:
            if function_name == "refresh":
                # Instances in processes of their own, each with its share of the write budget as in AWS.
                environment = {
                    "QBO_WRITE_BUDGET_SHARES": str(self._refresh_concurrency()),
                    "QBO_REFRESH_BATCH_SIZE": str(self._refresh_batch_size()),
                }
                self.functions["refresh"] = ProcessFunction(  # type: ignore[assignment]
                    self.functions["refresh"].spec,
                    root=self.options.root,
                    setup="bench.throughput:instrument",
                    environment=environment,
                )
            super()._start_queue_source(function_name, queue_url, queue_arn)

        def _refresh_concurrency(self) -> int:
            from qbo_local.template import parameter_default

            return self.options.refresh_concurrency or parameter_default(
                self._template, {"Ref": "RefreshMaxConcurrency"}, 1
            )

        def _refresh_batch_size(self) -> int:
            from qbo_local.template import parameter_default

            return parameter_default(self._template, {"Ref": "RefreshBatchSize"}, 10)

    return BenchStack


# --- inside each refresh function instance (ProcessFunction setup and calls) ---------------------------
_instance: dict[str, Any] = {}


def instrument() -> None:
    """Count the instance's AWS calls and what each refresh came to (refreshed, busy, ...)."""
    from qbo_connect.runtime import services

    from bench.aws_calls import AwsCallCounter

    built = services()
    # Hooked before any client exists (clients copy the session's hooks when they are made).
    counter = AwsCallCounter().attach(built.session.events)
    outcomes: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    saved_at: dict[str, float] = {}
    lock = threading.Lock()
    lifecycle = built.lifecycle
    refresh = lifecycle.refresh

    def recorded(connection_id: str, **kwargs: Any) -> Any:
        result = refresh(connection_id, **kwargs)
        finished = time.time()  # the new token set is in the vault and the metadata saved by now
        with lock:
            if result.outcome.value in {"refreshed", "recovered"}:
                saved_at[connection_id] = finished
            outcomes[result.outcome.value] += 1
            if len(examples.setdefault(result.outcome.value, [])) < 3:
                examples[result.outcome.value].append(f"{connection_id}: {result.message}")
        return result

    lifecycle.refresh = recorded  # type: ignore[method-assign]
    _instance.update(counter=counter, outcomes=outcomes, examples=examples, saved_at=saved_at, lock=lock)


def report_and_reset() -> dict[str, Any]:
    """What the instance counted since the last call; the counters start again from zero."""
    counter, lock = _instance["counter"], _instance["lock"]
    calls, attempts = counter.snapshot()
    counter.reset()
    with lock:
        outcomes, examples = dict(_instance["outcomes"]), {k: list(v) for k, v in _instance["examples"].items()}
        saved_at = dict(_instance["saved_at"])
        for recorded in ("outcomes", "examples", "saved_at"):
            _instance[recorded].clear()
    return {
        "calls": dict(calls),
        "attempts": attempts,
        "outcomes": outcomes,
        "examples": examples,
        "saved_at": saved_at,
    }


class Bench:
    """One local stack for every run: seed, sweep, wait for the queue to drain, verify."""

    def __init__(self, slice_of_region: float = DEFAULT_SLICE, *, warm: bool = True) -> None:
        import requests
        from qbo_local.config import UpOptions
        from qbo_local.template import load_template, parameter_default

        from bench.aws_calls import AwsCallCounter

        self._requests = requests
        self._tmp = tempfile.TemporaryDirectory(prefix="qbo-bench-")
        template = load_template(ROOT / "template.yaml")
        region_budget = parameter_default(template, {"Ref": "SecretsWriteBudgetPerSecond"}, 40)
        # The deployed schedule's period (the benchmark runs its sweeps itself): what "due to refreshed" is
        # judged against.
        from qbo_connect.settings import refresh_period

        self.schedule_period_seconds = refresh_period(template["Parameters"]["RefreshSchedule"]["Default"], 0)
        region_instances = parameter_default(template, {"Ref": "RefreshMaxConcurrency"}, 1)
        # A whole number of instances, and the budget and due connections in exactly their proportion, so
        # that each instance's share and the number of batch rounds a sweep takes are the region's.
        instances = max(1, round(region_instances * slice_of_region))
        self.slice = instances / region_instances
        # A slice of the region: its share of the instances and of the write budget (each instance's share,
        # hence its batches' timing, is the region's).
        os.environ["QBO_SECRETS_WRITE_BUDGET"] = f"{region_budget * self.slice:g}"
        options = UpOptions(
            root=ROOT,
            port=0,
            aws_port=0,
            intuit_port=0,
            refresh_interval=86_400.0,  # the benchmark starts each sweep itself
            state_file=Path(self._tmp.name) / "local-stack.json",
            refresh_concurrency=instances,
        )
        self.stack = _bench_stack_class()(options)
        self.document = self.stack.start()
        self.emulator_url = self.document["emulator_url"]
        source = self.stack.queue_source
        assert source is not None
        self.source = source
        self.event_source_counter = AwsCallCounter().attach(source.sqs.meta.events)
        self._deleted, self._deleted_lock = 0, threading.Lock()
        source.sqs.meta.events.register("after-call.sqs.DeleteMessageBatch", self._count_deleted)
        self.lost_details: list[str] = []
        if warm:
            self._warm_instances()

        from qbo_connect.settings import Settings

        self.settings = Settings.from_environment()
        self.budget_per_second = self.settings.secrets_write_budget_per_second
        import boto3

        # The benchmark's own calls (seeding, watching the queue, verifying) go through another session.
        self._session = boto3.Session()
        self.client_secret = "bench-" + os.urandom(16).hex()
        self._post("/_emulator/clients", {"client_id": BENCH_CLIENT_ID, "client_secret": self.client_secret})
        companies = self._requests.get(f"{self.emulator_url}/_emulator/companies", timeout=10).json()["companies"]
        self.realm_id = companies[0]["realm_id"]

    def _warm_instances(self) -> None:
        """Start every instance before the first run: cold starts are bench.cold_start's figure, not this one's."""
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: self.source.add_container(), range(self.source.concurrency)))

    def _instances(self) -> list[Any]:
        return list(self.source.containers)

    def _post(self, path: str, body: Any) -> Any:
        response = self._requests.post(f"{self.emulator_url}{path}", json=body, timeout=120)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self.stack.stop()
        for instance in {id(i): i for i in self._instances()}.values():
            instance.close()
        self._tmp.cleanup()

    # --- seeding ------------------------------------------------------------------------------
    def seed(
        self, prefix: str, count: int, *, expires_in: float = DUE_IN_SECONDS, refresh_policy: str = "eager"
    ) -> dict[str, dict[str, str]]:
        """`count` connected connections whose access token expires in `expires_in` seconds (due now, by
        default); returns {connection_id: {grant_id, refresh_token}}."""
        from qbo_connect import intuit
        from qbo_connect.adapters.dynamodb_store import connection_to_item
        from qbo_connect.adapters.secrets_vault import SecretsManagerVault
        from qbo_connect.domain.connection import Connection, ConnectionStatus, RefreshPolicy
        from qbo_connect.domain.secret_document import ConnectionSecret
        from qbo_connect.domain.token_set import TokenSet
        from qbo_connect.rate_limit import RateLimiter

        settings = self.settings
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
                expires_at=now + expires_in,
                refresh_token_expires_at=now + grant["x_refresh_token_expires_in"],
                refresh_token_hard_expires_at=now + grant["hard_expires_in"],
                scopes=intuit.DEFAULT_SCOPES,
                obtained_at=now + expires_in - intuit.ACCESS_TOKEN_DEFAULT_SECONDS,
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
                refresh_policy=RefreshPolicy(refresh_policy),
            )
            connection = Connection(
                connection_id=connection_id,
                name=f"{prefix} {number:06d}",
                environment=intuit.Environment.SANDBOX,
                base_url=base_url,
                client_id=BENCH_CLIENT_ID,
                realm_id=self.realm_id,
                refresh_policy=RefreshPolicy(refresh_policy),
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

    def _cpu_seconds(self) -> dict[str, float]:
        """CPU used so far: the function instances', moto's and the stack's own process's."""
        import resource

        from qbo_local.functions import process_cpu_seconds

        own = resource.getrusage(resource.RUSAGE_SELF)
        moto = {service: process_cpu_seconds(pid) for service, pid in self.stack.moto_pids.items()}
        return {
            "function": sum(instance.cpu_seconds() for instance in self._instances()),
            "moto": sum(moto.values()),
            **{f"moto {service}": seconds for service, seconds in moto.items()},
            "stack": own.ru_utime + own.ru_stime,
        }

    def _instance_reports(self) -> list[dict[str, Any]]:
        return [instance.call("bench.throughput:report_and_reset") for instance in self._instances()]

    def run(self, region_count: int, profile: str = "constant") -> RunResult:
        count = max(1, round(region_count * self.slice))
        seeded = self.seed(f"bench-{region_count}-{profile.replace('_', '-')}", count)
        self._requests.delete(f"{self.emulator_url}/_emulator/faults?group=token", timeout=10).raise_for_status()
        self._post("/_emulator/faults", PROFILES[profile])
        self._requests.delete(f"{self.emulator_url}/_emulator/stats", timeout=10).raise_for_status()
        self._instance_reports()  # zero the instances' counters
        self.event_source_counter.reset()
        assert self.stack.schedule is not None

        with self._deleted_lock:
            self._deleted = 0
        cpu_before = self._cpu_seconds()
        swept_at = time.time()
        started = time.monotonic()
        sweep = self.stack.schedule.run_once() or {}
        self._wait_until_deleted(int(sweep.get("enqueued", 0)), started)
        wall = time.monotonic() - started
        cpu_after = self._cpu_seconds()

        reports = self._instance_reports()
        calls: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        examples: dict[str, list[str]] = {}
        for report in reports:
            calls.update(report["calls"])
            outcomes.update(report["outcomes"])
            for outcome, said in report["examples"].items():
                examples[outcome] = (examples.get(outcome, []) + said)[:3]
        attempts = sum(report["attempts"] for report in reports)
        saved_at = [t for report in reports for t in report["saved_at"].values()]
        source_calls, _ = self.event_source_counter.snapshot()
        stats = self._requests.get(f"{self.emulator_url}/_emulator/stats", timeout=10).json()
        lost, deferred = self.verify(seeded)
        refreshed = count - len(lost) - len(deferred)
        function_calls = {k: v for k, v in sorted(calls.items()) if k not in SWEEP_OPERATIONS}
        sweep_calls = {k: v for k, v in sorted(calls.items()) if k in SWEEP_OPERATIONS}
        per = max(refreshed, 1)
        waits = sorted(max(0.0, t - swept_at) for t in saved_at) or [0.0]
        first, last = percentile(waits, 0.05), percentile(waits, 0.95)
        sustained = 0.9 * len(waits) / (last - first) if last > first else 0.0

        def cpu_ms(part: str) -> float:
            return round((cpu_after[part] - cpu_before[part]) * 1000 / per, 2)

        return RunResult(
            connections=count,
            region_connections=region_count,
            slice=self.slice,
            profile=profile,
            due=int(sweep.get("due", 0)),
            enqueued=int(sweep.get("enqueued", 0)),
            wall_seconds=round(wall, 2),
            refreshed=refreshed,
            refreshes_per_second=round(refreshed / wall, 2),
            budget_per_second=self.budget_per_second,
            concurrency=self.source.concurrency,
            batch_size=self.source.batch_size,
            period_seconds=self.schedule_period_seconds,
            function_calls=function_calls,
            function_calls_per_refresh=round(sum(function_calls.values()) / per, 3),
            sweep_calls=sweep_calls,
            sweep_calls_per_refresh=round(sum(sweep_calls.values()) / per, 3),
            attempts_per_refresh=round(attempts / per, 3),
            event_source_calls=dict(sorted(source_calls.items())),
            event_source_calls_per_refresh=round(sum(source_calls.values()) / per, 3),
            intuit_calls_per_refresh=round(stats["grant_types"].get("refresh_token", 0) / per, 3),
            lost=len(lost),
            function_cpu_ms_per_refresh=cpu_ms("function"),
            moto_cpu_ms_per_refresh=cpu_ms("moto"),
            stack_cpu_ms_per_refresh=cpu_ms("stack"),
            moto_cpu_ms_by_service={
                part.removeprefix("moto "): cpu_ms(part) for part in cpu_after if part.startswith("moto ")
            },
            sustained_per_second=round(sustained, 2),
            due_to_saved_p50=round(percentile(waits, 0.5), 1),
            due_to_saved_p99=round(percentile(waits, 0.99), 1),
            due_to_saved_max=round(waits[-1], 1),
            deferred=len(deferred),
            retried_attempts=attempts - sum(calls.values()),
            lost_examples=self.lost_details[-len(lost) :][:5] if lost else [],
            outcomes=dict(outcomes),
            outcome_examples=examples,
        )

    # --- afterwards ---------------------------------------------------------------------------
    def verify(self, seeded: dict[str, dict[str, str]]) -> tuple[list[str], list[str]]:
        """The connections lost (not refreshed exactly once into a state that still works, see the module
        docstring), and those deferred (untouched by this sweep, their stored refresh token still good)."""
        from qbo_connect.domain.secret_document import ConnectionSecret

        settings = self.settings
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


DEFAULT_RUNS = ((10_000, "constant"), (10_000, "long_tail"))


def parse_runs(argv: list[str]) -> tuple[float, tuple[tuple[int, str], ...]]:
    """`[--slice S] 10000 10000:long_tail ...`: the share of a region, then for each run how many
    connections are due in the whole region, and Intuit's latency profile."""
    slice_of_region = DEFAULT_SLICE
    if argv[:1] == ["--slice"]:
        try:
            slice_of_region = float(argv[1])
        except (IndexError, ValueError):
            raise SystemExit("bench.throughput: --slice takes a share of the region, e.g. 0.25") from None
        if not 0 < slice_of_region <= 1:
            raise SystemExit("bench.throughput: --slice is above 0 and at most 1")
        argv = argv[2:]
    runs = []
    for arg in argv:
        size, _, profile = arg.partition(":")
        profile = profile or "constant"
        if profile not in PROFILES or not size.isdigit() or int(size) < 1:
            raise SystemExit(f"bench.throughput: {arg!r} is not COUNT or COUNT:PROFILE ({', '.join(PROFILES)})")
        runs.append((int(size), profile))
    return slice_of_region, tuple(runs) or DEFAULT_RUNS


def run(slice_of_region: float = DEFAULT_SLICE, runs: tuple[tuple[int, str], ...] = DEFAULT_RUNS) -> list[RunResult]:
    bench = Bench(slice_of_region)
    try:
        return [bench.run(size, profile) for size, profile in runs]
    finally:
        bench.close()


def main(argv: list[str]) -> int:
    # Quiet handlers: 10,000 "Connection refreshed" lines would bury the result.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    results = run(*parse_runs(argv))
    print(
        json.dumps(
            [
                asdict(r) | {"holds": r.holds, "checks": r.checks, "duplicate_deliveries": r.duplicate_deliveries}
                for r in results
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
