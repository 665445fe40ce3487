"""Summaries of raw samples, computed when a result is read; while measuring, only the
sampling policy reads them (between blocks, outside the clock: ``ratio``), to decide
whether the cells it compares are known precisely enough."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

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


# --- side by side: ratios within blocks ------------------------------------------------

# The confidence of every ratio interval the suite states, and the fewest blocks a
# comparison names a winner from (the sampling policy's default takes as many).
CONFIDENCE = 0.95
MIN_BLOCKS = 8
# The fewest blocks a ratio's interval is drawn from at all.
MIN_PAIRED = 5


@dataclass(frozen=True)
class Ratio:
    """How many times slower one cell was than another measured beside it, from the
    ratio of their medians in each block they shared: the Hodges-Lehmann estimate of the
    logarithms' centre with its ``CONFIDENCE`` interval (from the Wilcoxon signed-rank
    distribution), brought back to a ratio. It takes no distribution for granted, and
    one disturbed block moves it little: a scheduler stall of 60 ms in one block made a
    t interval four times wider than the rest of the blocks warranted."""

    estimate: float
    low: float
    high: float
    blocks: int  # the blocks both cells were sampled in

    @property
    def half_width(self) -> float:
        """The interval's relative half-width: 0.03 is "within ±3 %"."""
        return math.sqrt(self.high / self.low) - 1

    def inverse(self) -> Ratio:
        """The same comparison the other way round (the interval is symmetric in logs)."""
        return Ratio(1 / self.estimate, 1 / self.high, 1 / self.low, self.blocks)

    def excludes(self, effect: float) -> bool:
        """Whether the slower cell is slower by more than ``effect`` (0.02: 2 %) with the
        interval's confidence: its lower end is above 1 + ``effect``."""
        return self.low > 1 + effect


def block_medians(samples_ns: Sequence[int], blocks: Sequence[int]) -> list[float | None]:
    """The median of each block's samples, by block number (``blocks`` says how many
    samples each block took, in order; None for a block the cell took none in)."""
    medians: list[float | None] = []
    start = 0
    for size in blocks:
        chunk = samples_ns[start : start + size]
        medians.append(statistics.median(chunk) if chunk else None)
        start += size
    return medians


def ratio(slower: Sequence[float | None], faster: Sequence[float | None]) -> Ratio | None:
    """``slower``'s block medians over ``faster``'s, paired by block: None with fewer
    than ``MIN_PAIRED`` blocks in common (no interval can be drawn from so few)."""
    import numpy  # with scipy and matplotlib: imported where it is used

    logs = numpy.array(
        [
            math.log(a / b)
            for a, b in zip(slower, faster, strict=False)
            if a is not None and b is not None and a > 0 and b > 0
        ]
    )
    count = len(logs)
    if count < MIN_PAIRED:
        return None
    # The Walsh averages: the mean of every pair of blocks' logarithms, each with itself.
    rows, columns = numpy.triu_indices(count)
    walsh = numpy.sort((logs[rows] + logs[columns]) / 2)
    pairs = len(walsh)
    # The interval's ends are the Walsh averages at the signed-rank statistic's critical
    # values (its normal approximation, with a continuity correction).
    spread = math.sqrt(count * (count + 1) * (2 * count + 1) / 24)
    below = max(0, math.floor(pairs / 2 - _z(CONFIDENCE) * spread - 0.5))
    centre = float(numpy.median(walsh))
    low, high = float(walsh[below]), float(walsh[pairs - 1 - below])
    return Ratio(math.exp(centre), math.exp(low), math.exp(high), count)


def geometric_mean(values: Sequence[float | None]) -> float | None:
    """The geometric mean of a cell's block medians: how its blocks are ranked."""
    kept = [value for value in values if value]
    return statistics.geometric_mean(kept) if kept else None


@cache
def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
