"""QuickBooksClient against a scripted HTTP session: what it sends, how it pages, retries and fails."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from qbo_connect.client import QUERY_MAX_RESULTS, QuickBooksClient, RealmLimiters
from qbo_connect.errors import (
    Forbidden,
    IntuitUnavailable,
    InvalidInput,
    ObjectNotFound,
    QboConnectError,
    StaleObject,
    Throttled,
    Unauthorized,
    ValidationFailed,
)
from qbo_connect.settings import Settings
from qbo_connect.token_access import ConnectionAccess

REALM = "9341453050000001"
BASE_URL = "https://sandbox-quickbooks.api.intuit.com"
FIRST_TOKEN = "eyJ-first-access-token-value"
SECOND_TOKEN = "eyJ-second-access-token-value"


def response(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    answer.encoding = "utf-8"
    answer.headers["Content-Type"] = "application/json"
    answer.headers["intuit_tid"] = f"1-test-{status}"
    answer.headers.update(headers or {})
    return answer


def fault(code: str, message: str, detail: str, kind: str = "ValidationFault") -> dict[str, Any]:
    return {"Fault": {"Error": [{"Message": message, "Detail": detail, "code": code}], "type": kind}, "time": "t"}


AUTH_FAULT = fault(
    "3200", "message=AuthenticationFailed; errorCode=003200; statusCode=401", "Token expired", "AUTHENTICATION"
)
THROTTLE_FAULT = fault("003001", "message=ThrottleExceeded; errorCode=003001; statusCode=429", "slow down", "SERVICE")


class Sent:
    def __init__(self, method: str, url: str, params: dict, json_body: Any, data: Any, headers: dict, timeout):
        self.method, self.url, self.params, self.json, self.data = method, url, dict(params or {}), json_body, data
        self.headers, self.timeout = dict(headers or {}), timeout

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def token(self) -> str:
        return self.headers["Authorization"].removeprefix("Bearer ")


class ScriptedSession:
    """Answers each request with the next scripted answer, or with `handler(sent)`; records what was sent."""

    def __init__(self, *answers: requests.Response | Exception, handler: Callable[[Sent], Any] | None = None):
        self.answers = list(answers)
        self.handler = handler
        self.sent: list[Sent] = []

    def request(self, method, url, params=None, json=None, data=None, headers=None, timeout=None):
        sent = Sent(method, url, params, json, data, headers, timeout)
        self.sent.append(sent)
        answer = self.handler(sent) if self.handler else self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeTokens:
    def __init__(self, base_url: str = BASE_URL) -> None:
        self.base_url = base_url
        self.current = FIRST_TOKEN
        self.rejected: list[str | None] = []
        self.client_id = ""

    def _access(self) -> ConnectionAccess:
        return ConnectionAccess(
            "acme", REALM, self.base_url, self.current, expires_at=4_000_000_000.0, client_id=self.client_id
        )

    def access(self, connection_id: str, *, min_valid_seconds: float, not_after=None) -> ConnectionAccess:
        return self._access()

    def token_rejected(
        self, connection_id, access_token=None, *, min_valid_seconds: float, not_after=None
    ) -> ConnectionAccess:
        self.rejected.append(access_token)
        self.current = SECOND_TOKEN
        return self._access()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def tokens() -> FakeTokens:
    return FakeTokens()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client_for(session: ScriptedSession, tokens: FakeTokens, sleeps: Sleeps, **options: Any) -> QuickBooksClient:
    return QuickBooksClient(
        "acme",
        tokens=tokens,
        settings=Settings(table_name="connections"),
        session=session,  # type: ignore[arg-type]
        limiters=RealmLimiters(),
        sleep=sleeps,
        **options,
    )


def customers(first: int, count: int) -> list[dict[str, str]]:
    return [{"Id": str(n), "DisplayName": f"Customer {n}", "SyncToken": "0"} for n in range(first, first + count)]


def paged_handler(total: int) -> Callable[[Sent], requests.Response]:
    """Intuit's query endpoint over `total` customers: STARTPOSITION is 1-based, an empty page has no list."""

    def answer(sent: Sent) -> requests.Response:
        words = sent.params["query"].split()
        start = int(words[words.index("STARTPOSITION") + 1])
        size = int(words[words.index("MAXRESULTS") + 1])
        items = customers(start, max(0, min(size, total - start + 1)))
        page = {"Customer": items, "startPosition": start, "maxResults": len(items)} if items else {}
        return response(200, {"QueryResponse": page, "time": "t"})

    return answer


