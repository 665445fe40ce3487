"""The regression gate: two runs, cell by cell.

What is counted decides: outcome, statements, round trips, rows returned and rows
fetched per operation must match exactly (any change is a regression, whichever way it
goes, because a scenario that issues one statement more is a different scenario), and
Python function calls and instructions (``run --instructions``) per operation may grow
by no more than their tolerances (a psycopg wait loop may poll once more, an event loop
may run once more for rows that came in one more read; instructions move with where
Python's allocator puts things); as many fewer is reported. These counts are the same,
or nearly, from run to run whatever the machine is doing, so a change in them is a
change in the code. Instructions see what function calls do not: a slower loop inside
one function.

Timings only advise. Two runs of the same code on a shared machine differ by a fifth
and more (issue 29: every A/A pair of the default run had cells "slower"), so a timing
verdict from one run against another cannot hold a 10 % regression without failing
every clean pair. A cell is reported slower when a one-sided Mann-Whitney U test on the
raw samples says so (p < alpha) and the medians differ by at least the minimum effect;
faster the other way round. Cells that only one run has are listed, never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqla_bench.base.errors import ConfigError
from sqla_bench.results.files import CellRecord, read_result, run_status
from sqla_bench.results.history import History
from sqla_bench.results.stats import summarize

DEFAULT_MIN_EFFECT = 0.10
# Repeated runs here differed by at most 0.4 % (25 calls in 6,600: asyncpg's rows came in
# one more read); the upgrade from SQLAlchemy 2.0.58 to 2.1.9 moved most cells by 2 to 26 %.
DEFAULT_CALLS_TOLERANCE = 0.02
# With the type cache's misses left out (callgrind.read_window), three memory layouts
# of the same code counted every crud and baseline cell within 0.32 % here.
DEFAULT_INSTRUCTIONS_TOLERANCE = 0.01
DEFAULT_ALPHA = 0.05
MIN_SAMPLES = 5  # fewer, and no test can tell anything: the cell is "not timed"
EXACT = ("outcome", "error", "statements", "round_trips", "rows", "rows_fetched")
# Counts held within a tolerance (``Gate.tolerance``); a run that did not count one (no
# --instructions) is not compared on it.
TOLERATED = ("calls", "instructions")
# Measured from schema version 2 on (rows fetched), or with --latency only (round trips):
# a run that did not measure it is not compared on it.
NEWER = ("rows_fetched", "round_trips")
# Run facts that make timings from two runs hard to compare when they differ.
ENVIRONMENT_FACTS = ("python", "implementation", "sqlalchemy", "greenlet", "drivers")
MACHINE_FACTS = ("cpus", "affinity", "platform", "architecture")


@dataclass(frozen=True)
class Gate:
    """How sure, and how large, a timing change must be to count."""

    min_effect: float = DEFAULT_MIN_EFFECT  # 0.10: the median 10 % slower (or faster)
    alpha: float = DEFAULT_ALPHA
    calls_tolerance: float = DEFAULT_CALLS_TOLERANCE  # 0.02: 2 % more calls regress
    instructions_tolerance: float = DEFAULT_INSTRUCTIONS_TOLERANCE
    # False: calls and instructions that differ are reported, never a regression (the
    # libraries differ, say)
    hold_calls: bool = True
    # Per-cell tolerances from an A/A history (compare --history); None: the figures above.
    history: History | None = field(default=None, compare=False)
    # The history may widen a tolerance, never narrow it (the committed baselines' own
    # history: a few runs on one machine must not make every other machine's gate tighter).
    history_widens_only: bool = False

    def __post_init__(self) -> None:
        if not (self.min_effect > 0 and math.isfinite(self.min_effect)):
            raise ConfigError(f"--min-effect must be above 0, not {self.min_effect}")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"--alpha must be between 0 and 1, not {self.alpha}")
        for option, tolerance in (
            ("--calls-tolerance", self.calls_tolerance),
            ("--instructions-tolerance", self.instructions_tolerance),
        ):
            if not 0 <= tolerance <= 10:
                raise ConfigError(f"{option} must be from 0 to 10 (1,000 %), not {tolerance}")

    def tolerance(self, metric: str, cell: CellRecord | None = None) -> tuple[float, str]:
        """How far ``metric`` (one of ``TOLERATED``) may move in ``cell`` before it
        counts, and where that figure comes from (empty: the option's)."""
        default = self.calls_tolerance if metric == "calls" else self.instructions_tolerance
        if self.history is None or cell is None:
            return default, ""
        tolerance, source = self.history.tolerance(cell, metric, default)
        if self.history_widens_only and tolerance <= default:
            return default, ""
        return tolerance, source


@dataclass(frozen=True)
class CellChange:
    """One cell present in both runs."""

    base: CellRecord
    new: CellRecord
    changed: tuple[str, ...]  # "statements 1 -> 2", one per deterministic metric
    noted: tuple[str, ...]  # changes that do not regress: fewer calls, say
    ratio: float | None  # new median / base median; None when either is not timed
    p_slower: float | None  # one-sided p-values of the Mann-Whitney U test
    p_faster: float | None
    verdict: str  # "changed", "slower", "faster", "unchanged" or "not timed"

    @property
    def regressed(self) -> bool:
        """A counted change: the gate fails on it. A timing verdict only advises."""
        return self.verdict == "changed"


@dataclass
class Comparison:
    cells: list[CellChange]
    only_in_base: list[CellRecord]
    only_in_new: list[CellRecord]
    warnings: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        """Whether a count changed: what fails the gate."""
        return any(cell.regressed for cell in self.cells)

    def geometric_mean_ratio(self) -> float | None:
        """New over base, over every cell timed in both runs."""
        return geometric_mean([cell.ratio for cell in self.cells if cell.ratio])

    def count_ratio(self, metric: str = "calls") -> float | None:
        """New over base function calls (or another of ``TOLERATED``), as a geometric
        mean over every cell both runs counted."""
        pairs = [(getattr(c.base, metric), getattr(c.new, metric)) for c in self.cells]
        return geometric_mean([new / base for base, new in pairs if base and new])

    def counts(self) -> dict[str, int]:
        verdicts = ("changed", "slower", "faster", "unchanged", "not timed")
        return {verdict: sum(c.verdict == verdict for c in self.cells) for verdict in verdicts}


def geometric_mean(ratios: Sequence[float]) -> float | None:
    if not ratios:
        return None
    return math.exp(sum(math.log(ratio) for ratio in ratios) / len(ratios))


def load_runs(path: Path) -> list[tuple[dict[str, Any], list[CellRecord]]]:
    """Each run in a result file, or in every result file of a folder, oldest first."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise ConfigError(f"{path} holds no result file (*.json)")
    elif path.exists():
        files = [path]
    else:
        raise ConfigError(f"{path} does not exist")
    return sorted((read_result(file) for file in files), key=lambda run: run[0]["run"]["started"])


def load_run(path: Path) -> tuple[list[dict[str, Any]], list[CellRecord]]:
    """The headers and cells of a result file, or of every result file in a folder (a
    cell measured in several keeps the one from the run that started last)."""
    return merged(load_runs(path))


def merged(
    runs: Sequence[tuple[dict[str, Any], list[CellRecord]]],
) -> tuple[list[dict[str, Any]], list[CellRecord]]:
    """Every run's header, and each cell from the newest run that measured it."""
    cells = {cell.key: cell for _, run_cells in runs for cell in run_cells}
    return [header for header, _ in runs], list(cells.values())


def compare(
    base: tuple[list[dict], list[CellRecord]],
    new: tuple[list[dict], list[CellRecord]],
    gate: Gate = Gate(),
) -> Comparison:
    """Every cell of ``new`` against the same cell of ``base``."""
    base_cells = {cell.key: cell for cell in base[1]}
    new_cells = {cell.key: cell for cell in new[1]}
    return Comparison(
        cells=[
            compare_cell(base_cells[key], cell, gate)
            for key, cell in new_cells.items()
            if key in base_cells
        ],
        only_in_base=[cell for key, cell in base_cells.items() if key not in new_cells],
        only_in_new=[cell for key, cell in new_cells.items() if key not in base_cells],
        warnings=differences(base[0], new[0])
        + unfinished(base[0], "base")
        + unfinished(new[0], "new")
        + proxied_at_zero(base[1], "base")
        + proxied_at_zero(new[1], "new")
        + counted_in_one(base[1], new[1]),
    )


def counted_in_one(base: Sequence[CellRecord], new: Sequence[CellRecord]) -> list[str]:
    """One line when only one run counted instructions: they are not compared."""
    counted = [
        side for side, cells in (("base", base), ("new", new)) if any(c.instructions for c in cells)
    ]
    if len(counted) != 1:
        return []
    return [
        f"only the {counted[0]} run counted instructions (run --instructions): they are not "
        "compared; count them in both runs to hold them"
    ]


def proxied_at_zero(cells: Sequence[CellRecord], side: str) -> list[str]:
    """Cells at 0 ms timed through the latency proxy (result files before schema 4),
    which are never compared with cells timed straight to the server: one line."""
    proxied = sum(cell.latency_ms == 0 and bool(cell.timed_through_proxy) for cell in cells)
    if not proxied:
        return []
    return [
        f"{proxied} cells of the {side} run at 0 ms were timed through the latency proxy "
        "(files before schema 4, which added its own hops, about 50 us a round trip here): "
        "they are compared only with cells timed the same way, not with 0 ms cells of "
        "today's runs, which are timed straight to the server"
    ]


def unfinished(headers: Sequence[dict], side: str) -> list[str]:
    """A run that did not complete, one line each: its cells are only what finished."""
    return [
        f"the {side} run started {header['run']['started']} is {run_status(header)}: "
        "its cells are what finished"
        for header in headers
        if header["run"]["status"] != "complete"
    ]


def exact_changes(base: CellRecord, new: CellRecord) -> tuple[str, ...]:
    """The counted metrics that must match and do not (a metric one run did not
    measure is not compared)."""
    return tuple(
        name
        for name in EXACT
        if getattr(base, name) != getattr(new, name)
        and not (name in NEWER and None in (getattr(base, name), getattr(new, name)))
    )


def sql_change(base: CellRecord, new: CellRecord) -> tuple[list[dict], list[dict]]:
    """The SQL NEW ran more often than BASE, and less often, as texts with how many more
    or fewer times (empty when either run kept no SQL, results older than schema 7)."""
    if base.sql is None or new.sql is None:
        return [], []
    was = {statement["text"]: statement["count"] for statement in base.sql}
    now = {statement["text"]: statement["count"] for statement in new.sql}
    added = [
        {"text": text, "count": count - was.get(text, 0)}
        for text, count in now.items()
        if count > was.get(text, 0)
    ]
    removed = [
        {"text": text, "count": count - now.get(text, 0)}
        for text, count in was.items()
        if count > now.get(text, 0)
    ]
    return added, removed


def _sql_lines(base: CellRecord, new: CellRecord) -> tuple[str, ...]:
    added, removed = sql_change(base, new)
    return tuple(
        f"SQL {verb}: {statement['count']} x {_shortened(statement['text'])}"
        for verb, statements in (("added", added), ("removed", removed))
        for statement in statements
    )


def _shortened(text: str, most: int = 120) -> str:
    return text if len(text) <= most else text[: most - 3] + "..."


def compare_cell(base: CellRecord, new: CellRecord, gate: Gate) -> CellChange:
    exact = exact_changes(base, new)
    changed = tuple(f"{name} {getattr(base, name)} -> {getattr(new, name)}" for name in exact)
    if "statements" in exact:
        changed += _sql_lines(base, new)
    noted: tuple[str, ...] = ()
    for metric in TOLERATED:
        said, grew = tolerated_change(metric, base, new, *gate.tolerance(metric, new))
        if grew and gate.hold_calls:
            changed += (said,)
        elif said:
            noted += (said,)
    ratio = p_slower = p_faster = None
    timed = len(base.samples_ns) >= MIN_SAMPLES and len(new.samples_ns) >= MIN_SAMPLES
    if timed:
        from scipy.stats import mannwhitneyu  # a second to import: only when a test is due

        ratio = summarize(new.samples_ns).median_ns / summarize(base.samples_ns).median_ns
        p_slower = mannwhitneyu(new.samples_ns, base.samples_ns, alternative="greater").pvalue
        p_faster = mannwhitneyu(new.samples_ns, base.samples_ns, alternative="less").pvalue
    if changed:
        verdict = "changed"
    elif not timed:
        verdict = "not timed"
    elif p_slower < gate.alpha and ratio >= 1 + gate.min_effect:
        verdict = "slower"
    elif p_faster < gate.alpha and ratio <= 1 / (1 + gate.min_effect):
        verdict = "faster"
    else:
        verdict = "unchanged"
    return CellChange(base, new, changed, noted, ratio, p_slower, p_faster, verdict)


def tolerated_change(
    metric: str, base: CellRecord, new: CellRecord, tolerance: float, source: str = ""
) -> tuple[str, bool]:
    """``metric``'s change (one of ``TOLERATED``) in words when it is beyond ``tolerance``
    either way (empty when within it, or when either run did not count it), and whether
    it grew; ``source`` says where the tolerance came from, when not the option."""
    was, now = getattr(base, metric), getattr(new, metric)
    if was is None or now is None or abs(now - was) <= tolerance * was:
        return "", False
    share = f"{(now - was) / was:+.2%}" if was else "from none"
    rule = f"tolerance {tolerance * 100:.3g}%" + (f", {source}" if source else "")
    return f"{metric} {was:,} -> {now:,} ({share}, {rule})", now > was


def differences(
    base: Sequence[dict], new: Sequence[dict], only: Sequence[str] | None = None
) -> list[str]:
    """What differs between the runs' libraries, machines and servers (or only the facts
    named), one line each."""
    before, after = [_facts(h) for h in base], [_facts(h) for h in new]
    warnings = []
    for name in only or before[0]:
        was, now = _distinct(f[name] for f in before), _distinct(f[name] for f in after)
        if was != now:
            warnings.append(f"{name} differ: {_show(was)} (base) vs {_show(now)} (new)")
    return warnings


def _facts(header: dict) -> dict[str, Any]:
    """The facts of a run that make its timings comparable with another's."""
    environment = header["environment"]
    facts = {fact: environment.get(fact) for fact in ENVIRONMENT_FACTS}
    facts |= {f"machine {fact}": environment["machine"].get(fact) for fact in MACHINE_FACTS}
    facts["servers"] = {
        name: (target.get("server_version"), target.get("container", {}).get("image"))
        for name, target in header["targets"].items()
    }
    return facts


def _distinct(values: Iterable) -> list:
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _show(values: list) -> str:
    return " / ".join(str(value) for value in values)
