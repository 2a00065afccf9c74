"""Emulator settings: a frozen value, swapped whole when the admin API changes it at run time."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qbo_connect import intuit

from . import facts

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class EmulatorConfig:
    access_token_seconds: int = 3600
    # About 101 days, restarted by every refresh (Intuit's rolling expiry).
    refresh_token_seconds: int = 8_726_400
    # Absolute end of a grant, counted from consent; never moved by a refresh.
    hard_expiry_seconds: int = 5 * 365 * 86_400
    # 0: every refresh rotates the refresh token (the strict reading the service is designed for). N: a
    # refresh answers with the same refresh token and what is left of its life until it is N seconds old,
    # as Intuit usually does (86400: a new one about every 24 hours).
    refresh_token_rotation_seconds: int = 0
    auth_code_seconds: int = facts.AUTH_CODE_SECONDS
    # Every expiry decision reads this clock, so tests can live 120 days in a second.
    clock: Clock = time.time
    # Injected latency and the "timeout" fault call this; tests pass a fake that does not block.
    sleep: Sleep = time.sleep
    clients: Mapping[str, str] = field(default_factory=dict)
    # Unknown client ids are accepted and their secret learned on first use (trust on first use).
    open_registration: bool = True
    companies: tuple[tuple[str, str], ...] = facts.DEFAULT_COMPANIES
    seed_customers: int = 3
    rate_limits: bool = True
    rate_limit_per_second: int = intuit.API_REQUESTS_PER_SECOND
    rate_limit_per_minute: int = intuit.API_REQUESTS_PER_MINUTE
    max_concurrent: int = intuit.API_MAX_CONCURRENT_REQUESTS
    rate_limit_batch_per_minute: int = intuit.BATCH_REQUESTS_PER_MINUTE

    def with_overrides(self, values: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with run-time-tunable fields replaced; raises ValueError naming a bad field."""
        changes: dict[str, Any] = {}
        for name, value in values.items():
            expected = RUNTIME_FIELDS.get(name)
            if expected is None:
                raise ValueError(f"{name!r} cannot be changed at run time; tunable: {sorted(RUNTIME_FIELDS)}")
            # bool is an int subclass: keep "true" from sneaking into a number of seconds.
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ValueError(f"{name!r} must be {expected.__name__}")
            if expected is int and value < 0:
                raise ValueError(f"{name!r} must not be negative")
            changes[name] = value
        return dataclasses.replace(self, **changes)

    def public_dict(self) -> dict[str, Any]:
        """What the admin API shows: the tunable fields (never the client secrets)."""
        return {name: getattr(self, name) for name in RUNTIME_FIELDS}


RUNTIME_FIELDS: dict[str, type] = {
    "access_token_seconds": int,
    "refresh_token_seconds": int,
    "hard_expiry_seconds": int,
    "refresh_token_rotation_seconds": int,
    "auth_code_seconds": int,
    "open_registration": bool,
    "rate_limits": bool,
    "rate_limit_per_second": int,
    "rate_limit_per_minute": int,
    "max_concurrent": int,
    "rate_limit_batch_per_minute": int,
}
