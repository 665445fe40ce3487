"""Summaries of raw samples, computed when a result is read, never while measuring."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True)
class Summary:
    """Order statistics of one cell's samples, in nanoseconds."""

    samples: int
    median_ns: float
    p95_ns: float
    mean_ns: float
    stdev_ns: float
    min_ns: int

    @property
    def ops_per_second(self) -> float:
        """Operations per second at the median time: robust to the rare long sample (a
        garbage collection, a scheduler hiccup) that would dominate a mean of few samples."""
        return NS_PER_SECOND / self.median_ns if self.median_ns else float("inf")


def summarize(samples_ns: Sequence[int]) -> Summary | None:
    """The summary of ``samples_ns``, or None when there are none (a cell that raised)."""
    if not samples_ns:
        return None
    return Summary(
        samples=len(samples_ns),
        median_ns=statistics.median(samples_ns),
        p95_ns=percentile(samples_ns, 95),
        mean_ns=statistics.fmean(samples_ns),
        stdev_ns=statistics.stdev(samples_ns) if len(samples_ns) > 1 else 0.0,
        min_ns=min(samples_ns),
    )


def percentile(samples: Sequence[float], percent: int) -> float:
    """The ``percent``-th percentile, interpolated between the samples around it."""
    if len(samples) == 1:
        return float(samples[0])
    return statistics.quantiles(samples, n=100, method="inclusive")[percent - 1]


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Standard deviation over mean, e.g. of one cell's medians over repeated runs."""
    return statistics.stdev(values) / statistics.fmean(values)
