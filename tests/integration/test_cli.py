"""The `qbo-connect` CLI on moto: the real adapters behind it, no local stack and no Intuit.

The local stack is faked by its discovery record (`targets.local_stack`); a deployed stack is a moto
CloudFormation stack plus a moto Lambda function whose environment holds the settings. Where a
command talks to Intuit, the services get a fake identity provider and company API.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shlex
import time
import uuid
import zipfile
from collections.abc import Iterator

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws
from qbo_connect import intuit, runtime
from qbo_connect.adapters.dynamodb_event_history import create_events_table
from qbo_connect.adapters.dynamodb_store import create_table
from qbo_connect.domain.connection import ConsentIdentity
from qbo_connect.domain.lifecycle import RefreshTimings
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import InvalidClient, NeedsReauthorization
from qbo_connect.ports import CompanyInfo
from qbo_connect.settings import Settings
from qbo_connect_cli import clock_skew, main, targets

REGION = "us-east-1"
TABLE = "qbo-connect-cli-test"
PREFIX = "qbo-connect/cli-test/"
API_URL = "http://127.0.0.1:3000"
REALM = "9341453050000001"
CLIENT_ID = "ABcd1234clientid"
# Distinctive, so that any appearance in output or logs is unmistakable.
SECRET = "cli-Secret-7f3a9c2e5b1d"

EVENTS_TABLE = "qbo-connect-cli-test-events"
LOCAL_ENVIRONMENT = {
    "QBO_TABLE_NAME": TABLE,
    "QBO_EVENTS_TABLE_NAME": EVENTS_TABLE,
    "QBO_SECRET_PREFIX": PREFIX,
    "QBO_EVENT_BUS_NAME": "default",
}


@pytest.fixture
def environ() -> Iterator[None]:
    """The CLI sets AWS variables for the local stack in the process environment: put them back."""
    saved = dict(os.environ)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "QBO_CONNECT_STACK"):
        os.environ.pop(name, None)
    os.environ |= {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def aws(environ: None) -> Iterator[None]:
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name=REGION), TABLE)
        create_events_table(boto3.client("dynamodb", region_name=REGION), EVENTS_TABLE)
        yield


@pytest.fixture
def local_stack(aws: None, monkeypatch: pytest.MonkeyPatch) -> dict:
    """What `make dev` would write to its discovery file (no endpoint: moto intercepts in-process)."""
    stack = {
        "pid": os.getpid(),
        "api_url": API_URL,
        "callback_url": f"{API_URL}/oauth/callback",
        "aws_endpoint_url": None,
        "region": REGION,
        "environment": dict(LOCAL_ENVIRONMENT),
    }
    monkeypatch.setattr(targets, "local_stack", lambda: stack)
    return stack


class Runs:
    """Runs the CLI and keeps every output, to prove at the end that no secret reached any of it."""

    def __init__(self) -> None:
        self.results: list[Result] = []

    def __call__(self, *args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(main.cli, list(args), input=input, prog_name="qbo-connect")
        self.results.append(result)
        return result

    def text(self) -> str:
        return "\n".join(r.stdout + r.stderr for r in self.results)


@pytest.fixture
def cli(local_stack: dict, log_scan) -> Iterator[Runs]:
    runs = Runs()
    yield runs
    assert SECRET not in runs.text()
    log_scan.assert_free_of([SECRET])


def create(cli: Runs, name: str = "Acme", *extra: str) -> Result:
    return cli("connections", "create", name, "--client-id", CLIENT_ID, "--stdin", *extra, input=SECRET)


def listed(cli: Runs) -> list[dict]:
    result = cli("--output", "json", "connections", "list")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def stored_secret(connection_id: str) -> dict:
    client = boto3.client("secretsmanager", region_name=REGION)
    return json.loads(client.get_secret_value(SecretId=f"{PREFIX}connections/{connection_id}")["SecretString"])


# --- create, show, list ------------------------------------------------------------------------


def test_create_reads_the_secret_from_stdin_and_no_output_ever_shows_it(cli: Runs) -> None:
    result = create(cli, "Acme", "--company-id", REALM)

    assert result.exit_code == 0, result.output
    assert 'Created connection "Acme"' in result.stdout
    assert "Client secret:" in result.stdout and "set" in result.stdout
    assert "connections authorize-link Acme" in result.stdout
    assert f"{API_URL}/oauth/callback" in result.stdout
    [summary] = listed(cli)
    assert summary["name"] == "Acme"
    assert summary["realm_id"] == REALM
    assert summary["client_secret_set"] is True
    assert stored_secret(summary["connection_id"])["client_secret"] == SECRET

    table = cli("connections", "list")
    assert table.exit_code == 0
    header, row, _, *needing_a_person = table.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "ID", "ENVIRONMENT", "STATUS"]
    assert row.split()[:4] == ["Acme", summary["connection_id"], "sandbox", "not_connected"]
    assert needing_a_person == ["Needing a person:", "  Acme: not connected: open the authorize link and click Connect"]

    for args in (("connections", "show", "Acme"), ("--output", "json", "connections", "show", "Acme")):
        shown = cli(*args)
        assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == summary
    by_id = cli("connections", "show", summary["connection_id"])
    assert "Status:" in by_id.stdout and "not_connected" in by_id.stdout
    assert "Next step: Send a company administrator the authorize link" in by_id.stdout


def test_create_asks_for_the_secret_hidden_and_twice_on_a_terminal(cli: Runs, monkeypatch) -> None:
    monkeypatch.setattr(main, "_stdin_is_terminal", lambda: True)

    result = cli("connections", "create", "Acme", "--client-id", CLIENT_ID, input=f"{SECRET}\n{SECRET}\n")

    assert result.exit_code == 0, result.output
    assert "Client secret (hidden)" in result.stderr
    [summary] = listed(cli)
    assert stored_secret(summary["connection_id"])["client_secret"] == SECRET


def test_create_without_a_terminal_or_stdin_flag_asks_for_one_and_creates_nothing(cli: Runs) -> None:
    result = cli("connections", "create", "Acme", "--client-id", CLIENT_ID, input=SECRET)

    assert result.exit_code == 2
    assert "--stdin" in result.stderr
    assert "--no-secret" in result.stderr
    assert listed(cli) == []


def test_create_with_no_secret_says_to_set_it_first(cli: Runs) -> None:
    result = cli("connections", "create", "Acme", "--client-id", CLIENT_ID, "--no-secret")

    assert result.exit_code == 0, result.output
    assert "1. Set the client secret: qbo-connect connections set-secret Acme" in result.stdout
    [summary] = listed(cli)
    assert summary["client_secret_set"] is False


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--client-id", "not a client id"), "The client ID looks wrong"),
        (("--client-id", CLIENT_ID, "--scope", "com.intuit.quickbooks.everything"), "Unknown or missing scopes"),
        (("--client-id", CLIENT_ID, "--base-url", "https://quickbooks.example.com"), "not one of Intuit's API hosts"),
        (("--client-id", CLIENT_ID, "--company-id", "realm-1"), "company ID (realm ID) is a number"),
    ],
    ids=["client-id", "scope", "base-url", "realm-id"],
)
def test_create_refuses_bad_input_with_a_clear_message_and_creates_nothing(cli: Runs, extra, expected) -> None:
    result = cli("connections", "create", "Acme", *extra, "--client-secret-stdin", input=SECRET)

    assert result.exit_code == 1
    assert result.stderr.startswith("Error (invalid_input): ")
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert listed(cli) == []


@pytest.mark.parametrize("secret_option", ["--client-secret-stdin", "--no-secret", "--stdin"])
def test_create_refuses_a_duplicate_name_naming_the_existing_connection_and_keeps_it(
    cli: Runs, secret_option: str
) -> None:
    assert create(cli, "Acme").exit_code == 0
    [first] = listed(cli)

    again = cli("connections", "create", "acme", "--client-id", "Other5678", secret_option, input="x" * 12)

    assert again.exit_code == 1
    assert again.stderr.startswith("Error (already_exists): ")
    # The ID quoted is the existing connection's, never one generated for the refused request.
    assert re.findall(r"qbc-[0-9a-f]+", again.stderr) == [first["connection_id"]] * 2
    [summary] = listed(cli)
    assert summary["client_id"] == CLIENT_ID


def test_create_refuses_a_taken_id_naming_the_connection_that_has_it(cli: Runs) -> None:
    assert create(cli, "Acme", "--id", "acme-books").exit_code == 0

    again = cli("connections", "create", "Other", "--client-id", "Other5678", "--id", "acme-books", "--no-secret")

    assert again.exit_code == 1
    assert "'acme-books' is taken by the connection 'Acme'" in again.stderr
    assert [c["name"] for c in listed(cli)] == ["Acme"]


def test_create_json_prints_only_the_summary_on_stdout(cli: Runs) -> None:
    result = create(cli, "Acme", "--id", "acme-books")

    assert result.exit_code == 0
    created = json.loads(cli("--output", "json", "connections", "show", "acme-books").stdout)
    assert created["connection_id"] == "acme-books"


def test_list_is_friendly_when_empty(cli: Runs) -> None:
    result = cli("connections", "list")

    assert result.exit_code == 0
    assert "No connections yet" in result.stdout


def test_show_of_an_unknown_connection_says_how_to_find_one(cli: Runs) -> None:
    result = cli("connections", "show", "nobody")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error (not_found): ")
    assert "connections list" in result.stderr


# --- the client secret ---------------------------------------------------------------------------


def test_set_secret_from_stdin_replaces_it_without_echoing(cli: Runs) -> None:
    cli("connections", "create", "Acme", "--client-id", CLIENT_ID, "--no-secret")

    result = cli("connections", "set-secret", "Acme", "--stdin", input=f"{SECRET}\n")

    assert result.exit_code == 0, result.output
    assert 'Client secret set for "Acme"' in result.stdout
    [summary] = listed(cli)
    assert summary["client_secret_set"] is True
    assert stored_secret(summary["connection_id"])["client_secret"] == SECRET


def test_set_secret_prompts_hidden_with_confirmation(cli: Runs, monkeypatch) -> None:
    cli("connections", "create", "Acme", "--client-id", CLIENT_ID, "--no-secret")
    monkeypatch.setattr(main, "_stdin_is_terminal", lambda: True)

    mismatch = cli("connections", "set-secret", "Acme", input=f"{SECRET}\nsomething-else\n{SECRET}\n{SECRET}\n")

    assert mismatch.exit_code == 0, mismatch.output
    assert "do not match" in mismatch.stderr
    [summary] = listed(cli)
    assert stored_secret(summary["connection_id"])["client_secret"] == SECRET


def test_set_secret_refuses_an_invalid_secret(cli: Runs) -> None:
    cli("connections", "create", "Acme", "--client-id", CLIENT_ID, "--no-secret")

    result = cli("connections", "set-secret", "Acme", "--stdin", input="short")

    assert result.exit_code == 1
    assert "8 to 256 printable characters" in result.stderr
    assert listed(cli)[0]["client_secret_set"] is False


# A secret saved by an editor in Latin-1 or UTF-16 (a byte order mark first). It was a traceback of a
# UnicodeDecodeError, whose exception object holds the bytes read: the secret itself.
NOT_UTF8 = SECRET[:5].encode() + b"\xff" + SECRET[5:].encode()


@pytest.mark.parametrize(
    "args",
    [
        ("connections", "set-secret", "acme", "--stdin"),
        ("connections", "create", "Other", "--client-id", CLIENT_ID, "--stdin"),
        ("connections", "import", "acme", "--stdin"),
        ("webhooks", "set-verifier", CLIENT_ID, "--stdin"),
    ],
    ids=["set-secret", "create", "import", "set-verifier"],
)
def test_a_secret_on_stdin_that_is_not_utf8_is_refused_in_one_line_and_changes_nothing(cli: Runs, args) -> None:
    cli("connections", "create", "Acme", "--client-id", CLIENT_ID, "--id", "acme", "--no-secret")

    result = cli(*args, input=NOT_UTF8)

    assert isinstance(result.exception, SystemExit) and result.exit_code != 0, type(result.exception).__name__
    assert "UTF-8" in result.stderr and SECRET[5:] not in result.output
    assert [(c["name"], c["client_secret_set"], c["status"]) for c in listed(cli)] == [("Acme", False, "not_connected")]


@pytest.mark.parametrize("duration", ["\u00b2", "9" * 5000], ids=["superscript-two", "5000-digits"])
def test_a_link_lifetime_that_is_no_number_is_a_usage_error_not_a_traceback(cli: Runs, duration) -> None:
    create(cli, "Acme", "--id", "acme")

    result = cli("connections", "authorize-link", "acme", "--valid-for", duration)

    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, type(result.exception).__name__
    assert "is not a duration" in result.stderr


# --- links -------------------------------------------------------------------------------------


def test_authorize_link_is_signed_and_points_at_the_stacks_api(cli: Runs) -> None:
    create(cli, "Acme", "--id", "acme")

    result = cli("connections", "authorize-link", "Acme")

    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        rf"{re.escape(API_URL)}/connections/acme/authorize\?exp=\d+&kid=[\w-]+&sig=[\w-]+\n", result.stdout
    )
    assert "Valid for 30 min" in result.stderr

    body = json.loads(cli("--output", "json", "connections", "authorize-link", "acme").stdout)
    assert body["authorize_url"].startswith(f"{API_URL}/connections/acme/authorize?exp=")
    assert body["expires_at"] == pytest.approx(time.time() + 1800, abs=60)


def test_authorize_link_warns_when_the_secret_is_missing(cli: Runs) -> None:
    cli("connections", "create", "Acme", "--client-id", CLIENT_ID, "--no-secret")

    result = cli("connections", "authorize-link", "Acme")

    assert result.exit_code == 0
    assert "no client secret yet" in result.stderr


def test_callback_url_is_the_one_to_register_at_intuit(cli: Runs) -> None:
    result = cli("connections", "callback-url")

    assert result.exit_code == 0
    assert result.stdout == f"{API_URL}/oauth/callback\n"
    assert json.loads(cli("--output", "json", "connections", "callback-url").stdout) == {
        "callback_url": f"{API_URL}/oauth/callback"
    }


# --- test, reset, delete -------------------------------------------------------------------------


def test_test_of_a_connection_not_yet_connected_fails_with_the_next_step(cli: Runs) -> None:
    create(cli, "Acme")

    result = cli("connections", "test", "Acme")

    assert result.exit_code == 1
    assert result.stdout.startswith("FAILED (not_connected): ")
    assert "Next step: Open the authorize link" in result.stdout

    as_json = cli("--output", "json", "connections", "test", "Acme")
    assert as_json.exit_code == 1
    body = json.loads(as_json.stdout)
    assert body["ok"] is False
    assert body["error"]["code"] == "not_connected"
    assert listed(cli)[0]["last_test"]["error_code"] == "not_connected"


def test_reset_with_yes_disconnects_and_reports_the_revocation(cli: Runs) -> None:
    create(cli, "Acme")

    result = cli("connections", "reset", "Acme", "--yes")

    assert result.exit_code == 0, result.output
    assert "status not_connected" in result.stdout
    assert "Revocation at Intuit: nothing to revoke." in result.stdout


@pytest.mark.parametrize("offset", [-120, 95])
@pytest.mark.parametrize(
    "command",
    [("connections", "reset", "Acme", "--yes"), ("refresh", "Acme", "--force"), ("connections", "test", "Acme")],
)
def test_lease_taking_commands_refuse_a_clock_far_from_aws_s_and_change_nothing(
    cli: Runs, monkeypatch: pytest.MonkeyPatch, offset: int, command: tuple[str, ...]
) -> None:
    create(cli, "Acme")
    before = listed(cli)
    real_time = time.time
    monkeypatch.setattr(clock_skew.time, "time", lambda: real_time() + offset)

    result = cli(*command)

    assert result.exit_code == 1
    measured = re.search(r"clock is (\d+) s", result.stderr)
    assert "Error (clock_skew)" in result.stderr and measured and abs(int(measured[1]) - abs(offset)) <= 1
    assert ("behind" if offset < 0 else "ahead of") in result.stderr and "NTP" in result.stderr
    monkeypatch.setattr(clock_skew.time, "time", real_time)
    assert listed(cli) == before


def test_a_clock_within_the_allowance_may_take_leases(cli: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    create(cli, "Acme")
    real_time = time.time
    monkeypatch.setattr(clock_skew.time, "time", lambda: real_time() - 20)  # the allowance is 30 s

    assert cli("connections", "reset", "Acme", "--yes").exit_code == 0


def test_reset_asks_first_and_stops_on_no(cli: Runs) -> None:
    create(cli, "Acme")

    result = cli("connections", "reset", "Acme", input="n\n")

    assert result.exit_code == 1
    assert "Not confirmed: nothing was changed" in result.stderr
    assert listed(cli)[0]["last_revocation"] is None


def test_delete_with_yes_removes_the_connection_and_its_secret(cli: Runs) -> None:
    create(cli, "Acme", "--id", "acme")

    result = cli("connections", "delete", "Acme", "--yes")

    assert result.exit_code == 0, result.output
    assert 'Deleted "Acme" (acme)' in result.stdout
    assert listed(cli) == []
    assert cli("connections", "show", "acme").exit_code == 1
    with pytest.raises(boto3.client("secretsmanager", region_name=REGION).exceptions.ResourceNotFoundException):
        stored_secret("acme")


# --- connected connections: refresh and test, with Intuit faked -------------------------------------


class FakeIntuit:
    """Hands out fresh token sets; or refuses the refresh token, when told to."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.client_secret_wrong = False  # the app's secret was regenerated in Intuit's portal
        self.revoked = 0

    def refresh(self, credentials, *, refresh_token: str, scopes: tuple[str, ...], **_: object) -> TokenSet:
        if refresh_token in self.refused:
            raise NeedsReauthorization("Intuit refused the refresh token: reconnect through the authorize link")
        if self.client_secret_wrong:
            raise InvalidClient("Intuit refused the client ID or secret (invalid_client)")
        return dataclasses.replace(token_set(time.time(), expires_in=3600), obtained_at=time.time())

    def revoke(self, credentials, *, token: str) -> None:
        self.revoked += 1


