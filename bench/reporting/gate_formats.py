"""The regression gate's verdict as people and CI systems read it (``compare
--format``): a table's rows, Markdown for a job summary, GitHub's annotations, and the
JSON document ``compare.schema.json`` (beside this module) describes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqla_bench.results.compare import (
    EXACT,
    TOLERATED,
    CellChange,
    Comparison,
    Gate,
    exact_changes,
    sql_change,
    tolerated_change,
)
from sqla_bench.results.files import CellRecord, cell_name
from sqla_bench.results.stats import summarize
from sqla_bench.results.timing_gate import TimingVerdict

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
    from sqla_bench.results.files import duration

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


def to_github(
    comparison: Comparison,
    gate: Gate,
    timing: TimingVerdict | None = None,
    timing_fails: bool = True,
) -> str:
    """GitHub Actions workflow commands: an error annotation per counted change, a
    warning per timing the test calls slower (advice) and per warning about the runs, a
    notice per cell one run lacks, and the summary line last. A slowdown by the timing
    gate is an error where it fails the job, a warning where it advises."""
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
                "error" if timing_fails else "warning",
                "slower (timing gate)",
                f"{cell.name}: new/base {cell.ratio:.3f} over {len(cell.new_medians)} runs a "
                f"side, Holm-adjusted p {cell.p_adjusted:.2g}",
            )
            for cell in timing.slower
        ]
        failed = "error" if timing_fails else "warning"
        level = "warning" if not timing.judged else failed if timing.slower else "notice"
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
