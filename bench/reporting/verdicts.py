"""A verdict per measured point (``verdict``): which loading strategy is fastest at one
dataset, latency, driver and mode, from the ratios of strategies measured side by side
in blocks, and whether that holds across passes. ``sqla_bench.reporting.guide`` says how
a verdict is reached and reads the verdicts along a dimension."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sqla_bench.results.files import CellRecord
from sqla_bench.results.stats import MIN_BLOCKS, Ratio, block_medians, geometric_mean, ratio
from sqla_bench.scenarios.registry import STRATEGY
from sqla_bench.scenarios.strategies import STRATEGIES, compared_strategies

# A winner's runner-up is slower by more than this at its interval's lower end: a 2 %
# difference is less than anyone picks a loading strategy for.
MIN_EFFECT = 0.02
# Reasons a verdict names no winner that are not noise, as the grid says them.
UNRESOLVED = ("unstable", "few blocks", "one after another")


@dataclass(frozen=True)
class Verdict:
    """One driver and mode at one point: the fastest strategy and how clearly."""

    best: str
    runner_up: str | None
    ratio: float | None  # the runner-up over the best, within blocks (or of medians)
    clear: bool  # the runner-up is slower beyond noise (or there is none)
    interval: tuple[float, float] | None = None  # the ratio's 95 % interval
    blocks: int = 0  # the blocks the ratio was drawn from, over every pass
    # Why no winner is named: "within noise", "unstable" (passes differ), "few blocks",
    # or "one after another" (not measured side by side); None when clear.
    why: str | None = None
    passes: int = 1
    agreed: bool = True  # every pass gave the same verdict

    def said(self) -> str:
        """The verdict as passes and runs are compared: the winner, or "≈"."""
        return self.best if self.clear else "≈"


@dataclass(frozen=True)
class Point:
    """One shape, target, dataset and latency, over the drivers measured there."""

    table: str
    label: str  # the shape's description
    target: str
    dataset: tuple[tuple[str, int], ...]
    latency: float | None
    limit: Any  # parents per load
    verdicts: dict[str, Verdict]  # by "driver mode"
    medians: dict[str, dict[str, float]]  # by "driver mode", then strategy: nanoseconds
    busy: bool = False  # some comparison ran while the load average was above the CPUs
    # By "driver mode", then strategy: its ratio to that driver's fastest within blocks
    # (every pass's); empty for cells measured one after another.
    ratios: dict[str, dict[str, Ratio]] = field(default_factory=dict)

    @property
    def leader(self) -> str:
        """The strategy fastest on most drivers (on a tie, the first in the
        catalogue)."""
        counts = Counter(verdict.best for verdict in self.verdicts.values())
        order = list(STRATEGIES)
        return max(counts, key=lambda name: (counts[name], -order.index(name)))

    @property
    def decided(self) -> bool:
        """The leader is ahead beyond noise on at least half of the drivers."""
        clear = sum(v.clear and v.best == self.leader for v in self.verdicts.values())
        return 2 * clear >= len(self.verdicts)

    @property
    def rival(self) -> str | None:
        """The strategy most often closest to the leader."""
        seconds = [
            v.runner_up if v.best == self.leader else v.best
            for v in self.verdicts.values()
            if v.runner_up is not None
        ]
        return Counter(seconds).most_common(1)[0][0] if seconds else None

    def tie(self) -> str:
        """The two an undecided point was between, in catalogue order: "joined ≈
        selectin"."""
        pair = [name for name in STRATEGIES if name in (self.leader, self.rival)]
        return " ≈ ".join(pair)

    def won(self) -> list[Verdict]:
        """The verdicts the leader won: clearly, when the point is decided."""
        return [
            v
            for v in self.verdicts.values()
            if v.best == self.leader and (v.clear or not self.decided)
        ]

    def factor(self) -> float | None:
        """How much slower the next strategy was, median over the drivers the leader
        won."""
        ratios = [v.ratio for v in self.won() if v.ratio]
        return statistics.median(ratios) if ratios else None

    def say(self) -> str:
        """The verdict in a few words: "joined", "joined (3 of 4)", "≈ joined,
        selectin"."""
        if not self.decided:
            tie = f"≈ {self.tie().replace(' ≈ ', ', ')}" if self.rival else self.leader
            why = {v.why for v in self.verdicts.values()}
            # Why no winner, when it is not plain noise: the reader should not trust a
            # tie the measurement could not have resolved.
            said = next((reason for reason in UNRESOLVED if reason in why), None)
            return f"{tie} ({said})" if said else tie
        won = len(self.won())
        return (
            self.leader
            if won == len(self.verdicts)
            else f"{self.leader} ({won} of {len(self.verdicts)})"
        )

    def dimension(self, name: str) -> int:
        return dict(self.dataset).get(name)

    def interval(self) -> tuple[float, float] | None:
        """What ``factor`` summarises, as the span of those drivers' 95 % intervals."""
        spans = [v.interval for v in self.won() if v.interval]
        return (min(low for low, _ in spans), max(high for _, high in spans)) if spans else None

    @property
    def unstable(self) -> bool:
        """Some driver's passes gave different verdicts."""
        return not all(v.agreed for v in self.verdicts.values())

    def relative(self, strategy: str) -> float | None:
        """The strategy's time over the fastest strategy's, per driver (within blocks;
        of medians for cells measured one after another); the median of that over the
        drivers that ran it (1.0: fastest everywhere)."""
        ratios = [
            self.ratios[driver][strategy].estimate
            if strategy in self.ratios.get(driver, {})
            else medians[strategy] / min(medians.values())
            for driver, medians in self.medians.items()
            if strategy in medians
        ]
        return statistics.median(ratios) if ratios else None

    def relative_interval(self, strategy: str) -> tuple[float, float] | None:
        """The span of the drivers' 95 % intervals of ``relative``."""
        found = [by[strategy] for by in self.ratios.values() if strategy in by]
        if not found:
            return None
        return min(r.low for r in found), max(r.high for r in found)


