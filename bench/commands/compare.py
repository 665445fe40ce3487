"""``sqla-bench compare``: the regression gate, cell by cell."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from rich.console import Console

from sqla_bench.base.errors import EXIT_MISMATCH, EXIT_SLOWER, ConfigError
from sqla_bench.commands import present
from sqla_bench.commands.options import number
from sqla_bench.reporting.gate_formats import (
    COLUMNS,
    rows,
    summary_line,
    to_github,
    to_json,
    to_markdown,
)
from sqla_bench.results.compare import (
    DEFAULT_ALPHA,
    DEFAULT_CALLS_TOLERANCE,
    DEFAULT_INSTRUCTIONS_TOLERANCE,
    DEFAULT_MIN_EFFECT,
    Comparison,
    Gate,
    compare,
    load_runs,
    merged,
)
from sqla_bench.results.files import cell_name
from sqla_bench.results.history import History
from sqla_bench.results.timing_gate import MIN_RUNS, REPORTED_EFFECT, TimingVerdict, gate_timing

# Reads result files only: run without servers (cli._dispatch).
NEEDS_SERVERS = False
DESCRIPTION = (
    "Compare NEW against BASE (result files, or folders of them). What is counted "
    "decides: outcome, statements, round trips and rows per operation must match "
    "exactly, Python function calls per operation may grow by no more than "
    "--calls-tolerance, and instructions per operation (when both runs counted them: run "
    "--instructions) by no more than --instructions-tolerance; any other change fails. "
    "Timings advise and never fail: two runs "
    "of the same code on a shared machine differ by more than a 10 % regression. A cell "
    "is reported slower when a one-sided Mann-Whitney U test on the raw samples says so "
    "(p < --alpha) and the median is at least --min-effect slower, faster the other way "
    "round. Cells that only one run has are listed; runs from different machines, "
    "libraries or servers get a warning. With --gate-timing, BASE and NEW are folders of "
    "runs made interleaved (base, new, base, new, ...), and a timing verdict on per-run "
    "medians can fail too (see --gate-timing). Exit status 0: no counted change (and, "
    "with --gate-timing, no slowdown), 1: a counted change, 4: slower by the timing gate "
    "with no counted change, 2: bad input."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", type=Path, metavar="BASE", help="result file or folder")
    parser.add_argument("new", type=Path, metavar="NEW", help="result file or folder")
    parser.add_argument(
        "--min-effect",
        type=number(float, 0.001, 100.0),
        default=DEFAULT_MIN_EFFECT,
        metavar="FRACTION",
        help="how much slower a median must be to be reported slower, as a fraction "
        "(default: 0.10)",
    )
    parser.add_argument(
        "--alpha",
        type=number(float, 1e-9, 0.5),
        default=DEFAULT_ALPHA,
        metavar="P",
        help="significance level of the Mann-Whitney U test (default: 0.05)",
    )
    parser.add_argument(
        "--calls-tolerance",
        type=number(float, 0.0, 10.0),
        default=DEFAULT_CALLS_TOLERANCE,
        metavar="FRACTION",
        help="how many more Python function calls per operation a cell may make before "
        f"it fails, as a fraction (default: {DEFAULT_CALLS_TOLERANCE:g})",
    )
    parser.add_argument(
        "--instructions-tolerance",
        type=number(float, 0.0, 10.0),
        default=DEFAULT_INSTRUCTIONS_TOLERANCE,
        metavar="FRACTION",
        help="how many more instructions per operation a cell may execute before it fails, "
        "as a fraction, where both runs counted them (run --instructions); the counts "
        "of the same code in two installations differ by up to 0.3 %% here (default: "
        f"{DEFAULT_INSTRUCTIONS_TOLERANCE:g})",
    )
    parser.add_argument(
        "--history",
        type=Path,
        metavar="FILE",
        help="an A/A history (sqla-bench calibrate): each cell's calls and instructions "
        "are held to the spread its own repeated runs showed, times a margin, instead of "
        "the tolerances above; cells the history has too few runs of keep them",
    )
    parser.add_argument(
        "--gate-timing",
        action="store_true",
        help="also let timings fail the gate, under a design that holds on shared machines: "
        f"BASE and NEW are folders of at least {MIN_RUNS} runs each, made interleaved; each "
        "cell is one median per run, NEW's against BASE's by a one-sided Welch t-test on "
        "their logarithms, Holm-corrected over the cells at --alpha; slower (exit 4) when "
        f"significant and at least {REPORTED_EFFECT * 100:.0f}%% up. With --history, a cell's "
        "spread between runs in the A/A history is pooled in (Student's t, more degrees of "
        "freedom). No verdict when a run was measured on a busy machine. The output says "
        "what slowdown these runs can detect",
    )
    parser.add_argument(
        "--timing-advises",
        action="store_true",
        help="with --gate-timing: its verdict is advice, not a failure: a slowdown is "
        "reported (a warning annotation with --format github) and the exit status is the "
        "counts' alone (what ci/gate.sh does unless GATE_TIMING is 1)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "markdown", "json", "github"),
        default="text",
        help="text (a table), markdown (for a pull-request comment), json (numbers in "
        "fields of their own, as compare.schema.json beside the package's modules says) "
        "or github (GitHub Actions annotations: an error per counted change, a warning per "
        "timing called slower; with GITHUB_STEP_SUMMARY set, the markdown table is added "
        "to the job's summary)",
    )


def execute(args: argparse.Namespace, servers: None, console: Console) -> int:
    gate = Gate(
        min_effect=args.min_effect,
        alpha=args.alpha,
        calls_tolerance=args.calls_tolerance,
        instructions_tolerance=args.instructions_tolerance,
        history=History.read(args.history) if args.history else None,
    )
    summary = _job_summary() if args.format == "github" else None
    base_runs, new_runs = load_runs(args.base), load_runs(args.new)
    if args.timing_advises and not args.gate_timing:
        raise ConfigError(
            "--timing-advises goes with --gate-timing: there is no timing verdict without it"
        )
    timing = _timing(args, base_runs, new_runs, gate.history) if args.gate_timing else None
    comparison = compare(merged(base_runs), merged(new_runs), gate)
    if args.format == "json":
        print(json.dumps(to_json(comparison, gate, timing), indent=2))
    elif args.format == "markdown":
        print(to_markdown(comparison, gate, timing), end="")
    elif args.format == "github":
        print(to_github(comparison, gate, timing, timing_fails=not args.timing_advises), end="")
        if summary is not None:
            with summary:
                summary.write(to_markdown(comparison, gate, timing) + "\n")
    else:
        _print(console, comparison, gate, timing)
    if comparison.regressed:
        return EXIT_MISMATCH
    slower = timing is not None and timing.slower
    if slower and args.timing_advises:
        print("the timing gate found a slowdown: with --timing-advises it advises and does "
              "not fail", file=sys.stderr)  # fmt: skip
        return 0
    return EXIT_SLOWER if slower else 0


def _timing(
    args: argparse.Namespace, base: list, new: list, history: History | None
) -> TimingVerdict:
    for side, runs in (("BASE", base), ("NEW", new)):
        if len(runs) < MIN_RUNS:
            raise ConfigError(
                f"--gate-timing needs at least {MIN_RUNS} runs a side, made interleaved: "
                f"{side} ({getattr(args, side.lower())}) holds {len(runs)}"
            )
    return gate_timing(base, new, args.alpha, history)


def _job_summary() -> TextIO | None:
    """The GitHub Actions job summary, opened to append before any work (None when the
    runner gives none), or one line saying why it cannot be written."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return None
    try:
        return open(path, "a", encoding="utf-8")  # closed once the summary is written
    except OSError as error:
        raise ConfigError(f"cannot write GITHUB_STEP_SUMMARY {path}: {error.strerror}") from None


def _print(
    console: Console, comparison: Comparison, gate: Gate, timing: TimingVerdict | None
) -> None:
    present.print_lines(console, (f"warning: {w}" for w in comparison.warnings), "yellow")
    title = f"sqla-bench compare: {len(comparison.cells)} cells in both runs"
    console.print(present.comparison_table(title, COLUMNS, rows(comparison)))
    for title, missing in (
        ("only in base", comparison.only_in_base),
        ("only in new", comparison.only_in_new),
    ):
        present.print_lines(console, (f"{title}: {cell_name(cell)}" for cell in missing))
    console.print(summary_line(comparison, gate), highlight=False)
    if timing is not None:
        style = "yellow" if not timing.judged else "red" if timing.slower else None
        console.print(timing.summary(), style=style, highlight=False)
