"""Reading past CDC's 1,000 objects: the query catch_up sends, and how its answers complete CDC's list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from qbo_connect.bulk import ChangedObject, changed_since_page, changed_since_query, next_page_start, with_queried
from qbo_connect.errors import InvalidInput


def test_the_query_asks_for_what_changed_at_or_after_the_moment_in_utc() -> None:
    since = datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-7)))
    query = changed_since_query("Invoice", since.astimezone(UTC))
    assert query == "select * from Invoice where Metadata.LastUpdatedTime >= '2026-05-01T17:00:00+00:00'"


@pytest.mark.parametrize("entity", ["Customer", "Vendor", "Employee", "Item", "Account", "Class", "Term"])
def test_the_query_of_a_name_list_entity_asks_for_inactive_objects_too(entity: str) -> None:
    query = changed_since_page(entity, datetime(2026, 5, 1, 17, tzinfo=UTC))
    assert query == (
        f"select * from {entity} where Metadata.LastUpdatedTime >= '2026-05-01T17:00:00+00:00'"
        " AND Active IN (true, false) ORDERBY Metadata.LastUpdatedTime"
    )
    # Transactions have no Active field: no condition on one is sent for them.
    assert "Active" not in changed_since_query("Invoice", datetime(2026, 5, 1, 17, tzinfo=UTC))


def test_the_query_refuses_what_is_not_an_entity_name() -> None:
    with pytest.raises(InvalidInput):
        changed_since_query("Invoice where 1=1 --", datetime.now(UTC))


def test_queried_objects_complete_the_cdc_list_once_each_and_keep_its_deletions() -> None:
    listed = [
        ChangedObject("Customer", "1", False, {"Id": "1", "SyncToken": "0"}),
        ChangedObject("Customer", "2", True, {"Id": "2", "status": "Deleted"}),
    ]
    queried = [{"Id": "1", "SyncToken": "3"}, {"Id": "3", "SyncToken": "0"}, {"Id": "2", "SyncToken": "9"}]

    merged = with_queried("Customer", listed, queried)

    assert [(c.entity_id, c.deleted, c.object.get("SyncToken")) for c in merged] == [
        ("1", False, "3"),  # the current version replaces what CDC listed
        ("2", True, None),  # a deletion stays a deletion
        ("3", False, "0"),  # what CDC left out is added
    ]


def _changed_at(*moments: str) -> list[dict]:
    return [{"Id": str(n), "MetaData": {"LastUpdatedTime": at}} for n, at in enumerate(moments, 1)]


def test_each_page_asks_oldest_change_first() -> None:
    page = changed_since_page("Invoice", datetime(2026, 5, 1, 17, tzinfo=UTC))
    assert page.endswith("'2026-05-01T17:00:00+00:00' ORDERBY Metadata.LastUpdatedTime")


def test_the_next_page_starts_at_the_newest_change_read_from_its_first_position() -> None:
    since = datetime(2026, 5, 1, 17, tzinfo=UTC)
    page = _changed_at("2026-05-01T10:00:00-07:00", "2026-05-01T10:00:09.250-07:00")  # Intuit's Pacific times
    assert next_page_start(page, since, 1) == (datetime(2026, 5, 1, 17, 0, 9, tzinfo=UTC), 1)


@pytest.mark.parametrize(
    "page",
    [
        _changed_at("2026-05-01T17:00:05Z", "2026-05-01T17:00:05Z"),  # one second: starting there reads it again
        _changed_at("2026-05-01T17:00:09Z", "2026-05-01T17:00:05Z"),  # not in the order asked for
        [{"Id": "1"}, *_changed_at("2026-05-01T17:00:09Z")],  # a time it cannot read
    ],
)
def test_a_page_it_cannot_start_after_by_time_is_stepped_over_by_position(page) -> None:
    since = datetime(2026, 5, 1, 17, tzinfo=UTC)
    assert next_page_start(page, since, 1001) == (since, 1001 + len(page))
