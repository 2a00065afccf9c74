"""The real adapters: DynamoDB, Secrets Manager and EventBridge on moto; Intuit's HTTP endpoints faked with `responses`.

Intuit's answers come from tests/fixtures/intuit (Intuit-shaped bodies with fake values).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
import responses
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from fakes import EPOCH, FakeClock
from moto import mock_aws
from qbo_connect import intuit
from qbo_connect.adapters.dynamodb_event_history import DynamoDbEventHistory, create_events_table
from qbo_connect.adapters.dynamodb_store import DynamoDbConnectionStore, create_table
from qbo_connect.adapters.dynamodb_table import DynamoDbTable
from qbo_connect.adapters.eventbridge import EventBridgePublisher
from qbo_connect.adapters.intuit_oauth import IntuitOAuth
from qbo_connect.adapters.quickbooks_api import QuickBooksApi
from qbo_connect.adapters.secrets_vault import SecretsManagerSigningKeys, SecretsManagerVault
from qbo_connect.domain.connection import Connection, ConnectionStatus, ConsentIdentity
from qbo_connect.domain.connection import TestResult as ConnectionTestResult
from qbo_connect.domain.event_history import RecordingPublisher
from qbo_connect.domain.events import EVENT_ID, EventType, connection_event, event_id_time
from qbo_connect.domain.metering import UsageKey
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import (
    Busy,
    CompanyBusy,
    Conflict,
    ConnectionAlreadyExists,
    ConnectionNotFound,
    Forbidden,
    IntuitUnavailable,
    InvalidClient,
    NeedsReauthorization,
    OutcomeUnknown,
    QboConnectError,
    RevocationRefused,
    Throttled,
    Unauthorized,
)
from qbo_connect.ports import (
    AppCompany,
    AppCompanyLeaseRecord,
    ClientCredentials,
    ConnectionEvent,
    OAuthState,
    RecordedEvent,
)
from qbo_connect.settings import Settings, SettingsError
from urllib3.exceptions import MaxRetryError, NewConnectionError

REGION = "eu-west-1"
TABLE = "qbo-connections-test"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "intuit"
REALM = "9341453050000001"
CREDENTIALS = ClientCredentials("ABfakeclientid0123456789", "fake-client-secret-value")
# Held in names, so that the check of a traceback is not fooled by the test's own source lines.
REFRESH_TOKEN = "AB11-the-refresh-token"
CODE = "AB11-the-code"
ACCESS_TOKEN = "eyJ-access-token"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def settings() -> Settings:
    return Settings(table_name=TABLE, secret_prefix="qbo-test/")


@pytest.fixture
def aws(monkeypatch):
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def store(aws) -> DynamoDbConnectionStore:
    create_table(aws.client("dynamodb"), TABLE)
    return DynamoDbConnectionStore(DynamoDbTable(aws.client("dynamodb"), TABLE))


@pytest.fixture
def vault(aws, settings) -> SecretsManagerVault:
    return SecretsManagerVault(aws.client("secretsmanager"), settings)


def a_connection(connection_id: str = "qbc-1", name: str = "Acme Books", **changes) -> Connection:
    return Connection(
        connection_id=connection_id,
        name=name,
        environment=intuit.Environment.SANDBOX,
        base_url=intuit.SANDBOX_API_BASE_URL,
        client_id=CREDENTIALS.client_id,
        created_at=EPOCH,
        updated_at=EPOCH,
        **changes,
    )


def connected(connection_id: str, name: str, expires_at: float) -> Connection:
    return a_connection(
        connection_id,
        name,
        status=ConnectionStatus.CONNECTED,
        has_client_secret=True,
        access_token_expires_at=expires_at,
    )


# --- DynamoDB: the connection store -------------------------------------------------------------------


def test_a_created_connection_reads_back_by_id_and_by_name_in_any_case(store):
    connection = a_connection(realm_id=REALM, scopes=(intuit.ACCOUNTING_SCOPE, "openid"), has_client_secret=True)

    store.create(connection)

    assert store.get("qbc-1") == connection
    assert store.find_by_name("ACME books") == connection
    assert store.get("qbc-2") is None and store.find_by_name("Other") is None


def test_a_duplicate_id_is_refused_and_its_name_is_not_claimed(store):
    store.create(a_connection("qbc-1", "Acme Books"))

    with pytest.raises(ConnectionAlreadyExists):
        store.create(a_connection("qbc-1", "Other Books"))

    assert store.find_by_name("Other Books") is None
    assert store.get("qbc-1").name == "Acme Books"
    store.create(a_connection("qbc-2", "Other Books"))  # the name was never half-claimed


def test_a_duplicate_name_is_refused_whatever_its_case_and_no_item_is_written(store):
    store.create(a_connection("qbc-1", "Acme Books"))

    with pytest.raises(ConnectionAlreadyExists):
        store.create(a_connection("qbc-2", "ACME BOOKS"))

    assert store.get("qbc-2") is None
    assert [c.connection_id for c in store.list()] == ["qbc-1"]


def test_save_is_conditional_on_the_version_read_and_the_lease_owner(store):
    store.create(a_connection())
    held = store.acquire_lease("qbc-1", owner="owner-a", now=EPOCH, seconds=60)

    saved = store.save(
        replace(held, status=ConnectionStatus.CONNECTED, realm_id=REALM),
        lease_owner="owner-a",
    )

    assert saved.version == 1 and saved.status is ConnectionStatus.CONNECTED and saved.lease_owner == "owner-a"
    with pytest.raises(Conflict):
        store.save(held, lease_owner="owner-a")  # stale version
    with pytest.raises(Conflict):
        store.save(saved, lease_owner="owner-b")  # not the lease holder
    assert store.get("qbc-1") == saved


def test_save_can_give_the_lease_back_in_the_same_write_and_then_nobody_can_save(store):
    store.create(a_connection())
    held = store.acquire_lease("qbc-1", owner="owner-a", now=EPOCH, seconds=60)

    saved = store.save(held, lease_owner="owner-a", release_lease=True)

    assert saved.lease_owner is None and saved.lease_expires_at is None
    with pytest.raises(Conflict):
        store.save(saved, lease_owner="owner-a")
    assert store.acquire_lease("qbc-1", owner="owner-b", now=EPOCH + 1, seconds=60).lease_owner == "owner-b"


def test_a_save_that_renames_writes_the_name_and_the_rest_together_or_nothing(store):
    # An update's new name and its other fields go in one write: a name another connection holds by then refuses
    # all of it, so the refusal the administrator reads is the whole truth.
    store.create(a_connection("qbc-1", "Acme Books"))
    store.create(a_connection("qbc-2", "Acme US"))
    held = store.acquire_lease("qbc-1", owner="o", now=EPOCH, seconds=60)

    with pytest.raises(ConnectionAlreadyExists):
        store.save(replace(held, name="ACME us", realm_id=REALM), lease_owner="o", renamed_from="Acme Books")

    assert store.get("qbc-1") == held and store.find_by_name("Acme Books") == held
    saved = store.save(replace(held, name="Acme Canada", realm_id=REALM), lease_owner="o", renamed_from="Acme Books")
    assert (saved.name, saved.realm_id, saved.version, saved.lease_owner) == ("Acme Canada", REALM, 1, "o")
    assert store.find_by_name("acme canada") == saved and store.find_by_name("Acme Books") is None
    assert store.find_by_name("Acme US").connection_id == "qbc-2"
    with pytest.raises(Conflict):  # the version read is stale: neither the name nor the rest moves
        store.save(replace(held, name="Acme Mexico"), lease_owner="o", renamed_from="Acme Canada")
    assert store.find_by_name("Acme Mexico") is None and store.get("qbc-1") == saved


def test_who_consented_is_stored_with_the_connection_and_read_back(store):
    store.create(a_connection())
    held = store.acquire_lease("qbc-1", owner="o", now=EPOCH, seconds=60)
    person = ConsentIdentity(sub="1182d6ec", email="owner@example.com", email_verified=True)

    store.save(replace(held, consented_by=person), lease_owner="o")
    unknown = store.save(replace(store.get("qbc-1"), consented_by=ConsentIdentity.unknown("why")), lease_owner="o")

    assert store.get("qbc-1").consented_by == ConsentIdentity.unknown("why") == unknown.consented_by
    store.save(replace(store.get("qbc-1"), consented_by=person), lease_owner="o")
    assert store.get("qbc-1").consented_by == person


def test_save_removes_fields_that_were_cleared(store):
    store.create(
        replace(connected("qbc-1", "Acme Books", EPOCH + 3600), consented_by=ConsentIdentity(sub="s", email="e@x.test"))
    )
    held = store.acquire_lease("qbc-1", owner="o", now=EPOCH, seconds=60)

    store.save(held.disconnected(now=EPOCH, generation=2, revocation="revoked"), lease_owner="o", release_lease=True)

    stored = store.get("qbc-1")
    assert stored.consented_by is None
    assert stored.status is ConnectionStatus.NOT_CONNECTED
    assert stored.access_token_expires_at is None
    assert stored.last_revocation == "revoked"
    assert store.due_connection_ids(due_before=EPOCH + 10**9) == []


def test_the_lease_is_taken_only_when_free_or_expired(store):
    store.create(a_connection())
    store.acquire_lease("qbc-1", owner="owner-a", now=EPOCH, seconds=60)

    with pytest.raises(Busy):
        store.acquire_lease("qbc-1", owner="owner-b", now=EPOCH + 59, seconds=60)
    taken = store.acquire_lease("qbc-1", owner="owner-b", now=EPOCH + 61, seconds=60)

    assert taken.lease_owner == "owner-b" and taken.lease_expires_at == EPOCH + 121
    with pytest.raises(ConnectionNotFound):
        store.acquire_lease("qbc-404", owner="owner-a", now=EPOCH, seconds=60)


def test_the_lease_is_released_only_by_its_owner(store):
    store.create(a_connection())
    store.acquire_lease("qbc-1", owner="owner-a", now=EPOCH, seconds=60)

    assert store.release_lease("qbc-1", owner="owner-b") is False
    assert store.get("qbc-1").lease_owner == "owner-a"
    assert store.release_lease("qbc-1", owner="owner-a") is True
    assert store.get("qbc-1").lease_owner is None
    assert store.release_lease("qbc-1", owner="owner-a") is False


def test_a_holder_that_set_no_in_flight_mark_leaves_anothers_in_place_when_it_releases(store):
    store.create(a_connection())
    # A refresh whose answer was lost gave the lease back and kept its mark until the call is over.
    store.acquire_lease("qbc-1", owner="refresher", now=EPOCH, seconds=60, fence_until=EPOCH + 400)
    store.release_lease("qbc-1", owner="refresher", clear_fence=False)
    store.acquire_lease("qbc-1", owner="administrator", now=EPOCH + 5, seconds=60)  # no fence of its own

    assert store.release_lease("qbc-1", owner="administrator", clear_fence=False) is True
    assert store.get("qbc-1").refresh_in_flight_until == EPOCH + 400
    with pytest.raises(Busy):
        store.acquire_lease("qbc-1", owner="workflow", now=EPOCH + 10, seconds=60, fence_until=EPOCH + 500)


APP_COMPANY = AppCompany(CREDENTIALS.client_id, REALM)


def _take_app_company(store, owner: str, connection_id: str, *, now: float, purpose: str = "consent", **more):
    values = {"seconds": 30, "skew_seconds": 20, "record_grant_holder": purpose != "revocation"} | more
    return store.acquire_app_company_lease(
        APP_COMPANY, owner=owner, connection_id=connection_id, purpose=purpose, now=now, **values
    )


def test_an_app_company_lease_is_taken_over_only_once_it_ran_out_by_the_takers_clock_less_the_skew_allowance(store):
    assert _take_app_company(store, "consent", "qbc-b", now=EPOCH) == AppCompanyLeaseRecord()  # nobody had it

    # The reset's clock runs 15 s ahead of the consent's: by it the lease ran out, but within the skew allowance.
    with pytest.raises(CompanyBusy) as busy:
        _take_app_company(store, "reset", "qbc-a", now=EPOCH + 30 + 15, purpose="revocation", seconds=145)
    taken_over = _take_app_company(store, "reset", "qbc-a", now=EPOCH + 30 + 21, purpose="revocation", seconds=145)

    assert (busy.value.holder_connection_id, busy.value.purpose, busy.value.until) == ("qbc-b", "consent", EPOCH + 30)
    assert taken_over == AppCompanyLeaseRecord("consent", EPOCH + 30, "qbc-b", "consent", frozenset({"qbc-b"}))


def test_a_late_app_company_lease_holder_can_neither_renew_nor_give_back_the_lease_that_replaced_its_own(store):
    _take_app_company(store, "consent", "qbc-b", now=EPOCH)
    _take_app_company(store, "reset", "qbc-a", now=EPOCH + 60, purpose="revocation", seconds=145)

    assert store.renew_app_company_lease(APP_COMPANY, owner="consent", until=EPOCH + 300) is False
    assert store.release_app_company_lease(APP_COMPANY, owner="consent") is False
    with pytest.raises(CompanyBusy) as busy:
        _take_app_company(store, "another consent", "qbc-c", now=EPOCH + 100)
    assert (busy.value.holder_connection_id, busy.value.until) == ("qbc-a", EPOCH + 205)

    assert store.release_app_company_lease(APP_COMPANY, owner="reset", forget=frozenset({"qbc-b"})) is True
    assert _take_app_company(store, "another consent", "qbc-c", now=EPOCH + 100) == AppCompanyLeaseRecord()


def test_an_app_company_lease_is_renewed_and_retaken_only_by_its_holder(store):
    _take_app_company(store, "reset", "qbc-a", now=EPOCH, purpose="revocation", seconds=10)

    assert store.renew_app_company_lease(APP_COMPANY, owner="reset", until=EPOCH + 200) is True
    with pytest.raises(CompanyBusy):
        _take_app_company(store, "consent", "qbc-b", now=EPOCH + 150)
    # A write whose answer was lost is sent again by botocore: its own lease, not "held by someone else".
    again = _take_app_company(store, "reset", "qbc-a", now=EPOCH + 1, purpose="revocation", seconds=10)
    assert (again.owner, again.expires_at) == ("reset", EPOCH + 200)


def test_an_app_company_lease_item_is_in_no_index(aws, store):
    """Its item must never pass for a connection: it carries none of the indexes' key attributes."""
    _take_app_company(store, "consent", "qbc-b", now=EPOCH)
    client = aws.client("dynamodb")

    for index in ("refresh-due", "by-name", "by-status", "by-realm"):
        assert client.scan(TableName=TABLE, IndexName=index)["Items"] == [], index
    assert store.list() == [] and store.find_by_realm(REALM) == []


