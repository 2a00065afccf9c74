"""Change data capture and batch for QuickBooksClient: Intuit's limits checked before a call, answers read
into plain values.

CDC returns every object of the asked entities changed since a moment within the last 30 days, in one
answer of at most 1,000 objects over all entities; deleted objects come back as {"Id", "status":
"Deleted"}. Batch runs up to BATCH_MAX_OPERATIONS operations (create, update, delete, query) in one
request; each answer item carries its operation's bId, and a failed item its own Fault.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from datetime import UTC, datetime
from typing import Any

from qbo_connect import intuit
from qbo_connect.adapters.quickbooks_api import error_for_fault, fault_of
from qbo_connect.errors import InvalidInput, QboConnectError
from qbo_connect.records import record

ENTITY_NAME = re.compile(intuit.ENTITY_NAME_PATTERN)
BATCH_OPERATIONS = ("create", "update", "delete")


@record
class ChangedObject:
    entity: str
    entity_id: str
    deleted: bool
    object: dict[str, Any] = field(repr=False)


@record
class ChangeSet:
    changed_since: datetime
    changes: dict[str, list[ChangedObject]]
    # Intuit's answer held its 1,000-object maximum: there may be more changes than it listed.
    truncated: bool = False
    # catch_up(): entities whose CDC answer was full, read again page by page with a query. Every object
    # changed since is listed; a deletion CDC left out cannot be (a query never returns deleted objects).
    paged_by_query: tuple[str, ...] = ()

    def __len__(self) -> int:
        return sum(len(items) for items in self.changes.values())


def as_utc(moment: datetime | float | int) -> datetime:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise InvalidInput("changed_since needs a time zone (e.g. datetime.now(UTC)): a naive time is ambiguous")
        return moment.astimezone(UTC)
    if isinstance(moment, bool) or not isinstance(moment, int | float):
        raise InvalidInput("changed_since is a datetime with a time zone, or epoch seconds")
    return datetime.fromtimestamp(moment, UTC)


def cdc_params(
    entities: Sequence[str], changed_since: datetime | float, *, now: float
) -> tuple[datetime, dict[str, str]]:
    """The CDC query, after checking what Intuit would refuse (or answer wrongly)."""
    names = list(entities) if not isinstance(entities, str) else [entities]
    if not names or not all(isinstance(n, str) and ENTITY_NAME.fullmatch(n) for n in names):
        raise InvalidInput("entities is a list of QuickBooks entity names, such as ['Invoice', 'Customer']")
    since = as_utc(changed_since)
    if not within_cdc_window(since, now=now):
        raise InvalidInput(
            f"changed_since {since.isoformat()} is more than {intuit.CDC_WINDOW_SECONDS // 86400} days ago, past "
            "Intuit's change data capture window: read the entities with query() instead, then catch up from now"
        )
    if since.timestamp() > now + 300:
        raise InvalidInput(f"changed_since {since.isoformat()} is in the future")
    return since, cdc_query(names, since)


def within_cdc_window(since: datetime, *, now: float) -> bool:
    """Whether Intuit's CDC still answers for changes since `since` at `now` (it keeps them 30 days)."""
    return since.timestamp() >= now - intuit.CDC_WINDOW_SECONDS


def cdc_query(names: Sequence[str], since: datetime) -> dict[str, str]:
    """CDC's parameters for checked entity names and moment."""
    return {"entities": ",".join(names), "changedSince": since.isoformat(timespec="seconds")}


def parse_cdc(body: Mapping[str, Any], entities: Sequence[str], since: datetime) -> ChangeSet:
    wanted = {name.lower(): name for name in entities}
    changes: dict[str, list[ChangedObject]] = {name: [] for name in entities}
    for response in body.get("CDCResponse") or []:
        for query_response in (response or {}).get("QueryResponse") or []:
            for key, items in (query_response or {}).items():
                if not isinstance(items, list) or key.lower() not in wanted:
                    continue
                entity = wanted[key.lower()]
                changes[entity] += [
                    ChangedObject(entity, str(item.get("Id")), item.get("status") == intuit.CDC_DELETED_STATUS, item)
                    for item in items
                    if isinstance(item, dict)
                ]
    total = sum(len(items) for items in changes.values())
    return ChangeSet(since, changes, truncated=total >= intuit.CDC_MAX_OBJECTS)


def changed_since_query(entity: str, since: datetime) -> str:
    """Intuit's query for what changed since a moment, when CDC's 1,000 objects are not enough."""
    if not ENTITY_NAME.fullmatch(entity):
        raise InvalidInput(f"{entity!r} is not an entity name such as Customer or Invoice")
    # Both parts are checked values (an entity name, a formatted datetime), never a caller's text.
    moment = since.isoformat(timespec="seconds")
    where = f"Metadata.LastUpdatedTime >= '{moment}'"
    if entity in intuit.NAME_LIST_ENTITIES:  # made inactive is QuickBooks' delete for these: a change to list
        where += f" AND {intuit.ACTIVE_OR_INACTIVE_CONDITION}"
    return f"select * from {entity} where {where}"  # noqa: S608


