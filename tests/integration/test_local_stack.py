"""The whole local stack in a subprocess, as `make dev` starts it, driven over real HTTP: the demo
company connects through the emulator's consent page, `invoke test` reads its CompanyInfo, and a
stop removes the discovery file. Free ports throughout, so this runs beside a developer's `make dev`."""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import boto3
import pytest
import requests
from qbo_local.background import BackgroundStack, background_stack, stack_env
from qbo_local.discovery import find_running_stack

ROOT = Path(__file__).resolve().parents[2]


def qbo_local(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qbo_local", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[BackgroundStack]:
    with background_stack(tmp_path) as started:
        yield started


def printed_authorize_link(stack: BackgroundStack) -> str:
    found = re.search(r"(http://localhost:\d+/connections/demo/authorize\?\S+)", stack.log())
    assert found, f"no authorize link in the banner:\n{stack.log()[-2000:]}"
    return found.group(1)


def stored_secret_values(stack: BackgroundStack) -> list[str]:
    """The demo connection's client secret and tokens, read straight from the embedded AWS."""
    secrets_manager = stack.aws_client("secretsmanager")
    prefix = stack.discovery["environment"]["QBO_SECRET_PREFIX"]
    document = json.loads(secrets_manager.get_secret_value(SecretId=f"{prefix}connections/demo")["SecretString"])
    values = [value for key, value in _leaves(document) if key in {"client_secret", "access_token", "refresh_token"}]
    assert len(values) >= 3, (
        f"expected a client secret and two tokens, found fields {[k for k, _ in _leaves(document)]}"
    )
    return values


def _leaves(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, key)
    elif isinstance(value, str):
        yield key, value


def connect_demo_company(stack: BackgroundStack, link: str) -> tuple[requests.Response, dict[str, str], str]:
    """What a person does in the browser: open the link, press Connect on Intuit's page, land on the callback."""
    browser = requests.Session()
    start = browser.get(link, allow_redirects=False, timeout=30)
    assert start.status_code == 302, start.text
    consent_url = start.headers["Location"]
    assert consent_url.startswith(stack.discovery["emulator_url"] + "/connect/oauth2?")
    # Browsers treat http://localhost as a secure context and send its Secure cookies back; Python's cookie
    # jar only does that over https, so the state cookie is marked as a browser would keep it.
    for cookie in browser.cookies:
        cookie.secure = False
    assert [c.name for c in browser.cookies] == ["__Host-qbo_oauth_state"]

    consent = browser.get(consent_url, allow_redirects=False, timeout=30)
    assert consent.status_code == 200
    action = re.search(r'<form method="post" action="([^"]+)"', consent.text).group(1)
    form = {
        name: html.unescape(value)
        for name, value in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', consent.text)
    }
    realm_id, company = re.search(r'<option value="(\d+)">([^<]+) \(\1\)</option>', consent.text).groups()
    decision = browser.post(
        urljoin(consent_url, html.unescape(action)), data={**form, "realm_id": realm_id}, allow_redirects=False
    )
    assert decision.status_code == 302, decision.text
    callback = decision.headers["Location"]
    assert callback.startswith(stack.discovery["callback_url"] + "?")
    params = {key: values[0] for key, values in parse_qs(urlsplit(callback).query).items()}
    assert params["realmId"] == realm_id

    landing = browser.get(callback, allow_redirects=False, timeout=60)
    return landing, {"realm_id": realm_id, "code": params["code"], "state": params["state"]}, html.unescape(company)


def invoke_test_of_demo(stack: BackgroundStack, tmp_path: Path) -> dict[str, Any]:
    """`qbo_local invoke test` for the demo connection, as the README shows: its answer, which must be ok."""
    event = tmp_path / "test-event.json"
    event.write_text(json.dumps({"connection_id": "demo"}))
    invoked = qbo_local("invoke", "test", str(event), env=stack.env())
    assert invoked.returncode == 0, invoked.stderr
    result = json.loads(invoked.stdout)
    assert result["ok"] is True, result
    return result


def test_demo_company_connects_over_http_invoke_tests_it_and_stop_cleans_up(
    stack: BackgroundStack, tmp_path: Path
) -> None:
    discovery = stack.discovery
    assert json.loads(stack.state_file.read_text()) == discovery
    assert stack.state_file.stat().st_mode & 0o777 == 0o600
    assert stack.state_file.parent.stat().st_mode & 0o777 == 0o700
    assert discovery["pid"] == stack.process.pid
    assert discovery["callback_url"] == discovery["api_url"] + "/oauth/callback"
    assert discovery["environment"]["AWS_ENDPOINT_URL"] == discovery["aws_endpoint_url"]
    assert discovery["environment"]["QBO_PUBLIC_BASE_URL"] == discovery["api_url"]
    assert find_running_stack(stack.state_file) == discovery

    link = printed_authorize_link(stack)
    assert link.startswith(discovery["api_url"] + "/connections/demo/authorize?")
    landing, flow, company = connect_demo_company(stack, link)

    assert landing.status_code == 200, landing.text
    assert "Connected" in landing.text
    assert company in html.unescape(landing.text)
    assert flow["realm_id"] in landing.text
    secrets = stored_secret_values(stack)
    assert not [value for value in secrets if value in landing.text]

    # The banner's CLI commands run as printed, from the folder `make dev` ran in.
    printed = re.search(r"^  (\S+(?: -m \S+)?) connections list$", stack.log(), re.MULTILINE)
    assert printed, f"no CLI command in the banner:\n{stack.log()[-2000:]}"
    listed = subprocess.run(
        [*printed.group(1).split(), "--output", "json", "connections", "list"],
        env=stack.env(), cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [c["status"] for c in json.loads(listed.stdout)] == ["connected"]
    assert "in memory" in stack.log()

    result = invoke_test_of_demo(stack, tmp_path)
    assert result["company_name"] == company
    assert result["realm_id"] == flow["realm_id"]

    assert stack.stop() == 0
    assert not stack.state_file.exists()
    assert not stack.ready_file.exists()
    # Neither the banner, the logs nor the discovery record ever showed a secret, token, code or state.
    everything = stack.all_logs() + json.dumps(discovery)
    assert '"message":"Connection authorized"' in stack.function_log()
    leaked = [v for v in [*secrets, flow["code"], flow["state"]] if v in everything]
    assert not leaked, f"{len(leaked)} secret value(s) reached the local stack's output"


def test_schedule_sweeps_and_the_queue_consumer_refreshes_the_demo_connection(tmp_path: Path) -> None:
    # Two-minute access tokens are always within the 15-minute refresh margin: every sweep refreshes.
    with background_stack(tmp_path, "--refresh-interval", "1", "--access-token-seconds", "120") as stack:
        landing, _, _ = connect_demo_company(stack, printed_authorize_link(stack))
        assert landing.status_code == 200, landing.text

        stats_url = stack.discovery["emulator_url"] + "/_emulator/stats"
        deadline = time.monotonic() + 30
        while requests.get(stats_url, timeout=10).json()["grant_types"].get("refresh_token", 0) < 1:
            assert time.monotonic() < deadline, f"no refresh reached the emulator:\n{stack.log()[-3000:]}"
            time.sleep(0.2)  # the schedule's next run, polled within the deadline above

        faults = stack.discovery["emulator_url"] + "/_emulator/faults"
        requests.post(faults, json={"group": "token", "fault": "invalid_grant", "times": 1}, timeout=10)
        deadline = time.monotonic() + 30
        while "demo needs_reauthorization" not in stack.log():
            assert time.monotonic() < deadline, f"no failed refresh in the log:\n{stack.log()[-3000:]}"
            time.sleep(0.2)  # the schedule's next run, polled within the deadline above

        assert stack.stop() == 0
    log = stack.log()
    assert "Refresh sweep: 1 due, 1 enqueued" in log
    # One readable line per sweep and per refresh batch, with the outcome and, for a failure, what to do. A
    # batch may hold two sweeps' messages (the schedule keeps its rate while the consumer is busy).
    batch = r"Refresh queue: \d+ message\(s\) handled: (?:[^\n]*; )?"
    assert re.search(batch + r"demo refreshed, access token valid \d+ min", log)
    assert re.search(
        batch + "demo needs_reauthorization: A company administrator must reconnect through the authorize link.",
        log,
    )
    assert '{"' not in log, "the functions' JSON lines belong in the function log, not on the terminal"
    assert '"Refresh failed permanently"' in stack.function_log()


@pytest.mark.parametrize("option", ["--port", "--aws-port", "--intuit-port"])
def test_up_fails_with_a_message_naming_the_flag_when_a_port_is_taken(tmp_path: Path, option: str) -> None:
    ports = {"--port": "0", "--aws-port": "0", "--intuit-port": "0"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports[option] = str(port)
        arguments = [word for pair in ports.items() for word in pair]
        started = qbo_local("up", *arguments, env=stack_env(tmp_path / "local-stack.json"), timeout=60)

    assert started.returncode != 0
    assert f"Port {port}" in started.stderr
    assert f'make dev ARGS="{option} N"' in started.stderr
    assert "in use by another program" not in started.stderr  # werkzeug's own message, which names no flag
    assert not (tmp_path / "local-stack.json").exists()


def test_invoke_without_a_running_stack_says_to_start_make_dev(tmp_path: Path) -> None:
    invoked = qbo_local("invoke", "test", str(ROOT / "events" / "test.json"), env=stack_env(tmp_path / "none.json"))

    assert invoked.returncode == 1
    assert "make dev" in invoked.stderr
    assert invoked.stdout == ""


RACERS = 3  # threads per racing process


def _take_leases(endpoint: str, table: str, connection_ids: list[str], start_at: list[float], out: Any) -> None:
    """One racer process: at each start time, try to take that connection's lease; report the ones won."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config
    from qbo_connect.adapters.dynamodb_store import DynamoDbConnectionStore
    from qbo_connect.adapters.dynamodb_table import DynamoDbTable
    from qbo_connect.errors import Busy

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    client = session.client("dynamodb", endpoint_url=endpoint, config=Config(max_pool_connections=RACERS))
    store = DynamoDbConnectionStore(DynamoDbTable(client, table))

    def take(connection_id: str, racer: int) -> bool:
        try:
            store.acquire_lease(connection_id, owner=f"racer-{os.getpid()}-{racer}", now=time.time(), seconds=200)
        except Busy:
            return False
        return True

    won = []
    with ThreadPoolExecutor(RACERS) as threads:
        for connection_id, at in zip(connection_ids, start_at, strict=True):
            while time.time() < at:  # a shared start instant across processes (no clock to inject here)
                pass
            wins = list(threads.map(take, [connection_id] * RACERS, range(RACERS)))
            won += [connection_id] * sum(wins)
    out.put(won)


def test_the_embedded_aws_applies_conditional_writes_atomically_as_dynamodb_does(stack: BackgroundStack) -> None:
    # Plain moto checks a condition and writes in two steps on its request threads: racers for one lease
    # could both win (seen: 3 races in 100 with six processes), a double refresh the service never makes
    # on AWS. The local stack must be as strict as DynamoDB.
    import multiprocessing
    from collections import Counter

    from qbo_connect import intuit
    from qbo_connect.adapters.dynamodb_store import DynamoDbConnectionStore
    from qbo_connect.adapters.dynamodb_table import DynamoDbTable
    from qbo_connect.domain.connection import Connection

    endpoint, table = stack.discovery["aws_endpoint_url"], stack.discovery["environment"]["QBO_TABLE_NAME"]
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    store = DynamoDbConnectionStore(DynamoDbTable(session.client("dynamodb", endpoint_url=endpoint), table))
    connection_ids = [f"race-{n:03d}" for n in range(100)]
    for n, connection_id in enumerate(connection_ids):
        store.create(
            Connection(connection_id, f"Race {n:03d}", intuit.Environment.SANDBOX, intuit.SANDBOX_API_BASE_URL, "abcd")
        )
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start = time.time() + 5  # every racer imported and connected by then
    start_at = [start + n * 0.1 for n in range(len(connection_ids))]
    racers = [
        context.Process(target=_take_leases, args=(endpoint, table, connection_ids, start_at, results))
        for _ in range(6)
    ]
    for racer in racers:
        racer.start()
    # A guard, not a measure: six spawned interpreters importing boto3 on a loaded two-core machine take a while.
    won = Counter(connection_id for _ in racers for connection_id in results.get(timeout=180))
    for racer in racers:
        racer.join(timeout=10)

    assert sorted(won) == connection_ids  # every lease was taken
    assert [cid for cid, holders in won.items() if holders > 1] == []


def admin_call(stack: BackgroundStack, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    """The admin API as the README's SigV4 example calls it (locally: credentials testing/testing)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{stack.discovery['api_url']}/iam/admin{path}"
    data = None if body is None else json.dumps(body)
    request = AWSRequest(method=method, url=url, data=data, headers={"content-type": "application/json"})
    SigV4Auth(Credentials("testing", "testing"), "execute-api", stack.discovery["region"]).add_auth(request)
    return requests.request(method, url, data=data, headers=dict(request.headers), timeout=60)


def test_the_admin_apis_import_takes_over_a_grant_on_the_local_stack(stack: BackgroundStack) -> None:
    """README, the admin API: import a refresh token another tool holds. The admin function runs with its own
    deadlines in AWS (template.yaml: 8 s for the call and for the vault write, inside its 30 s); the local
    stack must give it the same, or every import and refresh through the admin API (and so the console) is
    refused as `busy` before Intuit is asked."""
    emulator = stack.discovery["emulator_url"]
    client_id, client_secret = "import-app", "cs-" + secrets.token_urlsafe(24)
    requests.post(
        f"{emulator}/_emulator/clients", json={"client_id": client_id, "client_secret": client_secret}, timeout=10
    ).raise_for_status()
    realm_id = "9341453050000001"
    seeded = requests.post(
        f"{emulator}/_emulator/grants", json={"client_id": client_id, "realm_id": realm_id, "count": 1}, timeout=10
    )
    seeded.raise_for_status()
    other_tools_token = seeded.json()["grants"][0]["refresh_token"]

    created = admin_call(
        stack, "POST", "/connections", {"name": "Imported", "client_id": client_id, "environment": "sandbox"}
    )
    assert created.status_code == 201, created.text
    ref = created.json()["connection_id"]
    assert admin_call(stack, "PUT", f"/connections/{ref}/client-secret", {"client_secret": client_secret}).ok

    imported = admin_call(
        stack, "POST", f"/connections/{ref}/import", {"refresh_token": other_tools_token, "realm_id": realm_id}
    )

    assert imported.status_code == 200, imported.text
    assert (imported.json()["status"], imported.json()["realm_id"]) == ("connected", realm_id)
    tested = admin_call(stack, "POST", f"/connections/{ref}/test", {})
    assert tested.json()["ok"] is True, tested.text


def test_connecting_the_demo_company_again_keeps_it_working(stack: BackgroundStack, tmp_path: Path) -> None:
    """A person reconnects (the README's "Reconnect"): on Intuit, revoking the grant it replaces would disconnect
    the app from the company, the new grant included, and the connection would fail its next test."""
    link = printed_authorize_link(stack)
    first, _, _ = connect_demo_company(stack, link)
    assert first.status_code == 200, first.text

    again, _, company = connect_demo_company(stack, link)

    assert again.status_code == 200 and "Connected" in again.text, again.text
    assert invoke_test_of_demo(stack, tmp_path)["company_name"] == company