# --- what every request carries -------------------------------------------------------------------
def test_requests_carry_minor_version_accept_bearer_token_and_a_timeout(tokens, sleeps):
    session = ScriptedSession(response(200, {"Customer": {"Id": "1"}, "time": "t"}))
    client_for(session, tokens, sleeps).get("Customer", "1")
    (sent,) = session.sent
    assert sent.method == "GET"
    assert sent.url == f"{BASE_URL}/v3/company/{REALM}/customer/1"
    assert sent.params == {"minorversion": 75}
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["Authorization"] == f"Bearer {FIRST_TOKEN}"
    assert sent.timeout == (5.0, 30.0)


def test_minor_version_and_timeout_are_configurable(tokens, sleeps):
    session = ScriptedSession(response(200, {"Customer": {"Id": "1"}}))
    client_for(session, tokens, sleeps, minor_version=80, timeout=(2, 9)).get("Customer", "1")
    assert session.sent[0].params["minorversion"] == 80
    assert session.sent[0].timeout == (2, 9)


def test_the_token_never_goes_to_a_host_the_deployment_did_not_allow(sleeps):
    tokens = FakeTokens(base_url="https://evil.example.com")
    session = ScriptedSession()
    with pytest.raises(Forbidden):
        client_for(session, tokens, sleeps).get("Customer", "1")
    assert session.sent == []


# --- query paging ---------------------------------------------------------------------------------
def test_query_pages_through_more_results_than_one_page(tokens, sleeps):
    session = ScriptedSession(handler=paged_handler(250))
    found = list(client_for(session, tokens, sleeps, page_size=100).query("select * from Customer"))
    assert [c["Id"] for c in found] == [str(n) for n in range(1, 251)]
    assert [s.params["query"] for s in session.sent] == [
        "select * from Customer STARTPOSITION 1 MAXRESULTS 100",
        "select * from Customer STARTPOSITION 101 MAXRESULTS 100",
        "select * from Customer STARTPOSITION 201 MAXRESULTS 100",
    ]


def test_query_stops_on_an_empty_page_when_the_total_is_a_multiple_of_the_page(tokens, sleeps):
    session = ScriptedSession(handler=paged_handler(200))
    found = list(client_for(session, tokens, sleeps).query("select * from Customer;", page_size=100))
    assert len(found) == 200
    assert len(session.sent) == 3


def test_query_is_lazy_and_defaults_to_intuits_largest_page(tokens, sleeps):
    session = ScriptedSession(handler=paged_handler(5))
    results = client_for(session, tokens, sleeps).query("select * from Customer where Active = true")
    assert session.sent == []  # nothing is fetched before iterating
    assert len(list(results)) == 5
    assert session.sent[0].params["query"].endswith(f"STARTPOSITION 1 MAXRESULTS {QUERY_MAX_RESULTS}")


def test_a_statement_with_its_own_paging_is_sent_once_as_written(tokens, sleeps):
    session = ScriptedSession(handler=paged_handler(250))
    found = list(client_for(session, tokens, sleeps).query("select * from Customer STARTPOSITION 11 MAXRESULTS 5"))
    assert [c["Id"] for c in found] == ["11", "12", "13", "14", "15"]
    assert len(session.sent) == 1


@pytest.mark.parametrize("page_size", [0, 1001, True, "100"])
def test_page_size_must_be_within_intuits_limit(tokens, sleeps, page_size):
    with pytest.raises(InvalidInput):
        client_for(ScriptedSession(), tokens, sleeps).query("select * from Customer", page_size=page_size)


def test_count_reads_total_count(tokens, sleeps):
    session = ScriptedSession(response(200, {"QueryResponse": {"totalCount": 42}, "time": "t"}))
    assert client_for(session, tokens, sleeps).count("select count(*) from Customer") == 42
    assert session.sent[0].params["query"] == "select count(*) from Customer"
    with pytest.raises(InvalidInput):
        client_for(session, tokens, sleeps).query("select count(*) from Customer")


# --- CRUD and reports -----------------------------------------------------------------------------
def test_create_posts_the_body_with_a_request_id(tokens, sleeps):
    session = ScriptedSession(response(200, {"Customer": {"Id": "9", "SyncToken": "0"}, "time": "t"}))
    created = client_for(session, tokens, sleeps).create("Customer", {"DisplayName": "Acme"})
    assert created == {"Id": "9", "SyncToken": "0"}
    sent = session.sent[0]
    assert (sent.method, sent.path, sent.json) == ("POST", f"/v3/company/{REALM}/customer", {"DisplayName": "Acme"})
    assert 1 <= len(sent.params["requestid"]) <= 50


