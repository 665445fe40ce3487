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

from sqla_bench.errors import ConfigError
from sqla_bench.history import History
from sqla_bench.results import CellRecord, params_text, read_result, run_status
from sqla_bench.stats import summarize
from sqla_bench.timing_gate import TimingVerdict

DEFAULT_MIN_EFFECT = 0.10
# Repeated runs here differed by at most 0.4 % (25 calls in 6,600: asyncpg's rows came in
# one more read); the upgrade from SQLAlchemy 2.0.58 to 2.1.9 moved most cells by 2 to 26 %.
DEFAULT_CALLS_TOLERANCE = 0.02
# With the type cache's misses left out (instructions.read_window), three memory layouts
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


def cell_name(cell: CellRecord) -> str:
    """A cell in one line: case, parameters, target+driver, mode and what it ran under."""
    parts = [cell.case, params_text(cell.params)] if cell.params else [cell.case]
    parts += [f"{cell.target}+{cell.driver}", cell.mode]
    if "users" in cell.dataset:
        parts += [f"users={cell.dataset['users']}", f"posts={cell.dataset['posts_per_user']}"]
    else:  # an application's models: generated data's dimensions, or none
        parts += [f"{name}={value}" for name, value in cell.dataset.items()]
    if cell.latency_ms is not None:
        parts.append(f"rtt={cell.latency_ms:g}ms")
    if cell.pgbouncer is not None:
        parts.append(f"pgbouncer={cell.pgbouncer}")
    if cell.concurrency is not None:
        parts.append(f"workers={cell.concurrency}")
    if cell.processes is not None:
        parts.append(f"processes={cell.processes}")
    for name, value in (cell.pool or {}).items():
        parts.append(f"{name}={value}")
    return " ".join(parts)


# --- output --------------------------------------------------------------------------------

VERDICT_ORDER = ("changed", "slower", "faster", "not timed", "unchanged")
COLUMNS = ("verdict", "cell", "base median", "new median", "new/base", "p", "what changed")
# The version of compare --format json's document (compare.schema.json): 2 gave numbers
# their own fields and units, where 1 gave the table's display strings; 3 adds
# instructions.
JSON_VERSION = 4
JSON_SCHEMA_PATH = Path(__file__).with_name("compare.schema.json")


def ordered(comparison: Comparison) -> list[CellChange]:
    """The cells in both runs, counted changes first, then timing advice."""
    return sorted(comparison.cells, key=lambda c: VERDICT_ORDER.index(c.verdict))


def rows(comparison: Comparison) -> list[dict[str, str]]:
    """One row per cell in both runs, in ``ordered``'s order."""
    return [_row(cell) for cell in ordered(comparison)]


def _row(cell: CellChange) -> dict[str, str]:
    timed = cell.ratio is not None
    p = cell.p_slower if timed and cell.ratio >= 1 else cell.p_faster
    return {
        "verdict": cell.verdict,
        "cell": cell_name(cell.new),
        "base median": _median(cell.base),
        "new median": _median(cell.new),
        "new/base": f"{cell.ratio:.3f}" if timed else "-",
        "p": f"{p:.2g}" if timed else "-",
        "what changed": "; ".join(cell.changed + cell.noted),
    }


def _median(cell: CellRecord) -> str:
    from sqla_bench.report import duration

    return duration(summarize(cell.samples_ns).median_ns) if cell.samples_ns else "-"


def summary_line(comparison: Comparison, gate: Gate) -> str:
    counts = ", ".join(f"{n} {verdict}" for verdict, n in comparison.counts().items() if n)
    mean, calls = comparison.geometric_mean_ratio(), comparison.count_ratio()
    instructions = comparison.count_ratio("instructions")
    shown = f"{mean:.3f}" if mean is not None else "-"
    calls_shown = f"{calls:.3f}" if calls is not None else "-"
    counted = f", {instructions:.3f} in instructions" if instructions is not None else ""
    verdict = "REGRESSION" if comparison.regressed else "no regression"
    return (
        f"{verdict}: {len(comparison.cells)} cells in both runs ({counts or 'none'}); "
        f"geometric mean new/base {shown} in time, {calls_shown} in function calls{counted}; "
        f"only in base {len(comparison.only_in_base)}, "
        f"only in new {len(comparison.only_in_new)} ({_calls_rule(gate)}; "
        f"{TIMING_ADVICE} Mann-Whitney p < {gate.alpha:g} and medians at least "
        f"{gate.min_effect:.0%} apart)"
    )