class FakeCompanyApi:
    def company_info(self, *, base_url: str, realm_id: str, access_token: str, usage=None, deadline_seconds=None):
        return CompanyInfo(company_name="Acme Books Ltd", realm_id=realm_id, intuit_tid="1-abc-tid")


def token_set(
    now: float, *, expires_in: float, refresh_token: str | None = None, refresh_token_days: float = 100
) -> TokenSet:
    return TokenSet(
        access_token=f"at-{uuid.uuid4().hex}",
        refresh_token=refresh_token or f"rt-{uuid.uuid4().hex}",
        expires_at=now + expires_in,
        refresh_token_expires_at=now + refresh_token_days * 86400,
        refresh_token_hard_expires_at=now + 1800 * 86400,
        scopes=intuit.DEFAULT_SCOPES,
        obtained_at=now - 3000,
    )


@pytest.fixture
def intuit_fake(cli: Runs, monkeypatch: pytest.MonkeyPatch) -> FakeIntuit:
    fake = FakeIntuit()

    def build_services(settings, *, session=None, clock=None):
        services = runtime.build_services(settings, session=session, clock=clock)
        services.identity_override = fake
        services.company_api_override = FakeCompanyApi()
        return services

    monkeypatch.setattr(main, "build_services", build_services)
    return fake


