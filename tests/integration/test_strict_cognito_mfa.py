"""The local stack's Cognito asks for the second factor the way Cognito does, in a pool whose MFA is required
(template.yaml's AdminUserPool: MfaConfiguration ON, TOTP only): a first sign-in must set up an authenticator
(AssociateSoftwareToken, VerifySoftwareToken with a code from the secret it was given, then MFA_SETUP), every later
one must answer SOFTWARE_TOKEN_MFA with the current code. pycognito proves the password (an independent SRP client);
the codes come from `cryptography`'s RFC 6238 TOTP (an independent implementation), at the strict Cognito's clock."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from pycognito.aws_srp import AWSSRP
from qbo_local.stack import local_aws_server
from test_strict_cognito import PASSWORD, _cognito

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


def test_a_wrong_code_leaves_the_challenge_standing_until_a_right_one(pool, clock):
    alice = pool.add_user("alice")
    associated = pool.cognito.associate_software_token(Session=pool.password_verified(alice)["Session"])
    secret = associated["SecretCode"]
    wrong_setup = lambda: pool.cognito.verify_software_token(  # noqa: E731
        Session=associated["Session"], UserCode=wrong(code(secret, clock()))
    )
    assert _error(wrong_setup)[0] == "EnableSoftwareTokenMFAException"
    verified = pool.cognito.verify_software_token(Session=associated["Session"], UserCode=code(secret, clock()))
    assert "AuthenticationResult" in pool.respond("MFA_SETUP", verified["Session"], alice)

    challenge = pool.password_verified(alice)
    for typed in (wrong(code(secret, clock())), "12345", "abcdef"):
        answer = lambda typed=typed: pool.respond(  # noqa: E731
            "SOFTWARE_TOKEN_MFA", challenge["Session"], alice, SOFTWARE_TOKEN_MFA_CODE=typed
        )
        assert _error(answer)[0] == "CodeMismatchException"
    signed_in = pool.respond(
        "SOFTWARE_TOKEN_MFA", challenge["Session"], alice, SOFTWARE_TOKEN_MFA_CODE=code(secret, clock())
    )
    assert signed_in["AuthenticationResult"]["AccessToken"]


def test_a_code_of_the_step_before_or_after_is_accepted_and_none_further(pool, clock):
    alice = pool.add_user("alice")
    secret = _set_up(pool, alice, clock)

    for steps, accepted in [(-2, False), (2, False), (-1, True), (1, True)]:
        session = pool.password_verified(alice)["Session"]
        answer = lambda steps=steps, session=session: pool.respond(  # noqa: E731
            "SOFTWARE_TOKEN_MFA", session, alice, SOFTWARE_TOKEN_MFA_CODE=code(secret, clock() + steps * STEP)
        )
        if accepted:
            assert "AuthenticationResult" in answer(), steps
        else:
            assert _error(answer)[0] == "CodeMismatchException", steps


def test_a_first_sign_in_with_a_temporary_password_chooses_a_password_then_sets_up_the_authenticator(pool, clock):
    pool.cognito.admin_create_user(
        UserPoolId=pool.id, Username="dana", TemporaryPassword=PASSWORD, MessageAction="SUPPRESS"
    )
    srp = AWSSRP("dana", PASSWORD, pool.id, pool.client_id, client=pool.cognito)  # its proof; the rest by hand
    first = pool.cognito.initiate_auth(
        ClientId=pool.client_id, AuthFlow="USER_SRP_AUTH", AuthParameters=srp.get_auth_params()
    )
    proof = srp.process_challenge(first["ChallengeParameters"], srp.get_auth_params())
    new_password = pool.cognito.respond_to_auth_challenge(
        ClientId=pool.client_id, ChallengeName="PASSWORD_VERIFIER", ChallengeResponses=proof
    )
    assert new_password["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
    assert new_password["ChallengeParameters"]["USER_ID_FOR_SRP"] == "dana"

    weak = lambda: pool.respond("NEW_PASSWORD_REQUIRED", new_password["Session"], "dana", NEW_PASSWORD="short")  # noqa: E731
    assert _error(weak)[0] == "InvalidPasswordException"  # the session stands: choose another
    setup = pool.respond(
        "NEW_PASSWORD_REQUIRED", new_password["Session"], "dana", NEW_PASSWORD="Another-Horse-7-Staple"
    )

    assert setup["ChallengeName"] == "MFA_SETUP" and "AuthenticationResult" not in setup
    assert setup["ChallengeParameters"]["MFAS_CAN_SETUP"] == '["SOFTWARE_TOKEN_MFA"]'
    associated = pool.cognito.associate_software_token(Session=setup["Session"])
    verified = pool.cognito.verify_software_token(
        Session=associated["Session"], UserCode=code(associated["SecretCode"], clock())
    )
    assert "AuthenticationResult" in pool.respond("MFA_SETUP", verified["Session"], "dana")


def test_an_administrator_deletes_a_lost_authenticator_and_the_next_sign_in_sets_up_another(pool, clock):
    alice = pool.add_user("alice")
    lost = _set_up(pool, alice, clock)
    shown = pool.cognito.admin_get_user(UserPoolId=pool.id, Username=alice)
    assert shown["UserMFASettingList"] == ["SOFTWARE_TOKEN_MFA"]
    assert shown["PreferredMfaSetting"] == "SOFTWARE_TOKEN_MFA"

    pool.cognito.admin_delete_software_token(UserPoolId=pool.id, Username=alice)

    assert pool.cognito.admin_get_user(UserPoolId=pool.id, Username=alice).get("UserMFASettingList", []) == []
    again = pool.password_verified(alice)
    assert again["ChallengeName"] == "MFA_SETUP"
    assert _error(lambda: pool.respond("MFA_SETUP", again["Session"], alice))[0] == "NotAuthorizedException"
    replacement = _set_up(pool, alice, clock)
    assert replacement != lost
    nobody = lambda: pool.cognito.admin_delete_software_token(UserPoolId=pool.id, Username="nobody")  # noqa: E731
    assert _error(nobody)[0] == "UserNotFoundException"


def test_a_signed_in_user_replaces_the_authenticator_and_only_the_new_one_signs_in(pool, clock):
    alice = pool.add_user("alice")
    old = _set_up(pool, alice, clock)
    challenge = pool.password_verified(alice)
    access = pool.respond(
        "SOFTWARE_TOKEN_MFA", challenge["Session"], alice, SOFTWARE_TOKEN_MFA_CODE=code(old, clock())
    )["AuthenticationResult"]["AccessToken"]

    pool.cognito.associate_software_token(AccessToken=access)  # abandoned: the last one handed out counts
    new = pool.cognito.associate_software_token(AccessToken=access)["SecretCode"]
    refused = lambda: pool.cognito.verify_software_token(AccessToken=access, UserCode=code(old, clock()))  # noqa: E731
    assert _error(refused)[0] == "EnableSoftwareTokenMFAException"
    assert pool.cognito.verify_software_token(AccessToken=access, UserCode=code(new, clock()))["Status"] == "SUCCESS"

    challenge = pool.password_verified(alice)
    with_old = lambda: pool.respond(  # noqa: E731
        "SOFTWARE_TOKEN_MFA", challenge["Session"], alice, SOFTWARE_TOKEN_MFA_CODE=code(old, clock())
    )
    assert _error(with_old)[0] == "CodeMismatchException"
    with_new = pool.respond(
        "SOFTWARE_TOKEN_MFA", challenge["Session"], alice, SOFTWARE_TOKEN_MFA_CODE=code(new, clock())
    )
    assert "AuthenticationResult" in with_new


def test_a_password_checked_by_user_password_auth_still_needs_the_second_factor(pool, clock):
    """moto's USER_PASSWORD_AUTH signs a user without an authenticator in, in a pool whose MFA is required."""
    alice = pool.add_user("alice")
    scripts = pool.cognito.create_user_pool_client(
        UserPoolId=pool.id, ClientName="scripts", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    plain = {"USERNAME": alice, "PASSWORD": PASSWORD}

    first = pool.cognito.initiate_auth(ClientId=scripts, AuthFlow="USER_PASSWORD_AUTH", AuthParameters=plain)
    assert first["ChallengeName"] == "MFA_SETUP" and "AuthenticationResult" not in first
    wrong_password = {**plain, "PASSWORD": PASSWORD + "x"}
    refused = lambda: pool.cognito.initiate_auth(  # noqa: E731
        ClientId=scripts, AuthFlow="USER_PASSWORD_AUTH", AuthParameters=wrong_password
    )
    assert _error(refused)[0] == "NotAuthorizedException"
