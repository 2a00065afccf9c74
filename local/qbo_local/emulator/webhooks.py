"""Intuit's webhooks, sent by the emulator: when a company's entity is created, updated or deleted
through the accounting API, every app that has a webhook endpoint and a live grant on that company
gets a signed POST, as Intuit sends them.

Deliveries run on a background thread so that the API call that caused them answers at once. Changes
queued together for one app and company go out as one delivery (Intuit aggregates too). A delivery
that does not get a 2xx within Intuit's 3 seconds is retried after each of `retry_delays`, with the
same body and signature; every attempt is recorded for the admin API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import requests
from qbo_connect import intuit

log = logging.getLogger("qbo_local.emulator.webhooks")

_VERBS = {operation: verb for verb, operation in intuit.WEBHOOK_OPERATIONS.items()}
MAX_RECORDED_DELIVERIES = 200


class PayloadShape(StrEnum):
    CLOUDEVENTS = "cloudevents"
    LEGACY = "legacy"


@dataclass(frozen=True)
class Subscription:
    client_id: str
    url: str
    verifier_token: str = field(repr=False)
    shape: PayloadShape = PayloadShape.CLOUDEVENTS

    def public_dict(self) -> dict[str, str]:
        return {"client_id": self.client_id, "url": self.url, "format": self.shape.value}


@dataclass(frozen=True)
class Change:
    realm_id: str
    entity: str
    entity_id: str
    operation: str  # Create, Update, Delete
    at: float


def signature(body: bytes, verifier_token: str) -> str:
    return base64.b64encode(hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()).decode("ascii")


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(changes: list[Change], shape: PayloadShape) -> bytes:
    """One delivery's body, in the shape Intuit sends for the subscription."""
    if shape is PayloadShape.CLOUDEVENTS:
        events = [
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "intuit.emulator",
                "type": f"{intuit.CLOUDEVENTS_TYPE_PREFIX}{c.entity.lower()}.{_VERBS[c.operation]}.v1",
                "datacontenttype": "application/json",
                "time": _iso(c.at),
                intuit.CLOUDEVENTS_ENTITY_ID_FIELD: c.entity_id,
                intuit.CLOUDEVENTS_REALM_FIELD: c.realm_id,
                "data": {},
            }
            for c in changes
        ]
        return json.dumps(events).encode()
    by_realm: dict[str, list[dict[str, str]]] = {}
    for c in changes:
        by_realm.setdefault(c.realm_id, []).append(
            {"name": c.entity, "id": c.entity_id, "operation": c.operation, "lastUpdated": _iso(c.at)}
        )
    notifications = [
        {"realmId": realm_id, "dataChangeEvent": {"entities": entities}} for realm_id, entities in by_realm.items()
    ]
    return json.dumps({"eventNotifications": notifications}).encode()


class WebhookSender:
    def __init__(
        self,
        *,
        recipients: Callable[[str], set[str]],
        sleep: Callable[[float], None],
        retry_delays: tuple[float, ...] = (1.0, 2.0, 3.0),
    ) -> None:
        self._recipients = recipients  # realm ID -> client IDs with a live grant on it
        self._sleep = sleep
        self.retry_delays = retry_delays
        self._lock = threading.Condition()
        self._subscriptions: dict[str, Subscription] = {}
        self._pending: list[Change] = []
        self._busy = False
        self._deliveries: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None

    # --- the admin API ------------------------------------------------------------------------------
    def subscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions[subscription.client_id] = subscription

    def unsubscribe(self, client_id: str | None = None) -> None:
        with self._lock:
            if client_id is None:
                self._subscriptions.clear()
            else:
                self._subscriptions.pop(client_id, None)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "subscriptions": [s.public_dict() for s in self._subscriptions.values()],
                "deliveries": [dict(d) for d in self._deliveries],
                "pending": len(self._pending),
            }

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued change was delivered (or given up); True if it came to that."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and not self._busy, timeout=timeout)

    # --- the accounting API --------------------------------------------------------------------------
    def entity_changed(self, change: Change) -> None:
        with self._lock:
            if not self._subscriptions:
                return
            self._pending.append(change)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="emulator-webhooks", daemon=True)
                self._thread.start()
            self._lock.notify_all()

    # --- the sending thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._lock.wait_for(lambda: bool(self._pending), timeout=60):
                    self._thread = None
                    return
                changes, self._pending = self._pending, []
                subscriptions = dict(self._subscriptions)
                self._busy = True
            try:
                for (client_id, realm_id), group in self._by_app_and_realm(changes, subscriptions).items():
                    self._deliver(subscriptions[client_id], realm_id, group)
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()

    def _by_app_and_realm(
        self, changes: list[Change], subscriptions: dict[str, Subscription]
    ) -> dict[tuple[str, str], list[Change]]:
        groups: dict[tuple[str, str], list[Change]] = {}
        for change in changes:
            for client_id in sorted(self._recipients(change.realm_id) & subscriptions.keys()):
                groups.setdefault((client_id, change.realm_id), []).append(change)
        return groups

    def _deliver(self, subscription: Subscription, realm_id: str, changes: list[Change]) -> None:
        body = payload(changes, subscription.shape)
        headers = {
            "Content-Type": "application/json",
            intuit.WEBHOOK_SIGNATURE_HEADER: signature(body, subscription.verifier_token),
        }
        attempts: list[Any] = []
        for delay in (0.0, *self.retry_delays):
            if delay:
                self._sleep(delay)
            try:
                answer = requests.post(
                    subscription.url, data=body, headers=headers, timeout=intuit.WEBHOOK_RESPONSE_SECONDS
                )
                attempts.append(answer.status_code)
                if 200 <= answer.status_code < 300:
                    break
            except requests.RequestException as error:
                attempts.append(type(error).__name__)
        delivered = isinstance(attempts[-1], int) and 200 <= attempts[-1] < 300
        if not delivered:
            log.warning("Webhook to %s not acknowledged after %d attempts", subscription.url, len(attempts))
        with self._lock:
            self._deliveries.append(
                {
                    "client_id": subscription.client_id,
                    "realm_id": realm_id,
                    "changes": len(changes),
                    "format": subscription.shape.value,
                    "attempts": attempts,
                    "delivered": delivered,
                }
            )
            del self._deliveries[:-MAX_RECORDED_DELIVERIES]
