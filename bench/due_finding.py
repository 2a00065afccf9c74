"""Finding due connections: what the scheduled run reads, for 1,000, 10,000 and 100,000 stored
connections, 5 % of them eager and 95 % on demand (the mix the scale model assumes), of which 100
eager ones are due (their access token expires within the margin) and 100 on-demand ones are due for
their keep-alive (last refreshed a day ago).

The run calls what the sweep calls (TokenLifecycle.due_connection_ids: one Query per refresh policy on
the sparse `refresh-due` index, each in its policy's partition up to its cut-off, KEYS_ONLY
projection), on moto's DynamoDB (in process: seeding 100,000 items through a server would take
minutes). A botocore hook adds ReturnConsumedCapacity=TOTAL to those Queries and reads every page.

moto answers ConsumedCapacity with a constant (it does not model capacity), so the read capacity is
computed the way DynamoDB bills a Query: the sizes of the index entries read (attribute names plus
values: the table key and the index keys, all a KEYS_ONLY index holds), summed over the page,
rounded up to 4 KB, half a unit per 4 KB (index reads are eventually consistent). The figure to
look at is the items read: DynamoDB reads only the index range the key condition selects, so it is
the due connections, however many are stored.

Then the whole sweep (RefreshRuns.sweep, its due IDs sent to a queue that keeps them): the due
queries, the status gauge's COUNT queries, the metering gauge and the event redelivery, at half past
an hour (a sweep like eleven of every twelve) and at the hour's first sweep, which counts every status
and so reads every connection stored, once an hour.

Connections not due: eager ones with an access token valid for another 50 minutes, on-demand ones
refreshed within the last day (most with an expired access token); each sits in its policy's index
partition, after the due ones. Their items carry the attributes the index sees and
their status; the rest of a connection item changes nothing the index query reads.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from qbo_connect.adapters.dynamodb_values import from_item

STORED = (1_000, 10_000, 100_000)
DUE = 100  # of each policy
EAGER_SHARE = 0.05
TABLE = "qbo-bench-due"
DAY = 86_400


@dataclass
class DueResult:
    stored: int
    due_found: int
    queries: int
    pages: int
    items_read: int
    read_bytes: int
    read_capacity_units: float
    moto_reported_units: float
    seconds: float
    sweep_queries: int = 0  # the whole sweep, half past the hour: every Query it made, and what they read
    sweep_items_read: int = 0
    hourly_sweep_items_read: int = 0  # the hour's first sweep: every status counted


def _attribute_size(name: str, value: Any) -> int:
    """DynamoDB's item size rules: UTF-8 name plus value; a number takes about one byte per two digits, plus one."""
    size = len(name.encode())
    if isinstance(value, str):
        return size + len(value.encode())
    if isinstance(value, int | float | Decimal):
        digits = len(str(value).replace(".", "").replace("-", "").lstrip("0")) or 1
        return size + math.ceil(digits / 2) + 1
    return size + len(json.dumps(value, default=str).encode())


def _read_units(items: list[dict[str, Any]]) -> tuple[int, float]:
    """`items` as the client's answer has them, typed ({"S": ...}): sized by their plain values."""
    total = sum(_attribute_size(name, value) for item in items for name, value in from_item(item).items())
    return total, math.ceil(total / 4096) * 0.5 if total else 0.5  # a Query costs at least half a unit


