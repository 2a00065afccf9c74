"""What the end-to-end tests do with the local stack besides browsing it: its AWS, a console ID token, and the
codes of the administrators' authenticator apps (the pool requires one)."""

from __future__ import annotations

import base64
import time

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from pycognito.aws_srp import AWSSRP
from pycognito.exceptions import SoftwareTokenMFAChallengeException

# (user pool, user name) -> the key of the authenticator the tests set up for that user, through the API or the
# console's page: what the person's app would hold.
AUTHENTICATORS: dict[tuple[str, str], str] = {}


def aws_client(stack, service: str):
    return stack.aws_client(service)


def authenticator_code(secret: str, at: float | None = None) -> str:
    """What an authenticator app shows for `secret` (RFC 6238 by `cryptography`, not the stack's own arithmetic)."""
    key = base64.b32decode(secret.replace(" ", "").upper() + "=" * (-len(secret.replace(" ", "")) % 8))
    totp = TOTP(key, 6, SHA1(), 30, enforce_key_length=False)  # noqa: S303 - RFC 6238's hash
    return totp.generate(int(time.time() if at is None else at)).decode()


def authenticator_of(stack, pool_id: str, username: str) -> str:
    if username == stack.discovery["admin_username"] and pool_id == _pool(stack):
        return stack.discovery["admin_authenticator_secret"]
    return AUTHENTICATORS[(pool_id, username)]


def sign_in_token(stack, *, pool_id: str | None = None, client_id: str | None = None, username=None, password=None):
    """An ID token as the console gets one: USER_SRP_AUTH (pycognito's client, the password never sent), then the
    authenticator's code, or its setup at a user's first sign-in."""
    pool_id = pool_id or _pool(stack)
    client_id = client_id or stack.discovery["environment"]["QBO_ADMIN_CONSOLE_CLIENT_ID"]
    username = username or stack.discovery["admin_username"]
    cognito = aws_client(stack, "cognito-idp")
    srp = AWSSRP(username, password or stack.discovery["admin_password"], pool_id, client_id, client=cognito)
    try:
        answer = srp.authenticate_user()
    except SoftwareTokenMFAChallengeException as challenge:
        answer = cognito.respond_to_auth_challenge(
            ClientId=client_id,
            ChallengeName="SOFTWARE_TOKEN_MFA",
            Session=challenge.get_tokens()["Session"],
            ChallengeResponses={
                "USERNAME": username,
                "SOFTWARE_TOKEN_MFA_CODE": authenticator_code(authenticator_of(stack, pool_id, username)),
            },
        )
    if answer.get("ChallengeName") == "MFA_SETUP":
        associated = cognito.associate_software_token(Session=answer["Session"])
        verified = cognito.verify_software_token(
            Session=associated["Session"], UserCode=authenticator_code(associated["SecretCode"])
        )
        AUTHENTICATORS[(pool_id, username)] = associated["SecretCode"]
        answer = cognito.respond_to_auth_challenge(
            ClientId=client_id,
            ChallengeName="MFA_SETUP",
            Session=verified["Session"],
            ChallengeResponses={"USERNAME": username},
        )
    return answer["AuthenticationResult"]["IdToken"]


def _pool(stack) -> str:
    return stack.discovery["environment"]["QBO_ADMIN_USER_POOL_ID"]