def test_the_due_query_finds_only_connected_connections_expiring_before_the_cut_off(store):
    cut_off = EPOCH + 900
    store.create(connected("qbc-due", "Due", EPOCH + 600))
    store.create(connected("qbc-edge", "Edge", cut_off))
    store.create(connected("qbc-later", "Later", EPOCH + 3600))
    store.create(a_connection("qbc-new", "New", access_token_expires_at=EPOCH + 60))
    store.create(
        a_connection(
            "qbc-dead", "Dead", status=ConnectionStatus.NEEDS_REAUTHORIZATION, access_token_expires_at=EPOCH + 60
        )
    )

    assert sorted(store.due_connection_ids(due_before=cut_off)) == ["qbc-due", "qbc-edge"]
    assert len(store.due_connection_ids(due_before=cut_off, limit=1)) == 1


def test_each_refresh_policy_is_found_due_in_its_own_part_of_the_index(store):
    from dataclasses import replace

    from qbo_connect.domain.connection import RefreshPolicy

    store.create(connected("qbc-eager", "Eager", EPOCH + 600))
    store.create(replace(connected("qbc-lazy", "Lazy", EPOCH + 600), refresh_policy=RefreshPolicy.ON_DEMAND))

    assert store.due_connection_ids(due_before=EPOCH + 900) == ["qbc-eager"]
    assert store.due_connection_ids(due_before=EPOCH + 900, policy=RefreshPolicy.ON_DEMAND) == ["qbc-lazy"]
    assert store.get("qbc-lazy").refresh_policy is RefreshPolicy.ON_DEMAND

    # Switching policy moves the connection from one part to the other in the same conditional save.
    held = store.acquire_lease("qbc-lazy", owner="owner-a", now=EPOCH, seconds=60)
    store.save(replace(held, refresh_policy=RefreshPolicy.EAGER), lease_owner="owner-a", release_lease=True)
    assert sorted(store.due_connection_ids(due_before=EPOCH + 900)) == ["qbc-eager", "qbc-lazy"]
    assert store.due_connection_ids(due_before=EPOCH + 900, policy=RefreshPolicy.ON_DEMAND) == []


