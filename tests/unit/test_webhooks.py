"""Intuit's webhook deliveries in the domain: the signature decides before anything is read, both of
Intuit's payload shapes become the same changes, and routing publishes each change once per connection
of the app that holds its company."""

from __future__ import annotations

import json

import pytest
from fakes import FakeClock
from qbo_connect import intuit
from qbo_connect.domain.connection import Connection, ConnectionStatus
from qbo_connect.domain.webhooks import (
    ENTITY_CHANGED,
    EntityChange,
    PublishFailed,
    UnreadablePayload,
    WebhookRouting,
    read_delivery,
    signature_of,
    signing_app,
)

REALM = "9341453050000001"
APP, OTHER_APP = "ABappone0123456789", "ABapptwo0123456789"
TOKENS = {APP: "verifier-one", OTHER_APP: "verifier-two"}

CLOUDEVENTS = [
    {
        "specversion": "1.0",
        "id": "88cd52aa-33b6-4351-9aa4-47572edbd068",
        "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
        "type": "qbo.billpayment.created.v1",
        "datacontenttype": "application/json",
        "time": "2025-09-10T21:31:25.179851517Z",
        "intuitentityid": "1234",
        "intuitaccountid": REALM,
        "data": {},
    }
]
LEGACY = {
    "eventNotifications": [
        {
            "realmId": REALM,
            "dataChangeEvent": {
                "entities": [
                    {"id": "1234", "operation": "Create", "name": "Account", "lastUpdated": "2025-09-08T20:52:31.657Z"},
                    {"id": "77", "operation": "Delete", "name": "Invoice", "lastUpdated": "2025-09-08T20:53:00Z"},
                ]
            },
        }
    ]
}


def _body(document) -> bytes:
    return json.dumps(document).encode()


# --- signature ---------------------------------------------------------------------------------------


def test_the_signature_names_the_app_whose_verifier_token_signed_the_body() -> None:
    body = _body(CLOUDEVENTS)
    assert signing_app(body, signature_of(body, "verifier-two"), TOKENS) == OTHER_APP
    assert signing_app(body, signature_of(body, "verifier-one"), TOKENS) == APP


@pytest.mark.parametrize(
    "signature",
    [None, "", "not base64!", signature_of(b"another body", "verifier-one"), signature_of(b"{}", "wrong-token")],
)
def test_a_missing_or_wrong_signature_names_no_app(signature) -> None:
    assert signing_app(_body(CLOUDEVENTS), signature, TOKENS) is None


def test_one_changed_byte_breaks_the_signature() -> None:
    body = _body(CLOUDEVENTS)
    signature = signature_of(body, "verifier-one")
    assert signing_app(body.replace(b"1234", b"1235"), signature, TOKENS) is None


def test_the_signature_matches_intuits_published_algorithm() -> None:
    # base64(HMAC-SHA256(body, verifier token)), computed independently of the module.
    import base64
    import hashlib
    import hmac

    body = b'[{"id":"1"}]'
    expected = base64.b64encode(hmac.new(b"tok", body, hashlib.sha256).digest()).decode()
    assert signature_of(body, "tok") == expected


# --- payloads ------------------------------------------------------------------------------------------


def test_a_cloudevents_delivery_becomes_one_change_with_intuits_entity_name() -> None:
    (change,), skipped = read_delivery(_body(CLOUDEVENTS))
    assert skipped == 0
    assert change == EntityChange(
        event_id="88cd52aa-33b6-4351-9aa4-47572edbd068",
        realm_id=REALM,
        entity="BillPayment",
        entity_id="1234",
        operation="Create",
        occurred_at="2025-09-10T21:31:25.179+00:00",
        payload_format="cloudevents",
    )


def test_a_legacy_delivery_becomes_one_change_per_entity_with_stable_ids() -> None:
    changes, skipped = read_delivery(_body(LEGACY))
    again, _ = read_delivery(_body(LEGACY))
    assert skipped == 0
    assert [(c.entity, c.entity_id, c.operation) for c in changes] == [
        ("Account", "1234", "Create"),
        ("Invoice", "77", "Delete"),
    ]
    assert [c.event_id for c in changes] == [c.event_id for c in again]  # Intuit's retries deduplicate
    assert len({c.event_id for c in changes}) == 2
    assert changes[1].occurred_at == "2025-09-08T20:53:00.000+00:00"


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "qbo.invoice.exploded.v1"},
        {"type": "com.other.thing"},
        {"intuitaccountid": "not-a-realm"},
        {"intuitentityid": ""},
        {"time": "yesterday"},
        {"id": None},
    ],
)
def test_a_malformed_cloudevent_is_skipped_and_counted_not_guessed(bad) -> None:
    changes, skipped = read_delivery(_body([{**CLOUDEVENTS[0], **bad}, CLOUDEVENTS[0]]))
    assert (len(changes), skipped) == (1, 1)


@pytest.mark.parametrize("body", [b"", b"not json", b'"a string"', b'{"other": []}', b"\xff\xfe"])
def test_a_body_in_neither_shape_is_unreadable(body) -> None:
    with pytest.raises(UnreadablePayload):
        read_delivery(body)


# --- routing --------------------------------------------------------------------------------------------


