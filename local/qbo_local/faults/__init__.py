"""Test and chaos tooling: faults in the shapes real networks and real AWS produce, which the fakes are too kind to.

- FaultProxy / ProxyFault: a loopback TCP proxy that delays, trickles, drops or resets one HTTP exchange at a time.
- StrictSecretsManager: a Secrets Manager client (moto) that fails, throttles and enforces the version quota as AWS does.
"""

from .proxy import FaultProxy, ProxyFault
from .secrets_quota import StrictSecretsManager

__all__ = ["FaultProxy", "ProxyFault", "StrictSecretsManager"]
