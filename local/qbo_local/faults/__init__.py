"""Test and chaos tooling: faults in the shapes real networks and real AWS produce, which the fakes are too kind to.

- AwsRefusals: AWS refusing requests (throttling, quotas, access) before acting on them, botocore's retries intact.
- FaultProxy / ProxyFault: a loopback TCP proxy that delays, trickles, drops or resets one HTTP exchange at a time.
- StrictSecretsManager: a Secrets Manager client (moto) that fails, throttles and enforces the version quota as AWS does.
- StrictSqs: an SQS client (moto) that refuses messages and batches over SQS's size limits as AWS does.
- StrictCognito: moto's server with Cognito's sign-in checked as Cognito checks it: the SRP proof, the clients' auth
  flows, and the challenges after the password (a new password, TOTP setup and codes, sessions that expire).
"""

from .aws_refusals import AwsRefusals
from .proxy import FaultProxy, ProxyFault
from .secrets_quota import StrictSecretsManager
from .strict_cognito import StrictCognito, moto_cognito_backend
from .strict_sqs import StrictSqs

__all__ = [
    "AwsRefusals",
    "FaultProxy",
    "ProxyFault",
    "StrictCognito",
    "StrictSecretsManager",
    "StrictSqs",
    "moto_cognito_backend",
]
