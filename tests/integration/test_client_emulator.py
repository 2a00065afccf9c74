"""The real QuickBooksClient and token access against a real Intuit emulator over HTTP, the AWS adapters on moto.

A connection is created and connected through the domain's consent flow (the emulator's consent form
posted as a browser would), then every operation runs against the emulator's accounting API:
paging, CRUD with SyncToken, delete, a report, and the 401, 429 and per-realm-limit behaviour.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from fakes import FORCED_REFRESH_AGE
from jsonschema import Draft202012Validator
from moto import mock_aws
from qbo_connect.adapters.dynamodb_store import create_table
from qbo_connect.bulk import BatchOperation
from qbo_connect.client import QuickBooksClient, RealmLimiters
from qbo_connect.domain.administration import NewConnection
from qbo_connect.errors import ObjectNotFound, QboConnectError, StaleObject, Throttled, Unauthorized
from qbo_connect.runtime import Services, build_services
from qbo_connect.settings import Settings
from qbo_connect.token_access import TokenAccess
from qbo_local.emulator import EmulatorConfig, EmulatorServer

if TYPE_CHECKING:
    from conftest import LogScan

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
TABLE = "qbo-connect-client-test"
REALM = "9341453050000001"
CLIENT_ID = "emu-client-0001"
CLIENT_SECRET = "emu-client-secret-0001"
APP_URL = "https://qbo.example.test"


class OffsetClock:
    """Real time plus an offset the test moves; sleeping moves the offset instead of blocking.

    The emulator keeps real time, so tokens it issued stay valid when the service's clock moves a few minutes."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds


class Sleeps(list):
    """The client's sleep (429 waits, retry backoff): recorded, never blocking."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class RecordingSession(requests.Session):
    """A real session that remembers when each request left and which bearer tokens it carried."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.starts: list[float] = []
        self.tokens: set[str] = set()

    def request(self, method, url, *args, **kwargs):
        if "/v3/company/" in url:
            with self.lock:
                self.starts.append(time.monotonic())
                self.tokens.add(kwargs["headers"]["Authorization"].removeprefix("Bearer "))
        return super().request(method, url, *args, **kwargs)


@dataclass
class World:
    emulator: EmulatorServer
    services: Services
    clock: OffsetClock
    connection_id: str
    sleeps: Sleeps = field(default_factory=Sleeps)
    session: RecordingSession = field(default_factory=RecordingSession)
    limiters: RealmLimiters = field(default_factory=RealmLimiters)

    def __post_init__(self) -> None:
        self.tokens = TokenAccess(self.services.lifecycle, self.services.store, self.clock)

    def client(self, **options: Any) -> QuickBooksClient:
        options = {"session": self.session, "limiters": self.limiters, "sleep": self.sleeps, **options}
        return QuickBooksClient(self.connection_id, tokens=self.tokens, settings=self.services.settings, **options)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        answer = requests.request(method, f"{self.emulator.url}/_emulator{path}", json=body, timeout=10)
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    def refresh_grants(self) -> int:
        return self.admin("GET", "/stats")["grant_types"].get("refresh_token", 0)

    def stored_secret(self) -> dict[str, Any]:
        name = self.services.settings.connection_secret_name(self.connection_id)
        client = self.services.session.client("secretsmanager")
        return json.loads(client.get_secret_value(SecretId=name)["SecretString"])

    def secret_values(self) -> set[str]:
        stored = self.stored_secret()
        token_set = stored["token_set"] or {}
        return {
            stored["client_secret"],
            *self.session.tokens,
            *(token_set.get(k) for k in ("access_token", "refresh_token")),
        }


def connect(services: Services, emulator_url: str, connection_id: str) -> None:
    """The consent flow as a browser runs it: signed link, Intuit's consent form, the callback."""
    link = urlsplit(services.authorize_links.create(APP_URL, connection_id))
    signed = {key: values[0] for key, values in parse_qs(link.query).items()}
    start = services.consent.start(
        connection_id, exp=signed["exp"], kid=signed["kid"], sig=signed["sig"], redirect_uri=f"{APP_URL}/oauth/callback"
    )
    consent = urlsplit(start.redirect_url)
    assert start.redirect_url.startswith(emulator_url)
    form = {key: values[0] for key, values in parse_qs(consent.query).items()} | {"realm_id": REALM}
    decision = requests.post(f"{emulator_url}/connect/oauth2/decision", data=form, allow_redirects=False, timeout=10)
    assert decision.status_code == 302, decision.text
    callback = {key: values[0] for key, values in parse_qs(urlsplit(decision.headers["Location"]).query).items()}
    result = services.consent.complete(callback, state_cookie=start.state_cookie)
    assert result.realm_id == REALM


