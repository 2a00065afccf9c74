"""The benchmarks' moto server (bench/moto_server.py, the AWS of `make bench`'s local stack) serves the local
stack's start: its administrators' pool signs 'admin' in through SRP and sets up the authenticator
(qbo_local.cognito_sign_in), as `make dev`'s embedded AWS does. Plain moto answers the SRP step for a user
it does not know, so the benchmark's throughput and on-demand parts could not start the stack."""

from __future__ import annotations

import secrets

import boto3
import pytest
from qbo_local.background import background_stack
from qbo_local.cognito_sign_in import set_up_authenticator

from bench.server_process import ServerProcess
from bench.webhook_answer import BENCH_APP, measure


@pytest.fixture
def bench_moto():
    server = ServerProcess("the benchmark's moto", "/moto-api/", "-m", "bench.moto_server", "-H", "127.0.0.1", "-p")
    yield server.url
    server.stop()


def test_the_administrators_first_sign_in_sets_up_an_authenticator_on_the_benchmarks_moto(bench_moto):
    cognito = boto3.client(
        "cognito-idp",
        endpoint_url=bench_moto,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pool_id = cognito.create_user_pool(PoolName="administrators", MfaConfiguration="ON")["UserPool"]["Id"]
    cognito.set_user_pool_mfa_config(
        UserPoolId=pool_id, SoftwareTokenMfaConfiguration={"Enabled": True}, MfaConfiguration="ON"
    )
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="console", ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    )["UserPoolClient"]["ClientId"]
    password = secrets.token_urlsafe(15) + "Aa7-"
    cognito.admin_create_user(UserPoolId=pool_id, Username="admin", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool_id, Username="admin", Password=password, Permanent=True)

    secret = set_up_authenticator(cognito, pool_id, client_id, "admin", password)

    assert len(secret) >= 16
    assert cognito.admin_get_user(UserPoolId=pool_id, Username="admin")["PreferredMfaSetting"] == "SOFTWARE_TOKEN_MFA"


def test_the_webhook_benchmarks_stack_starts_with_the_benchmarks_moto_and_answers_deliveries(tmp_path):
    """bench.webhook_answer drives `make dev`'s stack started as bench.patched_stack (the benchmarks' changes to
    moto loaded in its process; without them its SQS grew every answer with the queue: p99 18 s at 19,000 changes)."""
    token = secrets.token_urlsafe(32)
    with background_stack(tmp_path, module="bench.patched_stack") as stack:
        assert stack.cli("webhooks", "set-verifier", BENCH_APP, "--stdin", input=token).returncode == 0
        result = measure(stack.discovery["api_url"] + "/intuit/webhooks", token, changes=100, deliveries=3)

    assert result.failures == 0
    assert result.deliveries == 3