def test_update_sends_id_and_sync_token_and_can_be_sparse(tokens, sleeps):
    session = ScriptedSession(response(200, {"Customer": {"Id": "9", "SyncToken": "1"}}))
    client_for(session, tokens, sleeps).update("Customer", {"Id": "9", "SyncToken": "0", "Notes": "x"}, sparse=True)
    assert session.sent[0].json == {"Id": "9", "SyncToken": "0", "Notes": "x", "sparse": True}
    assert session.sent[0].path.endswith("/customer")


@pytest.mark.parametrize("body", [{"SyncToken": "0"}, {"Id": "9"}, {"Id": "9", "SyncToken": ""}])
def test_update_without_id_or_sync_token_is_refused_before_calling_intuit(tokens, sleeps, body):
    session = ScriptedSession()
    with pytest.raises(InvalidInput):
        client_for(session, tokens, sleeps).update("Customer", body)
    assert session.sent == []


@pytest.mark.parametrize(
    "call",
    [
        lambda qbo: qbo.create("Customer\n", {"DisplayName": "Acme"}),
        lambda qbo: qbo.delete("Invoice", "130\n", "3"),
        lambda qbo: qbo.report("ProfitAndLoss\n"),
        lambda qbo: qbo.change_data_capture(["Invoice\n"], time.time() - 3600),
    ],
    ids=["entity", "object Id", "report", "CDC entity"],
)
def test_a_name_or_id_ending_in_a_newline_is_refused_before_calling_intuit(tokens, sleeps, call):
    session = ScriptedSession()
    with pytest.raises(InvalidInput):
        call(client_for(session, tokens, sleeps))
    assert session.sent == []


def test_delete_uses_intuits_delete_operation(tokens, sleeps):
    deleted = {"Invoice": {"domain": "QBO", "status": "Deleted", "Id": "130"}, "time": "t"}
    session = ScriptedSession(response(200, deleted))
    assert client_for(session, tokens, sleeps).delete("Invoice", "130", "3")["status"] == "Deleted"
    sent = session.sent[0]
    assert sent.params["operation"] == "delete"
    assert sent.json == {"Id": "130", "SyncToken": "3"}


def test_report_passes_its_parameters(tokens, sleeps):
    session = ScriptedSession(response(200, {"Header": {"ReportName": "ProfitAndLoss"}, "Rows": {}}))
    report = client_for(session, tokens, sleeps).report("ProfitAndLoss", start_date="2026-01-01", cash=True)
    assert report["Header"]["ReportName"] == "ProfitAndLoss"
    sent = session.sent[0]
    assert sent.path == f"/v3/company/{REALM}/reports/ProfitAndLoss"
    assert sent.params == {"minorversion": 75, "start_date": "2026-01-01", "cash": "true"}


def test_raw_request_reaches_any_path_under_the_company(tokens, sleeps):
    session = ScriptedSession(response(200, {"Preferences": {}}))
    assert client_for(session, tokens, sleeps).request("GET", "/preferences") == {"Preferences": {}}
    assert session.sent[0].path == f"/v3/company/{REALM}/preferences"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get("Customer/../x", "1"),
        lambda c: c.get("Customer", "1/../../2"),
        lambda c: c.request("GET", "../other-company/customer/1"),
        lambda c: c.request("GET", "https://elsewhere.example.com/x"),
        lambda c: c.report("Profit/Loss"),
    ],
)
def test_names_and_paths_cannot_leave_the_company(tokens, sleeps, call):
    session = ScriptedSession()
    with pytest.raises(InvalidInput):
        call(client_for(session, tokens, sleeps))
    assert session.sent == []


# --- 401: one forced refresh, one retry -----------------------------------------------------------
def test_a_401_forces_one_refresh_and_the_retry_succeeds(tokens, sleeps):
    session = ScriptedSession(response(401, AUTH_FAULT), response(200, {"Customer": {"Id": "1"}}))
    assert client_for(session, tokens, sleeps).get("Customer", "1") == {"Id": "1"}
    assert tokens.rejected == [FIRST_TOKEN]
    assert [s.token for s in session.sent] == [FIRST_TOKEN, SECOND_TOKEN]