def apply_each_aws_request_atomically(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process moto checks a condition in Python between reading and writing an item, so two threads'
    conditional writes can both pass (two workflows both "take" a lease); DynamoDB applies one atomically.
    Races run here must test the service, not moto: its requests run one at a time, as
    qbo_local.serialized_moto does for the moto server."""
    from moto.core.botocore_stubber import BotocoreStubber

    handle = BotocoreStubber.__call__
    lock = threading.Lock()

    def one_at_a_time(self, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return handle(self, *args, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", one_at_a_time)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, log_scan: LogScan) -> Iterator[World]:
    apply_each_aws_request_atomically(monkeypatch)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    # Intuit's rate limits are off until a test turns them on: the consent flow's own calls go through no limiter.
    config = EmulatorConfig(clients={CLIENT_ID: CLIENT_SECRET}, rate_limits=False)
    with EmulatorServer(config) as emulator, mock_aws():
        settings = Settings(
            table_name=TABLE,
            secret_prefix="qbo-connect/client-test/",
            authorization_url=f"{emulator.url}/connect/oauth2",
            token_url=f"{emulator.url}/oauth2/v1/tokens/bearer",
            revocation_url=f"{emulator.url}/v2/oauth2/tokens/revoke",
            userinfo_url=f"{emulator.url}/v1/openid_connect/userinfo",
            sandbox_api_base_url=emulator.url,
            allowed_api_hosts=frozenset({urlsplit(emulator.url).netloc}),
        )
        session = boto3.Session(region_name=REGION)
        create_table(session.client("dynamodb"), TABLE)
        clock = OffsetClock()
        services = build_services(settings, session=session, clock=clock)
        connection = services.administration.create(
            NewConnection(name="Emulated Books", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        )
        connect(services, emulator.url, connection.connection_id)
        world = World(emulator, services, clock, connection.connection_id)
        world.admin("DELETE", "/stats")
        yield world
        log_scan.assert_free_of(world.secret_values())


def assert_no_token_in(error: QboConnectError, world: World) -> None:
    text = f"{error} {error!r} {vars(error)} {error.__cause__!r} {error.__context__!r}"
    assert not [value for value in world.secret_values() if value and value in text]


# --- paging -----------------------------------------------------------------------------------------
def test_query_pages_over_more_results_than_one_page(world):
    seeded = world.admin("POST", f"/companies/{REALM}/customers", {"count": 247})
    assert seeded["total"] == 250
    customers = list(world.client(page_size=100).query("select * from Customer"))
    assert len(customers) == 250
    assert len({c["Id"] for c in customers}) == 250
    assert world.admin("GET", "/stats")["api_resources"]["query"] == 3
    assert world.client().count("select count(*) from Customer") == 250


# --- CRUD with SyncToken ----------------------------------------------------------------------------
def test_create_get_update_sparse_and_a_stale_sync_token_is_a_typed_error(world):
    client = world.client()
    created = client.create("Customer", {"DisplayName": "Workflow Test Co", "Notes": "created by a test"})
    assert created["SyncToken"] == "0"
    assert client.get("Customer", created["Id"])["DisplayName"] == "Workflow Test Co"

    sparse = client.update("Customer", {"Id": created["Id"], "SyncToken": "0", "Notes": "changed"}, sparse=True)
    assert (sparse["SyncToken"], sparse["Notes"], sparse["DisplayName"]) == ("1", "changed", "Workflow Test Co")

    full = client.update("Customer", {"Id": created["Id"], "SyncToken": "1", "DisplayName": "Workflow Test Co"})
    assert full["SyncToken"] == "2" and "Notes" not in full  # a full update clears what it leaves out

    with pytest.raises(StaleObject) as raised:
        client.update("Customer", {"Id": created["Id"], "SyncToken": "1", "Notes": "too late"}, sparse=True)
    error = raised.value
    assert error.code.value == "stale_object" and error.fault_code == "5010"
    assert error.detail and error.detail.startswith("Stale Object Error")
    assert error.intuit_tid and error.intuit_tid.startswith("1-")
    assert_no_token_in(error, world)
    assert client.get("Customer", created["Id"])["SyncToken"] == "2"  # nothing was written


def test_a_write_to_a_company_whose_subscription_ended_says_to_renew_it_not_to_fix_the_request(world):
    """Intuit answers a write to a read-only company (subscription canceled, expired, suspended or restricted)
    with 400, fault 6190 (Invalid Company Status). A workflow must hear what the connection test says of the
    same company (forbidden: a company administrator renews the subscription), in a batch too, not "fix the
    request, a retry won't help"; its reads keep working."""
    world.admin("POST", f"/companies/{REALM}/subscription", {"status": "SUSPENDED"})
    client = world.client()

    assert client.get("Customer", "1")["Id"] == "1"
    with pytest.raises(QboConnectError) as raised:
        client.create("Customer", {"DisplayName": "Read Only Co"})
    [item] = client.batch([BatchOperation(entity="Customer", operation="create", body={"DisplayName": "Batch Co"})])

    for error in (raised.value, item.error):
        assert error is not None and (error.code.value, error.fault_code) == ("forbidden", "6190"), error
        assert "subscription" in error.message and "renew" in error.message, error.message
        assert_no_token_in(error, world)


def test_delete_an_invoice_with_its_sync_token(world):
    client = world.client()
    invoice = client.create(
        "Invoice", {"CustomerRef": {"value": "1"}, "Line": [{"Amount": 125.5, "DetailType": "SalesItemLineDetail"}]}
    )
    with pytest.raises(StaleObject):
        client.delete("Invoice", invoice["Id"], "7")
    deleted = client.delete("Invoice", invoice["Id"], invoice["SyncToken"])
    assert (deleted["Id"], deleted["status"]) == (invoice["Id"], "Deleted")
    with pytest.raises(ObjectNotFound) as raised:
        client.get("Invoice", invoice["Id"])
    assert raised.value.fault_code == "610"


def test_profit_and_loss_report(world):
    client = world.client()
    client.create("Invoice", {"CustomerRef": {"value": "2"}, "Line": [{"Amount": 300}], "TxnDate": "2026-03-02"})
    report = client.report("ProfitAndLoss", start_date="2026-01-01", end_date="2026-12-31")
    assert report["Header"]["ReportName"] == "ProfitAndLoss"
    assert (report["Header"]["StartPeriod"], report["Header"]["EndPeriod"]) == ("2026-01-01", "2026-12-31")
    net = report["Rows"]["Row"][-1]["Summary"]["ColData"][1]["value"]
    assert net == "300.00"
    assert client.company_info()["CompanyName"] == "Sandbox Company_US_1"


# --- 401 ----------------------------------------------------------------------------------------------
def test_a_401_then_success_after_one_forced_refresh(world):
    world.clock.advance(FORCED_REFRESH_AGE)  # the token is older than the forced-refresh minimum age
    before = world.stored_secret()["token_set"]["access_token"]
    world.admin("POST", "/faults", {"group": "api", "fault": "invalid_grant", "times": 1})

    customer = world.client().get("Customer", "1")

    assert customer["Id"] == "1"
    assert world.refresh_grants() == 1
    after = world.stored_secret()["token_set"]["access_token"]
    assert after != before  # the new token was persisted for everyone
    assert world.session.tokens == {before, after}


def test_repeated_401_is_an_authentication_error_without_a_refresh_loop(world):
    world.clock.advance(FORCED_REFRESH_AGE)
    world.admin("POST", "/faults", {"group": "api", "fault": "invalid_grant", "until_cleared": True})
    client = world.client()
    for _ in range(5):  # a caller that keeps trying
        with pytest.raises(Unauthorized) as raised:
            client.get("Customer", "1")
        assert raised.value.fault_code == "3200" and raised.value.code.value == "unauthorized"
        assert_no_token_in(raised.value, world)
    # Several processes (separate token caches) doing the same still refresh only once.
    other = QuickBooksClient(
        world.connection_id,
        tokens=TokenAccess(world.services.lifecycle, world.services.store, world.clock),
        settings=world.services.settings,
        session=world.session,
        limiters=world.limiters,
        sleep=world.sleeps,
    )
    with pytest.raises(Unauthorized):
        other.get("Customer", "1")
    assert world.refresh_grants() == 1
    world.admin("DELETE", "/faults?group=api")
    assert client.get("Customer", "1")["Id"] == "1"


# --- 429 ----------------------------------------------------------------------------------------------
def test_429_is_retried_after_the_wait_intuit_asks_for_within_the_bound(world):
    world.admin("POST", "/faults", {"group": "api", "fault": "http_429", "times": 2, "retry_after": 60})
    assert world.client(throttle_retries=2).get("Customer", "1")["Id"] == "1"
    assert world.sleeps == [60.0, 60.0]

    world.sleeps.clear()
    world.admin("POST", "/faults", {"group": "api", "fault": "http_429", "times": 3, "retry_after": 60})
    with pytest.raises(Throttled) as raised:
        world.client(throttle_retries=2).get("Customer", "1")
    assert world.sleeps == [60.0, 60.0]
    assert raised.value.retry_after == 60.0 and raised.value.intuit_tid
    world.admin("DELETE", "/faults?group=api")


# --- per-realm limits -----------------------------------------------------------------------------------
def test_concurrent_clients_in_one_process_stay_within_the_realms_limits(world):
    # From here the emulator enforces Intuit's limits (10 per second and 10 at a time per realm and app) and
    # answers 429 beyond them; each request holds its slot a little, as a real one would.
    config = world.admin("POST", "/config", {"rate_limits": True})
    assert (config["rate_limits"], config["rate_limit_per_second"], config["max_concurrent"]) == (True, 10, 10)
    world.admin("POST", "/faults", {"group": "api", "delay": 0.05})
    clients = [world.client() for _ in range(6)]

    with ThreadPoolExecutor(max_workers=24) as pool:
        found = list(pool.map(lambda n: clients[n % 6].get("Customer", str(1 + n % 3))["Id"], range(36)))

    assert sorted(set(found)) == ["1", "2", "3"]
    assert world.sleeps == []  # not one 429 (the client would have waited Intuit's 60 seconds)
    starts = sorted(world.session.starts)
    busiest = max(sum(1 for t in starts if first <= t < first + 1.0) for first in starts)
    assert busiest <= 10
    assert starts[-1] - starts[0] >= 3.0  # 36 requests at no more than 10 a second
    world.admin("DELETE", "/faults?group=api")


# --- the test function's deep check over HTTP ---------------------------------------------------------
def test_a_deep_connection_test_over_http_matches_the_contract(world):
    schema = json.loads((ROOT / "docs/schemas/test-function.response.schema.json").read_text())
    body = world.services.connection_tests.run(world.connection_id, deep=True).as_json()
    assert not list(Draft202012Validator(schema).iter_errors(body))
    assert body["ok"] is True
    assert body["checks"]["accounting_query"] == {"ok": True, "message": "the company has 3 customers"}


# --- refresh policies ---------------------------------------------------------------------------------
def test_workflows_asking_at_once_for_an_expired_on_demand_token_cost_one_refresh(world, monkeypatch):
    from qbo_connect.domain.admin_operations import ConnectionUpdate

    world.services.admin.update(world.connection_id, ConnectionUpdate(refresh_policy="on_demand"), actor="test")
    world.clock.advance(2 * 3600)  # nobody asked for two hours: the stored access token has expired
    monkeypatch.setattr(world.clock, "sleep", time.sleep)  # waiting for another's lease takes real time here
    world.admin("POST", "/faults", {"group": "token", "delay": 0.5})  # Intuit takes its time answering
    workflows = 8
    start = threading.Barrier(workflows)

    def workflow() -> str:
        # Each workflow is a process of its own: its own token cache, the same connection.
        tokens = TokenAccess(world.services.lifecycle, world.services.store, world.clock)
        start.wait(timeout=10)
        return tokens.access_token(world.connection_id)

    with ThreadPoolExecutor(workflows) as pool:
        handed_out = set(pool.map(lambda _: workflow(), range(workflows)))

    assert world.refresh_grants() == 1
    assert handed_out == {world.stored_secret()["token_set"]["access_token"]}
    assert world.client().company_info()["CompanyName"]
