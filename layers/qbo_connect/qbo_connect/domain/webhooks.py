"""Intuit's webhook deliveries: checked, read, and routed to the connections they concern.

The rules, in the order a delivery meets them:
- Nothing in a delivery is parsed before its `intuit-signature` matches the HMAC-SHA256 (base64) of
  the raw body under one app's verifier token, compared in constant time. No match: nothing is read,
  written or published.
- Both payload shapes are read: CloudEvents (a JSON array; mandatory at Intuit) and the legacy
  `eventNotifications` object. Each entity change becomes one EntityChange with a stable event ID: the
  CloudEvents `id`, or for the legacy shape a hash of what identifies the change (realm, entity, ID,
  operation, lastUpdated), so that Intuit's retries of one delivery carry the same IDs.
- A change is published at most once per app: a conditional put claims its event ID (with a TTL)
  before it is published; a duplicate finds the claim and publishes nothing. A claim whose publishing
  failed is released so the retry publishes it; one left by a publisher that was stopped is taken over
  once it is stale, which SQS's redelivery of that publisher's message always is (settings). A publisher
  stopped after publishing but before recording it can so publish a change twice: same event_id.
- A change whose realm no connection of that app holds is counted and logged, never dropped silently.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from qbo_connect import intuit
from qbo_connect.domain.connection import Connection
from qbo_connect.ports import ConnectionEvent, StrictPublisher
from qbo_connect.records import record
from qbo_connect.settings import WEBHOOK_DEDUP_SECONDS

ENTITY_CHANGED = "QuickBooks Entity Changed"
# What the largest body the receiver reads can hold: legacy entity entries of about 80 bytes in 6 MB.
# Not a limit on what Intuit sends (it sets none) but a bound on the work a signed body can ask for.
MAX_CHANGES_PER_DELIVERY = 80_000

_REALM = re.compile(intuit.REALM_ID_PATTERN)
_ENTITY_NAME = re.compile(intuit.ENTITY_NAME_PATTERN)
_ENTITY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_EVENT_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
_FRACTION = re.compile(r"\.(\d{1,6})\d*")
_ENTITY_BY_LOWER = {name.lower(): name for name in intuit.WEBHOOK_ENTITIES}
_OPERATIONS = frozenset(intuit.WEBHOOK_OPERATIONS.values())


class PayloadFormat(StrEnum):
    CLOUDEVENTS = "cloudevents"
    LEGACY = "legacy"


class UnreadablePayload(ValueError):
    """A signed delivery in neither of Intuit's shapes. The message names what was wrong, never the data."""


@record
class EntityChange:
    event_id: str
    realm_id: str
    entity: str  # Intuit's name: "Invoice", "BillPayment"
    entity_id: str
    operation: str  # Intuit's legacy names: Create, Update, Delete, Merge, Void, Emailed
    occurred_at: str  # ISO 8601, UTC
    payload_format: str

    def as_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EntityChange:
        return cls(**{name: str(data[name]) for name in cls.__dataclass_fields__})


# --- the signature -------------------------------------------------------------------------------


def signature_of(body: bytes, verifier_token: str) -> str:
    """What Intuit sends in `intuit-signature` for this body."""
    digest = hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signing_app(body: bytes, signature: str | None, verifier_tokens: Mapping[str, str]) -> str | None:
    """The client ID of the app whose verifier token signed `body`, or None.

    Every app's token is tried (no early exit), and each comparison is constant-time over the digest."""
    if not signature:
        return None
    try:
        sent = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    found = None
    for client_id, token in verifier_tokens.items():
        expected = hmac.new(token.encode(), body, hashlib.sha256).digest()
        if hmac.compare_digest(expected, sent) and found is None:
            found = client_id
    return found


# --- the payload ---------------------------------------------------------------------------------