class _QueryMeter:
    """Adds ReturnConsumedCapacity to the index Query and records each page it returns."""

    def __init__(self, events: Any) -> None:
        self.pages: list[dict[str, Any]] = []
        self.queries = 0  # first pages: one per query
        events.register("provide-client-params.dynamodb.Query", self._ask_for_capacity)
        events.register("after-call.dynamodb.Query", self._record)

    def _ask_for_capacity(self, params: dict[str, Any], **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"
        self.queries += "ExclusiveStartKey" not in params

    def _record(self, parsed: dict[str, Any], **_: Any) -> None:
        self.pages.append(parsed)

    def reset(self) -> None:
        self.pages.clear()
        self.queries = 0


def _not_due_item(number: int, now: int) -> dict[str, Any]:
    connection_id = f"stored-{number:06d}"
    eager = number % round(1 / EAGER_SHARE) == 0
    # Eager: valid for another 50 minutes or so. On demand: refreshed some time in the last 23 hours.
    expires_at = now + 3000 + number % 600 if eager else now + 3600 - (number * 7919) % (23 * 3600)
    return {
        "pk": f"connection#{connection_id}",
        "connection_id": connection_id,
        "listing": "connection",
        "name": f"stored {number:06d}",
        "status": "connected",
        "refresh_policy": "eager" if eager else "on_demand",
        "refresh_index": "connected" if eager else "on_demand",
        "access_token_expires_at": expires_at,
    }


class _KeptQueue:
    """The refresh queue, keeping what the sweep sends (nothing refreshes here)."""

    def enqueue(self, connection_ids: list[str], *, delay_seconds: int = 0) -> int:
        return len(connection_ids)


class _FixedClock:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += seconds


def _items_read(pages: list[dict[str, Any]]) -> int:
    """What DynamoDB read (and bills), not only what it returned: a filter would hide the difference."""
    return sum(int(page.get("ScannedCount", len(page.get("Items", [])))) for page in pages)


def run(stored: tuple[int, ...] = STORED, due: int = DUE) -> list[DueResult]:
    os.environ.update(
        {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    )
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        os.environ.pop(name)
    import boto3
    from moto import mock_aws
    from qbo_connect import intuit
    from qbo_connect.adapters.dynamodb_store import connection_to_item, create_table
    from qbo_connect.domain.connection import Connection, ConnectionStatus, RefreshPolicy
    from qbo_connect.runtime import build_services
    from qbo_connect.settings import Settings

    results = []
    with mock_aws():
        session = boto3.Session()
        create_table(session.client("dynamodb"), TABLE)
        now = int(time.time()) // 3600 * 3600 + 1800  # half past an hour: the sweep eleven of twelve are
        clock = _FixedClock(now)
        services = build_services(Settings(table_name=TABLE), session=session, clock=clock)
        services.refresh_queue = _KeptQueue()
        meter = _QueryMeter(session.events)
        table = boto3.Session().resource("dynamodb").Table(TABLE)  # seeding: another session, not metered
        with table.batch_writer() as batch:
            for policy, last_refreshed in (
                (RefreshPolicy.EAGER, now - 3300),
                (RefreshPolicy.ON_DEMAND, now - DAY - 60),
            ):
                for number in range(1, due + 1):
                    connection = Connection(
                        connection_id=f"due-{policy.value.replace('_', '-')}-{number:04d}",
                        name=f"due {policy.value} {number:04d}",
                        environment=intuit.Environment.SANDBOX,
                        base_url=intuit.SANDBOX_API_BASE_URL,
                        client_id="bench-client-id",
                        realm_id="9341453050000001",
                        refresh_policy=policy,
                        status=ConnectionStatus.CONNECTED,
                        has_client_secret=True,
                        access_token_expires_at=last_refreshed + 3600,
                        refresh_token_expires_at=now + 8_000_000,
                        last_refreshed_at=last_refreshed,
                        version=1,
                        secret_generation=1,
                    )
                    batch.put_item(Item=connection_to_item(connection))
        written = 2 * due
        for target in stored:
            with table.batch_writer() as batch:
                for number in range(written + 1, target + 1):
                    batch.put_item(Item=_not_due_item(number, now))
            written = target
            meter.reset()
            started = time.perf_counter()
            found = services.lifecycle.due_connection_ids()
            seconds = time.perf_counter() - started
            scanned = _items_read(meter.pages)
            read_bytes = 0
            units = 0.0
            for page in meter.pages:
                page_bytes, page_units = _read_units(page.get("Items", []))
                read_bytes += page_bytes
                units += page_units
            reported = sum(float(p.get("ConsumedCapacity", {}).get("CapacityUnits", 0)) for p in meter.pages)
            queries, pages = meter.queries, len(meter.pages)
            sweeps = {}
            for at in (now, now - 1800):  # half past, then the hour's first sweep
                clock.at = at
                meter.reset()
                services.refresh_runs.sweep()
                sweeps[at] = (meter.queries, _items_read(meter.pages))
            clock.at = now
            results.append(
                DueResult(
                    stored=target,
                    due_found=len(found),
                    queries=queries,
                    pages=pages,
                    items_read=scanned,
                    read_bytes=read_bytes,
                    read_capacity_units=units,
                    moto_reported_units=reported,
                    seconds=round(seconds, 4),
                    sweep_queries=sweeps[now][0],
                    sweep_items_read=sweeps[now][1],
                    hourly_sweep_items_read=sweeps[now - 1800][1],
                )
            )
    return results


if __name__ == "__main__":
    sizes = tuple(int(a) for a in sys.argv[1:]) or STORED
    print(json.dumps([asdict(r) for r in run(sizes)]))
    sys.exit(0)