def test_a_repeated_401_is_an_authentication_error_without_a_refresh_loop(tokens, sleeps):
    session = ScriptedSession(handler=lambda sent: response(401, AUTH_FAULT))
    client = client_for(session, tokens, sleeps)
    for _ in range(3):
        with pytest.raises(Unauthorized) as raised:
            client.get("Customer", "1")
        assert raised.value.fault_code == "3200"
    assert len(tokens.rejected) == 3  # one request for a refresh per call, never more
    assert len(session.sent) == 6


def test_writes_keep_their_request_id_across_retries(tokens, sleeps):
    session = ScriptedSession(
        response(401, AUTH_FAULT), response(503, b"<h1>503</h1>"), response(200, {"Customer": {"Id": "9"}})
    )
    client_for(session, tokens, sleeps).create("Customer", {"DisplayName": "Acme"})
    assert len({s.params["requestid"] for s in session.sent}) == 1


# --- 429: wait as asked, within a bound -----------------------------------------------------------
def test_a_429_waits_as_intuit_asks_and_retries(tokens, sleeps):
    session = ScriptedSession(
        response(429, THROTTLE_FAULT, {"Retry-After": "7"}), response(200, {"Customer": {"Id": "1"}})
    )
    assert client_for(session, tokens, sleeps).get("Customer", "1") == {"Id": "1"}
    assert sleeps == [7.0]


def test_429_retries_are_bounded(tokens, sleeps):
    session = ScriptedSession(handler=lambda sent: response(429, THROTTLE_FAULT, {"Retry-After": "60"}))
    with pytest.raises(Throttled) as raised:
        client_for(session, tokens, sleeps, throttle_retries=2).get("Customer", "1")
    assert sleeps == [60.0, 60.0]
    assert len(session.sent) == 3
    assert raised.value.retry_after == 60.0 and raised.value.intuit_tid == "1-test-429"


def test_a_429_asking_for_a_longer_wait_than_allowed_is_raised_at_once(tokens, sleeps):
    session = ScriptedSession(response(429, THROTTLE_FAULT, {"Retry-After": "600"}))
    with pytest.raises(Throttled):
        client_for(session, tokens, sleeps).get("Customer", "1")
    assert sleeps == []


# --- transient failures ---------------------------------------------------------------------------
def test_5xx_and_network_errors_are_retried_a_bounded_number_of_times(tokens, sleeps):
    session = ScriptedSession(
        response(500, fault("10000", "An application error has occurred", "x", "SystemFault")),
        requests.ConnectionError("connection reset"),
        response(200, {"Customer": {"Id": "1"}}),
    )
    assert client_for(session, tokens, sleeps).get("Customer", "1") == {"Id": "1"}
    assert len(sleeps) == 2 and all(0 <= s <= 8 for s in sleeps)

    failing = ScriptedSession(handler=lambda sent: requests.Timeout("read timed out"))
    with pytest.raises(IntuitUnavailable) as raised:
        client_for(failing, tokens, sleeps, transient_retries=1).get("Customer", "1")
    assert len(failing.sent) == 2
    assert raised.value.__cause__ is None and raised.value.__context__ is None


# --- typed errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "error_type", "fault_code"),
    [
        (400, fault("5010", "Stale Object Error", "You and another user were working on this"), StaleObject, "5010"),
        (400, fault("610", "Object Not Found", "Another user has deleted this transaction"), ObjectNotFound, "610"),
        (
            400,
            fault("6240", "Duplicate Name Exists Error", "The name supplied already exists"),
            ValidationFailed,
            "6240",
        ),
        (200, fault("2020", "Required param missing", "Required parameter Line is missing"), ValidationFailed, "2020"),
        (
            403,
            fault("003100", "ApplicationAuthorizationFailed", "no accounting scope", "AUTHORIZATION"),
            Forbidden,
            "003100",
        ),
    ],
)
def test_errors_are_typed_and_carry_intuits_fault(tokens, sleeps, status, body, error_type, fault_code):
    session = ScriptedSession(response(status, body))
    with pytest.raises(error_type) as raised:
        client_for(session, tokens, sleeps).update("Customer", {"Id": "1", "SyncToken": "0"})
    error = raised.value
    expected = body["Fault"]["Error"][0]
    assert (error.fault_code, error.detail, error.intuit_tid) == (fault_code, expected["Detail"], f"1-test-{status}")
    assert expected["Message"] in str(error)
    assert sleeps == []  # a refused request is not retried