def read_delivery(body: bytes) -> tuple[list[EntityChange], int]:
    """The changes of a signed delivery, and how many entries were skipped as malformed.

    Raises UnreadablePayload when the body is in neither shape at all."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UnreadablePayload("the body is not JSON") from None
    if isinstance(document, list):
        entries = [_cloudevent(item) for item in document]
    elif isinstance(document, dict) and isinstance(document.get("eventNotifications"), list):
        entries = [change for n in document["eventNotifications"] for change in _notification(n)]
    else:
        raise UnreadablePayload("the body is neither a CloudEvents array nor an eventNotifications object")
    if len(entries) > MAX_CHANGES_PER_DELIVERY:
        raise UnreadablePayload(f"the delivery holds more than {MAX_CHANGES_PER_DELIVERY} changes")
    changes = [entry for entry in entries if entry is not None]
    return changes, len(entries) - len(changes)


def _cloudevent(item: Any) -> EntityChange | None:
    if not isinstance(item, dict):
        return None
    parts = str(item.get("type", "")).split(".")
    # qbo.<entity>.<verb>.v<n>
    if len(parts) != 4 or f"{parts[0]}." != intuit.CLOUDEVENTS_TYPE_PREFIX or not parts[3].startswith("v"):
        return None
    operation = intuit.WEBHOOK_OPERATIONS.get(parts[2].lower())
    return _change(
        event_id=item.get("id"),
        realm_id=item.get(intuit.CLOUDEVENTS_REALM_FIELD),
        entity=_entity_name(parts[1]),
        entity_id=item.get(intuit.CLOUDEVENTS_ENTITY_ID_FIELD),
        operation=operation,
        occurred_at=item.get("time"),
        payload_format=PayloadFormat.CLOUDEVENTS,
    )


def _notification(notification: Any) -> Iterable[EntityChange | None]:
    if not isinstance(notification, dict):
        return [None]
    realm_id = notification.get("realmId")
    entities = (
        (notification.get("dataChangeEvent") or {}).get("entities")
        if isinstance(notification.get("dataChangeEvent"), dict)
        else None
    )
    if not isinstance(entities, list):
        return [None]
    changes = []
    for entity in entities:
        if not isinstance(entity, dict):
            changes.append(None)
            continue
        identity = "|".join(str(entity.get(key, "")) for key in ("name", "id", "operation", "lastUpdated", "deletedId"))
        event_id = "legacy-" + hashlib.sha256(f"{realm_id}|{identity}".encode()).hexdigest()[:40]
        operation = entity.get("operation")
        changes.append(
            _change(
                event_id=event_id,
                realm_id=realm_id,
                entity=_entity_name(str(entity.get("name", ""))),
                entity_id=entity.get("id"),
                operation=operation if operation in _OPERATIONS else None,
                occurred_at=entity.get("lastUpdated"),
                payload_format=PayloadFormat.LEGACY,
            )
        )
    return changes


def _entity_name(raw: str) -> str:
    return _ENTITY_BY_LOWER.get(raw.lower(), raw[:1].upper() + raw[1:])


def _change(**fields: Any) -> EntityChange | None:
    occurred_at = _timestamp(fields["occurred_at"])
    checks = (
        (fields["event_id"], _EVENT_ID),
        (fields["realm_id"], _REALM),
        (fields["entity"], _ENTITY_NAME),
        (fields["entity_id"], _ENTITY_ID),
    )
    if occurred_at is None or fields["operation"] is None:
        return None
    if not all(isinstance(value, str) and pattern.fullmatch(value) for value, pattern in checks):
        return None
    return EntityChange(**{**fields, "occurred_at": occurred_at, "payload_format": fields["payload_format"].value})


def _timestamp(value: Any) -> str | None:
    """ISO 8601 in UTC, to the millisecond; Intuit sends nanoseconds, which Python does not parse."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = _FRACTION.sub(lambda m: "." + m.group(1).ljust(6, "0"), value.strip(), count=1)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# --- routing ------------------------------------------------------------------------------------


class DeliveryLedger(Protocol):
    """Which changes were published already (a TTL item per app and event ID)."""

    def claim(self, key: str, *, now: float, ttl_seconds: int, stale_after_seconds: int) -> bool:
        """True if nobody claimed `key` yet, or a claim left unfinished for `stale_after_seconds`."""

    def finish(self, key: str) -> None: ...

    def release(self, key: str) -> None: ...


class ConnectionDirectory(Protocol):
    def find_by_realm(self, realm_id: str, *, client_id: str | None = None) -> list[Connection]: ...


class PublishFailed(RuntimeError):
    """EventBridge refused some events: the hand-off is retried (its claims were released)."""


@record
class RoutingResult:
    published: int = 0
    duplicates: int = 0
    unmatched: int = 0

    def as_json(self) -> dict[str, int]:
        return asdict(self)


def ledger_key(client_id: str, event_id: str) -> str:
    return hashlib.sha256(f"{client_id}\n{event_id}".encode()).hexdigest()


def entity_changed_event(connection: Connection, change: EntityChange) -> ConnectionEvent:
    return ConnectionEvent(
        detail_type=ENTITY_CHANGED,
        detail={
            "connection_id": connection.connection_id,
            "realm_id": change.realm_id,
            "entity": change.entity,
            "entity_id": change.entity_id,
            "operation": change.operation,
            "occurred_at": change.occurred_at,
            "event_id": change.event_id,
        },
    )


class WebhookRouting:
    """Publishes each change once, as one event per connection of the app that holds its realm."""

    def __init__(
        self,
        connections: ConnectionDirectory,
        ledger: DeliveryLedger,
        publisher: StrictPublisher,
        clock,
        *,
        dedup_seconds: int = WEBHOOK_DEDUP_SECONDS,
        stale_claim_seconds: int = 60,
    ) -> None:
        self._connections = connections
        self._ledger = ledger
        self._publisher = publisher
        self._clock = clock
        self._dedup_seconds = dedup_seconds
        self._stale_claim_seconds = stale_claim_seconds

    def route(self, client_id: str, changes: list[EntityChange]) -> tuple[RoutingResult, list[EntityChange]]:
        """Returns the counts, and the changes no connection holds (for the caller's log and metric)."""
        # One index query per company the delivery names, not per change.
        by_realm = {
            realm_id: self._connections.find_by_realm(realm_id, client_id=client_id)
            for realm_id in dict.fromkeys(change.realm_id for change in changes)
        }
        claimed: list[str] = []
        events: list[ConnectionEvent] = []
        unmatched: list[EntityChange] = []
        duplicates = 0
        now = self._clock.now()
        for change in changes:
            targets = by_realm.get(change.realm_id)
            if not targets:
                unmatched.append(change)
                continue
            key = ledger_key(client_id, change.event_id)
            if key in claimed or not self._ledger.claim(
                key, now=now, ttl_seconds=self._dedup_seconds, stale_after_seconds=self._stale_claim_seconds
            ):
                duplicates += 1
                continue
            claimed.append(key)
            events += [entity_changed_event(connection, change) for connection in targets]
        refused = self._publisher.deliver(events) if events else []
        # Only the refused changes go back: the accepted ones are finished, so the retry skips them.
        retry = {ledger_key(client_id, event.detail["event_id"]) for event in refused}
        for key in claimed:
            (self._ledger.release if key in retry else self._ledger.finish)(key)
        if refused:
            raise PublishFailed(f"EventBridge did not accept {len(refused)} of {len(events)} events")
        return RoutingResult(published=len(events), duplicates=duplicates, unmatched=len(unmatched)), unmatched
