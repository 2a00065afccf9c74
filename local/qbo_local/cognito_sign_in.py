"""Signing in to a Cognito user pool from Python the way the console does in the browser: USER_SRP_AUTH (the
password proven, never sent), then the authenticator's setup. The local stack uses it to give its administrator an
authenticator through Cognito's own API, so that `make dev` can print that administrator's codes
(`qbo-connect-local totp`) and nothing about the sign-in is set up behind the pool's back.

The SRP arithmetic is the one the strict Cognito checks (faults/strict_cognito.py), from the client's side:
A = g^a, x from the salt and the password, S = (B - k g^x)^(a + u x).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from qbo_local import totp
from qbo_local.faults.strict_cognito import G, K, N, hash_hex, padded_hex, password_claim, private_key


def password_verified(cognito: Any, pool_id: str, client_id: str, username: str, password: str) -> dict[str, Any]:
    """InitiateAuth USER_SRP_AUTH and the PASSWORD_VERIFIER answer: Cognito's next step (a challenge or tokens)."""
    a = secrets.randbits(1024)
    big_a = pow(G, a, N)
    started = cognito.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_SRP_AUTH",
        AuthParameters={"USERNAME": username, "SRP_A": format(big_a, "x")},
    )
    parameters = started["ChallengeParameters"]
    big_b, salt = int(parameters["SRP_B"], 16), int(parameters["SALT"], 16)
    user_id, pool_name = parameters["USER_ID_FOR_SRP"], pool_id.partition("_")[2]
    scrambler = hash_hex(padded_hex(big_a), padded_hex(big_b))
    x = private_key(pool_name, user_id, password, salt)
    shared = pow(big_b - K * pow(G, x, N), a + scrambler * x, N)
    now = datetime.now(UTC)
    timestamp = f"{now:%a %b} {now.day} {now:%H:%M:%S} UTC {now.year}"
    claim = password_claim(
        pool_name=pool_name,
        user_id=user_id,
        secret_block=parameters["SECRET_BLOCK"],
        timestamp=timestamp,
        shared=shared,
        scrambler=scrambler,
    )
    return cognito.respond_to_auth_challenge(
        ClientId=client_id,
        ChallengeName="PASSWORD_VERIFIER",
        ChallengeResponses={
            "USERNAME": user_id,
            "PASSWORD_CLAIM_SECRET_BLOCK": parameters["SECRET_BLOCK"],
            "PASSWORD_CLAIM_SIGNATURE": claim,
            "TIMESTAMP": timestamp,
        },
    )


def set_up_authenticator(cognito: Any, pool_id: str, client_id: str, username: str, password: str) -> str:
    """A first sign-in through MFA_SETUP, as a person does it in the console; the authenticator's secret."""
    step = password_verified(cognito, pool_id, client_id, username, password)
    if step.get("ChallengeName") != "MFA_SETUP":
        raise RuntimeError(f"expected Cognito to ask for an authenticator's setup, not {step.get('ChallengeName')}")
    associated = cognito.associate_software_token(Session=step["Session"])
    secret = associated["SecretCode"]
    verified = cognito.verify_software_token(
        Session=associated["Session"], UserCode=totp.code_at(secret, time.time()), FriendlyDeviceName="make dev"
    )
    cognito.respond_to_auth_challenge(
        ClientId=client_id,
        ChallengeName="MFA_SETUP",
        Session=verified["Session"],
        ChallengeResponses={"USERNAME": username},
    )
    return secret


__all__ = ["password_verified", "set_up_authenticator"]