# Why a timing verdict never fails the gate, where the summary says what it means.
TIMING_ADVICE = (
    "timings advise and never fail: two runs of the same code on a shared machine differ "
    "by more than a 10 % regression; slower or faster means"
)


def _calls_rule(gate: Gate) -> str:
    counted = "changed means outcome, statements, round trips or rows"
    if not gate.hold_calls:
        return f"{counted}; function calls and instructions reported, not held"
    return (
        f"{counted}, or function calls more than {gate.calls_tolerance * 100:g}% up, or "
        f"instructions (where both runs counted them) more than "
        f"{gate.instructions_tolerance * 100:g}% up"
    )


def to_markdown(comparison: Comparison, gate: Gate, timing: TimingVerdict | None = None) -> str:
    """For a pull-request comment: the summary, warnings, the table, missing cells."""
    lines = [f"**sqla-bench compare: {summary_line(comparison, gate)}**", ""]
    if timing is not None:
        lines += [f"**{timing.summary()}**", ""]
    lines += [f"> warning: {warning}" for warning in comparison.warnings]
    if comparison.warnings:
        lines.append("")
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [
        "| " + " | ".join(row[c].replace("|", "\\|") for c in COLUMNS) + " |"
        for row in rows(comparison)
    ]
    for title, missing in (
        ("Only in base", comparison.only_in_base),
        ("Only in new", comparison.only_in_new),
    ):
        if missing:
            lines += ["", f"{title}:", *(f"- {cell_name(cell)}" for cell in missing)]
    return "\n".join(lines) + "\n"


def to_github(comparison: Comparison, gate: Gate, timing: TimingVerdict | None = None) -> str:
    """GitHub Actions workflow commands: an error annotation per counted change, a
    warning per timing the test calls slower (advice) and per warning about the runs, a
    notice per cell one run lacks, and the summary line last."""
    lines = [
        _annotation("error", f"{cell.new.case} changed", f"{cell_name(cell.new)}: {changes}")
        for cell in comparison.cells
        for changes in ["; ".join(cell.changed)]
        if cell.regressed
    ]
    lines += [
        _annotation(
            "warning",
            f"{cell.new.case} slower (advice)",
            f"{cell_name(cell.new)}: new/base {cell.ratio:.3f}, p {cell.p_slower:.2g} "
            "(timings advise and do not fail the gate)",
        )
        for cell in comparison.cells
        if cell.verdict == "slower"
    ]
    if timing is not None:
        lines += [
            _annotation(
                "error",
                "slower (timing gate)",
                f"{cell.name}: new/base {cell.ratio:.3f} over {len(cell.new_medians)} runs a "
                f"side, Holm-adjusted p {cell.p_adjusted:.2g}",
            )
            for cell in timing.slower
        ]
        level = "warning" if not timing.judged else "error" if timing.slower else "notice"
        lines.append(_annotation(level, "timing gate", timing.summary()))
    lines += [_annotation("warning", "sqla-bench compare", w) for w in comparison.warnings]
    lines += [
        _annotation("notice", f"only in {side}", cell_name(cell))
        for side, missing in (("base", comparison.only_in_base), ("new", comparison.only_in_new))
        for cell in missing
    ]
    lines.append(summary_line(comparison, gate))
    return "\n".join(lines) + "\n"


def _annotation(level: str, title: str, message: str) -> str:
    """One workflow command, escaped as GitHub's runner reads them (a message may not
    hold a newline; a property may not hold ':' or ',')."""

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    return f"::{level} title={prop('sqla-bench: ' + title)}::{data(message)}"