def connected(
    name: str, *, expires_in: float = 300, refresh_token: str | None = None, refresh_token_days: float = 100
) -> str:
    """Create a connection and store tokens as the consent flow would."""
    services = runtime.build_services(Settings.from_environment(LOCAL_ENVIRONMENT))
    connection = services.administration.create(
        main.NewConnection(name=name, client_id=CLIENT_ID, client_secret=SECRET, realm_id=REALM)
    )
    return store_tokens(
        services,
        connection.connection_id,
        expires_in=expires_in,
        refresh_token=refresh_token,
        refresh_token_days=refresh_token_days,
    )


def store_tokens(
    services,
    connection_id: str,
    *,
    expires_in: float = 300,
    refresh_token: str | None = None,
    refresh_token_days: float = 100,
) -> str:
    """What a completed consent leaves behind."""
    connection = services.administration.find(connection_id)
    now = time.time()
    tokens = token_set(now, expires_in=expires_in, refresh_token=refresh_token, refresh_token_days=refresh_token_days)
    with services.leases.hold(connection.connection_id) as held:
        secret = held.secret.next(now=now, token_set=tokens, realm_id=REALM)
        services.leases.commit(
            held,
            held.connection.connected_with(
                tokens, realm_id=REALM, company_name="Acme Books Ltd", now=now, generation=secret.generation
            ),
            secret,
            release=True,
        )
    return connection.connection_id


