"""``sqla-bench calibrate``: measure the same workload N times and keep how far each
cell moved, as an A/A history (``sqla_bench.results.history``) that ``compare
--history`` reads."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sqla_bench.base.errors import EXIT_INCOMPLETE, ConfigError
from sqla_bench.commands.option_groups import add_affinity
from sqla_bench.commands.options import number
from sqla_bench.commands.run import (
    add_workload_arguments,
    count_instructions,
    plan_from,
    with_targets,
)
from sqla_bench.commands.run_console import run_on_console
from sqla_bench.results.compare import load_run
from sqla_bench.results.files import LOCAL_RESULTS, CellRecord, check_writable
from sqla_bench.results.history import FLOOR, MARGIN, MIN_RUNS, History, cell_id
from sqla_bench.run import instructions
from sqla_bench.run.environment import chosen_cpus, pin_to
from sqla_bench.servers.targets import Servers, planned_targets, selected_targets

MAX_RUNS = 50
NEEDS_SERVERS = True  # targets come from URLs, containers or SQLite (cli._dispatch)
DESCRIPTION = (
    "Measure the same workload --runs times, one run after another, and add each run's "
    "counts (function calls; instructions with --instructions) and median time per cell "
    "to an A/A history file (--history, created or extended: CI can carry it between "
    "jobs). compare --history FILE then holds each cell's calls and instructions to "
    f"{MARGIN:g} times the widest spread its own runs showed (from {MIN_RUNS} runs on; "
    f"never tighter than {FLOOR:.1%}), instead of one tolerance for all, and says so; "
    "compare --gate-timing --history pools each cell's spread of median time between runs "
    "into its timing test. --add RESULT adds runs already measured instead of measuring. "
    "The run options are run's. Exit status 3 when a run failed part-way (the runs before "
    "it are kept), 2 for bad input."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workload_arguments(parser)
    parser.add_argument(
        "--runs",
        type=number(int, 1, MAX_RUNS),
        default=5,
        metavar="N",
        help=f"how many times to measure the workload (default: 5, at most {MAX_RUNS})",
    )
    parser.add_argument(
        "--history",
        type=Path,
        required=True,
        metavar="FILE",
        help="the A/A history to create or extend (JSON)",
    )
    parser.add_argument(
        "--add",
        action="append",
        type=Path,
        metavar="RESULT",
        help="instead of measuring, add this result file (or folder of them) to the "
        "history, repeatable: runs of the same code on this machine",
    )
    parser.add_argument(
        "--folder",
        type=Path,
        metavar="DIR",
        help=f"where each run's result file goes (default: {LOCAL_RESULTS}/calibrate-DATE-TIME)",
    )
    add_affinity(parser)


def execute(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    history = History.read(args.history) if args.history.exists() else History()
    check_writable(args.history)
    if args.add:
        added = [load_run(path)[1] for path in args.add]  # every file read before any is added
        for cells in added:
            history.add_run(cells)
        history.write(args.history)
        return _summary(console, history, [c for cells in added for c in cells], args.history)
    return _measure(args, servers, console, history)


def _measure(args: argparse.Namespace, servers: Servers, console: Console, history: History) -> int:
    names = args.target or ["sqlite"]
    planned = plan_from(args, planned_targets(names, servers))  # checked before any work
    chosen_cpus(args.affinity)
    if args.instructions:
        instructions.valgrind()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = args.folder or LOCAL_RESULTS / f"calibrate-{stamp}"
    check_writable(folder / "run-1.json")
    targets, _ = selected_targets(names, servers)
    plan = with_targets(planned, targets)
    pin_to(args.affinity)
    cells: list[CellRecord] = []
    for run in range(1, args.runs + 1):
        console.print(f"calibration run {run} of {args.runs}", highlight=False)
        results, failures = run_on_console(plan, folder / f"run-{run}.json", args.argv, console)
        if plan.instructions and not failures:
            failures = count_instructions(plan, results, args.argv[1:], console)
        if failures:
            console.print(f"run {run} failed part-way: {'; '.join(failures)}", style="red")
            return EXIT_INCOMPLETE
        history.add_run(results.cells)
        history.write(args.history)  # after every run: nothing measured is lost
        cells = results.cells
    return _summary(console, history, cells, args.history)


def _summary(console: Console, history: History, cells: list[CellRecord], path: Path) -> int:
    """Each cell's spread as the history now holds it."""
    if not cells:
        raise ConfigError("no cell to calibrate: the runs measured nothing")
    table = Table(title=f"A/A history {path}: how far each cell moved between runs")
    for column in ("cell", "runs", "calls spread", "instructions spread", "median time CV"):
        table.add_column(column, justify="left" if column == "cell" else "right")
    for cell in {cell_id(cell): cell for cell in cells}.values():
        calls, counted = history.spread(cell, "calls"), history.spread(cell, "instructions")
        noise = history.median_noise(cell)
        spreads = (calls, counted, history.spread(cell, "median_ns"))
        runs = max((spread.runs for spread in spreads if spread), default=0)
        table.add_row(
            cell_id(cell),
            str(runs),
            f"{calls.relative_range():.2%}" if calls else "-",
            f"{counted.relative_range():.2%}" if counted else "-",
            f"{noise:.1%}" if noise is not None else "-",
        )
    console.print(table)
    console.print(
        f"compare --history {path} holds calls and instructions to {MARGIN:g} x each "
        f"cell's spread (at least {FLOOR:.1%}; cells with fewer than {MIN_RUNS} runs: "
        "the defaults)",
        highlight=False,
    )
    return 0
