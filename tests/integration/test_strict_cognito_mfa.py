"""The local stack's Cognito asks for the second factor the way Cognito does, in a pool whose MFA is required
(template.yaml's AdminUserPool: MfaConfiguration ON, TOTP only): a first sign-in must set up an authenticator
(AssociateSoftwareToken, VerifySoftwareToken with a code from the secret it was given, then MFA_SETUP), every later
one must answer SOFTWARE_TOKEN_MFA with the current code. pycognito proves the password (an independent SRP client);
the codes come from `cryptography`'s RFC 6238 TOTP (an independent implementation), at the strict Cognito's clock."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from pycognito.aws_srp import AWSSRP
from qbo_local import config
from qbo_local.stack import local_aws_server

PASSWORD = "Correct-Horse-9-Battery"
STEP = 30


class Clock:
    """The strict Cognito's time, moved by the test (codes and sessions are judged by it)."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0 + 7  # a few seconds into a 30-second step

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def endpoint(clock: Clock) -> Iterator[str]:
    server = local_aws_server(0, clock=clock)
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


class Pool:
    """A pool as template.yaml makes it (CloudFormation creates it, then turns TOTP on with SetUserPoolMfaConfig),
    an app client as the console's, and users with permanent passwords."""

    def __init__(self, endpoint: str) -> None:
        self.cognito = _cognito(endpoint)
        self.id = self.cognito.create_user_pool(PoolName=f"admins-{secrets.token_hex(3)}", MfaConfiguration="ON")[
            "UserPool"
        ]["Id"]
        self.cognito.set_user_pool_mfa_config(
            UserPoolId=self.id, SoftwareTokenMfaConfiguration={"Enabled": True}, MfaConfiguration="ON"
        )
        self.client_id = self.cognito.create_user_pool_client(
            UserPoolId=self.id,
            ClientName="console",
            ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]

    def add_user(self, username: str) -> str:
        self.cognito.admin_create_user(UserPoolId=self.id, Username=username, MessageAction="SUPPRESS")
        self.cognito.admin_set_user_password(UserPoolId=self.id, Username=username, Password=PASSWORD, Permanent=True)
        return username

    def password_verified(self, username: str) -> dict:
        """The answer to the password proof: the next challenge (pycognito hands MFA_SETUP back as it is and raises
        for SOFTWARE_TOKEN_MFA with the answer attached)."""
        srp = AWSSRP(username, PASSWORD, self.id, self.client_id, client=self.cognito)
        try:
            return srp.authenticate_user()
        except Exception as challenge:  # SoftwareTokenMFAChallengeException and the like carry the answer
            tokens = getattr(challenge, "get_tokens", None)
            if tokens is None:
                raise
            return tokens()

    def respond(self, challenge: str, session: str, username: str, **responses: str) -> dict:
        return self.cognito.respond_to_auth_challenge(
            ClientId=self.client_id,
            ChallengeName=challenge,
            Session=session,
            ChallengeResponses={"USERNAME": username, **responses},
        )