def changed_since_page(entity: str, since: datetime) -> str:
    """One page's query for what changed since a moment, oldest change first (catch_up pages from the last
    change it saw, so it needs the order; without ORDERBY Intuit promises none)."""
    return f"{changed_since_query(entity, since)} ORDERBY Metadata.LastUpdatedTime"


def last_updated(item: Mapping[str, Any]) -> datetime | None:
    """An object's MetaData.LastUpdatedTime in UTC, whole seconds (what a query's condition compares), or None."""
    meta = item.get("MetaData") or item.get("Metadata")
    text = meta.get("LastUpdatedTime") if isinstance(meta, Mapping) else None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(microsecond=0) if moment.tzinfo else None


def next_page_start(items: Sequence[Mapping[str, Any]], since: datetime, position: int) -> tuple[datetime, int]:
    """Where the page after a full one starts: at its newest change, from the first position, so that an
    object deleted or changed again meanwhile moves nothing past what was read (a changed one comes again,
    newer). A page whose changes all fall in one second (starting there would read it again), or that
    Intuit did not sort, is stepped over by position instead."""
    moments = [last_updated(item) for item in items]
    if moments and None not in moments:
        in_order = all(a <= b for a, b in itertools.pairwise(moments))
        oldest, newest = moments[0], moments[-1]
        if in_order and oldest < newest and newest > since.replace(microsecond=0):
            return newest, 1
    return since, position + len(items)


def with_queried(entity: str, listed: list[ChangedObject], queried: Iterable[dict[str, Any]]) -> list[ChangedObject]:
    """CDC's list completed with the objects a query found: one entry per Id, the queried (current) version
    of a live object, CDC's entry for a deleted one."""
    merged = {change.entity_id: change for change in listed}
    for item in queried:
        entity_id = str(item.get("Id"))
        if not (entity_id in merged and merged[entity_id].deleted):
            merged[entity_id] = ChangedObject(entity, entity_id, False, item)
    return list(merged.values())


# --- batch -------------------------------------------------------------------------------------------


@record
class BatchOperation:
    """One item: `operation` create/update/delete of `entity` with `body`, or a `query` statement."""

    entity: str | None = None
    operation: str | None = None
    body: Mapping[str, Any] | None = None
    query: str | None = None
    bid: str | None = None

    def item(self, bid: str) -> dict[str, Any]:
        if self.query is not None:
            if not isinstance(self.query, str) or not self.query.strip() or self.entity or self.body:
                raise InvalidInput("a batch query carries only its statement: BatchOperation(query='select ...')")
            return {"bId": bid, "Query": self.query.strip()}
        if self.operation not in BATCH_OPERATIONS or not (
            isinstance(self.entity, str) and ENTITY_NAME.fullmatch(self.entity)
        ):
            raise InvalidInput(
                f"a batch operation is one of {', '.join(BATCH_OPERATIONS)} on an entity such as Customer, with its body"
            )
        if not isinstance(self.body, Mapping):
            raise InvalidInput(f"the {self.operation} of {self.entity} needs a body (a dict)")
        return {"bId": bid, "operation": self.operation, self.entity: dict(self.body)}


@record
class BatchResult:
    bid: str
    operation: BatchOperation
    value: dict[str, Any] | None = None  # the object (create/update/delete) or the QueryResponse
    error: QboConnectError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def result(self) -> dict[str, Any]:
        """The value, or the item's error raised."""
        if self.error is not None:
            raise self.error
        return self.value or {}


def batch_items(operations: Iterable[BatchOperation]) -> list[tuple[str, BatchOperation, dict[str, Any]]]:
    counter = itertools.count(1)
    items, seen = [], set()
    for operation in operations:
        if not isinstance(operation, BatchOperation):
            raise InvalidInput("batch() takes BatchOperation values")
        bid = operation.bid or f"b{next(counter)}"
        if bid in seen:
            raise InvalidInput(f"two batch operations share the bId {bid!r}: each needs its own")
        seen.add(bid)
        items.append((bid, operation, operation.item(bid)))
    return items


def chunks(items: list, size: int = intuit.BATCH_MAX_OPERATIONS) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def not_done(unanswered: list[tuple[str, BatchOperation, dict[str, Any]]], error: QboConnectError) -> list[BatchResult]:
    """The operations of a batch request that failed, and of those never sent after it: each carries that error."""
    return [BatchResult(bid, operation, error=error) for bid, operation, _ in unanswered]


def parse_batch(
    body: Mapping[str, Any], sent: list[tuple[str, BatchOperation, dict[str, Any]]], tid: str | None
) -> list[BatchResult]:
    by_bid = {item.get("bId"): item for item in body.get("BatchItemResponse") or [] if isinstance(item, dict)}
    results = []
    for bid, operation, _ in sent:
        item = by_bid.get(bid)
        if item is None:
            error = error_for_fault(500, {"message": "no answer for this operation"}, tid)
            results.append(BatchResult(bid, operation, error=error))
        elif "Fault" in item or "fault" in item:
            fault = fault_of(item)
            status = 401 if fault.get("type", "").upper() == "AUTHENTICATION" else 400
            results.append(BatchResult(bid, operation, error=error_for_fault(status, fault, tid)))
        else:
            value = next((v for k, v in item.items() if k != "bId" and isinstance(v, dict)), None)
            results.append(BatchResult(bid, operation, value=value))
    return results