def test_an_item_stored_before_refresh_policies_existed_is_eager(store, aws):
    store.create(connected("qbc-old", "Old", EPOCH + 600))
    aws.resource("dynamodb").Table(TABLE).update_item(
        Key={"pk": "connection#qbc-old"}, UpdateExpression="REMOVE refresh_policy"
    )

    assert store.get("qbc-old").refresh_policy.value == "eager"


def test_connections_are_listed_by_name(store):
    for index, name in enumerate(["Charlie", "alpha", "Bravo", "Delta 2", "Delta 10"]):
        store.create(a_connection(f"qbc-{index}", name))

    assert [c.name for c in store.list()] == ["Bravo", "Charlie", "Delta 10", "Delta 2", "alpha"]


def test_a_company_s_connections_are_found_through_the_sparse_by_realm_index_without_a_scan(aws, store):
    store.create(a_connection("qbc-a", "Acme", realm_id=REALM))
    store.create(a_connection("qbc-b", "Acme again", realm_id=REALM))
    store.create(replace(a_connection("qbc-other-app", "Other app", realm_id=REALM), client_id="ABotherapp0123456789"))
    store.create(a_connection("qbc-elsewhere", "Elsewhere", realm_id="42"))
    store.create(a_connection("qbc-unpinned", "Unpinned"))  # no realm: not in the index at all
    store.put_state(OAuthState("h" * 64, "qbc-a", "https://x.test/cb", "b", EPOCH, EPOCH + 600))

    assert [c.connection_id for c in store.find_by_realm(REALM)] == ["qbc-a", "qbc-b", "qbc-other-app"]
    assert [c.connection_id for c in store.find_by_realm(REALM, client_id=CREDENTIALS.client_id)] == [
        "qbc-a",
        "qbc-b",
    ]
    assert store.find_by_realm("7") == []
    indexed = aws.client("dynamodb").scan(TableName=TABLE, IndexName="by-realm")["Items"]
    assert sorted(item["pk"]["S"] for item in indexed) == [
        "connection#qbc-a",
        "connection#qbc-b",
        "connection#qbc-elsewhere",
        "connection#qbc-other-app",
    ]


def test_a_test_result_is_recorded_without_changing_the_version(store):
    store.create(a_connection())
    result = ConnectionTestResult(ok=True, tested_at=EPOCH, latency_ms=120, company_name="Acme", intuit_tid="1-abc")

    store.record_test("qbc-1", result)
    store.record_test("qbc-404", result)  # a connection deleted meanwhile: nothing to record

    stored = store.get("qbc-1")
    assert stored.last_test == result and stored.version == 0
    assert store.get("qbc-404") is None


