"""A small client for one connection's QuickBooks Online accounting API, on requests.

    from qbo_connect.client import QuickBooksClient

    qbo = QuickBooksClient.for_connection("qbc-1a2b3c4d5e6f")
    for customer in qbo.query("select * from Customer where Active = true"):
        print(customer["Id"], customer["DisplayName"])
    customer = qbo.update("Customer", {"Id": "1", "SyncToken": "0", "Notes": "VIP"}, sparse=True)

Every request carries `minorversion` (75 by default), `Accept: application/json`, a timeout and the
bearer token from token_access. On a 401 the client asks for one forced refresh and retries once; on
a 429 it waits as long as Intuit asks (Retry-After) and retries a bounded number of times; 5xx answers
and network errors are retried a bounded number of times with backoff (writes carry Intuit's
`requestid`, so a retried write is not applied twice). Inside one process, all clients share one
limiter per company (realm): at most 10 requests per second, 500 per minute and 10 at a time, Intuit's
limits per realm and app (docs/intuit.md), counted so that network delays cannot push a burst over them.

Errors are qbo_connect.errors classes: Unauthorized (authentication), Forbidden (authorization),
ValidationFailed and its ObjectNotFound and StaleObject, Throttled, IntuitUnavailable. They carry
Intuit's `fault_code`, `detail` and `intuit_tid`, never the token.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import itertools
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

import requests

from qbo_connect import intuit
from qbo_connect.adapters.aws_faults import raised_as_vault_unavailable
from qbo_connect.adapters.quickbooks_api import certainly_not_sent, error_for_response, fault_of
from qbo_connect.bulk import (
    ENTITY_NAME,
    BatchOperation,
    BatchResult,
    ChangedObject,
    ChangeSet,
    batch_items,
    cdc_params,
    cdc_query,
    changed_since_page,
    chunks,
    next_page_start,
    not_done,
    parse_batch,
    parse_cdc,
    with_queried,
    within_cdc_window,
)
from qbo_connect.domain.connection import validate_connection_id
from qbo_connect.domain.metering import UsageKey, UsageMeter, call_kinds
from qbo_connect.errors import (
    Forbidden,
    IntuitUnavailable,
    InvalidInput,
    QboConnectError,
    Throttled,
    Unauthorized,
    ValidationFailed,
)
from qbo_connect.invocation import invocation_end
from qbo_connect.observability import logger
from qbo_connect.records import record
from qbo_connect.settings import Settings
from qbo_connect.token_access import (
    DEFAULT_MIN_VALID_SECONDS,
    ConnectionAccess,
    default_token_access,
)

QUERY_MAX_RESULTS = intuit.QUERY_MAX_RESULTS
# Intuit's idempotency key for writes: the same requestid gets the first answer again, at most 50 characters.
REQUEST_ID_PARAM = "requestid"

_ENTITY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PAGING_TAIL = re.compile(r"\s(startposition|maxresults)\s+\d+\s*$", re.IGNORECASE)
_COUNT_QUERY = re.compile(r"^\s*select\s+count\s*\(\s*\*\s*\)", re.IGNORECASE)


class TokenSource(Protocol):
    """Where the client gets its tokens: token_access.TokenAccess (or a test's stand-in)."""

    def access(
        self, connection_id: str, *, min_valid_seconds: float, not_after: float | None = None
    ) -> ConnectionAccess: ...

    def token_rejected(
        self,
        connection_id: str,
        access_token: str | None = None,
        *,
        min_valid_seconds: float,
        not_after: float | None = None,
    ) -> ConnectionAccess: ...


@record
class RealmLimits:
    requests_per_second: int = intuit.API_REQUESTS_PER_SECOND
    requests_per_minute: int = intuit.API_REQUESTS_PER_MINUTE
    max_concurrent: int = intuit.API_MAX_CONCURRENT_REQUESTS


class WindowLimit:
    """At most `limit` requests that Intuit can have counted within any `seconds`-long window.

    Intuit counts a request when it arrives, somewhere between when it left here and when its answer came
    back (a new TLS connection alone can delay it by a few hundred milliseconds). So a request holds its
    place from the moment it leaves until `seconds` after its answer: however the network delayed each
    one, no window at Intuit can then hold more than `limit` of them. (A token bucket at the same rate
    lets twice the limit into one window: a full bucket, then its refill.)
    """

    def __init__(
        self,
        limit: int,
        seconds: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or seconds <= 0:
            raise ValueError("limit and seconds must be positive")
        self.limit = limit
        self.seconds = seconds
        self._monotonic = monotonic
        self._sleep = sleep
        self._changed = threading.Condition()
        self._ends: dict[int, float | None] = {}  # ticket -> when its answer came (None: still out)
        self._tickets = itertools.count()

    def acquire(self) -> int:
        """Wait for a place; returns the ticket to give back to release() when the answer is in."""
        while True:
            with self._changed:
                now = self._monotonic()
                for ticket, end in list(self._ends.items()):
                    if end is not None and end <= now - self.seconds:
                        del self._ends[ticket]
                if len(self._ends) < self.limit:
                    ticket = next(self._tickets)
                    self._ends[ticket] = None
                    return ticket
                answered = [end for end in self._ends.values() if end is not None]
                if not answered:
                    self._changed.wait(timeout=self.seconds)  # every place is out: wait for an answer
                    continue
                wait = min(answered) + self.seconds - now
            self._sleep(wait)

    def release(self, ticket: int) -> None:
        with self._changed:
            self._ends[ticket] = self._monotonic()
            self._changed.notify_all()


class RealmGate:
    """One company's share of Intuit's limits in this process: a concurrency slot, then a place in each window."""

    def __init__(self, limits: RealmLimits, *, monotonic: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_concurrent)
        self._windows = (
            WindowLimit(limits.requests_per_second, 1.0, monotonic=monotonic, sleep=sleep),
            WindowLimit(limits.requests_per_minute, 60.0, monotonic=monotonic, sleep=sleep),
        )

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a slot and a place in each window for the duration of one request."""
        taken: list[tuple[WindowLimit, int]] = []
        self._slots.acquire()
        try:
            for window in self._windows:
                taken.append((window, window.acquire()))
            yield
        finally:
            for window, ticket in taken:
                window.release(ticket)
            self._slots.release()


class RealmLimiters:
    """A RealmGate per realm ID, shared by every client that uses this registry (by default, the process)."""

    def __init__(
        self,
        limits: RealmLimits | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits or RealmLimits()
        self._monotonic = monotonic
        self._sleep = sleep
        self._gates: dict[str, RealmGate] = {}
        self._lock = threading.Lock()

    def gate(self, realm_id: str) -> RealmGate:
        with self._lock:
            gate = self._gates.get(realm_id)
            if gate is None:
                gate = self._gates[realm_id] = RealmGate(self.limits, monotonic=self._monotonic, sleep=self._sleep)
            return gate


PROCESS_LIMITERS = RealmLimiters()

_flushed_at_exit: set[int] = set()


def flushed_at_exit(meter: UsageMeter) -> UsageMeter:
    """A long-lived process (a script, a container) writes its last counts as it exits. Lambda freezes
    rather than exits: a handler calls qbo_connect.metering.flush_usage() at its end for that."""
    if id(meter) not in _flushed_at_exit:
        _flushed_at_exit.add(id(meter))
        atexit.register(meter.flush)
    return meter


class QuickBooksClient:
    """The accounting API of one connection's company. Safe to share between threads."""

    def __init__(
        self,
        connection_id: str,
        *,
        tokens: TokenSource,
        settings: Settings,
        session: requests.Session | None = None,
        minor_version: int | None = None,
        timeout: tuple[float, float] | float | None = None,
        page_size: int = QUERY_MAX_RESULTS,
        min_valid_seconds: float = DEFAULT_MIN_VALID_SECONDS,
        throttle_retries: int = 2,
        max_throttle_wait_seconds: float = 60.0,
        transient_retries: int = 2,
        limiters: RealmLimiters | None = None,
        sleep: Callable[[float], None] = time.sleep,
        meter: UsageMeter | None = None,
        not_after: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.connection_id = validate_connection_id(connection_id)
        self.minor_version = settings.minor_version if minor_version is None else int(minor_version)
        self.page_size = _checked_page_size(page_size)
        self._tokens = tokens
        self._settings = settings
        self._session = session or requests.Session()
        self._timeout = settings.http_timeout if timeout is None else timeout
        self._min_valid_seconds = min_valid_seconds
        self._throttle_retries = max(0, throttle_retries)
        self._max_throttle_wait = max_throttle_wait_seconds
        self._transient_retries = max(0, transient_retries)
        self._limiters = limiters or PROCESS_LIMITERS
        self._sleep = sleep
        self._meter = meter
        # When this process must be done (a Lambda invocation's end): no refresh is sent that could outlive it.
        self._not_after = not_after

    @classmethod
    def for_connection(cls, connection_id: str, *, lambda_context: Any = None, **options: Any) -> QuickBooksClient:
        """A client on the process-wide services (the environment, as in a Lambda with the shared layer).
        In a Lambda handler pass its `context`: a refresh is then sent only if the invocation can see it through."""
        from qbo_connect.runtime import services

        if "meter" not in options:  # every call counted for metering, per process
            options["meter"] = flushed_at_exit(services().meter)
        if lambda_context is not None:
            options["not_after"] = lambda: invocation_end(lambda_context)
        return cls(connection_id, tokens=default_token_access(), settings=services().settings, **options)

    # --- operations ---------------------------------------------------------------------------
    def query(self, statement: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every object the statement selects, fetched page by page (STARTPOSITION, MAXRESULTS) as you iterate.

        A statement with its own STARTPOSITION or MAXRESULTS is sent once, as written."""
        text = _statement(statement)
        if _COUNT_QUERY.match(text):
            raise InvalidInput("query() lists objects; use count() for `select count(*) ...`")
        if _PAGING_TAIL.search(" " + text):
            return iter(_query_items(self._query(text)))
        size = self.page_size if page_size is None else _checked_page_size(page_size)
        return self._pages(text, size)

    def _pages(self, text: str, size: int) -> Iterator[dict[str, Any]]:
        position = 1
        while True:
            items = _query_items(self._query(f"{text} STARTPOSITION {position} MAXRESULTS {size}"))
            yield from items
            if len(items) < size:  # a short (or empty) page is the last one
                return
            position += size

    def count(self, statement: str) -> int:
        """The totalCount of a `select count(*) from Entity [where ...]` statement."""
        text = _statement(statement)
        if not _COUNT_QUERY.match(text):
            raise InvalidInput("count() takes a `select count(*) from Entity ...` statement")
        response = self._query(text).get("QueryResponse") or {}
        return int(response.get("totalCount", 0))

    def get(self, entity: str, entity_id: str) -> dict[str, Any]:
        """One object by its Id, e.g. get("Customer", "58")."""
        return _unwrap(self.request("GET", f"{_path(entity)}/{_entity_id(entity_id)}"), entity)

    def create(self, entity: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object; returns it as QuickBooks stored it (with Id and SyncToken)."""
        return _unwrap(self.request("POST", _path(entity), json=dict(body)), entity)

    def update(self, entity: str, body: Mapping[str, Any], *, sparse: bool = False) -> dict[str, Any]:
        """Update an object: `body` carries its Id and current SyncToken. A full update clears the writable
        fields it leaves out; `sparse=True` (or "sparse": true in the body) changes only the fields sent.
        A SyncToken that is not the current one raises StaleObject: read the object again and reapply."""
        payload = dict(body)
        for name in ("Id", "SyncToken"):
            if payload.get(name) in (None, ""):
                raise InvalidInput(f"update() needs the object's {name}: read it with get() first")
        if sparse:
            payload["sparse"] = True
        return _unwrap(self.request("POST", _path(entity), json=payload), entity)

    def delete(self, entity: str, entity_id: str, sync_token: str) -> dict[str, Any]:
        """Delete an object (Intuit's operation=delete); returns {"Id", "status": "Deleted", ...}.
        Name-list objects such as Customer are not deleted at Intuit: make them inactive (Active false)."""
        body = {"Id": _entity_id(entity_id), "SyncToken": str(sync_token)}
        return _unwrap(self.request("POST", _path(entity), params={"operation": "delete"}, json=body), entity)

    def report(self, name: str, **params: Any) -> dict[str, Any]:
        """A report, e.g. report("ProfitAndLoss", start_date="2026-01-01", end_date="2026-03-31")."""
        if not ENTITY_NAME.fullmatch(name):
            raise InvalidInput(f"{name!r} is not a report name such as ProfitAndLoss")
        return self.request("GET", f"reports/{name}", params={k: _param(v) for k, v in params.items()})

    def change_data_capture(self, entities: Sequence[str], changed_since: datetime | float) -> ChangeSet:
        """What changed in these entities since `changed_since` (at most 30 days ago): Intuit's CDC, one call.

        Deleted objects come back with `deleted=True`. `truncated` says Intuit's answer hit its 1,000-object
        limit: catch_up() reads past it, which is what to use when that can happen."""
        since, params = cdc_params(entities, changed_since, now=time.time())
        return self._cdc(params, since)

    def catch_up(self, entities: Sequence[str], last_processed: datetime | float) -> ChangeSet:
        """The changes a webhook consumer missed since the last event it processed (its `occurred_at`).

        One CDC call per entity, so the 1,000-object limit applies to each entity on its own. An entity
        whose answer is still full is read again with Intuit's query by Metadata.LastUpdatedTime, page by
        page, so every object changed since is returned; so is one whose turn comes after the moment has
        left CDC's 30 days (earlier entities took that long). Either is named in `paged_by_query`, because
        a deletion CDC did not list cannot be found by a query."""
        names = list(entities) if not isinstance(entities, str) else [entities]
        since, _ = cdc_params(names, last_processed, now=time.time())  # every check, once, before any call
        merged: dict[str, list[ChangedObject]] = {}
        paged = []
        for name in names:
            merged[name] = []
            if within_cdc_window(since, now=time.time()):
                part = self._cdc(cdc_query([name], since), since)
                merged[name] = part.changes.get(name, [])
                if not part.truncated:
                    continue
            merged[name] = with_queried(name, merged[name], self._changed_since(name, since))
            paged.append(name)
        return ChangeSet(since, merged, paged_by_query=tuple(paged))

    def _cdc(self, params: dict[str, str], since: datetime) -> ChangeSet:
        body = self.request("GET", "cdc", params=params)
        return parse_cdc(body, params["entities"].split(","), since)

    def _changed_since(self, entity: str, since: datetime) -> Iterator[dict[str, Any]]:
        """Every object of `entity` changed since `since`, oldest change first, each page read from the newest
        change of the one before (bulk.next_page_start), never from a fixed position in a list that moves."""
        position = 1
        while True:
            statement = f"{changed_since_page(entity, since)} STARTPOSITION {position} MAXRESULTS {QUERY_MAX_RESULTS}"
            items = _query_items(self._query(statement))
            yield from items
            if len(items) < QUERY_MAX_RESULTS:
                return
            since, position = next_page_start(items, since, position)

    def batch(self, operations: Sequence[BatchOperation]) -> list[BatchResult]:
        """Run the operations in Intuit's batch requests of at most BATCH_MAX_OPERATIONS each, in order.

        Results come back in the order of `operations`, matched by bId; a failed item carries its typed
        error (ValidationFailed, StaleObject, ...) in `error` and raises it from `result()`.

        Intuit applies each request on its own. If the first fails, this raises its error (nothing was
        applied). If a later one fails, the requests before it were applied: their results come back, and
        the failed request's operations and every later one (not sent) carry its error, so a caller sends
        again only those instead of duplicating what Intuit already did."""
        items = batch_items(operations)
        results: list[BatchResult] = []
        for chunk in chunks(items):
            try:
                body = self.request("POST", "batch", json={"BatchItemRequest": [item for _, _, item in chunk]})
            except QboConnectError as error:
                if not results:
                    raise
                results += not_done(items[len(results) :], error)
                break
            results += parse_batch(body, chunk, None)
        return results

    def company_info(self) -> dict[str, Any]:
        realm_id = self._access().realm_id
        return _unwrap(self.request("GET", f"companyinfo/{quote(realm_id, safe='')}"), "CompanyInfo")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Any call under /v3/company/<realm>/ (`path` is relative to it, e.g. "invoice/130/send"); returns the JSON.

        Writes (any method but GET) get a `requestid` unless `params` has one, so retries are idempotent."""
        method = method.upper()
        relative = _relative_path(path)
        query: dict[str, Any] = {"minorversion": self.minor_version, **(params or {})}
        if method != "GET":
            query.setdefault(REQUEST_ID_PARAM, uuid.uuid4().hex)
        extra = dict(headers or {})
        if data is not None:
            extra.setdefault("Content-Type", "application/text")
        access = self._access()
        refreshed = throttled = failed = 0
        while True:
            try:
                return self._send(access, method, relative, query=query, json=json, data=data, headers=extra)
            except Unauthorized:
                if refreshed:
                    raise  # the token was refreshed (or just was) and is still refused
                refreshed += 1
                with raised_as_vault_unavailable():
                    access = self._tokens.token_rejected(
                        self.connection_id,
                        access.access_token,
                        min_valid_seconds=self._min_valid_seconds,
                        not_after=self._not_after(),
                    )
            except Throttled as error:
                wait = error.retry_after if error.retry_after is not None else self._max_throttle_wait
                if throttled >= self._throttle_retries or wait > self._max_throttle_wait:
                    raise
                throttled += 1
                self._log_retry("Intuit is throttling this company; waiting as asked", error, method, relative, wait)
                self._sleep(wait)
            except IntuitUnavailable as error:
                if failed >= self._transient_retries:
                    raise
                failed += 1
                wait = random.uniform(0, min(8.0, 0.5 * 2**failed))  # noqa: S311 - jitter, not security
                self._log_retry("Intuit's API failed; retrying", error, method, relative, wait)
                self._sleep(wait)

    # --- internals ----------------------------------------------------------------------------
    def _access(self) -> ConnectionAccess:
        with raised_as_vault_unavailable():
            return self._tokens.access(
                self.connection_id, min_valid_seconds=self._min_valid_seconds, not_after=self._not_after()
            )

    def _query(self, statement: str) -> dict[str, Any]:
        return self.request("GET", "query", params={"query": statement})

    def _send(
        self,
        access: ConnectionAccess,
        method: str,
        relative: str,
        *,
        query: Mapping[str, Any],
        json: Any,
        data: str | bytes | None,
        headers: Mapping[str, str],
    ) -> dict[str, Any]:
        if not self._settings.is_allowed_api_base_url(access.base_url):
            # The token must never travel to a host the deployment did not allow.
            raise Forbidden(
                f"The base URL {access.base_url!r} is not an allowed QuickBooks API host: fix the connection"
            )
        url = f"{access.base_url.rstrip('/')}{intuit.company_path(access.realm_id)}/{relative}"
        sent_headers = {
            **headers,
            "Accept": "application/json",
            "Authorization": f"Bearer {access.access_token}",
        }
        failure, sent = None, True
        try:
            with self._limiters.gate(access.realm_id).admit():
                response = self._session.request(
                    method,
                    url,
                    params=query,
                    json=json,
                    data=data,
                    headers=sent_headers,
                    timeout=self._timeout,
                )
        except requests.RequestException as error:
            failure, sent = type(error).__name__, not certainly_not_sent(error)
        if sent:  # answered, or sent and its answer lost: Intuit counts it either way
            self._count(access, method, relative, json)
        if failure is not None:
            # Raised outside the except block: a requests exception holds the request, and with it the
            # Authorization header, so it must not even ride along as __context__.
            raise IntuitUnavailable(f"Intuit's API did not answer ({failure}): try again shortly")
        error = error_for_response(response)
        if error is not None:
            raise error
        try:
            body = response.json()
        except ValueError:
            raise IntuitUnavailable(
                f"Intuit's API answered HTTP {response.status_code} without JSON: try again shortly",
                intuit_tid=response.headers.get(intuit.SUPPORT_ID_HEADER),
            ) from None
        if isinstance(body, dict) and ("Fault" in body or "fault" in body):
            # Some answers report a fault with HTTP 200; they mean the same as the 400 kind.
            raise _fault_error(response, body)
        return body if isinstance(body, dict) else {"value": body}

    def _count(self, access: ConnectionAccess, method: str, relative: str, body: Any) -> None:
        if self._meter is not None:
            reads, writes = call_kinds(method, relative, body)
            usage = UsageKey(access.client_id or "unknown", access.connection_id, access.environment)
            self._meter.count(usage, reads=reads, writes=writes)

    def _log_retry(self, message: str, error: QboConnectError, method: str, path: str, wait: float) -> None:
        logger.warning(
            message,
            extra={
                "connection_id": self.connection_id,
                "method": method,
                "resource": path.split("/", 1)[0],
                "error_code": error.code.value,
                "fault_code": error.fault_code,
                "intuit_tid": error.intuit_tid,
                "wait_seconds": round(wait, 3),
            },
        )


# --- helpers ------------------------------------------------------------------------------------
def _checked_page_size(page_size: int) -> int:
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= QUERY_MAX_RESULTS:
        raise InvalidInput(f"page_size must be a whole number from 1 to {QUERY_MAX_RESULTS} (Intuit's maximum)")
    return page_size


def _statement(statement: str) -> str:
    if not isinstance(statement, str) or not statement.strip():
        raise InvalidInput("Give a query such as `select * from Customer`")
    return statement.strip().rstrip(";").rstrip()


def _path(entity: str) -> str:
    if not isinstance(entity, str) or not ENTITY_NAME.fullmatch(entity):
        raise InvalidInput(f"{entity!r} is not an entity name such as Customer or Invoice")
    return entity.lower()  # Intuit's resource paths are the entity name in lower case


def _entity_id(entity_id: Any) -> str:
    text = str(entity_id)
    if not _ENTITY_ID.fullmatch(text):
        raise InvalidInput(f"{text[:70]!r} is not an object Id")
    return text


def _relative_path(path: str) -> str:
    relative = path.strip().lstrip("/")
    if not relative or "://" in relative or any(part in ("", ".", "..") for part in relative.split("/")):
        raise InvalidInput(f"{path!r} is not a path under /v3/company/<realm>/ such as `invoice/130`")
    return relative


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unwrap(body: dict[str, Any], entity: str) -> dict[str, Any]:
    """Intuit wraps an object in its entity name: {"Customer": {...}, "time": ...}."""
    wanted = entity.lower()
    for key, value in body.items():
        if key.lower() == wanted and isinstance(value, dict):
            return value
    raise IntuitUnavailable(f"Intuit's answer has no {entity} object: try again, or use request() to see it")


def _query_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects of a QueryResponse: its one list (Intuit leaves it out on an empty page)."""
    response = body.get("QueryResponse") or {}
    for value in response.values():
        if isinstance(value, list):
            return value
    return []


def _fault_error(response: requests.Response, body: dict[str, Any]) -> QboConnectError:
    """A fault Intuit sent with HTTP 200, classified as if it came with the status it means."""
    shaped = copy.copy(response)
    shaped.status_code = 401 if fault_of(body).get("type", "").upper() == "AUTHENTICATION" else 400
    return error_for_response(shaped) or ValidationFailed("QuickBooks refused the request")