def points(cells: Iterable[CellRecord]) -> list[Point]:
    """Every point at which two or more compared strategies were timed on some
    driver."""
    compared = set(compared_strategies())
    grouped: dict[tuple, dict[str, dict[int, dict[str, CellRecord]]]] = {}
    labels: dict[str, str] = {}
    for cell in cells:
        strategy = cell.params.get(STRATEGY)
        if strategy not in compared or cell.load is not None or cell.outcome != "ok":
            continue
        if not cell.samples_ns:
            continue
        dataset = tuple(sorted(cell.dataset.items()))
        key = (cell.table, cell.target, dataset, cell.timed_latency, cell.params.get("limit"))
        by_driver = grouped.setdefault(key, {})
        by_pass = by_driver.setdefault(f"{cell.driver} {cell.mode}", {})
        by_pass.setdefault(cell.run_pass, {})[strategy] = cell
        labels[cell.table] = cell.label
    found = []
    for (table, target, dataset, latency, limit), by_driver in grouped.items():
        compared_here = {
            d: passes for d, passes in by_driver.items() if min(map(len, passes.values())) > 1
        }
        if not compared_here:
            continue
        verdicts = {d: verdict(passes) for d, passes in compared_here.items()}
        medians = {d: _medians(passes) for d, passes in compared_here.items()}
        busy = any(
            ((cell.comparison or {}).get("machine") or {}).get("busy", False)
            for passes in compared_here.values()
            for by_strategy in passes.values()
            for cell in by_strategy.values()
        )
        ratios = {d: _ratios_to(verdicts[d].best, passes) for d, passes in compared_here.items()}
        where = (table, labels[table], target, dataset, latency, limit)
        found.append(Point(*where, verdicts, medians, busy, ratios))
    return found


def _ratios_to(best: str, passes: dict[int, dict[str, CellRecord]]) -> dict[str, Ratio]:
    """Each strategy's ratio to ``best`` within every pass's blocks (itself: exactly
    1)."""
    blocks = _pooled_blocks(passes)
    if blocks is None or best not in blocks:
        return {}
    found = {name: ratio(values, blocks[best]) for name, values in blocks.items()}
    found[best] = Ratio(1.0, 1.0, 1.0, len(blocks[best]))
    return {name: value for name, value in found.items() if value is not None}


def _medians(passes: dict[int, dict[str, CellRecord]]) -> dict[str, float]:
    """Each strategy's median over every pass's samples."""
    samples: dict[str, list[int]] = {}
    for by_strategy in passes.values():
        for name, cell in by_strategy.items():
            samples.setdefault(name, []).extend(cell.samples_ns)
    return {name: statistics.median(values) for name, values in samples.items()}