def test_list_shows_token_times_relative_and_days_to_hard_expiry(cli: Runs, intuit_fake: FakeIntuit) -> None:
    connected("Acme", expires_in=52 * 60 + 30)

    row = cli("connections", "list").stdout.splitlines()[1]

    assert "connected" in row and REALM in row and "Acme Books Ltd" in row
    assert "in 52 min" in row
    assert "50 min ago" in row
    assert row.rstrip().endswith("1799")


def test_list_and_show_say_what_a_person_must_do_about_a_connection(cli: Runs, intuit_fake: FakeIntuit) -> None:
    """The runbooks (docs/alarms.md) send people to `connections list`: it must say why a connection needs a
    person, as the admin API and the console do, and so must `show`, in text and in JSON. Here the app's client
    secret was regenerated at Intuit 80 days after the last refresh: nothing refreshes the connection any more,
    and its refresh token expires in 20 days."""
    connected("Acme", refresh_token_days=20)
    connected("Fine")
    intuit_fake.client_secret_wrong = True
    assert "invalid_client" in cli("refresh", "Acme").stdout

    listing = cli("connections", "list").stdout
    shown = cli("connections", "show", "Acme").stdout
    [acme, fine] = listed(cli)
    as_json = json.loads(cli("--output", "json", "connections", "show", "Acme").stdout)

    said = "invalid client, and the refresh token expires in 19 days"
    assert said in listing and "Acme" in listing.split(said)[0].splitlines()[-1], listing
    assert re.search(r"Attention: +" + said, shown), shown
    assert acme["attention"].startswith(said) and as_json["attention"] == acme["attention"]
    assert fine["attention"] is None and listing.count("invalid client") == 1


def test_list_says_an_on_demand_connections_expired_token_is_expected(cli: Runs, intuit_fake: FakeIntuit) -> None:
    connected("Acme", expires_in=-3600)  # nobody asked for a token in the last hour
    expired_eager = cli("connections", "list").stdout.splitlines()[1]
    cli("connections", "update", "Acme", "--refresh-policy", "on_demand")

    row = cli("connections", "list").stdout.splitlines()[1]

    assert "expired 1 h" in expired_eager and "on demand" not in expired_eager
    assert "expired 1 h" in row and "ago (refreshed on demand)" in row


def test_test_of_a_connected_connection_reports_the_company(cli: Runs, intuit_fake: FakeIntuit) -> None:
    connected("Acme", expires_in=3600)

    result = cli("connections", "test", "Acme")

    assert result.exit_code == 0, result.output
    assert re.fullmatch(rf'OK: connected to company "Acme Books Ltd" \(realm ID {REALM}\) in \d+ ms\n', result.stdout)
    body = json.loads(cli("--output", "json", "connections", "test", "Acme").stdout)
    assert body["ok"] is True and body["company_name"] == "Acme Books Ltd"
    assert "OK" in cli("connections", "show", "Acme").stdout


def test_show_names_who_consented_or_why_that_is_unknown(cli: Runs, intuit_fake: FakeIntuit) -> None:
    connection_id = connected("Acme", expires_in=3600)
    services = runtime.build_services(Settings.from_environment(LOCAL_ENVIRONMENT))
    person = ConsentIdentity(sub="1182d6ec-2a1f", email="owner@acme.example", email_verified=True)
    with services.leases.hold(connection_id) as held:
        services.leases.commit(held, dataclasses.replace(held.connection, consented_by=person), release=True)

    shown = cli("connections", "show", "Acme").stdout
    as_json = json.loads(cli("--output", "json", "connections", "show", "Acme").stdout)

    assert re.search(r"Consented by: +owner@acme\.example, Intuit user 1182d6ec-2a1f", shown)
    assert as_json["consented_by"] == {"sub": "1182d6ec-2a1f", "email": "owner@acme.example", "email_verified": True}
    with services.leases.hold(connection_id) as held:
        unknown = ConsentIdentity.unknown("userinfo failed (intuit_unavailable)")
        services.leases.commit(held, dataclasses.replace(held.connection, consented_by=unknown), release=True)
    assert "unknown (userinfo failed (intuit_unavailable))" in cli("connections", "show", "Acme").stdout


def test_refresh_of_one_connection_prints_its_outcome(cli: Runs, intuit_fake: FakeIntuit) -> None:
    connection_id = connected("Acme")

    result = cli("refresh", "Acme")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Acme ({connection_id}): refreshed\n"
    assert cli("refresh", "Acme").stdout == f"Acme ({connection_id}): not_due\n"


def test_a_cli_refresh_is_recorded_as_a_change_by_the_cli_user(
    cli: Runs, intuit_fake: FakeIntuit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main.getpass, "getuser", lambda: "maria")
    monkeypatch.setattr(main.socket, "gethostname", lambda: "ops-laptop")
    connection_id = connected("Acme")

    assert cli("refresh", "Acme").exit_code == 0
    assert cli("refresh", "Acme").stdout.endswith("not_due\n")  # nothing asked of Intuit: nothing recorded

    history = json.loads(cli("--output", "json", "connections", "events", "Acme").stdout)["events"]
    changes = [e["detail"] for e in history if e["detail_type"] == "Connection Changed"]
    assert [(c["connection_id"], c["action"], c["actor"], c["outcome"]) for c in changes] == [
        (connection_id, "refreshed", "cli:maria@ops-laptop", "refreshed")
    ]
    assert history[0]["published"] is True  # and EventBridge took it


