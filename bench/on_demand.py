"""An on-demand token request on a cold connection: what a workflow waits for, and what it costs.

The local stack of bench.throughput (moto in processes of its own, the Intuit emulator) holds on-demand
connections whose stored access token expired two hours ago, and Intuit answers with the long-tailed
latency profile (lognormal, median 150 ms, p99 2 s, 1 % of answers 10 to 30 s). Workflows ask through
the token function, each instance in a process of its own as in Lambda (its own token cache):

- latency: every connection is asked once, four workflows at a time on different connections. The
  time is the whole invocation, as the workflow waits for it; the instance also records how long
  Intuit's token endpoint took for that request, so the service's own share (everything but Intuit's
  answer: the reads, the lease, the writes) is told apart;
- at most one refresh: each connection is asked by four workflows at once (instances started together
  at a barrier); the emulator counts the refresh calls each grant received.

Afterwards every grant must be alive (not revoked: a replayed refresh token revokes it) and refreshed
exactly once per cold connection.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from bench.percentiles import percentile

LATENCY_CONNECTIONS = 400
CONCURRENT_CONNECTIONS = 50
WORKFLOWS = 4  # token function instances, each in a process of its own
COLD_FOR_SECONDS = 7200  # the stored access token expired this long ago
ANSWER_FLOOR_SECONDS = 1.0  # issue 10: a cold request answers within 1 s at p99
SERVICE_SHARE_FLOOR_SECONDS = 1.0  # the part that is the service's: the request less Intuit's answer


@dataclass
class OnDemandResult:
    requests: int
    profile: str
    total_p50_ms: float
    total_p99_ms: float
    total_max_ms: float
    intuit_p50_ms: float
    intuit_p99_ms: float
    service_p50_ms: float
    service_p99_ms: float
    refreshes_per_cold_request: float
    concurrent_connections: int
    workflows_per_connection: int
    most_refreshes_for_one_connection: int
    different_tokens_for_one_connection: int
    failed: int
    revoked: int

    @property
    def checks(self) -> dict[str, bool]:
        return {
            # Issue 10's floor, on what the workflow waits for (see docs/performance.md on why it cannot hold
            # against a profile whose own p99 is 2 s and whose slowest 1% take 10 to 30 s).
            "total_p99": self.total_p99_ms <= ANSWER_FLOOR_SECONDS * 1000,
            "service_p99": self.service_p99_ms <= SERVICE_SHARE_FLOOR_SECONDS * 1000,
            "one_refresh": self.refreshes_per_cold_request <= 1 and self.most_refreshes_for_one_connection <= 1,
            "lost": self.failed == 0 and self.revoked == 0,
        }

    @property
    def holds(self) -> bool:
        return all(self.checks.values())


# --- inside each token function instance -----------------------------------------------------------
_intuit_seconds: dict[str, float] = {}
_lock = threading.Lock()


def instrument() -> None:
    """Time each call to Intuit's token endpoint, by connection (the instance's identity adapter)."""
    from qbo_connect.runtime import services

    lifecycle = services().lifecycle
    identity = lifecycle._identity
    refresh = identity.refresh
    local = threading.local()

    def timed(credentials: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return refresh(credentials, **kwargs)
        finally:
            with _lock:
                _intuit_seconds[getattr(local, "connection_id", "?")] = time.perf_counter() - started

    identity.refresh = timed
    lifecycle_refresh = lifecycle.refresh

    def remembering(connection_id: str, **kwargs: Any) -> Any:
        local.connection_id = connection_id
        return lifecycle_refresh(connection_id, **kwargs)

    lifecycle.refresh = remembering


def intuit_seconds() -> dict[str, float]:
    with _lock:
        return dict(_intuit_seconds)


# --- the benchmark ------------------------------------------------------------------------------------
def run(latency_connections: int = LATENCY_CONNECTIONS, concurrent_connections: int = CONCURRENT_CONNECTIONS):
    from qbo_local.functions import ProcessFunction

    from bench.throughput import PROFILES, Bench

    bench = Bench(warm=False)
    instances: list[ProcessFunction] = []
    try:
        spec = bench.stack.functions["token"].spec
        with ThreadPoolExecutor(WORKFLOWS) as pool:
            instances = list(
                pool.map(
                    lambda _: ProcessFunction(spec, root=bench.stack.options.root, setup="bench.on_demand:instrument"),
                    range(WORKFLOWS),
                )
            )
        cold = bench.seed(
            "on-demand-latency", latency_connections, expires_in=-COLD_FOR_SECONDS, refresh_policy="on_demand"
        )
        shared = bench.seed(
            "on-demand-shared", concurrent_connections, expires_in=-COLD_FOR_SECONDS, refresh_policy="on_demand"
        )
        bench._requests.delete(f"{bench.emulator_url}/_emulator/faults?group=token", timeout=10).raise_for_status()
        bench._post("/_emulator/faults", PROFILES["long_tail"])
        bench._requests.delete(f"{bench.emulator_url}/_emulator/stats", timeout=10).raise_for_status()

        # Latency: one request per cold connection, four workflows at a time.
        totals: dict[str, float] = {}
        failures: list[str] = []
        ids = list(cold)

        def ask(instance: ProcessFunction, connection_id: str) -> dict[str, Any]:
            started = time.perf_counter()
            answer = instance.invoke({"connection_id": connection_id, "min_valid_seconds": 300})
            totals[connection_id] = time.perf_counter() - started
            return answer

        def worker(index: int) -> None:
            for connection_id in ids[index::WORKFLOWS]:
                answer = ask(instances[index], connection_id)
                if not answer.get("ok"):
                    failures.append(f"{connection_id}: {answer.get('error', {}).get('code')}")

        with ThreadPoolExecutor(WORKFLOWS) as pool:
            list(pool.map(worker, range(WORKFLOWS)))
        intuit: dict[str, float] = {}
        for instance in instances:
            intuit.update(instance.call("bench.on_demand:intuit_seconds"))
        grants_after_latency = bench._requests.get(f"{bench.emulator_url}/_emulator/stats", timeout=10).json()

        # At most one refresh: four workflows at once on each shared connection.
        tokens_per_connection: list[int] = []
        for connection_id in shared:
            barrier = threading.Barrier(WORKFLOWS)

            def together(instance: ProcessFunction, cid: str = connection_id, gate: threading.Barrier = barrier) -> Any:
                gate.wait(timeout=30)
                return instance.invoke({"connection_id": cid})

            with ThreadPoolExecutor(WORKFLOWS) as pool:
                answers = list(pool.map(together, instances))
            failures += [f"{connection_id}: {a.get('error', {}).get('code')}" for a in answers if not a.get("ok")]
            tokens_per_connection.append(len({a.get("access_token") for a in answers if a.get("ok")}))

        grants = {
            g["grant_id"]: g
            for g in bench._requests.get(f"{bench.emulator_url}/_emulator/grants", timeout=60).json()["grants"]
        }
        seeded = {**cold, **shared}
        counts = [grants[s["grant_id"]]["refresh_count"] for s in seeded.values()]
        revoked = sum(1 for s in seeded.values() if grants[s["grant_id"]]["revoked"])
        service = [totals[cid] - intuit.get(cid, 0.0) for cid in totals]
        cold_refreshes = grants_after_latency["grant_types"].get("refresh_token", 0)
        return OnDemandResult(
            requests=len(totals),
            profile="long_tail",
            total_p50_ms=round(percentile(list(totals.values()), 0.5) * 1000, 1),
            total_p99_ms=round(percentile(list(totals.values()), 0.99) * 1000, 1),
            total_max_ms=round(max(totals.values()) * 1000, 1),
            intuit_p50_ms=round(percentile(list(intuit.values()), 0.5) * 1000, 1),
            intuit_p99_ms=round(percentile(list(intuit.values()), 0.99) * 1000, 1),
            service_p50_ms=round(percentile(service, 0.5) * 1000, 1),
            service_p99_ms=round(percentile(service, 0.99) * 1000, 1),
            refreshes_per_cold_request=round(cold_refreshes / max(1, len(totals)), 3),
            concurrent_connections=len(shared),
            workflows_per_connection=WORKFLOWS,
            most_refreshes_for_one_connection=max(counts[len(cold) :] or [0]),
            different_tokens_for_one_connection=max(tokens_per_connection or [0]),
            failed=len(failures),
            revoked=revoked,
        )
    finally:
        for instance in instances:
            instance.close()
        bench.close()


def main(argv: list[str]) -> int:
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    sizes = [int(a) for a in argv] or [LATENCY_CONNECTIONS, CONCURRENT_CONNECTIONS]
    result = run(*sizes)
    print(json.dumps(asdict(result) | {"holds": result.holds, "checks": result.checks}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
