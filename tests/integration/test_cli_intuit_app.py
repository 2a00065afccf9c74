"""`qbo-connect app-urls` and `qbo-connect webhooks`, on moto with a faked local stack (test_cli's fixtures)."""

from __future__ import annotations

import json

import boto3
from qbo_connect.domain.webhooks import signature_of, signing_app
from test_cli import API_URL, CLIENT_ID, PREFIX, REGION, Runs, aws, cli, environ, local_stack  # noqa: F401

TOKEN = "verifier-0123456789abcdef"


def test_app_urls_prints_the_four_urls_and_the_webhook_endpoint(cli: Runs) -> None:  # noqa: F811
    result = cli("--output", "json", "app-urls")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "redirect_uri": f"{API_URL}/oauth/callback",
        "launch": f"{API_URL}/intuit/launch",
        "disconnect": f"{API_URL}/intuit/disconnect",
        "reconnect": f"{API_URL}/intuit/reconnect",
        "webhooks": f"{API_URL}/intuit/webhooks",
    }
    table = cli("app-urls")
    assert "Disconnect URL" in table.stdout and f"{API_URL}/intuit/reconnect" in table.stdout


def test_set_verifier_stores_the_token_write_only_and_the_function_verifies_with_it(cli: Runs) -> None:  # noqa: F811
    result = cli("webhooks", "set-verifier", CLIENT_ID, "--stdin", input=TOKEN)
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output

    stored = boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=f"{PREFIX}webhook-verifiers")
    tokens = {c: app["verifier_token"] for c, app in json.loads(stored["SecretString"])["apps"].items()}
    assert signing_app(b"[]", signature_of(b"[]", TOKEN), tokens) == CLIENT_ID

    listed = cli("--output", "json", "webhooks", "list")
    assert [app["client_id"] for app in json.loads(listed.stdout)] == [CLIENT_ID]
    assert TOKEN not in listed.output

    assert cli("webhooks", "remove", CLIENT_ID).exit_code == 0
    assert json.loads(cli("--output", "json", "webhooks", "list").stdout) == []
    assert cli("webhooks", "remove", CLIENT_ID).exit_code == 1


def test_a_verifier_token_is_never_an_argument_and_a_bad_one_changes_nothing(cli: Runs) -> None:  # noqa: F811
    assert cli("webhooks", "set-verifier", CLIENT_ID, TOKEN).exit_code == 2  # no such argument
    refused = cli("webhooks", "set-verifier", CLIENT_ID, "--stdin", input="short")
    assert refused.exit_code == 1 and "at least 8" in refused.output
    empty = cli("webhooks", "list")
    assert "No verifier token set" in empty.stdout
