"""catch_up() past CDC's 1,000 objects while the company keeps changing: a fake Intuit whose data moves
between the query's pages, as a company's does while a consumer catches up (people keep working)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from qbo_connect import intuit
from test_client import FakeTokens, ScriptedSession, Sent, Sleeps, client_for, fault, response

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
_QUERY = re.compile(
    r"select \* from Invoice where Metadata\.LastUpdatedTime >= '([^']+)'"
    r"(?P<order> ORDERBY Metadata\.LastUpdatedTime)? STARTPOSITION (\d+) MAXRESULTS (\d+)"
)


class ChangingCompany:
    """Intuit's CDC and query over one company's invoices. CDC lists at most 1,000 objects. A query
    without ORDERBY answers in an order of Intuit's choosing (here Id order, the emulator's); with
    ORDERBY Metadata.LastUpdatedTime, in that order. `between_pages` runs before the second page."""

    def __init__(self, count: int, between_pages) -> None:
        self.invoices = {str(n): self._invoice(n, SINCE + timedelta(seconds=n), "v1") for n in range(1, count + 1)}
        self.between_pages = between_pages
        self.query_pages = 0

    @staticmethod
    def _invoice(n: int, at: datetime, version: str) -> dict[str, Any]:
        return {"Id": str(n), "MetaData": {"LastUpdatedTime": at.isoformat()}, "PrivateNote": version}

    def update(self, n: int, at: datetime) -> None:
        self.invoices[str(n)] = self._invoice(n, at, "v2")

    def delete(self, n: int) -> None:
        del self.invoices[str(n)]

    def answer(self, sent: Sent):
        if sent.path.endswith("/cdc"):
            since = datetime.fromisoformat(sent.params["changedSince"])
            changed = [i for i in self._by_id() if self._at(i) >= since][:1000]
            return response(200, {"CDCResponse": [{"QueryResponse": [{"Invoice": changed}]}], "time": "t"})
        match = _QUERY.fullmatch(sent.params["query"])
        assert match, sent.params["query"]
        self.query_pages += 1
        if self.query_pages == 2:
            self.between_pages(self)
        since = datetime.fromisoformat(match.group(1))
        found = [i for i in self._by_id() if self._at(i) >= since]
        if match.group("order"):
            found.sort(key=self._at)
        start, size = int(match.group(3)), int(match.group(4))
        page = found[start - 1 : start - 1 + size]
        return response(200, {"QueryResponse": {"Invoice": page} if page else {}, "time": "t"})

    def _by_id(self) -> list[dict[str, Any]]:
        return sorted(self.invoices.values(), key=lambda i: int(i["Id"]))

    @staticmethod
    def _at(invoice: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(invoice["MetaData"]["LastUpdatedTime"])


def _caught_up(company: ChangingCompany) -> dict[str, Any]:
    session = ScriptedSession(handler=company.answer)
    now = (SINCE + timedelta(days=1)).timestamp()
    client = client_for(session, FakeTokens(), Sleeps())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("qbo_connect.client.time.time", lambda: now)
        caught = client.catch_up(["Invoice"], SINCE)
    assert caught.paged_by_query == ("Invoice",)
    listed = [change.entity_id for change in caught.changes["Invoice"]]
    assert len(listed) == len(set(listed)), "an object was listed twice"
    return {change.entity_id: change.object for change in caught.changes["Invoice"]}


def test_an_object_deleted_while_catch_up_pages_makes_it_lose_no_other_change() -> None:
    # Someone deletes an invoice of the first page while catch_up reads the second: every later object
    # moves up one place, and a page that starts at a fixed position passes over one of them.
    company = ChangingCompany(2500, between_pages=lambda c: c.delete(10))
    caught = _caught_up(company)
    missing = sorted(set(company.invoices) - set(caught), key=int)
    assert missing == [], f"changed invoices catch_up never returned: {missing}"


def test_an_object_changed_again_while_catch_up_pages_comes_back_in_its_newest_version() -> None:
    later = SINCE + timedelta(hours=2)
    company = ChangingCompany(2500, between_pages=lambda c: (c.update(7, later), c.update(1500, later)))
    caught = _caught_up(company)
    assert set(caught) == set(company.invoices)
    assert caught["7"]["PrivateNote"] == caught["1500"]["PrivateNote"] == "v2"


class SlowCompany:
    """Intuit's CDC and query over a few entities, each answer taking `seconds_per_call` of a clock the
    client shares. CDC refuses a changedSince older than its 30 days when the call arrives (400, as the
    emulator does): Intuit keeps changes 30 days and documents nothing older."""

    def __init__(self, now: float, changed: dict[str, list[dict[str, Any]]], seconds_per_call: float) -> None:
        self.now, self.changed, self.seconds_per_call = now, changed, seconds_per_call
        self.cdc_asked: list[str] = []

    def clock(self) -> float:
        return self.now

    def answer(self, sent: Sent):
        arrived, self.now = self.now, self.now + self.seconds_per_call
        if sent.path.endswith("/cdc"):
            since = datetime.fromisoformat(sent.params["changedSince"])
            if since.timestamp() < arrived - intuit.CDC_WINDOW_SECONDS:
                detail = "changedSince must be within the last 30 days"
                return response(400, fault("2010", "Request has invalid or unsupported property", detail))
            (entity,) = sent.params["entities"].split(",")
            self.cdc_asked.append(entity)
            listed = [{**item, "MetaData": {"LastUpdatedTime": since.isoformat()}} for item in self.changed[entity]]
            return response(200, {"CDCResponse": [{"QueryResponse": [{entity: listed}]}], "time": "t"})
        entity = sent.params["query"].split()[3]
        return response(200, {"QueryResponse": {entity: self.changed[entity]} if self.changed[entity] else {}})


def test_a_catch_up_from_just_inside_cdc_s_window_is_not_refused_halfway_through() -> None:
    # A consumer catches up from a moment 5 s inside the 30 days. Each call takes Intuit 10 s: by the second
    # entity the moment has left the window. The first entity's call (a metered read) was made already.
    now = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    since = now - intuit.CDC_WINDOW_SECONDS + 5
    company = SlowCompany(
        now,
        {name: [{"Id": "1", "SyncToken": "0", "Name": name}] for name in ("Invoice", "Customer", "Vendor")},
        seconds_per_call=10,
    )
    client = client_for(ScriptedSession(handler=company.answer), FakeTokens(), Sleeps())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("qbo_connect.client.time.time", company.clock)
        caught = client.catch_up(["Invoice", "Customer", "Vendor"], since)

    assert {name: [c.entity_id for c in changes] for name, changes in caught.changes.items()} == {
        "Invoice": ["1"],
        "Customer": ["1"],
        "Vendor": ["1"],
    }
    assert company.cdc_asked == ["Invoice"]  # no CDC call Intuit would refuse
    assert caught.paged_by_query == ("Customer", "Vendor")  # read by query: their deletions are not listed
