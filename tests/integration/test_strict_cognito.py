"""The local stack's Cognito signs people in the way Cognito does: SRP checked (the password never sent), unknown
users and wrong passwords refused alike, a client's auth flows enforced. pycognito, an SRP client written
independently of ours and used against the real Cognito, is the judge of the arithmetic."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from pycognito.aws_srp import AWSSRP
from pycognito.exceptions import ForceChangePasswordException
from qbo_local import config
from qbo_local.stack import local_aws_server

PASSWORD = "Correct-Horse-9-Battery"


@pytest.fixture(scope="module")
def strict_endpoint() -> Iterator[str]:
    server = local_aws_server(0)
    try:
        yield server.url
    finally:
        server.stop()


def _cognito(endpoint: str):
    return boto3.client(
        "cognito-idp",
        endpoint_url=endpoint,
        region_name=config.REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _pool(endpoint: str, flows=("ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"), *, permanent=True):
    cognito = _cognito(endpoint)
    pool_id = cognito.create_user_pool(PoolName=f"admins-{secrets.token_hex(3)}")["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="console", ExplicitAuthFlows=list(flows)
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(
        UserPoolId=pool_id, Username="alice", TemporaryPassword=PASSWORD, MessageAction="SUPPRESS"
    )
    if permanent:
        cognito.admin_set_user_password(UserPoolId=pool_id, Username="alice", Password=PASSWORD, Permanent=True)
    return cognito, pool_id, client_id


def _error(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def _garbage_claim(cognito, client_id: str) -> dict:
    """An SRP answer anyone can make without the password."""
    challenge = cognito.initiate_auth(
        ClientId=client_id, AuthFlow="USER_SRP_AUTH", AuthParameters={"USERNAME": "alice", "SRP_A": "abc123"}
    )
    return cognito.respond_to_auth_challenge(
        ClientId=client_id,
        ChallengeName="PASSWORD_VERIFIER",
        ChallengeResponses={
            "USERNAME": "alice",
            "PASSWORD_CLAIM_SECRET_BLOCK": challenge["ChallengeParameters"]["SECRET_BLOCK"],
            "PASSWORD_CLAIM_SIGNATURE": "bm90IGEgc2lnbmF0dXJl",
            "TIMESTAMP": "Sun Dec 6 20:26:11 UTC 2026",
        },
    )


def test_plain_moto_signs_in_with_any_srp_answer_and_ignores_the_clients_flows(plain_moto):
    """Why the local stack does not use moto's Cognito as it is: it would prove nothing about the console."""
    cognito, _, client_id = _pool(plain_moto, flows=("ALLOW_USER_SRP_AUTH",))

    assert "IdToken" in _garbage_claim(cognito, client_id)["AuthenticationResult"]
    plain = cognito.initiate_auth(
        ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH", AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD}
    )
    assert "IdToken" in plain["AuthenticationResult"]


def test_an_independent_srp_client_signs_in_with_the_password_and_only_with_it(strict_endpoint):
    cognito, pool_id, client_id = _pool(strict_endpoint)

    tokens = AWSSRP("alice", PASSWORD, pool_id, client_id, client=cognito).authenticate_user()
    assert tokens["AuthenticationResult"]["IdToken"].count(".") == 2

    wrong = AWSSRP("alice", PASSWORD + "x", pool_id, client_id, client=cognito)
    assert _error(wrong.authenticate_user) == ("NotAuthorizedException", "Incorrect username or password.")
    nobody = AWSSRP("mallory", PASSWORD, pool_id, client_id, client=cognito)
    assert _error(nobody.authenticate_user) == ("NotAuthorizedException", "Incorrect username or password.")
    assert _error(lambda: _garbage_claim(cognito, client_id))[0] == "NotAuthorizedException"


def test_a_challenge_is_answered_once(strict_endpoint):
    cognito, pool_id, client_id = _pool(strict_endpoint)
    sent = []
    original = cognito.respond_to_auth_challenge
    cognito.respond_to_auth_challenge = lambda **kwargs: (sent.append(kwargs), original(**kwargs))[1]
    AWSSRP("alice", PASSWORD, pool_id, client_id, client=cognito).authenticate_user()

    assert _error(lambda: original(**sent[0])) == ("NotAuthorizedException", "Invalid session for the user.")


def test_a_temporary_password_signs_in_to_choose_a_new_one(strict_endpoint):
    cognito, pool_id, client_id = _pool(strict_endpoint, permanent=False)
    first = AWSSRP("alice", PASSWORD, pool_id, client_id, client=cognito)
    with pytest.raises(ForceChangePasswordException):
        first.authenticate_user()

    first.set_new_password_challenge("Another-Horse-7-Staple")

    again = AWSSRP("alice", "Another-Horse-7-Staple", pool_id, client_id, client=cognito).authenticate_user()
    assert "IdToken" in again["AuthenticationResult"]
    old = AWSSRP("alice", PASSWORD, pool_id, client_id, client=cognito)
    assert _error(old.authenticate_user)[0] == "NotAuthorizedException"


def test_a_flow_the_client_does_not_allow_is_refused_as_cognito_refuses_it(strict_endpoint):
    cognito, pool_id, srp_only = _pool(strict_endpoint)
    password_flow = {"AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters": {"USERNAME": "alice", "PASSWORD": PASSWORD}}

    assert _error(lambda: cognito.initiate_auth(ClientId=srp_only, **password_flow)) == (
        "InvalidParameterException",
        "USER_PASSWORD_AUTH flow not enabled for this client",
    )
    with_password = cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="scripts", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    assert "IdToken" in cognito.initiate_auth(ClientId=with_password, **password_flow)["AuthenticationResult"]
