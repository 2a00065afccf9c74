"""Cost per connection-month at the default schedule, and the scale ceiling per region.

Prices: us-east-1, on-demand list prices from the AWS public pricing pages as of 2026 (source of
each below). Prices change: check the current pages before relying on a figure. Call counts come
from the code path (and, where `make bench` measured them, from the benchmark's counts).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field

SOURCE = "AWS public pricing page, 2026 (us-east-1, on-demand; check current pricing)"

# --- prices (USD) ---------------------------------------------------------------------------
SECRET_MONTH = 0.40  # Secrets Manager: per secret per month
SECRETS_API_CALL = 0.05 / 10_000  # Secrets Manager: per API call
DYNAMODB_WRITE_UNIT = 0.625 / 1_000_000  # on-demand write request unit (after the Nov 2024 price cut)
DYNAMODB_READ_UNIT = 0.125 / 1_000_000  # on-demand read request unit
LAMBDA_GB_SECOND_ARM = 0.0000133334  # arm64
LAMBDA_REQUEST = 0.20 / 1_000_000
SQS_REQUEST = 0.40 / 1_000_000  # standard queue, per 64 KB request
SCHEDULER_INVOCATION = 1.00 / 1_000_000  # EventBridge Scheduler, after 14 million free per month
SCHEDULER_FREE_PER_MONTH = 14_000_000
EVENTBRIDGE_CUSTOM_EVENT = 1.00 / 1_000_000

# --- the service's defaults (template.yaml) and Intuit's facts --------------------------------
ACCESS_TOKEN_SECONDS = 3600  # Intuit access tokens live one hour
MARGIN_SECONDS = 900  # RefreshMarginSeconds
PERIOD_SECONDS = 300  # RefreshSchedule rate(5 minutes)
BATCH_SIZE = 20  # RefreshBatchSize: the SQS event source's BatchSize
MAX_CONCURRENCY = 50  # RefreshMaxConcurrency: each instance holds an equal share of the write budget
MEMORY_GB = 0.5  # MemorySize 512
WRITE_BUDGET_PER_SECOND = 40  # SecretsWriteBudgetPerSecond
KEEPALIVE_SECONDS = 86_400  # an on-demand connection nobody used is refreshed a day after its last refresh
REGION_WRITE_QUOTA_PER_SECOND = 50  # PutSecretValue and the other Secrets Manager writes, per region
SECONDS_PER_MONTH = 30.4375 * 86_400
HOURS_PER_MONTH = SECONDS_PER_MONTH / 3600
# The status gauge counts every connection once an hour (status_gauge.py): a KEYS_ONLY by-status entry
# of about 50 bytes, half a read unit per 4 KB.
HOURLY_COUNT_READ_UNITS = 50 / 4096 * 0.5


@dataclass
class CostInputs:
    """Per refresh, unless named otherwise. Defaults are the code path's; `make bench` passes measured ones."""

    secrets_calls: float = 2.0  # GetSecretValue, PutSecretValue
    dynamodb_updates: float = 2.0  # lease UpdateItem, then the UpdateItem that saves and releases
    item_kb: float = 1.0  # the connection item, rounded up to whole KB per write
    sqs_requests: float = 0.2  # SendMessageBatch (sweep, per 10), ReceiveMessage and DeleteMessageBatch (per batch)
    query_read_units: float = 0.005  # the sweep's index read, per refresh (half a unit per 4 KB of keys)
    # Refresh function duration per batch: the instance's share of the write budget paces its writes
    # (BATCH_SIZE / (budget / MAX_CONCURRENCY) = 25 s), which also covers Intuit's slower answers.
    batch_seconds: float = BATCH_SIZE / (WRITE_BUDGET_PER_SECOND / MAX_CONCURRENCY)


@dataclass
class CostLine:
    what: str
    count_per_month: float
    usd_per_month: float


@dataclass
class CostModel:
    refreshes_per_day: float
    refreshes_per_month: float
    lines: list[CostLine] = field(default_factory=list)
    fixed_per_deployment: list[CostLine] = field(default_factory=list)

    @property
    def per_connection_month(self) -> float:
        return sum(line.usd_per_month for line in self.lines)