def verdict(passes: dict[int, dict[str, CellRecord]]) -> Verdict:
    """The verdict over every pass: each pass's, when there is one; else the one drawn
    from every pass's blocks together, a winner only when every pass named it."""
    each = [_verdict_in(by_strategy) for _, by_strategy in sorted(passes.items())]
    if len(each) == 1:
        return each[0]
    pooled = _verdict_in_blocks(_pooled_blocks(passes))
    agreed = len({v.said() for v in each}) == 1
    if pooled is None:  # some pass was not measured side by side
        return replace(each[0], clear=False, why="one after another", passes=len(each))
    if not agreed:
        return replace(pooled, clear=False, why="unstable", passes=len(each), agreed=False)
    clear = each[0].clear and pooled.best == each[0].best
    why = None if clear else pooled.why or each[0].why or "within noise"
    return replace(pooled, clear=clear, why=why, passes=len(each))


def _verdict_in(by_strategy: dict[str, CellRecord]) -> Verdict:
    """One pass: from the blocks its strategies shared, when they were measured side by
    side; else (older result files) the ratio of medians, naming no winner."""
    blocks = _blocks_of(by_strategy)
    found = _verdict_in_blocks(blocks) if blocks is not None else None
    if found is not None:
        return found
    medians = {name: statistics.median(cell.samples_ns) for name, cell in by_strategy.items()}
    ranked = sorted(medians, key=medians.get)
    best, second = ranked[0], ranked[1]
    return Verdict(best, second, medians[second] / medians[best], False, why="one after another")


def _blocks_of(by_strategy: dict[str, CellRecord]) -> dict[str, list[float | None]] | None:
    """Each strategy's block medians, when all were measured in one comparison."""
    groups = {(cell.comparison or {}).get("group") for cell in by_strategy.values()}
    if None in groups or len(groups) != 1:
        return None
    return {name: block_medians(cell.samples_ns, cell.blocks) for name, cell in by_strategy.items()}


def _pooled_blocks(
    passes: dict[int, dict[str, CellRecord]],
) -> dict[str, list[float | None]] | None:
    """Every pass's blocks one after another, each strategy's padded to its pass's
    blocks so that block numbers stay paired; None when a pass has no blocks."""
    pooled: dict[str, list[float | None]] = {}
    for _, by_strategy in sorted(passes.items()):
        blocks = _blocks_of(by_strategy)
        if blocks is None:
            return None
        length = max(map(len, blocks.values()))
        for name in {*pooled, *blocks}:
            mine = blocks.get(name, [])
            pooled.setdefault(name, []).extend(mine + [None] * (length - len(mine)))
    return pooled


def _verdict_in_blocks(blocks: dict[str, list[float | None]] | None) -> Verdict | None:
    """The fastest by its block medians' geometric mean, and the next one's ratio to it
    in the blocks they shared."""
    if blocks is None:
        return None
    means = {name: geometric_mean(values) for name, values in blocks.items()}
    ranked = sorted((name for name in means if means[name]), key=means.get)
    if len(ranked) < 2:
        return None
    best, second = ranked[0], ranked[1]
    found = ratio(blocks[second], blocks[best])
    if found is None:
        return Verdict(best, second, means[second] / means[best], False, why="few blocks")
    if found.estimate < 1:  # within blocks, the other way round (a few slow blocks)
        best, second, found = second, best, found.inverse()
    return _judged(best, second, found)


def _judged(best: str, second: str, found: Ratio) -> Verdict:
    interval = (found.low, found.high)
    if found.blocks < MIN_BLOCKS:
        why = "few blocks"
    else:
        why = None if found.excludes(MIN_EFFECT) else "within noise"
    return Verdict(best, second, found.estimate, why is None, interval, found.blocks, why)


def repeatability(all_points: Iterable[Point]) -> tuple[int, int]:
    """Of the per-driver verdicts measured in more than one pass, how many every pass
    gave alike, and how many there are."""
    judged = [v for point in all_points for v in point.verdicts.values() if v.passes > 1]
    return sum(v.agreed for v in judged), len(judged)
