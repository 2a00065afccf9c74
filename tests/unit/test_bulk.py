"""Reading past CDC's 1,000 objects: the query catch_up sends, and how its answers complete CDC's list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from qbo_connect.bulk import ChangedObject, changed_since_query, with_queried
from qbo_connect.errors import InvalidInput


def test_the_query_asks_for_what_changed_at_or_after_the_moment_in_utc() -> None:
    since = datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-7)))
    query = changed_since_query("Invoice", since.astimezone(UTC))
    assert query == "select * from Invoice where Metadata.LastUpdatedTime >= '2026-05-01T17:00:00+00:00'"


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