def test_delete_needs_the_lease_and_frees_the_name(store):
    store.create(a_connection())
    held = store.acquire_lease("qbc-1", owner="o", now=EPOCH, seconds=60)

    with pytest.raises(Conflict):
        store.delete(held, lease_owner="someone-else")
    store.delete(held, lease_owner="o")

    assert store.get("qbc-1") is None and store.find_by_name("Acme Books") is None
    store.create(a_connection("qbc-2", "Acme Books"))


def test_an_oauth_state_is_consumed_exactly_once(store):
    state = OAuthState("ab" * 32, "qbc-1", "https://api.example/oauth/callback", "cd" * 32, EPOCH, EPOCH + 600)
    store.put_state(state)

    assert store.get_state(state.state_hash) == state
    first, second = store.consume_state(state.state_hash), store.consume_state(state.state_hash)

    assert (first, second) == (state, None)
    assert store.get_state(state.state_hash) is None
    assert store.consume_state("ef" * 32) is None


def test_an_oauth_state_item_expires_by_ttl_and_holds_only_hashes(aws, store):
    state = OAuthState("ab" * 32, "qbc-1", "https://api.example/oauth/callback", "cd" * 32, EPOCH, EPOCH + 600)
    store.put_state(state)

    item = aws.resource("dynamodb").Table(TABLE).get_item(Key={"pk": f"state#{state.state_hash}"})["Item"]
    ttl = aws.client("dynamodb").describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]

    assert ttl["AttributeName"] in item and int(item[ttl["AttributeName"]]) >= EPOCH + 600
    assert set(item) == {
        "pk",
        "connection_id",
        "redirect_uri",
        "browser_binding",
        "created_at",
        "expires_at",
        "purge_at",
    }


# --- Secrets Manager: the token vault and the signing keys ---------------------------------------------


def a_secret(generation: int = 0, access_token: str = "access-0", **changes) -> ConnectionSecret:
    token_set = TokenSet(
        access_token=access_token,
        refresh_token=f"refresh-of-{access_token}",
        expires_at=EPOCH + 3600,
        refresh_token_expires_at=EPOCH + 100 * 86400,
        refresh_token_hard_expires_at=EPOCH + 5 * 365 * 86400,
        scopes=intuit.DEFAULT_SCOPES,
        obtained_at=EPOCH,
    )
    fields = {
        "connection_id": "qbc-1",
        "client_id": CREDENTIALS.client_id,
        "base_url": intuit.SANDBOX_API_BASE_URL,
        "client_secret": CREDENTIALS.client_secret,
        "token_set": token_set if generation else None,
        "realm_id": REALM,
        "generation": generation,
        "updated_at": EPOCH,
    }
    return ConnectionSecret(**{**fields, **changes})


def _versions(aws, settings) -> dict[str, list[str]]:
    listed = aws.client("secretsmanager").list_secret_version_ids(SecretId=settings.connection_secret_name("qbc-1"))
    return {v["VersionId"]: v.get("VersionStages", []) for v in listed["Versions"]}


def test_the_vault_creates_reads_writes_and_deletes_a_connection_secret(aws, vault, settings):
    vault.create(a_secret(0))
    assert vault.read("qbc-1") == a_secret(0)

    vault.write(a_secret(1, "access-1"))

    assert vault.read("qbc-1") == a_secret(1, "access-1")
    stored = aws.client("secretsmanager").get_secret_value(SecretId="qbo-test/connections/qbc-1")
    assert json.loads(stored["SecretString"])["token_set"]["access_token"] == "access-1"
    assert sorted(stage for stages in _versions(aws, settings).values() for stage in stages) == [
        "AWSCURRENT",
        "AWSPREVIOUS",
    ]
    vault.delete("qbc-1")
    assert vault.read("qbc-1") is None
    vault.delete("qbc-1")  # already gone: fine


def test_a_second_secret_for_the_same_connection_is_refused(vault):
    vault.create(a_secret(0))

    with pytest.raises(ConnectionAlreadyExists):
        vault.create(a_secret(0, client_secret="another-secret"))


def test_writing_the_same_generation_twice_with_the_same_content_is_a_no_op(aws, vault, settings):
    vault.create(a_secret(0))
    vault.write(a_secret(1, "access-1"))
    versions = _versions(aws, settings)

    vault.write(a_secret(1, "access-1"))  # a retried write

    assert _versions(aws, settings) == versions
    assert vault.read("qbc-1") == a_secret(1, "access-1")


def test_writing_a_generation_someone_else_wrote_is_refused_and_keeps_their_tokens(vault):
    vault.create(a_secret(0))
    vault.write(a_secret(1, "newer-access"))

    with pytest.raises(Conflict) as raised:
        vault.write(a_secret(1, "slow-holders-access"))

    assert vault.read("qbc-1").token_set.access_token == "newer-access"
    assert "slow-holders-access" not in str(raised.value)


def test_the_signing_key_is_created_on_first_use_and_reused(aws, settings):
    client = aws.client("secretsmanager")

    kid, key = SecretsManagerSigningKeys(client, settings).current()
    again = SecretsManagerSigningKeys(client, settings)

    assert again.current() == (kid, key)
    assert again.by_id(kid) == key and len(key) >= 32
    assert again.by_id("k-unknown") is None
    assert len(client.list_secrets()["SecretList"]) == 1


def test_a_rotated_signing_key_keeps_the_previous_one_for_old_links(aws, settings):
    client = aws.client("secretsmanager")
    old_kid, old_key = SecretsManagerSigningKeys(client, settings).current()
    client.put_secret_value(
        SecretId=settings.signing_key_name,
        SecretString=json.dumps(
            {"kid": "k2", "key": "new-key-value", "previous": [{"kid": old_kid, "key": old_key.decode()}]}
        ),
    )

    keys = SecretsManagerSigningKeys(client, settings)

    assert keys.current() == ("k2", b"new-key-value")
    assert keys.by_id(old_kid) == old_key


def test_the_signing_key_is_read_once_per_max_age_so_a_rotation_reaches_every_container_in_time(aws, settings):
    client = aws.client("secretsmanager")
    reads = []
    client.meta.events.register("before-call.secrets-manager.GetSecretValue", lambda **_: reads.append(1))
    clock = {"now": 1000.0}
    keys = SecretsManagerSigningKeys(client, settings, max_age_seconds=300, now=lambda: clock["now"])
    old_kid, _ = keys.current()
    client.put_secret_value(SecretId=settings.signing_key_name, SecretString=json.dumps({"kid": "k2", "key": "k2"}))

    clock["now"] += 299
    still_cached = keys.current()[0]
    clock["now"] += 1
    rotated = keys.current()[0]

    assert (still_cached, rotated) == (old_kid, "k2")
    assert len(reads) == 3  # not found, read after creating it, read after max age