def refresh_interval_seconds(
    access_token_seconds: float = ACCESS_TOKEN_SECONDS,
    margin_seconds: float = MARGIN_SECONDS,
    period_seconds: float = PERIOD_SECONDS,
) -> float:
    """A token becomes due `margin` before it expires; the next sweep (on average half a period later) refreshes it."""
    return access_token_seconds - margin_seconds + period_seconds / 2


def model(inputs: CostInputs | None = None, *, refreshes_per_day: float | None = None) -> CostModel:
    """Per connection and month; `refreshes_per_day` defaults to an eager connection's (the schedule's)."""
    inputs = inputs or CostInputs()
    per_day = refreshes_per_day if refreshes_per_day is not None else 86_400 / refresh_interval_seconds()
    per_month = per_day * SECONDS_PER_MONTH / 86_400
    # Each UpdateItem writes the item and its copy in the by-name index (projection ALL); the save also
    # moves the entry in the refresh-due index (its sort key, the expiry, changes): a delete and a put.
    item_units = math.ceil(inputs.item_kb)
    write_units = inputs.dynamodb_updates * 2 * item_units + 2
    batches = per_month / BATCH_SIZE
    lines = [
        CostLine("Secrets Manager: the connection's secret", 1, SECRET_MONTH),
        CostLine(
            "Secrets Manager: GetSecretValue + PutSecretValue",
            inputs.secrets_calls * per_month,
            inputs.secrets_calls * per_month * SECRETS_API_CALL,
        ),
        CostLine(
            "DynamoDB: write units (lease, save; table and indexes)",
            write_units * per_month,
            write_units * per_month * DYNAMODB_WRITE_UNIT,
        ),
        CostLine(
            "DynamoDB: read units (the sweep's index query)",
            inputs.query_read_units * per_month,
            inputs.query_read_units * per_month * DYNAMODB_READ_UNIT,
        ),
        CostLine(
            "DynamoDB: read units (the status gauge's hourly count of every connection)",
            HOURLY_COUNT_READ_UNITS * HOURS_PER_MONTH,
            HOURLY_COUNT_READ_UNITS * HOURS_PER_MONTH * DYNAMODB_READ_UNIT,
        ),
        CostLine(f"Lambda: refresh invocations (one per batch of {BATCH_SIZE})", batches, batches * LAMBDA_REQUEST),
        CostLine(
            "Lambda: refresh duration, GB-s (arm64, 512 MB; writes paced by the instance's budget share)",
            batches * inputs.batch_seconds * MEMORY_GB,
            batches * inputs.batch_seconds * MEMORY_GB * LAMBDA_GB_SECOND_ARM,
        ),
        CostLine(
            "SQS: send (10 a call), receive, delete (a batch each)",
            inputs.sqs_requests * per_month,
            inputs.sqs_requests * per_month * SQS_REQUEST,
        ),
        CostLine("EventBridge: events (state changes only; none in steady state)", 0, 0.0),
    ]
    sweeps = SECONDS_PER_MONTH / PERIOD_SECONDS
    fixed = [
        CostLine("Secrets Manager: the signing-key secret", 1, SECRET_MONTH),
        CostLine("EventBridge Scheduler: sweeps (within the 14 million free)", sweeps, 0.0),
        CostLine(
            "Lambda: sweep invocations (0.5 s each)",
            sweeps,
            sweeps * (LAMBDA_REQUEST + 0.5 * MEMORY_GB * LAMBDA_GB_SECOND_ARM),
        ),
        CostLine(
            "SQS: the event source's idle long polls (about 5 pollers, 20 s waits)",
            5 * SECONDS_PER_MONTH / 20,
            5 * SECONDS_PER_MONTH / 20 * SQS_REQUEST,
        ),
    ]
    return CostModel(per_day, per_month, lines, fixed)


