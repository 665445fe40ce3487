"""``sqla-bench baseline``: every scenario's counts held to the committed baselines."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from sqla_bench.base.errors import EXIT_INCOMPLETE, EXIT_MISMATCH, ConfigError
from sqla_bench.commands import present
from sqla_bench.commands.option_groups import add_target
from sqla_bench.commands.run_console import run_on_console
from sqla_bench.measuring.measure import Policy
from sqla_bench.results.baseline import (
    BASELINES,
    baseline_path,
    calls_not_held,
    changed_cells,
    check_baselines,
    write_baselines,
)
from sqla_bench.results.compare import DEFAULT_CALLS_TOLERANCE, MIN_SAMPLES
from sqla_bench.results.files import LOCAL_RESULTS, check_writable
from sqla_bench.run.plan import RunPlan
from sqla_bench.servers.targets import Servers, selected_targets

NEEDS_SERVERS = True  # targets come from URLs, containers or SQLite (cli._dispatch)
DESCRIPTION = (
    "Run every scenario cell a few times on each target and hold its outcome, "
    "statements, round trips and rows to the committed baseline of that target "
    "(results/baselines/TARGET.json) exactly, and its Python function calls within "
    f"{DEFAULT_CALLS_TOLERANCE:.0%} while the libraries are the baseline's versions "
    "(else they are reported, not held): exit status 1 names every cell that differs, "
    "or that one side lacks. --update rewrites the baselines instead. Three timed "
    "calls per cell are too few for a timing verdict: the baselines hold counts, not "
    "speed. The run itself is kept in results/local/."
)

# Enough calls for the usual statement count of a cell, after the checked and the counted
# call; fewer than compare's MIN_SAMPLES, so the machine's timings never decide anything.
POLICY = Policy(warmup=2, min_rounds=3, min_time=0.0, max_rounds=3)
assert POLICY.max_rounds < MIN_SAMPLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target(parser, "every available one")
    parser.add_argument("--update", action="store_true", help="rewrite the baselines from this run")
    parser.add_argument(
        "--folder",
        type=Path,
        default=BASELINES,
        metavar="DIR",
        help=f"where the baselines are (default: {BASELINES})",
    )


def execute(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    targets, unavailable = selected_targets(args.target, servers)
    _check_folder(args.folder, [target.name for target in targets], args.update)
    plan = RunPlan(targets=tuple(targets), policy=POLICY)
    started = datetime.now(timezone.utc)
    path = LOCAL_RESULTS / f"baseline-{started:%Y%m%d-%H%M%S}.json"
    check_writable(path)
    results, failures = run_on_console(plan, path, args.argv, console, started)
    present.print_lines(console, (f"{t.name}: skipped, {t.reason}" for t in unavailable))
    if failures:
        present.print_incomplete(["; ".join(failures)])
        return EXIT_INCOMPLETE
    if args.update:
        written = write_baselines(results.header, results.cells, args.folder)
        present.print_lines(console, (f"baseline written: {path}" for path in written))
        return 0
    checks = check_baselines(results.header, results.cells, args.folder)
    differences = changed_cells(checks)
    present.print_lines(console, calls_not_held(checks), "yellow")
    present.print_lines(console, differences, "bold red")
    console.print(
        f"{len(results.cells)} cells on {', '.join(t.name for t in targets)}: "
        f"{len(differences)} differ from the baselines in {args.folder}",
        highlight=False,
    )
    return EXIT_MISMATCH if differences else 0


def _check_folder(folder: Path, targets: list[str], update: bool) -> None:
    """Before anything is measured: the baselines to hold the run to are there, or the
    folder that --update writes them to can be written."""
    for target in targets:
        path = baseline_path(folder, target)
        if update:
            check_writable(path)
        elif not path.is_file():
            raise ConfigError(
                f"no baseline of {target} in {folder} ({path.name}): sqla-bench baseline "
                f"--update --folder {folder} --target {target} makes one"
            )