# --- EventBridge ----------------------------------------------------------------------------------------


def test_events_reach_eventbridge_with_the_documented_detail_shape(aws):
    sqs, events = aws.client("sqs"), aws.client("events")
    queue_url = sqs.create_queue(QueueName="qbo-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="qbo", EventPattern=json.dumps({"source": ["qbo-connect"]}))
    events.put_targets(Rule="qbo", Targets=[{"Id": "queue", "Arn": queue_arn}])
    connection = connected("qbc-1", "Acme Books", EPOCH + 3600)
    published = connection_event(EventType.NEEDS_REAUTHORIZATION, connection, now=EPOCH, reason="invalid_grant")

    EventBridgePublisher(events, "default").publish([published])

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    delivered = json.loads(messages[0]["Body"])
    assert delivered["source"] == "qbo-connect"
    assert delivered["detail-type"] == "Connection Needs Reauthorization"
    assert delivered["detail"] == {
        "connection_id": "qbc-1",
        "name": "Acme Books",
        "environment": "sandbox",
        "realm_id": None,
        "status": "connected",
        "reason": "invalid_grant",
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "event_id": published.detail["event_id"],
    }
    assert EVENT_ID.match(delivered["detail"]["event_id"])
    # Its time is the event's, give or take the microseconds that keep IDs made at one instant increasing
    # (earlier tests in this process may have made events at EPOCH too).
    assert EPOCH <= event_id_time(delivered["detail"]["event_id"]) < EPOCH + 0.001


def test_a_failed_publish_does_not_raise(aws, caplog):
    events = aws.client("events")
    stubber = Stubber(events)
    stubber.add_client_error("put_events", service_error_code="InternalException", http_status_code=500)
    stubber.add_response("put_events", {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]})
    batch = [ConnectionEvent("Connection Reset", {"connection_id": "qbc-1"})]

    with stubber:
        EventBridgePublisher(events, "default").publish(batch)
        EventBridgePublisher(events, "default").publish(batch)

    assert "Could not publish events" in caplog.text
    assert "Some events were not published" in caplog.text


# --- The connections' event history ---------------------------------------------------------------------
EVENTS_TABLE = "qbo-connection-events-test"


@pytest.fixture
def history(aws) -> DynamoDbEventHistory:
    create_events_table(aws.client("dynamodb"), EVENTS_TABLE)
    return DynamoDbEventHistory(DynamoDbTable(aws.client("dynamodb"), EVENTS_TABLE))


class FlakyEventBridge:
    """EventBridge (moto) behind a client whose first `outages` PutEvents calls fail after the SDK's retries."""

    def __init__(self, client, outages: int) -> None:
        self._client, self.outages = client, outages

    def put_events(self, **kwargs):
        if self.outages:
            self.outages -= 1
            raise ClientError({"Error": {"Code": "InternalException", "Message": "boom"}}, "PutEvents")
        return self._client.put_events(**kwargs)


def test_the_history_pages_newest_first_and_skips_what_has_expired(aws, history):
    clock = FakeClock()
    recorder = RecordingPublisher(history, EventBridgePublisher(aws.client("events"), "default"), clock)
    connection = connected("qbc-1", "Acme Books", EPOCH + 3600)
    for reason in ("first", "second", "third"):
        clock.advance(1)
        recorder.publish([connection_event(EventType.REFRESH_FAILED, connection, now=clock.now(), reason=reason)])
    recorder.publish([connection_event(EventType.RESET, a_connection("qbc-2"), now=clock.now())])

    first = recorder.page("qbc-1", limit=2)
    second = recorder.page("qbc-1", limit=2, before=first.next_before)

    assert [e.detail["reason"] for e in first.events + second.events] == ["third", "second", "first"]
    assert second.next_before is None and all(e.published for e in first.events)
    item = (
        aws.resource("dynamodb")
        .Table(EVENTS_TABLE)
        .get_item(Key={"connection_id": "qbc-1", "event_id": first.events[0].event_id})["Item"]
    )
    ttl = aws.client("dynamodb").describe_time_to_live(TableName=EVENTS_TABLE)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert int(item["expires_at"]) == int(first.events[0].occurred_at + 90 * 86400)
    assert set(item) == {"connection_id", "event_id", "detail_type", "detail", "occurred_at", "expires_at"}
    clock.advance(90 * 86400)  # past the retention; moto, like DynamoDB, has not deleted the items yet
    assert recorder.page("qbc-1").events == []


def test_an_eventbridge_outage_leaves_the_record_unpublished_until_a_sweep_publishes_it(aws, history):
    clock = FakeClock()
    sqs, events = aws.client("sqs"), aws.client("events")
    queue_url = sqs.create_queue(QueueName="qbo-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="qbo", EventPattern=json.dumps({"source": ["qbo-connect"]}))
    events.put_targets(Rule="qbo", Targets=[{"Id": "queue", "Arn": queue_arn}])
    recorder = RecordingPublisher(history, EventBridgePublisher(FlakyEventBridge(events, outages=2), "default"), clock)
    event = connection_event(EventType.NEEDS_REAUTHORIZATION, a_connection(), now=clock.now(), reason="invalid_grant")

    recorder.publish([event])
    [record] = recorder.page("qbc-1").events
    assert record.published is False
    clock.advance(301)
    assert recorder.redeliver() == 0  # still down: kept for the next sweep
    assert recorder.redeliver() == 1

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["detail"]["event_id"] for m in messages] == [event.detail["event_id"]]
    assert recorder.page("qbc-1").events[0].published is True
    assert history.unpublished(recorded_before=clock.now(), limit=10) == []


def test_marking_a_record_published_never_recreates_one_that_expired_away(aws, history):
    event = connection_event(EventType.RESET, a_connection(), now=EPOCH)
    record = RecordedEvent("qbc-1", event.detail["event_id"], event.detail_type, event.detail, EPOCH)

    history.mark_published([record])

    assert aws.resource("dynamodb").Table(EVENTS_TABLE).scan()["Items"] == []


# --- Intuit's OAuth endpoints ---------------------------------------------------------------------------


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def oauth(settings) -> IntuitOAuth:
    return IntuitOAuth(settings, FakeClock())


