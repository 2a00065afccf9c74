"""How long the emulator takes to answer: a constant, or a long-tailed profile like a real Intuit.

Intuit's answer times are not a constant. A profile draws each answer's delay from a lognormal
distribution (given by its median and 99th percentile, the two figures people quote) and sends a share
of answers into a slow tail far beyond it (an overloaded node, a retried backend call), drawn uniformly
between two bounds. The draws come from a seeded generator, so a benchmark run can be repeated.

    LatencyProfile.long_tail()   median 150 ms, p99 2 s, and 1 % of answers 10 to 30 s
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field, fields
from statistics import NormalDist
from typing import Any

_Z99 = NormalDist().inv_cdf(0.99)  # a lognormal's p99 is median * exp(sigma * z99)


@dataclass(frozen=True)
class LatencyProfile:
    median_seconds: float
    p99_seconds: float
    slow_share: float = 0.0
    slow_min_seconds: float = 10.0
    slow_max_seconds: float = 30.0
    seed: int | None = None
    _random: random.Random = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.median_seconds <= self.p99_seconds:
            raise ValueError("a latency profile needs 0 < median_seconds <= p99_seconds")
        if not 0 <= self.slow_share < 1:
            raise ValueError("slow_share is a fraction of answers: at least 0 and below 1")
        if not 0 <= self.slow_min_seconds <= self.slow_max_seconds:
            raise ValueError("the slow tail needs 0 <= slow_min_seconds <= slow_max_seconds")
        object.__setattr__(self, "_random", random.Random(self.seed))  # noqa: S311 - latency, not security
        object.__setattr__(self, "_lock", threading.Lock())

    @classmethod
    def long_tail(cls, seed: int | None = 7) -> LatencyProfile:
        return cls(median_seconds=0.15, p99_seconds=2.0, slow_share=0.01, seed=seed)

    @classmethod
    def from_spec(cls, spec: Any) -> LatencyProfile:
        """From the admin API: "long_tail", or an object with this class's fields."""
        if spec == "long_tail":
            return cls.long_tail()
        if not isinstance(spec, dict):
            raise ValueError('latency is "long_tail" or an object with median_seconds and p99_seconds')
        known = {"median_seconds", "p99_seconds", "slow_share", "slow_min_seconds", "slow_max_seconds", "seed"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown latency fields: {sorted(unknown)}; known: {sorted(known)}")
        try:
            numbers = {k: float(v) for k, v in spec.items() if k != "seed"}
            seed = spec.get("seed")
            return cls(**numbers, seed=int(seed) if seed is not None else None)  # type: ignore[arg-type]
        except TypeError as error:
            raise ValueError(f"latency fields must be numbers ({error})") from None

    @property
    def sigma(self) -> float:
        return math.log(self.p99_seconds / self.median_seconds) / _Z99

    def draw(self) -> float:
        with self._lock:
            if self.slow_share and self._random.random() < self.slow_share:
                return self._random.uniform(self.slow_min_seconds, self.slow_max_seconds)
            return self._random.lognormvariate(math.log(self.median_seconds), self.sigma)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}