class Ledger:
    def __init__(self) -> None:
        self.items: dict[str, tuple[str, float]] = {}

    def claim(self, key, *, now, ttl_seconds, stale_after_seconds) -> bool:
        held = self.items.get(key)
        if held and not (held[0] == "pending" and held[1] < now - stale_after_seconds):
            return False
        self.items[key] = ("pending", now)
        return True

    def finish(self, key) -> None:
        self.items[key] = ("done", self.items[key][1])

    def release(self, key) -> None:
        self.items.pop(key, None)


class Publisher:
    def __init__(self) -> None:
        self.published: list = []
        self.refuse = 0

    def publish(self, events) -> None:
        self.published += events

    def deliver(self, events):
        refused, self.refuse = events[: self.refuse], 0
        self.published += events[len(refused) :]
        return refused


class Directory:
    """Connections by company, as the by-realm index answers; there is no way to list them all."""

    def __init__(self, connections) -> None:
        self.connections = connections
        self.queries: list[tuple[str, str | None]] = []

    def find_by_realm(self, realm_id, *, client_id=None):
        self.queries.append((realm_id, client_id))
        return [c for c in self.connections if c.realm_id == realm_id and client_id in (None, c.client_id)]


def _connection(connection_id: str, client_id: str = APP, realm_id: str | None = REALM) -> Connection:
    return Connection(
        connection_id=connection_id,
        name=connection_id,
        environment=intuit.Environment.SANDBOX,
        base_url=intuit.SANDBOX_API_BASE_URL,
        client_id=client_id,
        realm_id=realm_id,
        status=ConnectionStatus.CONNECTED,
    )


def _routing(*connections: Connection, clock: FakeClock | None = None, directory: Directory | None = None):
    ledger, publisher = Ledger(), Publisher()
    directory = directory or Directory(connections)
    routing = WebhookRouting(directory, ledger, publisher, clock or FakeClock(), stale_claim_seconds=300)
    return routing, ledger, publisher


def test_a_change_is_published_for_each_connection_of_the_app_that_holds_the_realm() -> None:
    routing, _, publisher = _routing(
        _connection("acme"),
        _connection("acme-2"),
        _connection("other-app", OTHER_APP),
        _connection("elsewhere", realm_id="42"),
    )
    changes, _ = read_delivery(_body(CLOUDEVENTS))
    result, unmatched = routing.route(APP, changes)

    assert (result.published, result.duplicates, unmatched) == (2, 0, [])
    assert {e.detail["connection_id"] for e in publisher.published} == {"acme", "acme-2"}
    assert all(e.detail_type == ENTITY_CHANGED for e in publisher.published)
    assert publisher.published[0].detail == {
        "connection_id": "acme",
        "realm_id": REALM,
        "entity": "BillPayment",
        "entity_id": "1234",
        "operation": "Create",
        "occurred_at": "2025-09-10T21:31:25.179+00:00",
        "event_id": "88cd52aa-33b6-4351-9aa4-47572edbd068",
    }


def test_a_delivery_looks_up_each_company_once_for_the_signing_app_only() -> None:
    directory = Directory([_connection("acme"), _connection("elsewhere", realm_id="42")])
    routing, _, publisher = _routing(directory=directory)
    changes, _ = read_delivery(_body(LEGACY))  # two changes of one company
    routing.route(APP, changes)
    assert directory.queries == [(REALM, APP)]
    assert len(publisher.published) == 2


def test_a_redelivered_change_publishes_nothing() -> None:
    routing, _, publisher = _routing(_connection("acme"))
    changes, _ = read_delivery(_body(LEGACY))
    routing.route(APP, changes)
    result, _ = routing.route(APP, changes)
    assert (result.published, result.duplicates) == (0, 2)
    assert len(publisher.published) == 2


def test_a_change_for_a_realm_no_connection_holds_is_returned_as_unmatched() -> None:
    routing, ledger, publisher = _routing(_connection("acme", realm_id="42"), _connection("other", OTHER_APP))
    changes, _ = read_delivery(_body(CLOUDEVENTS))
    result, unmatched = routing.route(APP, changes)
    assert (result.published, result.unmatched, unmatched) == (0, 1, changes)
    assert publisher.published == [] and ledger.items == {}


def test_a_refused_change_is_released_so_the_retry_publishes_it_and_only_it() -> None:
    routing, _, publisher = _routing(_connection("acme"))
    changes, _ = read_delivery(_body(LEGACY))
    publisher.refuse = 1
    with pytest.raises(PublishFailed):
        routing.route(APP, changes)
    assert [e.detail["entity_id"] for e in publisher.published] == ["77"]

    result, _ = routing.route(APP, changes)
    assert (result.published, result.duplicates) == (1, 1)
    assert sorted(e.detail["entity_id"] for e in publisher.published) == ["1234", "77"]


def test_a_claim_left_by_a_crashed_publisher_is_taken_over_once_stale() -> None:
    clock = FakeClock()
    routing, ledger, _ = _routing(_connection("acme"), clock=clock)
    (change,), _ = read_delivery(_body(CLOUDEVENTS))
    from qbo_connect.domain.webhooks import ledger_key

    ledger.claim(ledger_key(APP, change.event_id), now=clock.now(), ttl_seconds=60, stale_after_seconds=300)
    assert routing.route(APP, [change])[0].duplicates == 1  # someone is publishing it right now
    clock.sleep(301)
    assert routing.route(APP, [change])[0].published == 1