def code(secret: str, at: float) -> str:
    """The code an authenticator app shows at `at` for `secret` (base32, as Cognito hands it out)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    return TOTP(key, 6, SHA1(), STEP, enforce_key_length=False).generate(int(at)).decode()  # noqa: S303 - RFC 6238


def wrong(right: str) -> str:
    return f"{(int(right) + 1) % 1_000_000:06d}"


def _error(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def _set_up(pool: Pool, username: str, clock: Clock) -> str:
    """A first sign-in through the whole setup; the secret the authenticator app was given."""
    started = pool.password_verified(username)
    assert started["ChallengeName"] == "MFA_SETUP"
    associated = pool.cognito.associate_software_token(Session=started["Session"])
    verified = pool.cognito.verify_software_token(
        Session=associated["Session"], UserCode=code(associated["SecretCode"], clock()), FriendlyDeviceName="phone"
    )
    assert verified["Status"] == "SUCCESS"
    signed_in = pool.respond("MFA_SETUP", verified["Session"], username)
    assert signed_in["AuthenticationResult"]["IdToken"].count(".") == 2
    return associated["SecretCode"]


@pytest.fixture
def pool(endpoint: str) -> Pool:
    return Pool(endpoint)


def test_a_first_sign_in_cannot_skip_the_authenticator_setup(pool):
    """moto answers MFA_SETUP with tokens for the session the password proof gave: a password alone signs in."""
    alice = pool.add_user("alice")
    started = pool.password_verified(alice)
    assert started["ChallengeName"] == "MFA_SETUP"

    assert _error(lambda: pool.respond("MFA_SETUP", started["Session"], alice))[0] == "NotAuthorizedException"


def test_setup_checks_the_code_against_the_secret_it_handed_out(pool, clock):
    """moto verifies no code at all (unless MOTO_COGNITO_IDP_USER_POOL_ENABLE_TOTP is set, and then against one
    secret shared by every user)."""
    alice = pool.add_user("alice")
    associated = pool.cognito.associate_software_token(Session=pool.password_verified(alice)["Session"])

    refused = _error(
        lambda: pool.cognito.verify_software_token(
            Session=associated["Session"], UserCode=wrong(code(associated["SecretCode"], clock()))
        )
    )
    assert refused == ("EnableSoftwareTokenMFAException", "Code mismatch and fail enable Software Token MFA")


def test_every_setup_gets_a_secret_of_its_own(pool):
    """moto hands every user the same secret, 'asdfasdfasdf': who knows moto knows everyone's codes."""
    secrets_handed_out = {
        pool.cognito.associate_software_token(Session=pool.password_verified(pool.add_user(name))["Session"])[
            "SecretCode"
        ]
        for name in ("alice", "bob")
    }

    assert len(secrets_handed_out) == 2
    for secret in secrets_handed_out:
        assert len(secret) >= 32 and len(base64.b32decode(secret + "=" * (-len(secret) % 8))) >= 20


def test_a_later_sign_in_needs_the_current_code_from_the_users_own_secret(pool, clock):
    """moto signs in with any SOFTWARE_TOKEN_MFA code."""
    alice = pool.add_user("alice")
    secret = _set_up(pool, alice, clock)
    challenge = pool.password_verified(alice)
    assert challenge["ChallengeName"] == "SOFTWARE_TOKEN_MFA"

    refused = _error(
        lambda: pool.respond(
            "SOFTWARE_TOKEN_MFA", challenge["Session"], alice, SOFTWARE_TOKEN_MFA_CODE=wrong(code(secret, clock()))
        )
    )
    assert refused == ("CodeMismatchException", "Invalid code or auth state for the user.")


def test_a_challenge_answers_for_its_own_user_only(pool, clock):
    """moto signs in whoever USERNAME names: alice's password and any code make a token for bob."""
    alice, bob = pool.add_user("alice"), pool.add_user("bob")
    alices_secret = _set_up(pool, alice, clock)
    _set_up(pool, bob, clock)
    challenge = pool.password_verified(alice)

    for name in (bob, "carol"):
        answer = lambda name=name: pool.respond(  # noqa: E731
            "SOFTWARE_TOKEN_MFA", challenge["Session"], name, SOFTWARE_TOKEN_MFA_CODE=code(alices_secret, clock())
        )
        assert _error(answer)[0] == "NotAuthorizedException"


def test_a_challenge_session_ends_after_three_minutes(pool, clock):
    """Cognito's session lasts the app client's AuthSessionValidity (3 minutes unless set); moto's never ends."""
    alice = pool.add_user("alice")
    secret = _set_up(pool, alice, clock)
    challenge = pool.password_verified(alice)

    clock.now += 3 * 60 + 1
    late = lambda: pool.respond(  # noqa: E731
        "SOFTWARE_TOKEN_MFA", challenge["Session"], alice, SOFTWARE_TOKEN_MFA_CODE=code(secret, clock())
    )
    assert _error(late) == ("NotAuthorizedException", "Invalid session for the user, session is expired.")


def test_a_session_signs_in_once(pool, clock):
    """moto keeps an MFA_SETUP session after it signed in: replayed, it makes tokens again and again."""
    alice = pool.add_user("alice")
    started = pool.password_verified(alice)
    associated = pool.cognito.associate_software_token(Session=started["Session"])
    verified = pool.cognito.verify_software_token(
        Session=associated["Session"], UserCode=code(associated["SecretCode"], clock())
    )
    assert "AuthenticationResult" in pool.respond("MFA_SETUP", verified["Session"], alice)

    assert _error(lambda: pool.respond("MFA_SETUP", verified["Session"], alice))[0] == "NotAuthorizedException"