def test_refresh_due_reports_each_and_fails_when_one_needs_reauthorization(cli: Runs, intuit_fake) -> None:
    good = connected("Good")
    bad = connected("Bad", refresh_token="rt-refused")
    connected("Later", expires_in=7200)
    intuit_fake.refused.add("rt-refused")

    result = cli("--output", "json", "refresh", "--due")

    assert result.exit_code == 1
    outcomes = {r["connection_id"]: r["outcome"] for r in json.loads(result.stdout)}
    assert outcomes == {good: "refreshed", bad: "needs_reauthorization"}
    assert listed(cli)[0]["status"] in {"connected", "needs_reauthorization"}


def test_refresh_all_forced_covers_every_connected_connection(cli: Runs, intuit_fake: FakeIntuit) -> None:
    connected("Acme", expires_in=7200)
    cli("connections", "create", "Idle", "--client-id", CLIENT_ID, "--no-secret")

    result = cli("refresh", "--all", "--force")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith("refreshed")
    assert "Idle" not in result.stdout


def test_refresh_of_many_shows_a_progress_bar_then_counts(cli: Runs, intuit_fake: FakeIntuit) -> None:
    for number in range(11):
        connected(f"Company {number}")
    bad = connected("Company bad", refresh_token="rt-refused")
    intuit_fake.refused.add("rt-refused")

    result = cli("refresh", "--due")

    assert result.exit_code == 1
    assert "Refreshing" in result.stderr
    assert result.stdout.splitlines() == [
        f"Company bad ({bad}): needs_reauthorization: Intuit refused the refresh token: reconnect through the "
        "authorize link",
        "12 connections: 11 refreshed, 1 needs_reauthorization",
    ]


def test_refresh_needs_exactly_one_choice(cli: Runs) -> None:
    for args in ((), ("Acme", "--due"), ("--due", "--all")):
        result = cli("refresh", *args)
        assert result.exit_code == 2
        assert "exactly one of" in result.stderr


def test_reset_of_a_connected_connection_revokes_at_intuit(cli: Runs, intuit_fake: FakeIntuit) -> None:
    connected("Acme")

    result = cli("connections", "reset", "Acme", "--yes")

    assert result.exit_code == 0, result.output
    assert "Revocation at Intuit: revoked." in result.stdout
    assert intuit_fake.revoked == 1
    assert listed(cli)[0]["status"] == "not_connected"


# --- targets -------------------------------------------------------------------------------------


def test_without_any_stack_the_cli_says_how_to_get_one(environ: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "local_stack", lambda: None)

    result = CliRunner().invoke(main.cli, ["connections", "list"])

    assert result.exit_code == 2
    assert result.stderr == (
        "Error: No stack: pass --stack NAME for a deployed stack, or start the local stack with `make dev`\n"
    )
    assert "Traceback" not in result.output


def test_the_local_stacks_discovery_file_is_read_when_its_process_runs(tmp_path) -> None:
    path = tmp_path / "local-stack.json"
    assert targets.read_local_state(path) is None
    path.write_text("not json")
    assert targets.read_local_state(path) is None
    path.write_text(json.dumps({"pid": 2_147_483_646, "api_url": API_URL}))
    assert targets.read_local_state(path) is None
    path.write_text(json.dumps({"pid": os.getpid(), "api_url": API_URL}))
    assert targets.read_local_state(path) == {"pid": os.getpid(), "api_url": API_URL}


def test_the_local_target_points_boto3_at_the_local_endpoint(environ: None) -> None:
    os.environ["AWS_PROFILE"] = "production-admin"
    os.environ["AWS_ENDPOINT_URL_LAMBDA"] = "https://lambda.us-east-1.amazonaws.com"  # from the shell
    lambda_api = "http://127.0.0.1:40123"
    target = targets.local_target(
        {
            "api_url": API_URL + "/",
            "aws_endpoint_url": "http://127.0.0.1:4566",
            "environment": {**LOCAL_ENVIRONMENT, "AWS_ENDPOINT_URL_LAMBDA": lambda_api},
        }
    )

    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    # Lambda's Invoke goes to the stack's own server, moto keeps the rest.
    assert target.session.client("lambda").meta.endpoint_url == lambda_api
    assert target.session.client("sqs").meta.endpoint_url == "http://127.0.0.1:4566"
    assert "AWS_PROFILE" not in os.environ
    assert target.session.region_name == REGION
    assert target.settings.table_name == TABLE
    assert target.callback_url == f"{API_URL}/oauth/callback"


def test_the_link_base_follows_the_public_base_url() -> None:
    api = "https://abc123.execute-api.eu-west-1.amazonaws.com"
    assert targets.api_base_url({"ApiUrl": api, "CallbackUrl": f"{api}/oauth/callback"}) == api
    assert (
        targets.api_base_url({"ApiUrl": api, "CallbackUrl": "https://qbo.example.com/oauth/callback"})
        == "https://qbo.example.com"
    )
    assert targets.api_base_url({"ApiUrl": api + "/"}) == api
    with pytest.raises(targets.TargetError):
        targets.api_base_url({}, stack_name="qbo")


DEPLOYED_TABLE = "qbo-prod-ConnectionsTable-1A2B"
PUBLIC = "https://qbo.example.com"


@pytest.fixture
def deployed_stack(environ: None, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A stack as `sam deploy` leaves it: outputs, and the test function's environment."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name=REGION), DEPLOYED_TABLE)
        role = boto3.client("iam").create_role(
            RoleName="qbo-prod-test-function",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("app.py", "def handler(event, context):\n    return {}\n")
        boto3.client("lambda", region_name=REGION).create_function(
            FunctionName="qbo-prod-TestFunction-XYZ",
            Runtime="python3.13",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": code.getvalue()},
            Environment={
                "Variables": {
                    "QBO_TABLE_NAME": DEPLOYED_TABLE,
                    "QBO_SECRET_PREFIX": "qbo-connect/qbo-prod/",
                    "QBO_SIGNING_KEY_SECRET_ID": "qbo-connect/qbo-prod/signing-key",
                    "QBO_PUBLIC_BASE_URL": PUBLIC,
                    "QBO_ALLOWED_API_HOSTS": "",
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                }
            },
        )
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {
                "ApiUrl": {"Value": "https://abc123.execute-api.us-east-1.amazonaws.com"},
                "CallbackUrl": {"Value": f"{PUBLIC}/oauth/callback"},
                "TestFunctionName": {"Value": "qbo-prod-TestFunction-XYZ"},
            },
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="qbo-prod", TemplateBody=json.dumps(template)
        )
        yield "qbo-prod"


def test_a_deployed_stack_is_administered_with_its_functions_settings(deployed_stack: str, monkeypatch) -> None:
    monkeypatch.setattr(targets, "local_stack", lambda: pytest.fail("a --stack run must not look for a local stack"))
    runner = CliRunner()
    stack = ["--stack", deployed_stack, "--region", REGION]

    created = runner.invoke(
        main.cli,
        [*stack, "connections", "create", "Acme", "--client-id", CLIENT_ID, "--id", "acme", "--client-secret-stdin"],
        input=SECRET,
    )
    link = runner.invoke(main.cli, [*stack, "connections", "authorize-link", "acme"])
    callback = runner.invoke(main.cli, [*stack, "connections", "callback-url"])

    assert created.exit_code == 0, created.output
    assert "qbo-connect --stack qbo-prod --region us-east-1 connections authorize-link Acme" in created.stdout
    assert boto3.client("dynamodb", region_name=REGION).scan(TableName=DEPLOYED_TABLE)["Count"] > 0
    secret_name = "qbo-connect/qbo-prod/connections/acme"
    stored = boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=secret_name)
    assert json.loads(stored["SecretString"])["client_secret"] == SECRET
    assert link.stdout.startswith(f"{PUBLIC}/connections/acme/authorize?exp=")
    assert callback.stdout == f"{PUBLIC}/oauth/callback\n"
    assert SECRET not in created.output + link.output + callback.output


