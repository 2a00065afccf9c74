"""QuickBooksClient's change data capture, catch-up and batch against the emulator (test_client_emulator's world)."""

from __future__ import annotations

import time

import pytest
from qbo_connect import intuit
from qbo_connect.bulk import BatchOperation
from qbo_connect.client import RealmLimiters, RealmLimits
from qbo_connect.errors import IntuitUnavailable, InvalidInput, StaleObject, ValidationFailed
from test_client_emulator import REALM, world  # noqa: F401 - the fixture


def _after_the_seeded_data(world) -> float:  # noqa: F811
    """A moment after the emulator seeded its customers: its clock moves on, so later changes come after it."""
    world.admin("POST", "/clock", {"advance": 5})
    return time.time() + 2


def test_cdc_lists_created_updated_and_deleted_objects_since_a_moment(world) -> None:  # noqa: F811
    client = world.client()
    since = _after_the_seeded_data(world)
    created = client.create("Customer", {"DisplayName": "CDC Customer"})
    client.update("Customer", {"Id": created["Id"], "SyncToken": created["SyncToken"], "Notes": "x"}, sparse=True)
    gone = client.create("Customer", {"DisplayName": "CDC Gone"})
    invoice = client.create("Invoice", {"CustomerRef": {"value": created["Id"]}, "Line": [{"Amount": 10}]})
    client.delete("Invoice", invoice["Id"], invoice["SyncToken"])

    changes = client.change_data_capture(["Customer", "Invoice"], since)

    assert [(c.entity_id, c.deleted) for c in changes.changes["Customer"]] == [
        (created["Id"], False),
        (gone["Id"], False),
    ]
    assert changes.changes["Customer"][0].object["Notes"] == "x"
    assert [(c.entity_id, c.deleted) for c in changes.changes["Invoice"]] == [(invoice["Id"], True)]
    assert changes.truncated is False and len(changes) == 3


def test_cdc_past_the_30_day_window_is_refused_before_any_call(world) -> None:  # noqa: F811
    calls = world.admin("GET", "/stats")["calls"].get("api", 0)
    with pytest.raises(InvalidInput, match="30 days"):
        world.client().change_data_capture(["Customer"], time.time() - intuit.CDC_WINDOW_SECONDS - 60)
    with pytest.raises(InvalidInput, match="time zone"):
        from datetime import datetime

        world.client().change_data_capture(["Customer"], datetime(2026, 1, 1))
    assert world.admin("GET", "/stats")["calls"].get("api", 0) == calls


def test_catch_up_asks_per_entity_from_the_last_processed_event(world) -> None:  # noqa: F811
    client = world.client()
    last_event = _after_the_seeded_data(world)
    client.create("Customer", {"DisplayName": "Missed While Down"})
    before = world.admin("GET", "/stats")["api_resources"].get("cdc", 0)
    caught = client.catch_up(["Customer", "Invoice"], last_event)
    assert [c.object["DisplayName"] for c in caught.changes["Customer"]] == ["Missed While Down"]
    assert caught.changes["Invoice"] == []
    assert world.admin("GET", "/stats")["api_resources"]["cdc"] - before == 2


def test_catch_up_reads_past_cdc_s_1000_objects_with_a_query_and_returns_everything_since(world) -> None:  # noqa: F811
    client = world.client()
    last_event = _after_the_seeded_data(world)
    edited = client.create("Customer", {"DisplayName": "Edited While Down"})
    world.admin("POST", f"/companies/{REALM}/customers", {"count": 1200})  # 1,201 changes: more than CDC holds
    client.update("Customer", {"Id": edited["Id"], "SyncToken": edited["SyncToken"], "Notes": "v2"}, sparse=True)
    client.create("Invoice", {"CustomerRef": {"value": edited["Id"]}, "Line": [{"Amount": 5}]})
    stats = world.admin("GET", "/stats")["api_resources"]

    caught = client.catch_up(["Customer", "Invoice"], last_event)

    customers = caught.changes["Customer"]
    assert len(customers) == 1201 and len({c.entity_id for c in customers}) == 1201
    assert next(c for c in customers if c.entity_id == edited["Id"]).object["Notes"] == "v2"  # the current version
    assert len(caught.changes["Invoice"]) == 1
    assert caught.paged_by_query == ("Customer",) and not caught.truncated
    after = world.admin("GET", "/stats")["api_resources"]
    assert after["cdc"] - stats.get("cdc", 0) == 2
    assert after["query"] - stats.get("query", 0) == 2  # two pages of at most 1,000


def test_catch_up_past_cdc_s_1000_objects_returns_a_customer_made_inactive_meanwhile(world) -> None:  # noqa: F811
    # QuickBooks does not delete a customer: a person makes it inactive. Intuit's query leaves inactive
    # customers out unless it says otherwise, so one made inactive past the 1,000 objects CDC lists would
    # be missed by the query that reads the rest, and a consumer would never hear of the change.
    client = world.client()
    last_event = _after_the_seeded_data(world)
    world.admin("POST", f"/companies/{REALM}/customers", {"count": 1200})  # more than CDC holds
    (last,) = client.query("select * from Customer ORDERBY Id DESC STARTPOSITION 1 MAXRESULTS 1")
    client.update("Customer", {"Id": last["Id"], "SyncToken": last["SyncToken"], "Active": False}, sparse=True)

    caught = client.catch_up(["Customer"], last_event)

    assert caught.paged_by_query == ("Customer",)
    customers = {c.entity_id: c.object for c in caught.changes["Customer"]}
    assert len(customers) == 1200
    assert customers.get(last["Id"], {}).get("Active") is False, "the customer made inactive was not returned"


