"""Metering: how many accounting API calls each Intuit app (client ID) makes per calendar month.

What Intuit meters (docs/intuit.md, "Metering"): under its App Partner Program, CorePlus calls, the
accounting API's data-out calls (reads of entities, queries, CDC, reports, CompanyInfo), count toward an
app's monthly allowance (500,000 in the free Builder tier; over it, CorePlus calls are refused until the
next month). Core calls (data in: create, update, delete) are free, and so are OAuth, userinfo and every
sandbox call. In a batch each item counts as the call it stands for. So:
- a read is any GET, a query (GET or POST), CDC, a report; a batch's query items; everything else is a write;
- only reads of production connections count toward the allowance; sandbox calls are counted, not metered;
- a call counts once it was sent: answered, whatever the status, or sent and its answer lost (Intuit may
  have processed and metered it). Intuit's pages do not say failed calls are free; counting them makes the
  alarm early, never late. A call that certainly never left (refused, DNS, TLS) does not count.

Counting costs no write per call. Each process counts in memory and flushes at most every
`flush_seconds` (and when `max_pending` calls wait, at exit, or when asked), as one DynamoDB transaction
of atomic ADDs with an idempotency token, so a retried flush is not counted twice. A flush that fails
keeps its counts and is tried again first, with the same token; what still cannot be written is
reported loudly (`on_unrecorded`), never dropped silently. Calendar months are UTC.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from datetime import UTC, datetime
from typing import Any, Protocol

from qbo_connect import intuit
from qbo_connect.domain.connection import Connection
from qbo_connect.errors import InvalidInput
from qbo_connect.observability import logger
from qbo_connect.records import record

BATCH_PATH = "batch"
# Flushes kept for another try while the ledger refuses them; beyond this the oldest is given up, loudly.
MAX_STUCK_FLUSHES = 100
# Resources read whatever the HTTP method (Intuit takes a query as a POST body too).
READ_RESOURCES = frozenset({"query", "cdc", "reports", "companyinfo"})


def month_of(epoch: float) -> str:
    """The calendar month (UTC) a call falls in: "2026-05"."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m")


@record
class UsageKey:
    """Whose call it is: the app (client ID) Intuit meters, the connection, and its environment."""

    client_id: str
    connection_id: str
    environment: intuit.Environment

    @classmethod
    def of(cls, connection: Connection) -> UsageKey:
        return cls(connection.client_id, connection.connection_id, connection.environment)

    @property
    def metered(self) -> bool:
        return self.environment is intuit.Environment.PRODUCTION


def call_kinds(method: str, relative_path: str, body: Any = None) -> tuple[int, int]:
    """(reads, writes) one accounting API request stands for; `relative_path` is under /v3/company/<realm>/."""
    resource = relative_path.strip("/").split("/", 1)[0].split("?", 1)[0].lower()
    if resource == BATCH_PATH:
        items = body.get("BatchItemRequest") if isinstance(body, Mapping) else None
        items = [item for item in items or [] if isinstance(item, Mapping)]
        reads = sum(1 for item in items if "Query" in item)
        return reads, len(items) - reads
    if method.upper() == "GET" or resource in READ_RESOURCES:
        return 1, 0
    return 0, 1


@record(frozen=False)
class Tally:
    """Reads and writes counted so far, not yet recorded."""

    reads: int = 0
    writes: int = 0

    def add(self, reads: int, writes: int) -> None:
        self.reads += reads
        self.writes += writes

    @property
    def calls(self) -> int:
        return self.reads + self.writes


@record
class Flush:
    """One batch of counts on its way to the ledger, with the token that makes its write idempotent."""

    counts: Mapping[tuple[str, UsageKey], Tally]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def calls(self) -> int:
        return sum(t.calls for t in self.counts.values())


class UsageLedger(Protocol):
    def add(self, flush: Flush) -> None:
        """Add every count of `flush` atomically (all or none); the same token twice adds once."""

    def month(self, month: str, *, connections_too: bool = True) -> list[AppUsage]:
        """Every app's figures of the month, with their connections' unless `connections_too` is False."""