def test_the_stack_name_may_come_from_the_environment(deployed_stack: str, monkeypatch) -> None:
    monkeypatch.setenv("QBO_CONNECT_STACK", deployed_stack)

    result = CliRunner().invoke(main.cli, ["connections", "callback-url"])

    assert result.stdout == f"{PUBLIC}/oauth/callback\n"


def test_an_unknown_stack_says_where_it_looked(deployed_stack: str) -> None:
    result = CliRunner().invoke(main.cli, ["--stack", "qbo-nope", "connections", "list"])

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Stack 'qbo-nope' not found in us-east-1: check --stack, --region")


def test_an_unknown_profile_is_one_line_not_a_traceback(deployed_stack: str) -> None:
    result = CliRunner().invoke(main.cli, ["--stack", deployed_stack, "--profile", "nope", "connections", "list"])

    assert result.exit_code == 1
    assert result.stderr == "Error: AWS profile 'nope' not found: check ~/.aws/config, or pass another --profile\n"


def test_missing_credentials_say_how_to_get_them(deployed_stack: str) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.pop(name)

    result = CliRunner().invoke(main.cli, ["--stack", deployed_stack, "connections", "list"])

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: No AWS credentials: pass --profile")


# --- --output json, errors included -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "exit_code"),
    [
        (["--output", "json", "connections", "show", "nobody"], "not_found", 1),
        (["connections", "show", "nobody", "--output", "json"], "not_found", 1),
        (["connections", "show", "--output", "json"], "usage", 2),
        (["refresh", "--output", "json"], "usage", 2),
        (["--output", "json", "connections", "nosuch"], "usage", 2),
    ],
)
def test_json_output_gives_errors_as_json_on_stdout_wherever_the_option_is_given(
    cli: Runs, args: list[str], code: str, exit_code: int
) -> None:
    result = cli(*args)

    assert result.exit_code == exit_code
    answer = json.loads(result.stdout)
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]
    assert result.stderr == ""


def test_json_output_after_the_subcommand_gives_the_same_answer_as_before_it(cli: Runs) -> None:
    assert create(cli, "Acme").exit_code == 0

    after = cli("connections", "list", "--output", "json")

    assert after.exit_code == 0
    assert json.loads(after.stdout) == listed(cli)


def test_reset_without_a_terminal_or_yes_changes_nothing_and_says_to_pass_yes(cli: Runs) -> None:
    assert create(cli, "Acme").exit_code == 0

    result = cli("--output", "json", "connections", "reset", "Acme", input="")

    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == {
        "code": "aborted",
        "message": "Not confirmed: nothing was changed (scripts without a terminal: pass --yes)",
    }
    in_words = cli("connections", "reset", "Acme", input="")
    assert in_words.exit_code == 1
    assert "pass --yes" in in_words.stderr
    assert [c["status"] for c in listed(cli)] == ["not_connected"]


def test_forced_refresh_of_a_fresh_token_says_when_it_will_be_allowed(cli: Runs, intuit_fake: FakeIntuit) -> None:
    connection_id = connected("Acme", expires_in=7200)
    assert cli("refresh", "Acme", "--force").exit_code == 0  # the first is allowed: the token is 50 min old

    again = cli("refresh", "Acme", "--force")
    as_json = cli("--output", "json", "refresh", "Acme", "--force")

    assert again.exit_code == 0
    assert re.fullmatch(
        rf"Acme \({connection_id}\): already_refreshed: refreshed \d+ s ago; a forced refresh is allowed again "
        r"in (\d+ s|\d+ min) \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)\n",
        again.stdout,
    )
    [answer] = json.loads(as_json.stdout)
    refreshed_at = listed(cli)[0]["last_refreshed_at"]
    assert answer["outcome"] == "already_refreshed"
    min_age = RefreshTimings.forced_refresh_min_age_seconds
    assert refreshed_at + min_age <= answer["forced_refresh_allowed_at"] <= refreshed_at + min_age + 1
    assert "already_refreshed" in cli("refresh", "--help").stdout


def test_show_marks_a_test_from_before_the_current_connection(cli: Runs, intuit_fake: FakeIntuit) -> None:
    create(cli, "Acme")
    assert cli("connections", "test", "Acme").exit_code == 1  # not connected yet
    services = runtime.build_services(Settings.from_environment(LOCAL_ENVIRONMENT))
    store_tokens(services, listed(cli)[0]["connection_id"])  # then a company administrator connects it

    shown = cli("connections", "show", "Acme").stdout

    assert re.search(r"Last test: +FAILED .*\(not_connected\).*\(before the current connection", shown), shown
    assert cli("connections", "test", "Acme").exit_code == 0
    assert "before the current connection" not in cli("connections", "show", "Acme").stdout


def test_json_times_are_whole_epoch_seconds_like_the_secret_and_the_test_function(
    cli: Runs, intuit_fake: FakeIntuit
) -> None:
    connected("Acme")
    cli("connections", "test", "Acme")

    [summary] = listed(cli)

    times = {key: value for key, value in summary.items() if key.endswith("_at") and value is not None}
    assert {"created_at", "connected_at", "access_token_expires_at", "last_refreshed_at"} <= times.keys()
    assert all(type(value) is int for value in times.values()), times
    assert type(summary["last_test"]["tested_at"]) is int