def test_catch_up_under_the_limit_makes_no_query(world) -> None:  # noqa: F811
    client = world.client()
    last_event = _after_the_seeded_data(world)
    client.create("Customer", {"DisplayName": "Just One"})
    before = world.admin("GET", "/stats")["api_resources"].get("query", 0)
    caught = client.catch_up(["Customer"], last_event)
    assert caught.paged_by_query == ()
    assert world.admin("GET", "/stats")["api_resources"].get("query", 0) == before


def test_batch_matches_results_by_bid_and_surfaces_item_faults_as_typed_errors(world) -> None:  # noqa: F811
    client = world.client()
    existing = client.create("Customer", {"DisplayName": "Batch Existing"})
    results = client.batch(
        [
            BatchOperation(entity="Customer", operation="create", body={"DisplayName": "Batch New"}),
            BatchOperation(entity="Customer", operation="create", body={"DisplayName": "Batch Existing"}),
            BatchOperation(
                entity="Customer", operation="update", body={"Id": existing["Id"], "SyncToken": "7", "sparse": True}
            ),
            BatchOperation(query="select * from Customer where DisplayName = 'Batch New'", bid="find"),
        ]
    )
    assert [r.bid for r in results] == ["b1", "b2", "b3", "find"]
    assert results[0].ok and results[0].value["DisplayName"] == "Batch New"
    assert isinstance(results[1].error, ValidationFailed) and results[1].error.fault_code == "6240"
    assert isinstance(results[2].error, StaleObject)
    with pytest.raises(StaleObject):
        results[2].result()
    assert [c["DisplayName"] for c in results[3].value["Customer"]] == ["Batch New"]


def test_batch_keeps_to_intuits_per_request_limit(world) -> None:  # noqa: F811
    operations = [
        BatchOperation(entity="Customer", operation="create", body={"DisplayName": f"Bulk {i}"}) for i in range(25)
    ]
    before = world.admin("GET", "/stats")["api_resources"].get("batch", 0)
    results = world.client().batch(operations)
    assert all(r.ok for r in results) and len(results) == 25
    assert world.admin("GET", "/stats")["api_resources"]["batch"] - before == 3  # 10 + 10 + 5


def test_a_batch_past_intuits_40_batch_requests_a_minute_waits_as_intuit_asks_and_completes(world) -> None:  # noqa: F811
    """Intuit throttles batch requests at 40 a minute per realm and app (the emulator too, since it was
    made to): the 41st request of one batch() call is answered 429; the client waits and sends it again."""
    world.admin("POST", "/config", {"rate_limits": True, "rate_limit_per_second": 1000})
    waited: list[float] = []

    def sleep(seconds: float) -> None:  # the client's wait passes at Intuit too
        waited.append(seconds)
        world.admin("POST", "/clock", {"advance": seconds})

    client = world.client(sleep=sleep, limiters=RealmLimiters(RealmLimits(requests_per_second=1000)))
    count = (intuit.BATCH_REQUESTS_PER_MINUTE + 1) * intuit.BATCH_MAX_OPERATIONS
    operations = [BatchOperation(query="select * from Customer", bid=f"q{n}") for n in range(count)]

    results = client.batch(operations)

    assert len(results) == count and all(r.ok for r in results)
    assert sum(waited) >= 60


def test_a_batch_request_failing_after_others_were_applied_still_returns_what_intuit_applied(world) -> None:  # noqa: F811
    """Intuit applies each batch request on its own. When the second of three fails (Intuit down beyond the
    client's retries), the ten customers the first one created exist: batch() must say which, not raise and
    leave the caller to send all 25 again (ten duplicates, or ten 6240 duplicate-name faults)."""
    operations = [
        BatchOperation(entity="Customer", operation="create", body={"DisplayName": f"Partial {i}"}) for i in range(25)
    ]
    answered = []

    def intuit_goes_down_after_the_first_batch(response, *args, **kwargs):
        if response.request.path_url.split("?")[0].endswith("/batch") and not answered:
            answered.append(response.status_code)
            world.admin("POST", "/faults", {"group": "api", "fault": "http_503", "until_cleared": True})

    world.session.hooks["response"].append(intuit_goes_down_after_the_first_batch)
    try:
        results = world.client().batch(operations)
    finally:
        world.session.hooks["response"].remove(intuit_goes_down_after_the_first_batch)
        world.admin("DELETE", "/faults?group=api")

    assert answered == [200]
    assert [r.bid for r in results] == [f"b{i}" for i in range(1, 26)]
    assert [r.value["DisplayName"] for r in results[:10]] == [f"Partial {i}" for i in range(10)]
    assert all(isinstance(r.error, IntuitUnavailable) for r in results[10:])  # result() raises it


def test_bad_batch_operations_are_refused_before_any_call(world) -> None:  # noqa: F811
    with pytest.raises(InvalidInput):
        world.client().batch([BatchOperation(entity="Customer", operation="merge", body={})])
    with pytest.raises(InvalidInput, match="share the bId"):
        world.client().batch([BatchOperation(query="select * from Customer", bid="x")] * 2)
