"""The whole webhook path on the local stack, as a user sees it: a customer created through the
emulator's accounting API comes back as a `QuickBooks Entity Changed` event on EventBridge, signed by
the emulator, verified by the webhook route, handed over SQS, published once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import requests
from qbo_local.background import background_stack
from test_local_stack import ROOT, connect_demo_company, printed_authorize_link

WAIT_SECONDS = 60


def _create_customer(stack, realm_id: str, name: str) -> tuple[str, requests.Response]:
    """A change in the company made straight at the emulator's accounting API with the demo's token."""
    secret = stack.aws_client("secretsmanager").get_secret_value(
        SecretId=f"{stack.discovery['environment']['QBO_SECRET_PREFIX']}connections/demo"
    )
    access_token = json.loads(secret["SecretString"])["token_set"]["access_token"]
    created = requests.post(
        f"{stack.discovery['emulator_url']}/v3/company/{realm_id}/customer",
        json={"DisplayName": name},
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        timeout=30,
    )
    assert created.status_code == 200, created.text
    return access_token, created


def test_a_customer_created_through_the_emulator_arrives_as_an_eventbridge_event(tmp_path: Path) -> None:
    with background_stack(tmp_path) as stack:
        landing, flow, _ = connect_demo_company(stack, printed_authorize_link(stack))
        assert landing.status_code == 200, landing.text

        # What a user routes the events to: a rule on the bus with a queue as its target.
        sqs, events = stack.aws_client("sqs"), stack.aws_client("events")
        queue_url = sqs.create_queue(QueueName="entity-changes")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(
            Name="entity-changes",
            EventPattern=json.dumps({"source": ["qbo-connect"], "detail-type": ["QuickBooks Entity Changed"]}),
        )
        events.put_targets(Rule="entity-changes", Targets=[{"Id": "queue", "Arn": queue_arn}])

        access_token, created = _create_customer(stack, flow["realm_id"], "Webhook Customer")
        customer_id = created.json()["Customer"]["Id"]

        received: list[dict] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while not received:
            assert time.monotonic() < deadline, f"no entity event arrived:\n{stack.log()[-4000:]}"
            answer = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1, MaxNumberOfMessages=10)
            received += [json.loads(m["Body"]) for m in answer.get("Messages", [])]

        deliveries = requests.get(f"{stack.discovery['emulator_url']}/_emulator/webhooks", timeout=10).json()
        assert stack.stop() == 0

    (event,) = received
    assert event["detail-type"] == "QuickBooks Entity Changed"
    assert event["source"] == "qbo-connect"
    detail = event["detail"]
    assert {k: detail[k] for k in ("connection_id", "realm_id", "entity", "entity_id", "operation")} == {
        "connection_id": "demo",
        "realm_id": flow["realm_id"],
        "entity": "Customer",
        "entity_id": customer_id,
        "operation": "Create",
    }
    assert detail["event_id"] and detail["occurred_at"].endswith("+00:00")
    assert access_token not in json.dumps(event)
    assert [d["attempts"] for d in deliveries["deliveries"]] == [[200]]
    assert "QuickBooks Entity Changed" in stack.log()


def test_the_apps_pages_launch_check_a_disconnect_and_reconnect_the_same_company(tmp_path: Path) -> None:
    with background_stack(tmp_path) as stack:
        api, emulator = stack.discovery["api_url"], stack.discovery["emulator_url"]
        landing, flow, company = connect_demo_company(stack, printed_authorize_link(stack))
        assert landing.status_code == 200, landing.text

        launch = requests.get(f"{api}/intuit/launch", timeout=30)
        assert launch.status_code == 200 and "changes nothing" in launch.text

        # The person disconnects the app inside QuickBooks; Intuit sends their browser to the disconnect URL.
        (grant,) = [
            g for g in requests.get(f"{emulator}/_emulator/grants", timeout=10).json()["grants"] if not g["revoked"]
        ]
        assert requests.post(f"{emulator}/_emulator/grants/{grant['grant_id']}/revoke", timeout=10).status_code == 200
        page = requests.get(f"{api}/intuit/disconnect", params={"realmId": flow["realm_id"]}, timeout=60)
        assert page.status_code == 200
        # Checked at once (a token this young is not force-refreshed, so the status flips at the next
        # refresh here; tests/integration/test_app_links.py shows the flip with an older token).
        assert "1 connection to the company" in page.text and "checked just now" in page.text
        assert "demo" not in page.text
        again = requests.get(f"{api}/intuit/disconnect", params={"realmId": flow["realm_id"]}, timeout=60)
        assert "checked just now" not in again.text  # a reload costs Intuit nothing

        # A person from the company reconnects from Intuit's side: the same company only.
        assert requests.get(f"{api}/intuit/reconnect", params={"realmId": "5550001"}, timeout=30).status_code == 404
        start = requests.get(
            f"{api}/intuit/reconnect", params={"realmId": flow["realm_id"]}, allow_redirects=False, timeout=30
        )
        assert start.status_code == 302
        link = start.headers["Location"]
        assert link.startswith(f"{api}/connections/demo/authorize?")
        reconnected, again_flow, _ = connect_demo_company(stack, link)
        assert reconnected.status_code == 200 and "Connected" in reconnected.text
        assert again_flow["realm_id"] == flow["realm_id"]
        assert company
        assert stack.stop() == 0


def _cli(stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qbo_connect_cli.main", *args],
        env=stack.env(), cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_who_consented_the_event_log_and_the_month_s_api_calls_as_a_user_sees_them(tmp_path: Path) -> None:
    with background_stack(tmp_path) as stack:
        scopes = ["--scope", "com.intuit.quickbooks.accounting", "--scope", "openid", "--scope", "email"]
        assert _cli(stack, "connections", "update", "demo", *scopes).returncode == 0
        landing, flow, _ = connect_demo_company(stack, printed_authorize_link(stack))
        assert landing.status_code == 200, landing.text
        shown = json.loads(_cli(stack, "--output", "json", "connections", "show", "demo").stdout)
        tested = _cli(stack, "connections", "test", "demo")

        # A change in the company, as the emulator's accounting API makes it: a webhook, then an event.
        access_token, created = _create_customer(stack, flow["realm_id"], "Tailed Customer")
        tail = ["events", "tail", "--connection", "demo", "--type", "QuickBooks Entity Changed"]
        followed = _cli(stack, *tail, "--max", "1", "--timeout", str(WAIT_SECONDS), "--output", "json")
        authorized = _cli(stack, "events", "tail", "--no-follow", "--type", "Connection Authorized")
        metering = json.loads(_cli(stack, "--output", "json", "metering", "show").stdout)
        assert stack.stop() == 0

    person = shown["consented_by"]
    assert (person["email"], person["email_verified"]) == ("admin@sandbox-company.example", True) and person["sub"]
    assert tested.returncode == 0, tested.stderr
    assert followed.returncode == 0, followed.stderr + stack.log()[-3000:]
    (event,) = [json.loads(line) for line in followed.stdout.splitlines()]
    assert (event["detail"]["entity"], event["detail"]["entity_id"]) == ("Customer", created.json()["Customer"]["Id"])
    assert "Connection Authorized  demo  connected" in authorized.stdout
    (app,) = metering["apps"]
    # Counted: the consent's CompanyInfo and the test's (the customer was created outside the service).
    assert (app["client_id"], app["sandbox_reads"], app["metered_calls"]) == ("demo-client-id", 2, 0)
    assert access_token not in followed.stdout + authorized.stdout + json.dumps(metering)
