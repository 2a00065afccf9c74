"""The QuickBooks Online accounting API: CompanyInfo, Preferences, Customer and Invoice CRUD, query, one report.

Every call goes through api_call: count it, check the bearer token and its scope, apply the rate
limits, then injected faults, then the view. Faults come after the limiter on purpose: an injected
delay then holds a concurrency slot, as a slow Intuit would.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from flask import Blueprint, Response, request
from qbo_connect import intuit

from .common import emulator, fault_response, injected_response, json_response
from .entities import CUSTOMER, INVOICE, EntityBook
from .errors import AccessRejected, ApiFault
from .facts import ACCOUNTING_SCOPE, REALM_ROUTE_PREFIX, subscription_is_read_only
from .faults import Group
from .query import parse
from .responses import (
    company_info,
    count_body,
    deleted_body,
    entity_body,
    intuit_date,
    intuit_time,
    preferences,
    profit_and_loss,
    query_body,
)
from .state import Company, EmulatorState, Grant
from .webhooks import Change

bp = Blueprint("accounting", __name__, url_prefix=REALM_ROUTE_PREFIX)

COMPANY_INFO = "CompanyInfo"
ENTITY_PATHS = {"customer": CUSTOMER, "invoice": INVOICE}
QUERY_ENTITIES = {"customer": CUSTOMER, "invoice": INVOICE, "companyinfo": COMPANY_INFO}

View = Callable[..., Response]


def api_call(resource: str | None = None) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(realm_id: str, **kwargs: Any) -> Response:
            state = emulator()
            state.stats.record_api(resource or str(kwargs.get("entity", "")).lower())
            try:
                grant = _authorized_grant(state, realm_id)
                limits = state.limits()
                batch = resource == "batch"
                if limits is not None and not state.limiter.acquire(
                    realm_id, grant.client_id, state.now(), limits, batch=batch
                ):
                    raise ApiFault.throttle()
                try:
                    if (injected := injected_response(Group.API)) is not None:
                        return injected
                    return view(realm_id, **kwargs)
                finally:
                    if limits is not None:
                        state.limiter.release(realm_id, grant.client_id)
            except ApiFault as fault:
                return fault_response(fault)

        return wrapper

    return decorate


def _authorized_grant(state: EmulatorState, realm_id: str) -> Grant:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiFault.authentication("no bearer access token was sent")
    try:
        grant = state.authenticate_access(token.strip(), realm_id)
    except AccessRejected as rejected:
        raise ApiFault.authentication(str(rejected)) from None
    if ACCOUNTING_SCOPE not in grant.scopes:
        raise ApiFault.authorization(f"The app was not granted the {ACCOUNTING_SCOPE} scope for this company.")
    company = state.company(realm_id)
    if company is not None and company.subscription_lapsed:
        raise ApiFault.authorization("The company's QuickBooks subscription is not active.")
    return grant


def _company(realm_id: str) -> Company:
    company = emulator().company(realm_id)
    if company is None:
        raise ApiFault.not_found(COMPANY_INFO, realm_id)
    return company


def _entity(path_name: str) -> str:
    entity = ENTITY_PATHS.get(path_name.lower())
    if entity is None:
        raise ApiFault.unsupported(f"{request.method} {path_name}")
    return entity


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiFault.bad_request("The request body must be a JSON object.")
    return body


def _company_info(company: Company) -> dict[str, Any]:
    return company_info(
        realm_id=company.realm_id,
        name=company.name,
        created_at=company.created_at,
        subscription_status=company.subscription_status,
    )


def _writable(company: Company) -> EntityBook:
    """The company's book, to change; a company whose subscription ended is read only (fault 6190)."""
    if subscription_is_read_only(company.subscription_status):
        raise ApiFault.read_only_company(company.subscription_status)
    return company.book


@bp.get("/companyinfo/<company_id>")
@api_call("companyinfo")
def read_company_info(realm_id: str, company_id: str) -> Response:
    company = _company(realm_id)
    if company_id != realm_id:
        raise ApiFault.not_found(COMPANY_INFO, company_id)
    return json_response(entity_body(COMPANY_INFO, _company_info(company), emulator().now()))


@bp.get("/preferences")
@api_call("preferences")
def read_preferences(realm_id: str) -> Response:
    company = _company(realm_id)
    return json_response(entity_body("Preferences", preferences(created_at=company.created_at), emulator().now()))


@bp.get("/<entity>/<entity_id>")
@api_call()
def read_entity(realm_id: str, entity: str, entity_id: str) -> Response:
    name = _entity(entity)
    obj = _company(realm_id).book.get(name, entity_id)
    return json_response(entity_body(name, obj, emulator().now()))


@bp.post("/<entity>")
@api_call()
def write_entity(realm_id: str, entity: str) -> Response:
    name = _entity(entity)
    body = _json_object()
    book = _writable(_company(realm_id))
    now = emulator().now()
    operation = request.args.get("operation", "").lower()
    if operation == "delete":
        deleted_id = book.delete(name, body, now)
        _changed(realm_id, name, deleted_id, "Delete", now)
        return json_response(deleted_body(name, deleted_id, now))
    if operation not in ("", "create", "update"):
        raise ApiFault.unsupported(f"{operation} on {name}")
    if operation == "update" or "Id" in body:
        obj = book.update(name, body, now)
        _changed(realm_id, name, obj["Id"], "Update", now)
    else:
        obj = book.create(name, body, now)
        _changed(realm_id, name, obj["Id"], "Create", now)
    return json_response(entity_body(name, obj, now))


