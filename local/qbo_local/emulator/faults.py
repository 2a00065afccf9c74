"""Fault injection knobs: per endpoint group, a latency and a FIFO queue of faults.

A fault lasts for the next N matching requests, or until cleared (times=None). The plan is plain data
behind a lock; common.injected_response turns the fault it hands out into an HTTP answer.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from .facts import THROTTLE_RETRY_AFTER_SECONDS
from .latency import LatencyProfile

# Longer than Intuit's own 120-second request limit, so any sane client timeout fires first.
DEFAULT_TIMEOUT_SECONDS = 130.0


class Group(StrEnum):
    TOKEN = "token"
    REVOKE = "revoke"
    API = "api"
    USERINFO = "userinfo"


class FaultKind(StrEnum):
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    HTTP_429 = "http_429"
    TIMEOUT = "timeout"
    INVALID_GRANT = "invalid_grant"
    INVALID_CLIENT = "invalid_client"
    CONNECTION_RESET = "connection_reset"


class HardExpiryMode(StrEnum):
    HEADER = "header"  # like Intuit: only when the request sends x-include-refresh-token-hard-expires-in
    ALWAYS = "always"
    NEVER = "never"


@dataclass
class Fault:
    kind: FaultKind
    times: int | None = 1  # requests left; None means until cleared
    seconds: float = DEFAULT_TIMEOUT_SECONDS  # timeout: how long to stall before answering
    # timeout: after the stall, still handle the request. The client has given up by then, so a refresh
    # rotates the token without the client ever seeing the new one: the nastiest real-world case.
    process: bool = True
    retry_after: int = THROTTLE_RETRY_AFTER_SECONDS  # http_429: the Retry-After header
    grant_type: str | None = None  # token group: only requests with this grant_type match

    def matches(self, grant_type: str | None) -> bool:
        return self.grant_type is None or self.grant_type == grant_type

    def as_dict(self) -> dict[str, Any]:
        return {key: (str(value) if key == "kind" else value) for key, value in asdict(self).items()}


class FaultPlan:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delays: dict[Group, float | LatencyProfile] = {}
        self._queues: dict[Group, list[Fault]] = {group: [] for group in Group}
        self._hard_expiry = HardExpiryMode.HEADER

    def set_delay(self, group: Group | str, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("delay must not be negative")
        with self._lock:
            self._delays[Group(group)] = float(seconds)

    def set_latency(self, group: Group | str, profile: LatencyProfile) -> None:
        """Each answer of the group waits a delay drawn from `profile` (instead of a constant delay)."""
        with self._lock:
            self._delays[Group(group)] = profile

    def delay_for(self, group: Group) -> float:
        with self._lock:
            delay = self._delays.get(group, 0.0)
        return delay.draw() if isinstance(delay, LatencyProfile) else delay

    def inject(
        self,
        group: Group | str,
        kind: FaultKind | str,
        times: int | None = 1,
        *,
        seconds: float = DEFAULT_TIMEOUT_SECONDS,
        process: bool = True,
        retry_after: int = THROTTLE_RETRY_AFTER_SECONDS,
        grant_type: str | None = None,
    ) -> Fault:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for until cleared")
        fault = Fault(FaultKind(kind), times, float(seconds), process, int(retry_after), grant_type)
        with self._lock:
            self._queues[Group(group)].append(fault)
        return fault

    def take(self, group: Group, grant_type: str | None = None) -> Fault | None:
        """The first queued fault matching this request, counted down by one use."""
        with self._lock:
            queue = self._queues[group]
            for index, fault in enumerate(queue):
                if not fault.matches(grant_type):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        del queue[index]
                return fault
        return None

    @property
    def include_hard_expiry(self) -> HardExpiryMode:
        with self._lock:
            return self._hard_expiry

    @include_hard_expiry.setter
    def include_hard_expiry(self, mode: HardExpiryMode | str | bool) -> None:
        if isinstance(mode, bool):
            mode = HardExpiryMode.ALWAYS if mode else HardExpiryMode.NEVER
        with self._lock:
            self._hard_expiry = HardExpiryMode(mode)

    def clear(self, group: Group | str | None = None) -> None:
        """Forget delays and queued faults (of one group, or all and the hard-expiry mode too)."""
        with self._lock:
            groups = list(Group) if group is None else [Group(group)]
            for each in groups:
                self._queues[each].clear()
                self._delays.pop(each, None)
            if group is None:
                self._hard_expiry = HardExpiryMode.HEADER

    def configure(self, spec: Mapping[str, Any]) -> None:
        """Apply one admin-API knob object; see the package docstring for its fields."""
        unknown = set(spec) - _SPEC_FIELDS
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "include_hard_expiry" in spec:
            self.include_hard_expiry = spec["include_hard_expiry"]
        if not {"delay", "latency", "fault"} & set(spec):
            return
        if "group" not in spec:
            raise ValueError(
                f"'group' is required with 'delay', 'latency' or 'fault': one of {[g.value for g in Group]}"
            )
        group = Group(spec["group"])
        if "delay" in spec and "latency" in spec:
            raise ValueError("give 'delay' (a constant) or 'latency' (a profile), not both")
        if "delay" in spec:
            self.set_delay(group, float(spec["delay"]))
        if "latency" in spec:
            self.set_latency(group, LatencyProfile.from_spec(spec["latency"]))
        if "fault" in spec:
            times = None if spec.get("until_cleared") else spec.get("times", 1)
            options = {key: spec[key] for key in ("seconds", "process", "retry_after", "grant_type") if key in spec}
            self.inject(group, spec["fault"], times, **options)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "delays": {
                    group.value: delay.as_dict() if isinstance(delay, LatencyProfile) else delay
                    for group, delay in self._delays.items()
                },
                "faults": {group.value: [f.as_dict() for f in queue] for group, queue in self._queues.items()},
                "include_hard_expiry": self._hard_expiry.value,
            }


_SPEC_FIELDS = frozenset(
    {
        "group",
        "delay",
        "latency",
        "fault",
        "times",
        "until_cleared",
        "seconds",
        "process",
        "retry_after",
        "grant_type",
        "include_hard_expiry",
    }
)