# --- the admin operations the console shares ----------------------------------------------------
def test_update_renames_and_pins_the_company_and_refuses_a_bad_change(cli: Runs) -> None:
    create(cli, "Acme", "--id", "acme")

    result = cli("connections", "update", "Acme", "--name", "Acme US", "--company-id", "9341453050000001")

    assert result.exit_code == 0, result.output
    (shown,) = listed(cli)
    assert (shown["name"], shown["realm_id"]) == ("Acme US", "9341453050000001")
    assert stored_secret("acme")["realm_id"] == "9341453050000001"
    refused = cli("connections", "update", "acme", "--scope", "no.such.scope")
    assert refused.exit_code == 1 and "Error (invalid_input)" in refused.stderr
    assert listed(cli)[0]["scopes"] == [intuit.ACCOUNTING_SCOPE]


def test_the_refresh_policy_is_shown_and_changed_and_a_bad_one_changes_nothing(cli: Runs) -> None:
    create(cli, "Acme", "--id", "acme")
    create(cli, "Nightly", "--id", "nightly", "--refresh-policy", "on_demand")

    changed = cli("connections", "update", "acme", "--refresh-policy", "on_demand")
    refused = cli("connections", "update", "nightly", "--refresh-policy", "lazy")

    assert changed.exit_code == 0, changed.output
    assert "Refresh policy" in changed.stdout and "on_demand" in changed.stdout
    assert {c["connection_id"]: c["refresh_policy"] for c in listed(cli)} == {
        "acme": "on_demand",
        "nightly": "on_demand",
    }
    assert stored_secret("acme")["refresh_policy"] == stored_secret("nightly")["refresh_policy"] == "on_demand"
    assert refused.exit_code == 2 and "'lazy' is not one of 'eager', 'on_demand'" in refused.output
    assert "on demand" in cli("connections", "list").stdout
    assert "Refresh policy" in cli("connections", "show", "nightly").stdout


def test_authorize_link_may_live_up_to_seven_days(cli: Runs) -> None:
    create(cli, "Acme", "--id", "acme")

    week = json.loads(cli("--output", "json", "connections", "authorize-link", "acme", "--valid-for", "7d").stdout)
    too_long = cli("connections", "authorize-link", "acme", "--valid-for", "8d")

    assert week["expires_at"] == pytest.approx(time.time() + 7 * 86400, abs=60)
    assert too_long.exit_code == 1 and "7 days" in too_long.stderr


def test_a_failed_import_changes_nothing_and_never_echoes_the_token(cli: Runs) -> None:
    create(cli, "Acme", "--id", "acme", "--company-id", "9341453050000001")

    result = cli("connections", "import", "acme", "--stdin", input="AB11-not-a-real-refresh-token\n")

    assert result.exit_code == 1
    assert "Error (" in result.stderr and "AB11-not-a-real-refresh-token" not in result.stderr
    assert listed(cli)[0]["status"] == "not_connected"


def test_events_show_who_changed_what_newest_first_and_how_to_page_back(cli: Runs, monkeypatch) -> None:
    monkeypatch.setattr(main.getpass, "getuser", lambda: "maria")
    monkeypatch.setattr(main.socket, "gethostname", lambda: "ops-laptop")
    create(cli, "Acme")
    cli("connections", "update", "Acme", "--company-id", REALM)
    cli("connections", "set-secret", "Acme", "--stdin", input=SECRET + "-2")

    first = cli("connections", "events", "Acme", "--limit", "2")

    assert first.exit_code == 0, first.output
    header, newest, older = first.stdout.splitlines()
    assert header.split() == ["when", "event", "what"]
    assert "Changed" in newest and "client_secret_set by cli:maria@ops-laptop; fields: client_secret" in newest
    assert "updated by cli:maria@ops-laptop; fields: realm_id" in older
    hint = first.stderr.strip().removeprefix("Older events: ")
    assert hint.startswith("qbo-connect connections events Acme --limit 2 --before ")
    rest = cli(*shlex.split(hint)[1:])
    assert [line.split()[-1] for line in rest.stdout.splitlines()[1:]] == ["client_secret"]  # created, with it
    assert "created by cli:maria@ops-laptop" in rest.stdout and rest.stderr == ""
    assert cli("connections", "events", "Acme", "--before", "nonsense").exit_code == 1
    assert SECRET not in first.stdout + rest.stdout


def test_doctor_checks_each_part_and_says_what_to_do_for_each_failure(cli: Runs) -> None:
    create(cli, "Acme")

    result = cli("doctor")
    as_json = json.loads(cli("--output", "json", "doctor").stdout)

    assert result.exit_code == 1  # the connection is not connected yet
    checks = {c["check"]: c for c in as_json}
    assert checks["aws credentials"]["ok"] and checks["clock"]["ok"] and checks["callback url"]["ok"]
    assert not checks["connection Acme"]["ok"]
    assert "connections authorize-link Acme" in checks["connection Acme"]["detail"]
    assert re.search(r"^FAIL connection Acme: not_connected: connect it: .*authorize-link Acme$", result.stdout, re.M)
    assert re.search(r"^ok   clock: within \d+ s of AWS", result.stdout, re.M)


# --- metering ---------------------------------------------------------------------------------------


def test_metering_show_gives_each_app_s_share_of_its_allowance_and_its_connections(cli: Runs) -> None:
    from qbo_connect.domain.metering import Flush, Tally, UsageKey, month_of

    connection_id = json.loads(create(cli, "Acme", "--environment", "production", "--output", "json").stdout)[
        "connection_id"
    ]
    services = runtime.build_services(Settings.from_environment(LOCAL_ENVIRONMENT))
    month = month_of(time.time())
    production = UsageKey(CLIENT_ID, connection_id, intuit.Environment.PRODUCTION)
    services.usage_ledger.add(Flush({(month, production): Tally(420_000, 35)}))

    shown = cli("metering", "show")
    as_json = json.loads(cli("metering", "show", "--output", "json").stdout)

    assert shown.exit_code == 0, shown.output
    assert f"App {CLIENT_ID}: 420,000 metered calls (production reads) of 500,000 (84%)  <- over the alarm share" in (
        shown.stdout
    )
    assert re.search(rf"Acme +{connection_id} +production +420,000 +35", shown.stdout)
    (app,) = as_json["apps"]
    assert (app["metered_calls"], app["allowance_used_percent"], app["over_alarm_share"]) == (420_000, 84.0, True)
    assert as_json["month"] == month


def test_metering_show_of_a_quiet_month_and_a_bad_month(cli: Runs) -> None:
    assert "No accounting API calls counted this month." in cli("metering", "show", "--month", "2020-01").stdout
    refused = cli("--output", "json", "metering", "show", "--month", "2020-1")
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["error"]["code"] == "invalid_input"