def to_json(
    comparison: Comparison, gate: Gate, timing: TimingVerdict | None = None
) -> dict[str, Any]:
    """The comparison as data (``compare.schema.json``): numbers in fields of their own,
    times in nanoseconds, counts per operation."""
    return {
        "version": JSON_VERSION,
        "regressed": comparison.regressed,
        "gate": {
            "min_effect": gate.min_effect,
            "alpha": gate.alpha,
            "calls_tolerance": gate.calls_tolerance,
            "instructions_tolerance": gate.instructions_tolerance,
            "hold_calls": gate.hold_calls,
            "holds_timing": timing is not None,
        },
        "timing": None if timing is None else _timing_data(timing),
        "counts": comparison.counts(),
        "geometric_mean_ratio": comparison.geometric_mean_ratio(),
        "calls_ratio": comparison.count_ratio(),
        "instructions_ratio": comparison.count_ratio("instructions"),
        "warnings": comparison.warnings,
        "cells": [_cell_data(cell, gate) for cell in ordered(comparison)],
        "only_in_base": [_identity(cell) for cell in comparison.only_in_base],
        "only_in_new": [_identity(cell) for cell in comparison.only_in_new],
    }


def _timing_data(timing: TimingVerdict) -> dict[str, Any]:
    return {
        "judged": timing.judged,
        "no_verdict_because": timing.busy,
        "base_runs": timing.base_runs,
        "new_runs": timing.new_runs,
        "alpha": timing.alpha,
        "noise": timing.noise,
        "detectable_at_80_percent_power": timing.detectable(),
        "runs_needed_for_10_percent": timing.runs_needed(),
        "slower": [cell.name for cell in timing.slower],
        "cells": [
            {
                "name": cell.name,
                "ratio": cell.ratio,
                "p": cell.p,
                "p_adjusted": cell.p_adjusted,
                "verdict": cell.verdict,
                "base_medians_ns": list(cell.base_medians),
                "new_medians_ns": list(cell.new_medians),
                "history_runs": cell.history_runs,
            }
            for cell in timing.cells
        ],
    }


def _identity(cell: CellRecord) -> dict[str, Any]:
    return {
        "name": cell_name(cell),
        "case": cell.case,
        "params": cell.params,
        "target": cell.target,
        "driver": cell.driver,
        "mode": cell.mode,
        "dataset": cell.dataset,
        "latency_ms": cell.latency_ms,
    }


def _cell_data(cell: CellChange, gate: Gate) -> dict[str, Any]:
    moved = [
        {"metric": metric, "base": getattr(cell.base, metric), "new": getattr(cell.new, metric)}
        for metric in TOLERATED
        if tolerated_change(metric, cell.base, cell.new, *gate.tolerance(metric, cell.new))[0]
    ]
    return {
        **_identity(cell.new),
        "verdict": cell.verdict,
        "regressed": cell.regressed,
        "changes": [
            {
                "metric": name,
                "base": getattr(cell.base, name),
                "new": getattr(cell.new, name),
                **(_sql_data(cell) if name == "statements" else {}),
            }
            for name in exact_changes(cell.base, cell.new)
        ]
        + moved,
        "what_changed": list(cell.changed + cell.noted),
        "base": _measured(cell.base),
        "new": _measured(cell.new),
        "ratio": cell.ratio,
        "p_slower": cell.p_slower,
        "p_faster": cell.p_faster,
    }


def _sql_data(cell: CellChange) -> dict[str, Any]:
    if cell.base.sql is None or cell.new.sql is None:
        return {}
    added, removed = sql_change(cell.base, cell.new)
    return {"sql_added": added, "sql_removed": removed}


def _measured(cell: CellRecord) -> dict[str, Any]:
    return {
        "median_ns": summarize(cell.samples_ns).median_ns if cell.samples_ns else None,
        "samples": len(cell.samples_ns),
        **{name: getattr(cell, name) for name in (*EXACT, *TOLERATED)},
    }
