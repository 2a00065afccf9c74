"""The one way the benchmarks read a percentile from their samples: nearest rank, on sorted samples."""

from __future__ import annotations

from collections.abc import Iterable


def percentile(samples: Iterable[float], share: float) -> float:
    """The sample at `share` (0.5 the median, 0.99 the 99th percentile) of the sorted samples; 0.0 when none."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0