def _changed(realm_id: str, entity: str, entity_id: str, operation: str, now: float) -> None:
    emulator().webhooks.entity_changed(Change(realm_id, entity, str(entity_id), operation, now))


@bp.route("/query", methods=["GET", "POST"])
@api_call("query")
def run_query(realm_id: str) -> Response:
    # Intuit also takes the query as a POST body (Content-Type: application/text).
    text = request.args.get("query") or (request.get_data(as_text=True) if request.method == "POST" else "")
    query = parse(text)
    entity = QUERY_ENTITIES.get(query.entity.lower())
    if entity is None:
        raise ApiFault.query_error(f"QueryValidationError: Invalid context declaration : {query.entity}")
    company = _company(realm_id)
    items = (
        [_company_info(company)] if entity == COMPANY_INFO else company.book.select(entity, query.filters, query.order)
    )
    now = emulator().now()
    if query.count:
        return json_response(count_body(len(items), now))
    first = query.start_position - 1
    return json_response(query_body(entity, items[first : first + query.max_results], query.start_position, now))


@bp.get("/reports/<report>")
@api_call("reports")
def read_report(realm_id: str, report: str) -> Response:
    if report != "ProfitAndLoss":
        raise ApiFault.unsupported(f"report {report}")
    company = _company(realm_id)
    now = emulator().now()
    today = intuit_date(now)
    start = _report_date("start_date", today[:4] + "-01-01")
    end = _report_date("end_date", today)
    income = company.book.invoice_total(start, end)
    return json_response(profit_and_loss(start_date=start, end_date=end, income=income, now=now))


def _report_date(name: str, default: str) -> str:
    value = request.args.get(name) or default
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ApiFault.bad_request(f"{name} must be a date as YYYY-MM-DD") from None


@bp.get("/cdc")
@api_call("cdc")
def change_data_capture(realm_id: str) -> Response:
    names = [n.strip() for n in request.args.get("entities", "").split(",") if n.strip()]
    raw_since = request.args.get("changedSince", "")
    try:
        since = datetime.fromisoformat(raw_since.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ApiFault.bad_request("changedSince must be a date-time such as 2026-11-28T14:00:00Z") from None
    now = emulator().now()
    if since < now - intuit.CDC_WINDOW_SECONDS:
        raise ApiFault.bad_request("changedSince must be within the last 30 days")
    entities = [ENTITY_PATHS.get(name.lower()) for name in names]
    if not entities or None in entities:
        raise ApiFault.bad_request(f"entities must name supported entities, got {names}")
    book = _company(realm_id).book
    responses, total = [], 0
    for entity in entities:
        items = book.changed_since(entity, since)[: max(0, intuit.CDC_MAX_OBJECTS - total)]
        total += len(items)
        responses.append({entity: items, "startPosition": 1, "maxResults": len(items)} if items else {})
    return json_response({"CDCResponse": [{"QueryResponse": responses}], "time": intuit_time(now)})


@bp.post("/batch")
@api_call("batch")
def run_batch(realm_id: str) -> Response:
    body = _json_object()
    items = body.get("BatchItemRequest")
    if not isinstance(items, list) or not items or len(items) > intuit.BATCH_MAX_OPERATIONS:
        raise ApiFault.bad_request(f"BatchItemRequest must hold 1 to {intuit.BATCH_MAX_OPERATIONS} items")
    company, now = _company(realm_id), emulator().now()
    answers = []
    for item in items:
        bid = item.get("bId") if isinstance(item, dict) else None
        try:
            answers.append({"bId": bid, **_batch_item(realm_id, company, item, now)})
        except ApiFault as fault:
            answers.append({"bId": bid, "Fault": fault.body(now)["Fault"]})
    return json_response({"BatchItemResponse": answers, "time": intuit_time(now)})


def _batch_item(realm_id: str, company: Company, item: Any, now: float) -> dict[str, Any]:
    if not isinstance(item, dict) or not item.get("bId"):
        raise ApiFault.bad_request("each batch item is an object with a bId")
    book = company.book
    if "Query" in item:
        query = parse(str(item["Query"]))
        entity = ENTITY_PATHS.get(query.entity.lower())
        if entity is None:
            raise ApiFault.query_error(f"QueryValidationError: Invalid context declaration : {query.entity}")
        found = book.select(entity, query.filters, query.order)
        first = query.start_position - 1
        return {
            "QueryResponse": query_body(entity, found[first : first + query.max_results], query.start_position, now)[
                "QueryResponse"
            ]
        }
    operation = str(item.get("operation", "")).lower()
    named = [ENTITY_PATHS[key.lower()] for key in item if key.lower() in ENTITY_PATHS]
    if operation not in ("create", "update", "delete") or len(named) != 1:
        raise ApiFault.bad_request("a batch item has operation create, update or delete and one entity object")
    (entity,) = named
    book = _writable(company)
    payload = next(v for k, v in item.items() if k.lower() == entity.lower())
    if not isinstance(payload, dict):
        raise ApiFault.bad_request(f"{entity} must be an object")
    if operation == "delete":
        deleted_id = book.delete(entity, payload, now)
        _changed(realm_id, entity, deleted_id, "Delete", now)
        return {entity: {"domain": "QBO", "status": "Deleted", "Id": deleted_id}}
    obj = book.update(entity, payload, now) if operation == "update" else book.create(entity, payload, now)
    _changed(realm_id, entity, obj["Id"], "Update" if operation == "update" else "Create", now)
    return {entity: obj}