def _form(call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def _never_shows(error: BaseException, *values: str) -> None:
    shown = "".join([str(error), repr(error), *traceback.format_exception(error)])
    for value in values:
        assert value not in shown


def test_the_authorization_url_asks_intuit_for_a_code_with_state_and_scopes(oauth):
    url = oauth.authorization_url(
        CREDENTIALS.client_id,
        redirect_uri="https://api.example/oauth/callback",
        scopes=["com.intuit.quickbooks.accounting"],
        state="the-state",
    )

    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(intuit.AUTHORIZATION_URL + "?")
    assert query == {
        "response_type": "code",
        "client_id": CREDENTIALS.client_id,
        "redirect_uri": "https://api.example/oauth/callback",
        "scope": "com.intuit.quickbooks.accounting",
        "state": "the-state",
    }


def test_the_authorization_url_is_the_one_oauthlib_builds(oauth):
    from oauthlib.oauth2 import WebApplicationClient

    asked = {"redirect_uri": "https://api.example/oauth/callback", "state": "st+ate/=~"}
    scopes = ["com.intuit.quickbooks.accounting", "openid", "email"]

    url = oauth.authorization_url(CREDENTIALS.client_id, scopes=scopes, **asked)

    assert url == WebApplicationClient(CREDENTIALS.client_id).prepare_request_uri(
        intuit.AUTHORIZATION_URL, scope=scopes, **asked
    )


def test_an_authorization_url_over_plain_http_is_refused_unless_it_is_a_local_emulator():
    insecure = IntuitOAuth(Settings(table_name=TABLE, authorization_url="http://intuit.example/connect"), clock=None)
    emulator = IntuitOAuth(Settings(table_name=TABLE, authorization_url="http://127.0.0.1:8181/connect"), clock=None)

    with pytest.raises(SettingsError, match="not https"):
        insecure.authorization_url("client", redirect_uri="https://api.example/cb", scopes=["s"], state="x")
    assert emulator.authorization_url("client", redirect_uri="https://api.example/cb", scopes=["s"], state="x")


def test_building_the_authorization_url_loads_neither_requests_nor_oauthlib():
    # The authorize function wires both Intuit adapters but only builds this URL: its cold start should not
    # import the HTTP libraries.
    script = (
        "import sys\n"
        "from qbo_connect.adapters.intuit_oauth import IntuitOAuth\n"
        "from qbo_connect.adapters.quickbooks_api import QuickBooksApi\n"
        "from qbo_connect.settings import Settings\n"
        "QuickBooksApi(Settings(table_name='t'))\n"
        "url = IntuitOAuth(Settings(table_name='t'), clock=None).authorization_url(\n"
        "    'client', redirect_uri='https://api.example/oauth/callback', scopes=['s'], state='the-state')\n"
        "print(url.startswith('https://appcenter.intuit.com/connect/oauth2?'),"
        " sorted(m for m in ('requests', 'requests_oauthlib', 'oauthlib') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)

    assert done.stdout.split() == ["True", "[]"]


def test_the_code_exchange_uses_basic_auth_asks_for_the_hard_expiry_and_has_a_timeout(http, oauth):
    answer = fixture("token_response_with_hard_expiry.json")
    http.post(intuit.TOKEN_URL, json=answer)

    token_set = oauth.exchange_code(
        CREDENTIALS, code="the-code", redirect_uri="https://api.example/oauth/callback", scopes=intuit.DEFAULT_SCOPES
    )

    call = http.calls[0]
    basic = base64.b64encode(f"{CREDENTIALS.client_id}:{CREDENTIALS.client_secret}".encode()).decode()
    assert call.request.headers["Authorization"] == f"Basic {basic}"
    assert call.request.headers["x-include-refresh-token-hard-expires-in"] == "true"
    assert call.request.headers["Accept"] == "application/json"  # as Intuit's token request shows it, and the refresh
    # The callback answers through API Gateway (29 s): the exchange gets a shorter deadline.
    assert call.request.req_kwargs["timeout"] == (5.0, 15.0)
    form = _form(call)
    assert form["grant_type"] == "authorization_code"
    assert form["code"] == "the-code"
    assert form["redirect_uri"] == "https://api.example/oauth/callback"
    assert CREDENTIALS.client_secret not in call.request.body
    assert token_set.access_token == answer["access_token"]
    assert token_set.expires_at == EPOCH + 3600
    assert token_set.refresh_token_hard_expires_at == EPOCH + answer["x_refresh_token_hard_expires_in"]


def _id_token(**claims) -> str:
    """An ID token shaped like Intuit's (the signature is not what the adapter reads)."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    payload = {
        "iss": intuit.OPENID_ISSUER,
        "sub": "1182d6ec-2a1f-4aa3-af3e-d9e6ba0f2e8c",
        "aud": [CREDENTIALS.client_id],
        "realmid": REALM,
        "iat": int(EPOCH),
        "exp": int(EPOCH) + 3600,
    } | claims
    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(payload)}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("claims", "subject"),
    [
        ({}, "1182d6ec-2a1f-4aa3-af3e-d9e6ba0f2e8c"),
        ({"aud": ["ABanotherapp0123456789"]}, None),
        ({"iss": "https://evil.example/op"}, None),
        ({"exp": int(EPOCH) - 3600}, None),
        ({"sub": ""}, None),
    ],
)
def test_the_code_exchange_reads_who_consented_from_the_id_token_and_keeps_the_token_nowhere(
    http, oauth, claims, subject, caplog
):
    id_token = _id_token(**claims)
    http.post(intuit.TOKEN_URL, json=fixture("token_response.json") | {"id_token": id_token})

    token_set = oauth.exchange_code(
        CREDENTIALS, code="the-code", redirect_uri="https://api.example/oauth/callback", scopes=intuit.DEFAULT_SCOPES
    )

    assert token_set.id_token_subject == subject
    stored = ConnectionSecret(
        connection_id="qbc-1",
        client_id=CREDENTIALS.client_id,
        base_url=intuit.SANDBOX_API_BASE_URL,
        client_secret="s",
        token_set=token_set,
    ).to_json()
    assert id_token not in stored and "id_token" not in stored and "1182d6ec" not in stored
    assert id_token not in caplog.text and id_token not in repr(token_set)


def test_userinfo_is_asked_at_the_environment_s_endpoint_with_the_bearer_token_and_a_short_timeout(http, oauth):
    http.get(intuit.USERINFO_URLS[intuit.Environment.PRODUCTION], json=fixture("userinfo.json"))

    identity = oauth.user_info(access_token=ACCESS_TOKEN, environment=intuit.Environment.PRODUCTION)

    call = http.calls[0]
    assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert call.request.req_kwargs["timeout"] == (5.0, 5.0)
    assert (identity.sub, identity.email, identity.email_verified) == (
        "1182d6ec-2a1f-4aa3-af3e-d9e6ba0f2e8c",
        "owner@example.com",
        True,
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"status": 401, "json": {"error": "invalid_token"}}, Unauthorized),
        ({"status": 403, "json": {"error": "insufficient_scope"}}, Forbidden),
        ({"status": 503, "body": "<h1>503</h1>"}, IntuitUnavailable),
        ({"status": 200, "body": "not json"}, IntuitUnavailable),
        ({"status": 200, "json": {"email": "no-subject@example.com"}}, IntuitUnavailable),
        ({"body": requests.ReadTimeout()}, IntuitUnavailable),
    ],
)
def test_a_failing_userinfo_is_classified_without_the_token(http, oauth, answer, expected):
    http.get(intuit.USERINFO_URLS[intuit.Environment.SANDBOX], **answer)

    with pytest.raises(expected) as raised:
        oauth.user_info(access_token=ACCESS_TOKEN, environment=intuit.Environment.SANDBOX)

    _never_shows(raised.value, ACCESS_TOKEN)


def test_a_refresh_presents_the_refresh_token_the_same_way(http, oauth):
    http.post(intuit.TOKEN_URL, json=fixture("token_response.json"))

    token_set = oauth.refresh(CREDENTIALS, refresh_token="the-refresh-token", scopes=intuit.DEFAULT_SCOPES)

    call = http.calls[0]
    assert _form(call) == {"grant_type": "refresh_token", "refresh_token": "the-refresh-token"} | {
        k: v for k, v in _form(call).items() if k == "scope"
    }
    assert call.request.headers["Authorization"].startswith("Basic ")
    assert call.request.headers["x-include-refresh-token-hard-expires-in"] == "true"
    # Each read may last the whole call: the whole-call deadline (Intuit's own 120 s limit) ends it.
    assert call.request.req_kwargs["timeout"] == (5.0, 120.0)
    assert token_set.refresh_token == fixture("token_response.json")["refresh_token"]
    assert token_set.refresh_token_hard_expires_at is None


@pytest.mark.parametrize("call", ["refresh", "exchange_code"])
def test_token_lifetimes_count_from_when_the_request_was_sent_not_from_a_slow_answer(http, settings, call):
    """Intuit counts expires_in from when it issued the token, somewhere between our request and its answer:
    counted from the answer, a slow call (up to Intuit's 120 s) would promise a token valid that long after
    it expired at Intuit, past the margin a workflow was promised."""
    clock = FakeClock()
    sent_at = clock.now()
    answer = fixture("token_response_with_hard_expiry.json")

    def issued_then_slow(request):
        clock.advance(90)  # Intuit issues at once; its answer takes 90 s to arrive
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)

    http.add_callback(responses.POST, intuit.TOKEN_URL, callback=issued_then_slow)
    oauth = IntuitOAuth(settings, clock)

    if call == "refresh":
        token_set = oauth.refresh(CREDENTIALS, refresh_token="the-refresh-token", scopes=intuit.DEFAULT_SCOPES)
    else:
        token_set = oauth.exchange_code(
            CREDENTIALS,
            code="the-code",
            redirect_uri="https://api.example/oauth/callback",
            scopes=intuit.DEFAULT_SCOPES,
        )

    assert token_set.expires_at == sent_at + answer["expires_in"]
    assert token_set.refresh_token_expires_at == sent_at + answer["x_refresh_token_expires_in"]
    assert token_set.refresh_token_hard_expires_at == sent_at + answer["x_refresh_token_hard_expires_in"]


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (400, fixture("invalid_grant.json"), {}, NeedsReauthorization),
        (400, {"error": "invalid_grant"}, {}, NeedsReauthorization),
        (401, fixture("invalid_client.json"), {}, InvalidClient),
        # Refused at the door: certainly not processed, safe to send again.
        (503, "<html>Service Unavailable</html>", {}, IntuitUnavailable),
        (429, "Too Many Requests", {"Retry-After": "7"}, Throttled),
        (400, {"error": "invalid_request"}, {}, IntuitUnavailable),
        # Sent, and the answer is no answer: Intuit may have rotated the refresh token.
        (500, {"error": "server_error"}, {}, OutcomeUnknown),
        (502, "", {"intuit_tid": "1-tid-502"}, OutcomeUnknown),
        (504, "Gateway Timeout", {}, OutcomeUnknown),
        (200, "<html>not json</html>", {}, OutcomeUnknown),
    ],
)
def test_refresh_answers_are_classified_and_never_echo_the_refresh_token(http, oauth, status, body, headers, expected):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    http.post(intuit.TOKEN_URL, status=status, headers=headers, **kwargs)

    with pytest.raises(expected) as raised:
        oauth.refresh(CREDENTIALS, refresh_token=REFRESH_TOKEN, scopes=intuit.DEFAULT_SCOPES)

    assert type(raised.value) is expected
    _never_shows(raised.value, REFRESH_TOKEN, CREDENTIALS.client_secret)
    if status == 429:
        assert raised.value.retry_after == 7
    if headers.get("intuit_tid"):
        assert raised.value.intuit_tid == "1-tid-502"


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        # Before the request left: no connection, no name, no TLS.
        (requests.exceptions.ConnectTimeout("connect timed out"), IntuitUnavailable),
        (requests.exceptions.SSLError("handshake failed"), IntuitUnavailable),
        (
            requests.exceptions.ConnectionError(
                MaxRetryError(None, intuit.TOKEN_URL, reason=NewConnectionError(None, "Connection refused"))
            ),
            IntuitUnavailable,
        ),
        # After it left: a read timeout, a reset, a dropped connection.
        (requests.exceptions.ReadTimeout("read timed out"), OutcomeUnknown),
        (requests.exceptions.ConnectionError(ConnectionResetError(104, "Connection reset by peer")), OutcomeUnknown),
        (requests.exceptions.ChunkedEncodingError("connection broken"), OutcomeUnknown),
    ],
)
def test_network_failures_are_told_apart_by_whether_the_request_was_sent(http, oauth, failure, expected):
    http.post(intuit.TOKEN_URL, body=failure)

    with pytest.raises(expected) as raised:
        oauth.refresh(CREDENTIALS, refresh_token=REFRESH_TOKEN, scopes=intuit.DEFAULT_SCOPES)

    assert type(raised.value) is expected
    _never_shows(raised.value, REFRESH_TOKEN, CREDENTIALS.client_secret)


def test_a_refused_code_exchange_never_echoes_the_code(http, oauth):
    http.post(intuit.TOKEN_URL, status=400, json=fixture("invalid_grant.json"))

    with pytest.raises(QboConnectError) as raised:
        oauth.exchange_code(CREDENTIALS, code=CODE, redirect_uri="https://x/cb", scopes=intuit.DEFAULT_SCOPES)

    _never_shows(raised.value, CODE, CREDENTIALS.client_secret)


def test_revocation_posts_intuit_s_json_body_to_intuit_with_basic_auth(http, oauth):
    http.post(intuit.REVOCATION_URL, status=200)

    oauth.revoke(CREDENTIALS, token=REFRESH_TOKEN)

    call = http.calls[0]
    assert json.loads(call.request.body) == {"token": REFRESH_TOKEN}
    assert call.request.headers["Authorization"].startswith("Basic ")
    assert call.request.req_kwargs["timeout"] == (5.0, 15.0)


def test_revocation_elsewhere_posts_an_rfc_7009_form_body(http, settings):
    url = "https://id.example.test/oauth2/revoke"
    http.post(url, status=200)

    IntuitOAuth(replace(settings, revocation_url=url), FakeClock()).revoke(CREDENTIALS, token=REFRESH_TOKEN)

    call = http.calls[0]
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert _form(call) == {"token": REFRESH_TOKEN, "token_type_hint": "refresh_token"}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, None, InvalidClient),
        (400, {"error": "invalid_client"}, InvalidClient),
        (400, {"error": "unsupported_token_type"}, RevocationRefused),
        (403, None, RevocationRefused),
        (429, None, Throttled),
        (503, None, IntuitUnavailable),
    ],
)
def test_a_refused_revocation_is_classified_truthfully_without_the_token(http, oauth, status, body, expected):
    http.post(intuit.REVOCATION_URL, status=status, json=body)

    with pytest.raises(expected) as raised:
        oauth.revoke(CREDENTIALS, token=REFRESH_TOKEN)

    assert type(raised.value) is expected
    _never_shows(raised.value, REFRESH_TOKEN)


# --- QuickBooks Online's accounting API -----------------------------------------------------------------

COMPANY_INFO_URL = intuit.SANDBOX_API_BASE_URL + intuit.company_info_path(REALM)


def _company_info(settings, **kwargs):
    return QuickBooksApi(settings).company_info(
        base_url=kwargs.get("base_url", intuit.SANDBOX_API_BASE_URL),
        realm_id=REALM,
        access_token=ACCESS_TOKEN,
        usage=UsageKey("app", "acme", intuit.Environment.SANDBOX),
    )


def test_company_info_is_read_with_the_bearer_token_minor_version_and_a_timeout(http, settings):
    http.get(COMPANY_INFO_URL, json=fixture("companyinfo.json"), headers={"intuit_tid": "1-tid-ok"})

    info = _company_info(settings)

    call = http.calls[0]
    assert info.company_name == "Fake Sandbox Company"
    assert info.intuit_tid == "1-tid-ok"
    assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert call.request.headers["Accept"] == "application/json"
    assert parse_qs(urlsplit(call.request.url).query) == {"minorversion": ["75"]}
    assert call.request.req_kwargs["timeout"] == (5.0, 30.0)


@pytest.mark.parametrize(
    ("name_values", "status", "read_only"),
    [
        ([{"Name": "SubscriptionStatus", "Value": "SUBSCRIBED"}], "SUBSCRIBED", False),
        ([{"Name": "SubscriptionStatus", "Value": "PAID"}], "PAID", False),  # Intuit's reference sample
        (
            [{"Name": "OfferingSku", "Value": "Plus"}, {"Name": "SubscriptionStatus", "Value": "SUSPENDED"}],
            "SUSPENDED",
            True,
        ),
        ([{"Name": "SubscriptionStatus", "Value": "Canceled"}], "Canceled", True),
        ([{"Name": "SubscriptionStatus", "Value": "EXPIRED"}], "EXPIRED", True),
        ([{"Name": "SubscriptionStatus", "Value": "RESTRICTED"}], "RESTRICTED", True),
        ([{"Name": "OfferingSku", "Value": "Plus"}], None, False),  # not reported: nothing is assumed
        (None, None, False),
        ("not a list", None, False),
        ([["SubscriptionStatus", "SUSPENDED"]], None, False),
    ],
)
def test_company_info_reads_the_subscription_status_and_whether_it_leaves_the_company_read_only(
    http, settings, name_values, status, read_only
):
    body = fixture("companyinfo.json")
    if name_values is None:
        del body["CompanyInfo"]["NameValue"]
    else:
        body["CompanyInfo"]["NameValue"] = name_values
    http.get(COMPANY_INFO_URL, json=body)

    info = _company_info(settings)

    assert info.company_name == "Fake Sandbox Company"
    assert getattr(info, "subscription_status", "not read") == status
    assert getattr(info, "read_only", "not read") is read_only


def test_a_401_fault_is_unauthorized_with_intuits_support_id(http, settings):
    http.get(COMPANY_INFO_URL, status=401, json=fixture("fault_401.json"), headers={"intuit_tid": "1-tid-401"})

    with pytest.raises(Unauthorized) as raised:
        _company_info(settings)

    assert raised.value.intuit_tid == "1-tid-401"
    assert "3200" in raised.value.message
    _never_shows(raised.value, ACCESS_TOKEN)


def test_a_403_is_forbidden(http, settings):
    http.get(COMPANY_INFO_URL, status=403, json={"Fault": {"Error": [{"Message": "Forbidden", "code": "403"}]}})

    with pytest.raises(Forbidden):
        _company_info(settings)


@pytest.mark.parametrize(("headers", "retry_after"), [({"Retry-After": "30"}, 30), ({}, 60)])
def test_a_429_is_throttled_with_the_wait_intuit_asks_for(http, settings, headers, retry_after):
    http.get(
        COMPANY_INFO_URL, status=429, json=fixture("fault_429.json"), headers={"intuit_tid": "1-tid-429", **headers}
    )

    with pytest.raises(Throttled) as raised:
        _company_info(settings)

    assert raised.value.retry_after == retry_after
    assert raised.value.intuit_tid == "1-tid-429"


@pytest.mark.parametrize("failure", [503, requests.exceptions.ReadTimeout("read timed out")])
def test_an_api_outage_is_intuit_unavailable(http, settings, failure):
    if isinstance(failure, int):
        http.get(COMPANY_INFO_URL, status=failure, body="")
    else:
        http.get(COMPANY_INFO_URL, body=failure)

    with pytest.raises(IntuitUnavailable):
        _company_info(settings)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://evil.example",
        "http://sandbox-quickbooks.api.intuit.com",
        "https://sandbox-quickbooks.api.intuit.com@evil.example",
    ],
)
def test_a_base_url_that_is_not_allowed_is_refused_without_any_http_call(http, settings, base_url):
    with pytest.raises(Forbidden):
        _company_info(settings, base_url=base_url)

    assert len(http.calls) == 0