class UsageMeter:
    """Counts in memory, flushes to the ledger now and then. Thread-safe; one per process."""

    def __init__(
        self,
        ledger: UsageLedger,
        clock,
        *,
        flush_seconds: float = 60.0,
        max_pending: int = 1000,
        on_unrecorded: Callable[[Flush, Exception], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self.flush_seconds = flush_seconds
        self._max_pending = max_pending
        self._on_unrecorded = on_unrecorded
        self._lock = threading.Lock()  # guards the pending counts
        self._flushing = threading.Lock()  # one flush at a time, in order
        self._pending: dict[tuple[str, UsageKey], Tally] = {}
        self._pending_calls = 0
        self._oldest: float | None = None
        self._stuck: list[Flush] = []  # flushes the ledger refused, retried first

    def count(self, key: UsageKey, *, reads: int = 0, writes: int = 0) -> None:
        if reads <= 0 and writes <= 0:
            return
        now = self._clock.now()
        with self._lock:
            self._pending.setdefault((month_of(now), key), Tally()).add(reads, writes)
            self._pending_calls += reads + writes
            self._oldest = now if self._oldest is None else self._oldest
            due = self._pending_calls >= self._max_pending or now - self._oldest >= self.flush_seconds
        if due:
            self.flush()

    def flush(self) -> bool:
        """Write what is pending (and any earlier flush that failed); True when nothing is left unwritten."""
        with self._flushing:
            with self._lock:
                if self._pending:
                    self._stuck.append(Flush(self._pending))
                self._pending, self._pending_calls, self._oldest = {}, 0, None
            while len(self._stuck) > MAX_STUCK_FLUSHES:
                given_up = self._stuck.pop(0)
                logger.error(
                    "API call counts given up after the ledger refused them many times",
                    extra={"calls": given_up.calls, "apps": sorted({key.client_id for _, key in given_up.counts})},
                )
            while self._stuck:
                flush = self._stuck[0]
                try:
                    self._ledger.add(flush)
                except Exception as error:
                    if self._on_unrecorded is not None:
                        self._on_unrecorded(flush, error)
                    return False
                self._stuck.pop(0)
            return True

    @property
    def unwritten_calls(self) -> int:
        with self._lock:
            return self._pending_calls + sum(flush.calls for flush in self._stuck)


# --- reading the figures --------------------------------------------------------------------------


@record
class ConnectionUsage:
    """One connection's calls to Intuit in a month."""

    connection_id: str
    environment: str
    reads: int = 0
    writes: int = 0

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@record
class AppUsage:
    """One app's month: production reads are what Intuit meters (CorePlus); the rest is for context."""

    client_id: str
    month: str
    production_reads: int = 0
    production_writes: int = 0
    sandbox_reads: int = 0
    sandbox_writes: int = 0
    connections: tuple[ConnectionUsage, ...] = ()

    @property
    def metered_calls(self) -> int:
        return self.production_reads

    def share_of(self, allowance: int) -> float:
        """Percent of the month's allowance used."""
        return 100.0 * self.metered_calls / allowance if allowance > 0 else 0.0

    def as_json(self, allowance: int) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "month": self.month,
            "metered_calls": self.metered_calls,
            "allowance": allowance,
            "allowance_used_percent": round(self.share_of(allowance), 2),
            "production_reads": self.production_reads,
            "production_writes": self.production_writes,
            "sandbox_reads": self.sandbox_reads,
            "sandbox_writes": self.sandbox_writes,
            "connections": [c.as_json() for c in sorted(self.connections, key=lambda c: -(c.reads + c.writes))],
        }


@record
class Allowances:
    """Each app's monthly CorePlus allowance: one default (the tier's), overridden per client ID."""

    default: int = 500_000
    per_app: Mapping[str, int] = field(default_factory=dict)

    def of(self, client_id: str) -> int:
        return self.per_app.get(client_id, self.default)

    @classmethod
    def parse(cls, default: int, overrides: str) -> Allowances:
        """`overrides` is "CLIENT_ID=N,CLIENT_ID=N" (empty: none)."""
        per_app: dict[str, int] = {}
        for part in (p.strip() for p in overrides.split(",")):
            if not part:
                continue
            client_id, _, number = part.partition("=")
            if not client_id.strip() or not number.strip().isdigit() or int(number) <= 0:
                raise ValueError(f"{part!r} is not CLIENT_ID=N with N a whole number above zero")
            per_app[client_id.strip()] = int(number)
        return cls(default=default, per_app=per_app)


def highest_share(usages: Iterable[AppUsage], allowances: Allowances) -> float:
    """The largest share of an allowance any app has used this month (what the alarm watches)."""
    return max((usage.share_of(allowances.of(usage.client_id)) for usage in usages), default=0.0)


_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class MeteringReport:
    """What `qbo-connect metering show` and GET /admin/metering answer: a month's figures per app, with
    the share of its allowance used and its connections (busiest first, by name where they still exist)."""

    def __init__(self, ledger: UsageLedger, connections, allowances: Allowances, clock, *, alarm_percent: float):
        self._ledger = ledger
        self._connections = connections
        self._allowances = allowances
        self._clock = clock
        self._alarm_percent = alarm_percent

    def month(self, month: str | None = None) -> dict[str, Any]:
        month = month or month_of(self._clock.now())
        if not isinstance(month, str) or not _MONTH.fullmatch(month):
            raise InvalidInput(
                f"{str(month)[:20]!r} is not a month: give it as YYYY-MM, e.g. {month_of(self._clock.now())}"
            )
        names = {c.connection_id: c.name for c in self._connections.list()}
        apps = []
        for usage in self._ledger.month(month):
            allowance = self._allowances.of(usage.client_id)
            body = usage.as_json(allowance)
            body["over_alarm_share"] = usage.share_of(allowance) >= self._alarm_percent
            for connection in body["connections"]:
                connection["name"] = names.get(connection["connection_id"])
            apps.append(body)
        return {"month": month, "alarm_at_percent": self._alarm_percent, "apps": apps}
