"""The timing gate (``compare --gate-timing``): a timing verdict built to hold on shared
machines, for those who want one beside the counts.

One run against another cannot hold a 10 % regression: its samples come from one
process in one window of time, and the machine drifts between windows by more than
that (every A/A pair of the default run had cells "slower" by Mann-Whitney on raw
samples). So the unit here is the run: BASE and NEW are folders of result files from
runs made interleaved (base, new, base, new, ...: drift reaches both alike), each cell
is reduced to one median per run, and the test asks whether NEW's per-run medians sit
above BASE's by more than their spread between runs allows:

- Welch's t-test, one-sided, on the logarithms of the per-run medians (a ratio is a
  difference of logarithms; Mann-Whitney on five runs a side cannot reach a p below
  1/252, which no correction over many cells would accept);
- with an A/A history (``calibrate``; ``compare --history``) that holds at least
  ``MIN_RUNS`` runs of a cell, the cell's noise model is the history's too: its spread
  between runs is pooled with BASE's and NEW's (Student's t on every run's deviation
  from its own group's mean), so five runs a side gain the degrees of freedom of every
  run the history kept. This assumes the history was measured on a machine like this
  one; the output says how many cells used it;
- Holm's correction over every cell tested, so the chance of any false alarm in an
  A/A pair is at most ``alpha``, not ``alpha`` per cell;
- a cell is slower when its adjusted p is below ``alpha`` and NEW's median is at least
  ``REPORTED_EFFECT`` above BASE's (a real but tiny change is not worth a red build);
- no verdict at all when any run was measured on a busy machine (a load average above
  its CPUs, or more than ``MAX_STEAL`` of its CPU time stolen): the reason is given.

What it can detect is stated with each verdict: the slowdown found with 80 % power at
these runs per side and this machine's spread between runs (the median over cells), and
how many runs per side a 10 % slowdown would need. Holm's correction is five lines here
rather than a dependency (statsmodels) for one function.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqla_bench.results.files import CellRecord
from sqla_bench.results.history import History
from sqla_bench.results.stats import summarize

MIN_RUNS = 3  # per side: fewer, and a spread between runs cannot be estimated
REPORTED_EFFECT = 0.03  # smaller slowdowns are not failed, however significant
MAX_STEAL = 0.10
POWER = 0.80
TARGET_EFFECT = 0.10  # the slowdown the "runs needed" figure is for
MAX_RUNS_SUGGESTED = 100

Run = tuple[dict[str, Any], list[CellRecord]]


@dataclass(frozen=True)
class TimedCell:
    name: str
    base_medians: tuple[float, ...]
    new_medians: tuple[float, ...]
    ratio: float  # geometric mean of NEW's per-run medians over BASE's
    p: float  # one-sided, NEW slower
    p_adjusted: float = 1.0  # Holm
    verdict: str = "unchanged"  # or "slower"
    history_runs: int = 0  # runs of the A/A history pooled into its noise model


@dataclass
class TimingVerdict:
    cells: list[TimedCell]
    base_runs: int
    new_runs: int
    alpha: float
    busy: list[str] = field(default_factory=list)  # why there is no verdict
    noise: float | None = None  # median over cells of the sd of log(per-run median)

    @property
    def history_runs(self) -> int:
        """The runs of the A/A history the median cell pooled (0: none used)."""
        return int(statistics.median(c.history_runs for c in self.cells)) if self.cells else 0

    @property
    def from_history(self) -> int:
        return sum(1 for cell in self.cells if cell.history_runs)

    @property
    def judged(self) -> bool:
        return not self.busy

    @property
    def slower(self) -> list[TimedCell]:
        return [cell for cell in self.cells if cell.verdict == "slower"] if self.judged else []

    def detectable(self) -> float | None:
        """The slowdown found with 80 % power at these runs and this noise."""
        if self.noise is None or not self.cells:
            return None
        return math.exp(self._detectable_log(self.base_runs)) - 1

    def runs_needed(self, effect: float = TARGET_EFFECT) -> int | None:
        """Runs per side for ``effect`` to be found with 80 % power (None: more than
        ``MAX_RUNS_SUGGESTED``, or no noise known)."""
        if self.noise is None or not self.cells:
            return None
        for runs in range(MIN_RUNS, MAX_RUNS_SUGGESTED + 1):
            if self._detectable_log(runs) <= math.log1p(effect):
                return runs
        return None

    def _detectable_log(self, runs: int) -> float:
        """The log-ratio a one-sided test on ``runs`` a side finds with 80 % power at
        Holm's strictest step (alpha / tests), for per-run medians with this sd, with
        the history's runs adding to the degrees of freedom where it was used."""
        from scipy.stats import t

        assert self.noise is not None
        freedom = 2 * runs - 2 + max(self.history_runs - 1, 0)
        quantiles = t.ppf(1 - self.alpha / len(self.cells), freedom) + t.ppf(POWER, freedom)
        return quantiles * self.noise * math.sqrt(2 / runs)

    def summary(self) -> str:
        test = "Welch t"
        if self.from_history:
            test = (
                f"t with the A/A history's spread pooled in {self.from_history} of "
                f"{len(self.cells)} cells (median {self.history_runs} runs), Welch t in the rest"
                if self.from_history < len(self.cells)
                else f"t with the A/A history's spread pooled (median {self.history_runs} runs)"
            )
        shown = (
            f"{len(self.cells)} cells, {self.base_runs} base and {self.new_runs} new runs, "
            f"{test} on per-run medians, Holm at alpha {self.alpha:g}"
        )
        detect, needed = self.detectable(), self.runs_needed()
        if detect is not None:
            shown += (
                f"; runs differ by {self.noise:.1%} (median sd between runs): a slowdown of "
                f"{detect:.0%} is found with 80 % power, "
                + (
                    f"{TARGET_EFFECT:.0%} needs {needed} runs a side"
                    if needed
                    else f"{TARGET_EFFECT:.0%} needs more than {MAX_RUNS_SUGGESTED} runs a side"
                )
            )
        if not self.judged:
            first = self.busy[0] + (
                f", and {len(self.busy) - 1} more" if len(self.busy) > 1 else ""
            )
            return f"timing gate: NO VERDICT ({first}); {shown}"
        names = ", ".join(f"{c.name} x{c.ratio:.3f}" for c in self.slower)
        head = f"SLOWER: {names}" if names else "no slowdown"
        return f"timing gate: {head} ({shown})"