@dataclass
class PolicyMix:
    """A region's connections by refresh policy, and the write rate they need against the budget."""

    connections: int
    eager_share: float
    # An on-demand connection's refreshes a day: one if it is used in at most one access-token lifetime a
    # day (a nightly job) or not at all (the keep-alive); more if workflows use it around the clock.
    on_demand_refreshes_per_day: float = 1.0
    budget: float = WRITE_BUDGET_PER_SECOND

    @property
    def eager(self) -> int:
        return round(self.connections * self.eager_share)

    @property
    def on_demand(self) -> int:
        return self.connections - self.eager

    @property
    def eager_refreshes_per_day(self) -> float:
        return 86_400 / refresh_interval_seconds()

    @property
    def writes_per_second(self) -> float:
        per_day = self.eager * self.eager_refreshes_per_day + self.on_demand * self.on_demand_refreshes_per_day
        return per_day / 86_400

    @property
    def holds(self) -> bool:
        return self.writes_per_second <= self.budget

    @property
    def most_on_demand_refreshes_per_day(self) -> float:
        """How often each on-demand connection may refresh a day before the mix exceeds the budget."""
        left = self.budget * 86_400 - self.eager * self.eager_refreshes_per_day
        return left / self.on_demand if self.on_demand else float("inf")

    @property
    def index_writes_per_second(self) -> dict[str, float]:
        """Writes per second into each policy's partition of the refresh-due index (its sort key, the expiry,
        moves at every refresh: a delete and a put); DynamoDB serves about 1,000 a second per partition key."""
        return {
            "eager": 2 * self.eager * self.eager_refreshes_per_day / 86_400,
            "on_demand": 2 * self.on_demand * self.on_demand_refreshes_per_day / 86_400,
        }

    def as_dict(self) -> dict[str, object]:
        return {
            "connections": self.connections,
            "eager": self.eager,
            "on_demand": self.on_demand,
            "eager_refreshes_per_day": round(self.eager_refreshes_per_day, 2),
            "on_demand_refreshes_per_day": self.on_demand_refreshes_per_day,
            "writes_per_second": round(self.writes_per_second, 2),
            "budget": self.budget,
            "holds": self.holds,
            "most_on_demand_refreshes_per_day": round(self.most_on_demand_refreshes_per_day, 2),
            "index_writes_per_second": {k: round(v, 1) for k, v in self.index_writes_per_second.items()},
        }


def per_policy(inputs: CostInputs | None = None) -> dict[str, float]:
    """USD per connection-month for each refresh policy (on demand: one refresh a day)."""
    return {
        "eager": model(inputs).per_connection_month,
        "on_demand": model(inputs, refreshes_per_day=1.0).per_connection_month,
    }


@dataclass
class Ceiling:
    refresh_interval_seconds: float
    writes_per_connection_per_day: float
    connections_at_budget: int
    connections_at_region_quota: int
    burst_per_margin_window: int
    slack_seconds: float
    burst_within_guarantee: int


def ceiling(budget: float = WRITE_BUDGET_PER_SECOND, quota: float = REGION_WRITE_QUOTA_PER_SECOND) -> Ceiling:
    """Connections per region before Secrets Manager's write quota binds (one PutSecretValue per refresh)."""
    interval = refresh_interval_seconds()
    return Ceiling(
        refresh_interval_seconds=interval,
        writes_per_connection_per_day=86_400 / interval,
        connections_at_budget=int(budget * interval),
        connections_at_region_quota=int(quota * interval),
        # Due connections the budget refreshes while the margin lasts: a burst bigger than this (all
        # connected in the same minute) would leave some tokens expiring before their turn.
        burst_per_margin_window=int(budget * MARGIN_SECONDS),
        # The README's guarantee: a stored token is valid for margin - period (10 minutes) at least.
        slack_seconds=MARGIN_SECONDS - PERIOD_SECONDS,
        burst_within_guarantee=int(budget * (MARGIN_SECONDS - PERIOD_SECONDS)),
    )


if __name__ == "__main__":
    print(
        json.dumps(
            {
                "model": asdict(model()),
                "per_connection_month": model().per_connection_month,
                "per_policy": per_policy(),
                "ceiling": asdict(ceiling()),
                "million_mixed": PolicyMix(1_000_000, 0.05).as_dict(),
            },
            indent=2,
        )
    )
    sys.exit(0)
