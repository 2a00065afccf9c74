"""Token read: `qbo_connect.token_access.get_access_token` for a connected connection.

From the cache: the process already holds a token valid for long enough; each call is timed alone
(perf_counter_ns), many times, median and 99th percentile. On a cold cache (the cache forgotten
before each call, as in a new Lambda container): the AWS calls a read makes, counted by a botocore
hook on the services' session, and its time on moto (in process, so no network: that time is
moto's and Python's, not AWS's).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from bench.percentiles import percentile

CACHED_CALLS = 20_000
COLD_CALLS = 200
CONNECTION_ID = "bench-token-read"


@dataclass
class TokenReadResult:
    cached_calls: int
    cached_median_us: float
    cached_p99_us: float
    cold_calls: int
    cold_median_ms: float
    cold_p99_ms: float
    cold_aws_calls: dict[str, int]
    cold_aws_calls_per_read: float
    refreshes: int

    @property
    def holds(self) -> bool:
        per_read = {name: count / self.cold_calls for name, count in self.cold_aws_calls.items()}
        return (
            self.cached_median_us < 1000
            and per_read.get("secretsmanager.GetSecretValue", 0) <= 1
            and per_read.get("dynamodb.GetItem", 0) <= 1
            and set(per_read) <= {"secretsmanager.GetSecretValue", "dynamodb.GetItem"}
        )


def _seed(services: Any) -> None:
    from qbo_connect import intuit
    from qbo_connect.adapters.dynamodb_store import connection_to_item
    from qbo_connect.domain.connection import Connection, ConnectionStatus
    from qbo_connect.domain.secret_document import ConnectionSecret
    from qbo_connect.domain.token_set import TokenSet

    now = time.time()
    token_set = TokenSet(
        access_token="bench-access-" + os.urandom(24).hex(),
        refresh_token="bench-refresh-" + os.urandom(24).hex(),
        expires_at=now + 3600,
        refresh_token_expires_at=now + 8_726_400,
        scopes=intuit.DEFAULT_SCOPES,
        obtained_at=now,
    )
    services.vault.create(
        ConnectionSecret(
            connection_id=CONNECTION_ID,
            client_id="bench-client-id",
            base_url=intuit.SANDBOX_API_BASE_URL,
            client_secret="bench-" + os.urandom(16).hex(),
            token_set=token_set,
            realm_id="9341453050000001",
            generation=1,
            updated_at=now,
        )
    )
    connection = Connection(
        connection_id=CONNECTION_ID,
        name="bench token read",
        environment=intuit.Environment.SANDBOX,
        base_url=intuit.SANDBOX_API_BASE_URL,
        client_id="bench-client-id",
        realm_id="9341453050000001",
        status=ConnectionStatus.CONNECTED,
        has_client_secret=True,
        version=1,
    ).with_token_times(token_set, now=now, generation=1)
    services.store._table.put_item(Item=connection_to_item(connection))


def run(cached_calls: int = CACHED_CALLS, cold_calls: int = COLD_CALLS) -> TokenReadResult:
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        os.environ.pop(name)
    os.environ.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "QBO_TABLE_NAME": "qbo-bench-token-read",
            "QBO_SECRET_PREFIX": "qbo-connect/bench/",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
    )
    from moto import mock_aws
    from qbo_connect import token_access
    from qbo_connect.adapters.dynamodb_store import create_table
    from qbo_connect.runtime import reset_services, services

    from bench.aws_calls import AwsCallCounter

    with mock_aws():
        reset_services()
        current = services()
        counter = AwsCallCounter().attach(current.session.events)
        create_table(current.session.client("dynamodb"), os.environ["QBO_TABLE_NAME"])
        _seed(current)
        access = token_access.default_token_access()

        counter.reset()
        cold: list[float] = []
        for _ in range(cold_calls):
            access.forget()
            started = time.perf_counter_ns()
            token_access.get_access_token(CONNECTION_ID)
            cold.append((time.perf_counter_ns() - started) / 1e6)
        calls, _ = counter.snapshot()

        token_access.get_access_token(CONNECTION_ID)  # the cache holds it now
        counter.reset()
        cached: list[float] = []
        for _ in range(cached_calls):
            started = time.perf_counter_ns()
            token_access.get_access_token(CONNECTION_ID)
            cached.append((time.perf_counter_ns() - started) / 1e3)
        cached_aws, _ = counter.snapshot()
        if sum(cached_aws.values()):
            raise RuntimeError(f"cached reads called AWS: {dict(cached_aws)}")
        refreshes = Counter(calls).get("secretsmanager.PutSecretValue", 0)
    return TokenReadResult(
        cached_calls=cached_calls,
        cached_median_us=round(statistics.median(cached), 2),
        cached_p99_us=round(percentile(cached, 0.99), 2),
        cold_calls=cold_calls,
        cold_median_ms=round(statistics.median(cold), 2),
        cold_p99_ms=round(percentile(cold, 0.99), 2),
        cold_aws_calls=dict(sorted(calls.items())),
        cold_aws_calls_per_read=round(sum(calls.values()) / cold_calls, 3),
        refreshes=refreshes,
    )


if __name__ == "__main__":
    result = run()
    print(json.dumps(asdict(result) | {"holds": result.holds}))
    sys.exit(0)