def _verdict(ratio: float, p_adjusted: float, alpha: float) -> str:
    return "slower" if p_adjusted < alpha and ratio >= 1 + REPORTED_EFFECT else "unchanged"


def per_run_medians(runs: Sequence[Run]) -> dict[tuple, tuple[CellRecord, list[float]]]:
    """Each cell (as its first run has it) and its median in every run that timed it."""
    medians: dict[tuple, tuple[CellRecord, list[float]]] = {}
    for _, cells in runs:
        for cell in cells:
            summary = summarize(cell.samples_ns)
            if summary is not None and cell.outcome == "ok":
                medians.setdefault(cell.key, (cell, []))[1].append(summary.median_ns)
    return medians


def busy_runs(runs: Sequence[Run], side: str) -> list[str]:
    """Why a run's timings cannot be trusted, one line per busy run."""
    found = []
    for header, _ in runs:
        for target, facts in header["targets"].items():
            machine = facts.get("machine") or {}
            load, steal = max(machine.get("load_average") or [0.0]), machine.get("steal") or 0.0
            if machine.get("busy") or steal > MAX_STEAL:
                found.append(
                    f"the {side} run started {header['run']['started']} was measured on a busy "
                    f"machine ({target}: load {load:g} on {machine.get('cpus')} CPUs, "
                    f"steal {steal:.0%})"
                )
    return found


def _history_logs(history: History | None, cell: CellRecord) -> list[float]:
    """The logarithms of the cell's per-run medians in the history (none below
    ``MIN_RUNS``: too few to say how far runs stray)."""
    spread = history.spread(cell, "median_ns") if history is not None else None
    if spread is None or spread.runs < MIN_RUNS:
        return []
    return [math.log(value) for value in spread.values]


def _one_sided(
    logs_base: list[float], logs_new: list[float], logs_history: list[float]
) -> tuple[float, float]:
    """The spread between runs (sd of log medians) and the one-sided p that NEW is
    slower: Welch's t on BASE and NEW alone, or, with the history's runs, Student's t
    with every group's deviations from its own mean pooled into one variance."""
    from scipy.stats import t, ttest_ind

    if not logs_history:
        spread = math.sqrt((statistics.variance(logs_base) + statistics.variance(logs_new)) / 2)
        result = ttest_ind(logs_new, logs_base, equal_var=False, alternative="greater")
        return spread, 1.0 if math.isnan(result.pvalue) else float(result.pvalue)
    groups = (logs_base, logs_new, logs_history)
    squares = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups)
    freedom = sum(len(g) - 1 for g in groups)
    spread = math.sqrt(squares / freedom)
    error = spread * math.sqrt(1 / len(logs_base) + 1 / len(logs_new))
    difference = statistics.fmean(logs_new) - statistics.fmean(logs_base)
    if error == 0:
        return spread, 0.0 if difference > 0 else 1.0
    return spread, float(t.sf(difference / error, freedom))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment, in the order given."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def gate_timing(
    base: Sequence[Run], new: Sequence[Run], alpha: float, history: History | None = None
) -> TimingVerdict:
    """The timing verdict on every cell both sides timed in at least ``MIN_RUNS`` runs;
    with ``history``, each cell it has enough runs of pools their spread in."""
    from sqla_bench.results.files import cell_name

    before, after = per_run_medians(base), per_run_medians(new)
    tested, spreads = [], []
    for key, (cell, base_medians) in before.items():
        new_medians = after.get(key, (cell, []))[1]
        if min(len(base_medians), len(new_medians)) < MIN_RUNS:
            continue
        logs_base = [math.log(m) for m in base_medians]
        logs_new = [math.log(m) for m in new_medians]
        logs_history = _history_logs(history, cell)
        spread, p = _one_sided(logs_base, logs_new, logs_history)
        spreads.append(spread)
        ratio = math.exp(statistics.fmean(logs_new) - statistics.fmean(logs_base))
        tested.append(
            TimedCell(
                cell_name(cell),
                tuple(base_medians),
                tuple(new_medians),
                ratio,
                p,
                history_runs=len(logs_history),
            )
        )
    adjusted = holm([cell.p for cell in tested])
    cells = [
        replace(cell, p_adjusted=p_adjusted, verdict=_verdict(cell.ratio, p_adjusted, alpha))
        for cell, p_adjusted in zip(tested, adjusted, strict=True)
    ]
    return TimingVerdict(
        cells=sorted(cells, key=lambda c: c.p),
        base_runs=min((len(c.base_medians) for c in cells), default=0),
        new_runs=min((len(c.new_medians) for c in cells), default=0),
        alpha=alpha,
        busy=busy_runs(base, "base") + busy_runs(new, "new"),
        noise=statistics.median(spreads) if spreads else None,
    )
