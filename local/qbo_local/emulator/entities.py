"""A company's Customers and Invoices: JSON objects with Id, SyncToken and Intuit's validation rules.

Objects are stored as plain dicts because they are JSON documents; callers always get copies.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from typing import Any

from qbo_connect import intuit

from .errors import ApiFault
from .facts import FaultCode
from .query import Condition, OrderKey, sort_key
from .responses import address, intuit_date, meta_data

CUSTOMER = "Customer"
INVOICE = "Invoice"
ENTITIES = (CUSTOMER, INVOICE)

# Fields the server owns: a request can send them, but they never overwrite the stored value.
_SERVER_FIELDS = frozenset({"Id", "SyncToken", "MetaData", "domain", "sparse", "FullyQualifiedName"})
_USD = {"value": "USD", "name": "United States Dollar"}


def seed_customer_body(number: int, display_name: str) -> dict[str, Any]:
    """A filled-in customer, so seeded data has every field a real sandbox customer shows."""
    given, _, family = display_name.partition(" ")
    slug = "".join(ch for ch in display_name.lower() if ch.isalnum()) or f"customer{number}"
    return {
        "DisplayName": display_name,
        "GivenName": given,
        "FamilyName": family or "Customer",
        "CompanyName": display_name,
        "PrimaryEmailAddr": {"Address": f"{slug}@example.com"},
        "PrimaryPhone": {"FreeFormNumber": f"(555) 555-{number % 10000:04d}"},
        "BillAddr": address(f"{100 + number} Main Street", "Bayshore", "CA", "94326", str(number)),
        "Notes": "Seeded by the Intuit emulator",
    }


class EntityBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in ENTITIES}
        self._next_id: dict[str, int] = dict.fromkeys(ENTITIES, 1)
        self._next_doc_number = 1001
        # For change data capture: when each object last changed, and the objects deleted, by entity.
        self._changed_at: dict[str, dict[str, float]] = {name: {} for name in ENTITIES}
        self._deleted: dict[str, dict[str, float]] = {name: {} for name in ENTITIES}

    def get(self, entity: str, entity_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._existing(entity, entity_id))

    def create(self, entity: str, body: dict[str, Any], now: float) -> dict[str, Any]:
        with self._lock:
            entity_id = str(self._next_id[entity])
            obj = self._build(entity, entity_id, body, now, created=now)
            self._next_id[entity] += 1
            self._items[entity][entity_id] = obj
            self._changed_at[entity][entity_id] = now
            return copy.deepcopy(obj)

    def update(self, entity: str, body: dict[str, Any], now: float) -> dict[str, Any]:
        """Full update (omitted writable fields are cleared) or, with "sparse": true, a merge."""
        entity_id, sync_token = _id_and_sync_token(body)
        with self._lock:
            current = self._existing(entity, entity_id)
            if current["SyncToken"] != sync_token:
                raise ApiFault.stale_object()
            if body.get("sparse") is True:
                merged = {k: v for k, v in current.items() if k not in _SERVER_FIELDS}
                merged.update(body)
            else:
                merged = body
            obj = self._build(entity, entity_id, merged, now, created=now, previous=current)
            obj["MetaData"]["CreateTime"] = current["MetaData"]["CreateTime"]
            obj["SyncToken"] = str(int(sync_token) + 1)
            self._items[entity][entity_id] = obj
            self._changed_at[entity][entity_id] = now
            return copy.deepcopy(obj)

    def delete(self, entity: str, body: dict[str, Any], now: float = 0.0) -> str:
        entity_id, sync_token = _id_and_sync_token(body)
        with self._lock:
            if self._existing(entity, entity_id)["SyncToken"] != sync_token:
                raise ApiFault.stale_object()
            del self._items[entity][entity_id]
            self._changed_at[entity].pop(entity_id, None)
            self._deleted[entity][entity_id] = now
            return entity_id

    def changed_since(self, entity: str, since: float) -> list[dict[str, Any]]:
        """Objects changed at or after `since`, then those deleted since, as Intuit's CDC lists them."""
        with self._lock:
            changed = [
                copy.deepcopy(self._items[entity][entity_id])
                for entity_id, at in sorted(self._changed_at[entity].items(), key=lambda pair: int(pair[0]))
                if at >= since
            ]
            deleted = [
                {"domain": "QBO", "status": "Deleted", "Id": entity_id, "MetaData": meta_data(at, at)}
                for entity_id, at in sorted(self._deleted[entity].items(), key=lambda pair: int(pair[0]))
                if at >= since
            ]
            return changed + deleted

    def select(self, entity: str, filters: Iterable[Condition], order: Iterable[OrderKey] = ()) -> list[dict[str, Any]]:
        """Matching objects sorted by `order`; in Id order without one (or between equal keys).

        As at Intuit, inactive objects of a name-list entity (a Customer) match only a query whose where
        clause names Active, such as `Active IN (true, false)` or `Active = false`."""
        filters = tuple(filters)
        if entity in intuit.NAME_LIST_ENTITIES and not any(c.field.lower() == "active" for c in filters):
            filters += (Condition("Active", "=", "true"),)
        with self._lock:
            found = sorted(self._items[entity].values(), key=lambda obj: int(obj["Id"]))
            found = [copy.deepcopy(obj) for obj in found if _matches(obj, filters)]
        for key in reversed(tuple(order)):  # stable sorts, the last key first
            found.sort(key=lambda obj: sort_key(_value(obj, key.field)), reverse=key.descending)
        return found

    def count(self, entity: str) -> int:
        with self._lock:
            return len(self._items[entity])

    def invoice_total(self, start_date: str, end_date: str) -> float:
        with self._lock:
            return sum(
                float(inv["TotalAmt"])
                for inv in self._items[INVOICE].values()
                if start_date <= inv["TxnDate"] <= end_date
            )

    # Called with the lock held.

    def _existing(self, entity: str, entity_id: str) -> dict[str, Any]:
        obj = self._items[entity].get(str(entity_id))
        if obj is None:
            raise ApiFault.not_found(entity, str(entity_id))
        return obj

    def _build(
        self,
        entity: str,
        entity_id: str,
        body: dict[str, Any],
        now: float,
        *,
        created: float,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if entity == CUSTOMER:
            return self._customer(entity_id, body, now, created)
        return self._invoice(entity_id, body, now, created, previous)

    def _customer(self, entity_id: str, body: dict[str, Any], now: float, created: float) -> dict[str, Any]:
        name = body.get("DisplayName")
        if not isinstance(name, str) or not name.strip():
            raise ApiFault.required("DisplayName")
        for other in self._items[CUSTOMER].values():
            if other["DisplayName"] == name and other["Id"] != entity_id:
                raise ApiFault.validation(
                    FaultCode.DUPLICATE_NAME,
                    "Duplicate Name Exists Error",
                    "The name supplied already exists. : Another customer, vendor or employee is already "
                    "using this name. Please use a different name.",
                )
        customer: dict[str, Any] = {
            "Taxable": False,
            "Job": False,
            "BillWithParent": False,
            "Balance": 0,
            "BalanceWithJobs": 0,
            "CurrencyRef": dict(_USD),
            "PreferredDeliveryMethod": "Print",
            "IsProject": False,
            "Active": True,
            "PrintOnCheckName": name,
        }
        customer.update(_writable(body))
        customer.update(
            {
                "domain": "QBO",
                "sparse": False,
                "Id": entity_id,
                "SyncToken": "0",
                "MetaData": meta_data(created, now),
                "FullyQualifiedName": name,
            }
        )
        return customer

    def _invoice(
        self,
        entity_id: str,
        body: dict[str, Any],
        now: float,
        created: float,
        previous: dict[str, Any] | None,
    ) -> dict[str, Any]:
        lines = body.get("Line")
        if not isinstance(lines, list) or not lines:
            raise ApiFault.required("Line")
        customer_ref = body.get("CustomerRef")
        if not isinstance(customer_ref, dict) or not customer_ref.get("value"):
            raise ApiFault.required("CustomerRef")
        customer = self._items[CUSTOMER].get(str(customer_ref["value"]))
        if customer is None:
            raise ApiFault.validation(
                FaultCode.INVALID_REFERENCE,
                "Invalid Reference Id",
                f"Invalid Reference Id : Customer {customer_ref['value']} does not exist",
            )
        numbered = [_invoice_line(index, line) for index, line in enumerate(lines, start=1)]
        total = round(sum(line["Amount"] for line in numbered), 2)
        if previous is not None:
            doc_number = previous["DocNumber"]
        else:
            doc_number = str(self._next_doc_number)
            self._next_doc_number += 1
        txn_date = body.get("TxnDate") or intuit_date(now)
        invoice: dict[str, Any] = {
            "AllowIPNPayment": False,
            "AllowOnlinePayment": False,
            "AllowOnlineCreditCardPayment": False,
            "AllowOnlineACHPayment": False,
            "Deposit": 0,
            "DocNumber": doc_number,
            "TxnDate": txn_date,
            "DueDate": txn_date,
            "CurrencyRef": dict(_USD),
            "PrintStatus": "NeedToPrint",
            "EmailStatus": "NotSet",
            "ApplyTaxAfterDiscount": False,
        }
        invoice.update(_writable(body))
        invoice.update(
            {
                "Line": numbered,
                "CustomerRef": {"value": customer["Id"], "name": customer["DisplayName"]},
                "TotalAmt": total,
                "Balance": total,
                "domain": "QBO",
                "sparse": False,
                "Id": entity_id,
                "SyncToken": "0",
                "MetaData": meta_data(created, now),
            }
        )
        return invoice


def _writable(body: dict[str, Any]) -> dict[str, Any]:
    return {key: copy.deepcopy(value) for key, value in body.items() if key not in _SERVER_FIELDS}


def _invoice_line(number: int, line: Any) -> dict[str, Any]:
    if not isinstance(line, dict):
        raise ApiFault.bad_request("each Line must be an object")
    try:
        amount = round(float(line.get("Amount", 0)), 2)
    except (TypeError, ValueError):
        raise ApiFault.bad_request(f"Line {number}: Amount must be a number") from None
    shaped = {"Id": str(number), "LineNum": number, "DetailType": "SalesItemLineDetail"}
    shaped.update(copy.deepcopy(line))
    shaped.update({"Id": str(number), "LineNum": number, "Amount": amount})
    return shaped


def _id_and_sync_token(body: dict[str, Any]) -> tuple[str, str]:
    for name in ("Id", "SyncToken"):
        if body.get(name) in (None, ""):
            raise ApiFault.required(name)
    try:
        int(str(body["SyncToken"]))
    except ValueError:
        raise ApiFault.stale_object() from None
    return str(body["Id"]), str(body["SyncToken"])


def _matches(obj: dict[str, Any], filters: tuple[Condition, ...]) -> bool:
    return all(condition.matches(_value(obj, condition.field)) for condition in filters)


def _value(obj: dict[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        # Intuit's query fields are case-insensitive: Metadata.LastUpdatedTime reads MetaData.
        value = _field(value, part) if isinstance(value, dict) else None
    if isinstance(value, dict):  # a reference such as CustomerRef compares by its value
        value = value.get("value")
    return value


def _field(obj: dict[str, Any], name: str) -> Any:
    if name in obj:
        return obj[name]
    return next((value for key, value in obj.items() if key.lower() == name.lower()), None)
