"""A whole-call deadline on the accounting API (QuickBooksApi._get with call_with_deadline), from an adversarial
review. The connection test computes the deadline as what the invocation leaves after recording and answering
(connection_test._call_deadline), which reaches zero or below when what came before took the time: a slow
CompanyInfo before the deep test's query, a hand-off answered near the end of its wait and the token's reads after
it. Nobody waits for a call given no time, so it must not be sent: sending it hands the bearer token to Intuit, spends
one of the realm's 10 concurrent requests and 500 a minute, and is metered as a read, and the console then says
Intuit "did not answer within 0 s", which blames Intuit for our own lack of time."""

from __future__ import annotations

import threading
from typing import ClassVar

import pytest
from qbo_connect import intuit
from qbo_connect.adapters.quickbooks_api import QuickBooksApi
from qbo_connect.domain.metering import UsageKey
from qbo_connect.errors import QboConnectError
from qbo_connect.settings import Settings

REALM = "9130350000000001"
ACCESS_TOKEN = "eyJ-review2-access-token-never-sent"


class RecordingSession:
    """A requests.Session that records what is sent and answers once Intuit's side is released (a network's
    round trip: the answer never comes before the request is sent)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.released = threading.Event()

    def get(self, url, *, params=None, headers=None, timeout=None):
        self.sent.append(url)
        self.released.wait(5)

        class Answer:
            status_code = 200
            headers: ClassVar[dict[str, str]] = {"intuit_tid": "1-tid"}

            @staticmethod
            def json():
                return {"CompanyInfo": {"CompanyName": "Acme"}}

        return Answer()


class CountingMeter:
    def __init__(self) -> None:
        self.reads = 0

    def count(self, _key, *, reads=0, writes=0) -> None:
        self.reads += reads


def _join_abandoned_calls() -> None:
    for thread in threading.enumerate():
        if thread.name == "call-with-deadline":
            thread.join(5)


@pytest.mark.parametrize("deadline", [0.0, -3.5])
def test_a_call_given_no_time_is_not_sent_metered_or_blamed_on_intuit(deadline):
    session, meter = RecordingSession(), CountingMeter()
    api = QuickBooksApi(Settings(table_name="t"), session, meter=meter)  # type: ignore[arg-type]

    with pytest.raises(QboConnectError) as raised:
        api.company_info(
            base_url=intuit.SANDBOX_API_BASE_URL,
            realm_id=REALM,
            access_token=ACCESS_TOKEN,
            usage=UsageKey("app", "acme", intuit.Environment.PRODUCTION),
            deadline_seconds=deadline,
        )
    session.released.set()
    _join_abandoned_calls()

    assert session.sent == [], "the bearer token went to Intuit in a call nobody waited for"
    assert meter.reads == 0, "a call that was never waited for (and need not have been sent) was metered"
    assert "did not answer within 0 s" not in raised.value.message, raised.value.message


# --- where the connection test gives such a deadline --------------------------------------------------------------

ADMIN_SECONDS = 30.0  # the console's Test runs in the admin function (API Gateway's 30 s)


def test_a_deep_test_whose_companyinfo_took_its_time_does_not_send_the_query_with_none_left(world):
    """Intuit answers CompanyInfo slowly but within its deadline (its tail is long: requests time out at 120 s);
    the deep test's accounting query then gets what is left after RECORD_SECONDS: about nothing. It is sent
    anyway (and the adapter above sends a call given no time), then reported as Intuit not answering."""
    from qbo_connect.domain.connection_test import ConnectionTests

    connection = world.connected()
    queries: list[float | None] = []

    class SlowCompany:
        def company_info(self, *, deadline_seconds=None, **kwargs):
            world.clock.advance((deadline_seconds or 0) - 0.05)  # answered just within its deadline
            return world.company_api.company_info(deadline_seconds=deadline_seconds, **kwargs)

        def customer_count(self, *, deadline_seconds=None, **_kwargs):
            queries.append(deadline_seconds)
            return 3

    tests = ConnectionTests(world.store, world.lifecycle, SlowCompany(), world.recorder, world.clock)  # type: ignore[arg-type]
    tests.run(connection.connection_id, deep=True, not_after=world.clock.now() + ADMIN_SECONDS)

    assert all(d is not None and d >= 1 for d in queries), (
        f"the deep test sent its query to Intuit with {queries[0]:.2f} s to answer: nobody waits for it"
    )