def test_stale_object_is_a_validation_failure_with_its_own_code(tokens, sleeps):
    session = ScriptedSession(response(400, fault("5010", "Stale Object Error", "x")))
    with pytest.raises(ValidationFailed) as raised:
        client_for(session, tokens, sleeps).delete("Invoice", "1", "0")
    assert raised.value.code.value == "stale_object"
    assert "SyncToken" in raised.value.message


def test_errors_never_carry_the_token(tokens, sleeps):
    answers = [
        response(401, AUTH_FAULT),
        response(401, AUTH_FAULT),
        response(400, fault("5010", "Stale Object Error", "x")),
        requests.ConnectionError(f"failed with header Bearer {FIRST_TOKEN}"),
        requests.ConnectionError("again"),
        requests.ConnectionError("and again"),
        response(500, b"not json"),
    ]
    client = client_for(ScriptedSession(*answers), tokens, sleeps)
    raised: list[QboConnectError] = []
    for call in (lambda: client.get("Customer", "1"), lambda: client.get("Customer", "2")):
        with pytest.raises(QboConnectError) as error:
            call()
        raised.append(error.value)
    tokens.current = FIRST_TOKEN
    with pytest.raises(QboConnectError) as error:
        client.get("Customer", "3")
    raised.append(error.value)
    for error in raised:
        text = f"{error} {error!r} {vars(error)} {error.__context__!r} {error.__cause__!r}"
        assert FIRST_TOKEN not in text and SECOND_TOKEN not in text


# --- metering: every call that reached Intuit is counted, as the app's -----------------------------
def _metered(session: ScriptedSession, tokens: FakeTokens, sleeps: Sleeps, **options: Any):
    from fakes import FakeClock, InMemoryUsageLedger
    from qbo_connect.domain.metering import UsageMeter

    ledger = InMemoryUsageLedger()
    meter = UsageMeter(ledger, FakeClock(), flush_seconds=3600)
    tokens.client_id = "ABappone0123456789"
    return client_for(session, tokens, sleeps, meter=meter, **options), meter, ledger


def test_reads_writes_and_batch_items_are_counted_as_the_connection_s(tokens, sleeps):
    from qbo_connect import intuit
    from qbo_connect.bulk import BatchOperation
    from qbo_connect.domain.metering import UsageKey

    batch_answer = {"BatchItemResponse": [{"bId": "b1", "Customer": {"Id": "1"}}, {"bId": "q", "QueryResponse": {}}]}
    session = ScriptedSession(
        response(200, {"Customer": {"Id": "1", "SyncToken": "0"}}),
        response(200, {"Customer": {"Id": "2", "SyncToken": "0"}}),
        response(200, batch_answer),
    )
    client, meter, ledger = _metered(session, tokens, sleeps)

    client.get("Customer", "1")
    client.create("Customer", {"DisplayName": "New"})
    client.batch(
        [
            BatchOperation("Customer", "create", {"DisplayName": "B"}),
            BatchOperation(query="select * from Customer", bid="q"),
        ]
    )
    meter.flush()

    tally = ledger.calls(UsageKey("ABappone0123456789", "acme", intuit.Environment.SANDBOX))
    assert (tally.reads, tally.writes) == (2, 2)


def test_a_call_whose_answer_was_lost_counts_and_one_that_never_left_does_not(tokens, sleeps):
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    # As requests raises it: the refused connection inside urllib3's MaxRetryError.
    refused = requests.ConnectionError(MaxRetryError(None, BASE_URL, reason=NewConnectionError(None, "refused")))
    session = ScriptedSession(
        requests.ReadTimeout("read timed out"), refused, response(500, {}), response(200, {"Customer": {"Id": "1"}})
    )
    client, meter, _ = _metered(session, tokens, sleeps, transient_retries=3)

    client.get("Customer", "1")

    # Sent four times: the read timeout (Intuit may have metered it), the 500 and the answer count;
    # the refused connection never reached Intuit.
    assert len(session.sent) == 4
    assert meter.unwritten_calls == 3


def test_a_client_without_a_meter_counts_nothing_and_still_works(tokens, sleeps):
    session = ScriptedSession(response(200, {"Customer": {"Id": "1"}}))
    assert client_for(session, tokens, sleeps).get("Customer", "1") == {"Id": "1"}