# --- events tail --------------------------------------------------------------------------------------


def test_events_tail_shows_the_published_events_filtered_by_connection_and_type(cli: Runs, local_stack: dict) -> None:
    from qbo_connect.adapters.eventbridge import EventBridgePublisher
    from qbo_connect.domain.webhooks import ENTITY_CHANGED
    from qbo_connect.ports import ConnectionEvent
    from qbo_local.stack import create_event_log

    create_event_log(
        boto3.client("events", region_name=REGION), boto3.client("logs", region_name=REGION), bus_name="default"
    )
    local_stack["event_log_group"] = "/aws/events/qbo-connect/qbo-connect-local"
    acme = json.loads(create(cli, "Acme", "--output", "json").stdout)["connection_id"]
    other = json.loads(create(cli, "Other", "--output", "json").stdout)["connection_id"]
    change = {"entity": "Invoice", "entity_id": "145", "operation": "Create", "event_id": "e-1"}
    EventBridgePublisher(boto3.client("events", region_name=REGION), "default").publish(
        [
            ConnectionEvent(ENTITY_CHANGED, {"connection_id": acme, **change}),
            ConnectionEvent(ENTITY_CHANGED, {"connection_id": other, **change}),
            ConnectionEvent("Connection Reset", {"connection_id": acme, "status": "not_connected"}),
        ]
    )

    as_json = cli("events", "tail", "--no-follow", "--connection", "Acme", "--type", ENTITY_CHANGED, "--output", "json")
    lines = cli("events", "tail", "--no-follow", "--since", "1h")

    assert as_json.exit_code == 0, as_json.output
    (event,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert (event["detail_type"], event["connection_id"], event["detail"]["entity_id"]) == (ENTITY_CHANGED, acme, "145")
    assert lines.stdout.count("\n") >= 5  # the two creations' Connection Changed events, and the three above
    assert re.search(rf"{ENTITY_CHANGED}  Acme  Invoice 145 Create", lines.stdout)
    assert "Connection Reset  Acme  not_connected" in lines.stdout


def test_events_tail_waits_for_events_and_says_when_they_did_not_come(cli: Runs, local_stack: dict) -> None:
    from qbo_local.stack import create_event_log

    create_event_log(
        boto3.client("events", region_name=REGION), boto3.client("logs", region_name=REGION), bus_name="default"
    )
    local_stack["event_log_group"] = "/aws/events/qbo-connect/qbo-connect-local"

    waited = cli(
        "--output", "json", "events", "tail", "--type", "Connection Authorized", "--max", "1", "--timeout", "0.5"
    )

    assert waited.exit_code == 1
    assert json.loads(waited.stdout)["error"] == {"code": "timeout", "message": "0 of 1 events within 0.5 s"}


def test_events_tail_without_an_event_log_says_how_to_get_one(cli: Runs) -> None:
    refused = cli("events", "tail", "--no-follow")
    assert refused.exit_code == 1
    assert "no event log" in refused.stderr and "make dev" in refused.stderr


# --- what an operator trips over ----------------------------------------------------------------------


def test_events_tail_refuses_a_detail_type_no_event_has_instead_of_waiting_for_it_forever(
    cli: Runs, local_stack: dict
) -> None:
    """A misspelt --type matched nothing, silently: the tail followed for ever and showed nothing."""
    from qbo_local.stack import create_event_log

    create_event_log(
        boto3.client("events", region_name=REGION), boto3.client("logs", region_name=REGION), bus_name="default"
    )
    local_stack["event_log_group"] = "/aws/events/qbo-connect/qbo-connect-local"
    create(cli, "Acme")

    misspelt = cli("events", "tail", "--no-follow", "--type", "Connection Authorised")
    as_json = cli("--output", "json", "events", "tail", "--no-follow", "--type", "Entity Changed")
    any_case = cli("events", "tail", "--no-follow", "--since", "1h", "--type", "connection changed")

    assert misspelt.exit_code == 2, misspelt.output
    assert "'Connection Authorised'" in misspelt.stderr and "Connection Authorized" in misspelt.stderr
    assert "QuickBooks Entity Changed" in misspelt.stderr
    assert as_json.exit_code == 2 and json.loads(as_json.stdout)["error"]["code"] == "usage"
    assert any_case.exit_code == 0, any_case.output
    assert "Connection Changed  Acme  created by cli:" in any_case.stdout


def test_update_with_nothing_to_change_is_a_usage_error_naming_the_options(cli: Runs) -> None:
    """It said `give at least one of name, client_id, scopes, ...` (the admin API's fields), exit 1."""
    create(cli, "Acme")

    result = cli("connections", "update", "Acme")

    assert result.exit_code == 2, result.output
    for option in ("--name", "--client-id", "--environment", "--base-url", "--company-id", "--scope"):
        assert option in result.stderr
    assert "client_id" not in result.stderr


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("webhooks", "set-verifier", CLIENT_ID), "verifier token"),
        (("connections", "import", "acme"), "refresh token"),
        (("connections", "set-secret", "acme"), "client secret"),
    ],
    ids=["set-verifier", "import", "set-secret"],
)
def test_nothing_on_stdin_says_which_value_to_pipe_in(cli: Runs, args, what) -> None:
    """set-verifier asked to pipe in "the client secret"; import with an empty stdin said "The refresh_token must
    be 8 to 4096 characters" (exit 1) where set-secret says stdin is empty (exit 2)."""
    create(cli, "Acme", "--id", "acme")

    no_terminal = cli(*args)
    empty = cli(*args, "--stdin", input="")

    assert no_terminal.exit_code == 2 and what in no_terminal.stderr and "--stdin" in no_terminal.stderr
    assert empty.exit_code == 2 and f"stdin is empty: pipe the {what} in" in empty.stderr, empty.output
    other = {"verifier token", "refresh token", "client secret"} - {what}
    assert not any(word in no_terminal.stderr + empty.stderr for word in other)


def test_import_for_another_company_is_refused_before_asking_for_the_token(
    cli: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator pasted a refresh token at the hidden prompt, then learnt it could not be imported anyway."""
    monkeypatch.setattr(main, "_stdin_is_terminal", lambda: True)
    connection_id = connected("Acme")

    result = cli(
        "connections", "import", "Acme", "--company-id", "9341453050000002", input="AB11-pasted-refresh-token\n"
    )

    assert result.exit_code == 1, result.output
    assert "Refresh token" not in result.stderr
    assert "pinned to company" in result.stderr
    assert [(c["connection_id"], c["status"]) for c in listed(cli)] == [(connection_id, "connected")]
