"""``sqla-bench run``: measure the selected cells into a result file, print their tables."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from sqla_bench.base.errors import EXIT_INCOMPLETE, EXIT_MISMATCH, ConfigError, fail
from sqla_bench.base.stopping import stopped_by
from sqla_bench.commands import present
from sqla_bench.commands.config_file import configured_runs
from sqla_bench.commands.locust_options import add_locust_options, locust_settings
from sqla_bench.commands.option_groups import (
    DefaultSizes,
    add_affinity,
    add_datasets,
    add_pgbouncer,
    add_policy,
    add_target,
    datasets_from,
    policy_from,
)
from sqla_bench.commands.options import (
    MAX_PROCESSES,
    MAX_SECONDS,
    MAX_WORKERS,
    grid_values,
    latencies,
    number,
    numbers,
    workers,
)
from sqla_bench.commands.run_console import run_on_console
from sqla_bench.results.files import (
    LOCAL_RESULTS,
    ResultFile,
    check_output_path,
    check_writable,
    default_path,
    write_csv,
)
from sqla_bench.run import dblock, instructions
from sqla_bench.run.environment import chosen_cpus, pin_to
from sqla_bench.run.plan import ON_ERROR, RunPlan
from sqla_bench.scenarios.registry import MODES, PARAMETERS
from sqla_bench.servers.targets import (
    URL_VARIABLES,
    Pending,
    Servers,
    Target,
    planned_targets,
    selected_targets,
)

if TYPE_CHECKING:
    from sqla_bench.run.application import Workload

MAX_PASSES = 10
NEEDS_SERVERS = True  # targets come from URLs, containers or SQLite (cli._dispatch)
DESCRIPTION = (
    "Measure every selected scenario cell on every selected driver and mode: "
    "statements and rows per operation, and the time of each call (after warm-up, "
    "until both --min-rounds and --min-time are reached); the cells a verdict compares "
    "(the loading strategies of one shape, on one driver) side by side, in rotating "
    "blocks, until their ratios are known to --precision. Set-up, seeding and the "
    "fresh session each call gets are never timed. Raw samples and metadata go to a "
    "JSON result file, written after every cell, so an interrupted run keeps what "
    "finished. With no options: every scenario on embedded SQLite, in both modes. "
    "Exit status 1 when an outcome differs from the catalogue, 2 for bad input, 3 "
    "when a target failed part-way, 130 when interrupted (Ctrl-C), 143 when "
    "terminated (SIGTERM)."
)


def add_arguments(run: argparse.ArgumentParser) -> None:
    add_workload_arguments(run)
    _add_output_options(run)
    add_affinity(run)
    run.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="take any of these options from a TOML file (a key per option, without its "
        'dashes: min-rounds = 5, target = ["postgresql"]); options given here win. '
        "Without it, the [tool.sqla-bench] table of ./pyproject.toml, if it has one. A "
        "file with [[run]] tables holds several runs, made one after another",
    )
    run.add_argument(
        "--config-run",
        type=number(int, 1, 1000),
        metavar="N",
        help="of the file's [[run]] tables, only the Nth",
    )


def add_workload_arguments(run: argparse.ArgumentParser) -> None:
    """What to measure and how: every option of ``run`` but where the results go."""
    add_target(run, "sqlite")
    run.add_argument(
        "--driver", action="append", metavar="NAME", help="only these drivers, repeatable"
    )
    run.add_argument(
        "--mode", action="append", choices=MODES, help="sync or async, repeatable (default: both)"
    )
    run.add_argument(
        "--scenario",
        action="append",
        metavar="ID",
        help="a scenario id or a prefix such as crud or load, repeatable (default: all)",
    )
    run.add_argument(
        "--scenarios",
        action="append",
        dest="modules",
        metavar="MODULE",
        help="an application's own twins: a module (found from the current directory, as "
        "python -m finds one) declaring scenarios with sqla_bench.scenarios.registry's "
        "decorators; its scenarios are measured and verified instead of the built-in ones; "
        "repeatable",
    )
    _add_models_options(run)
    run.add_argument(
        "--strategy",
        action="append",
        metavar="NAME",
        help="of the cells that have a loading strategy, only these; repeatable (default: all)",
    )
    add_datasets(run)
    run.add_argument(
        "--param",
        action="append",
        type=grid_values,
        metavar="NAME=V[,V...]",
        help="replace a scenario parameter's values, repeatable: --param limit=50 makes the "
        "loading scenarios load 50 parents instead of 20; the parameters: "
        + "; ".join(f"{name}: {p.doc} ({p.takes()})" for name, p in PARAMETERS.items()),
    )
    _add_load_options(run)
    add_policy(run)
    run.add_argument(
        "--passes",
        type=number(int, 1, MAX_PASSES),
        default=1,
        metavar="N",
        help="measure the workload N times at each dataset, one pass after another: the "
        "report gives how far the verdicts agree between passes, and a verdict that "
        f"differs between them is 'unstable', never a winner (default: 1, at most {MAX_PASSES})",
    )
    run.add_argument(
        "--instructions",
        type=number(int, 1, instructions.MAX_CALLS),
        metavar="N",
        help="after the timed run, count the instructions each cell executes per operation "
        "over N more calls, under valgrind's callgrind in a process of its own (about 50 "
        "times slower than the calls themselves; needs valgrind): a count of CPU work that "
        "is the same from run to run whatever else the machine does, which compare holds "
        "within --instructions-tolerance where it cannot hold timings. Cells under load "
        f"are not counted (default: not counted; at most {instructions.MAX_CALLS})",
    )
    run.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="stop",
        help="when a cell fails because its server stopped answering: stop measuring that "
        "target (its other targets go on), or continue with the next cell, which finds the "
        "server back or records the same failure; either way the failed cell is kept with "
        "its error and the exit status is 3 (default: stop)",
    )
    run.add_argument(
        "--wait-for-lock",
        type=number(float, 0, dblock.MAX_WAIT_SECONDS),
        default=0.0,
        metavar="SECONDS",
        help="when another sqla-bench run is using a server target's database (each run "
        "locks the databases it creates tables in, until it is done), wait up to SECONDS "
        "for it to end instead of stopping at once with the holder named, exit status 2 "
        f"(default: 0; at most {dblock.MAX_WAIT_SECONDS:,})",
    )


def _add_models_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--models",
        metavar="MODULE[:ATTR]",
        help="your application's models instead of the built-in scenarios: a module (found "
        "from the current directory) or its declarative base or registry (MODULE:Base); "
        "each relationship is loaded under every strategy that applies, sync and async, "
        "verified (statements, SQL, values, MissingGreenlet) and measured. Its data is "
        "generated into new tables on the target (polyfactory values; --users rows per "
        "table without a parent, --posts per parent in a one-to-many, --tags links in a "
        "many-to-many), dropped afterwards; relationships it cannot handle are listed "
        "with the reason",
    )
    run.add_argument(
        "--relationship",
        action="append",
        metavar="CLASS.ATTR",
        help="with --models, only this relationship, repeatable (default: every one)",
    )
    run.add_argument(
        "--use-existing-data",
        action="store_true",
        help="with --models, read the data already in the database at the target's URL "
        "instead of generating it: read-only (read-only connections, no DDL, every session "
        "rolled back), parents sampled evenly by primary key (--param limit=N of them, "
        "default 20), and a checksum of every table read before and after, which must agree",
    )


def _add_load_options(run: argparse.ArgumentParser) -> None:
    add_pgbouncer(run)
    run.add_argument(
        "--latency",
        type=latencies,
        metavar="MS[,MS...]",
        help="round-trip milliseconds to add with a TCP proxy (in a process of its own) in "
        "front of each server, e.g. 0,1,5,20; also counts round trips and bytes per "
        "operation. At 0 the samples go straight to the server, as without --latency, and "
        "round trips are counted through the proxy in calls of their own (servers only: "
        "SQLite has no network)",
    )
    run.add_argument(
        "--concurrency",
        type=workers,
        metavar="N[,N...]",
        help="measure under load instead: N workers (threads in sync mode, tasks in async) "
        "share one engine, each opening a session, calling the scenario and closing, for "
        "--load-seconds; records throughput, p50/p95/p99, pool waits and timeouts, peak "
        f"server connections and CPU time of client, proxy and server (at most {MAX_WORKERS:,})",
    )
    run.add_argument(
        "--processes",
        type=numbers(int, 1, MAX_PROCESSES, "whole numbers"),
        metavar="N[,N...]",
        help="run each load in N worker processes, each with its own engine and pool and "
        "its share of the --concurrency workers, as a deployment of N uvicorn or gunicorn "
        "workers runs; each N is a cell. Server connections and throughput are the "
        f"processes' together (at most {MAX_PROCESSES})",
    )
    run.add_argument(
        "--pool-size",
        type=workers,
        metavar="N[,N...]",
        help=f"engine pool sizes to measure (at most {MAX_WORKERS:,})",
    )
    run.add_argument(
        "--max-overflow", type=number(int, 0, MAX_WORKERS), metavar="N", help="engine max_overflow"
    )
    run.add_argument(
        "--pool-timeout",
        type=number(float, 0.001, MAX_SECONDS),
        metavar="SECONDS",
        help="engine pool_timeout: a checkout that waits longer fails with TimeoutError, "
        "counted per cell",
    )
    add_locust_options(run)
    run.add_argument(
        "--load-seconds",
        type=number(float, 0.1, MAX_SECONDS),
        default=2.0,
        metavar="SECONDS",
        help="how long each load runs, the first fifth being warm-up (default: 2)",
    )


def _add_output_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help=f"result file (default: {LOCAL_RESULTS}/run-DATE-TIME-TARGETS.json)",
    )
    run.add_argument(
        "--csv", action="store_true", help="also write one CSV row per cell beside the JSON"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check every option and print what would be measured, then stop: no container "
        "starts, nothing is measured or written",
    )
    run.add_argument(
        "--plot", action="store_true", help="also write PNG plots beside the result file"
    )


def execute(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    own_words = args.argv[args.argv.index("run") + 1 :]
    runs, read = configured_runs(args, own_words, add_arguments)
    if read is not None:
        console.print(read, markup=False, highlight=False)
    # Every run's options are checked against the planned targets before a container
    # starts or anything is measured.
    planned = [_checked(one, servers) for one in runs]
    statuses = []
    for one, plan in zip(runs, planned, strict=True):
        if one.config_run is not None:
            console.print(f"[[run]] {one.config_run}", markup=False, highlight=False)
        statuses.append(_measure(one, plan, servers, console))
    return max(statuses)


def _checked(args: argparse.Namespace, servers: Servers) -> RunPlan:
    planned = plan_from(args, planned_targets(args.target or ["sqlite"], servers))
    chosen_cpus(args.affinity)
    if args.csv and args.output is not None and args.output.suffix == ".csv":
        raise ConfigError(f"--csv writes {args.output} itself: give --output a .json name")
    if args.output is not None:
        check_output_path(args.output)
    if args.instructions:
        instructions.valgrind()  # before anything is measured: one line if it is missing
    return planned


def _measure(args: argparse.Namespace, planned: RunPlan, servers: Servers, console: Console) -> int:
    names = args.target or ["sqlite"]
    started = datetime.now(timezone.utc)
    path = args.output or default_path(started, list(dict.fromkeys(names)))
    present.print_unhandled(console, planned)
    if args.dry_run:
        check_output_path(path)
        present.print_plan(console, planned)
        return 0
    check_writable(path)
    targets, _ = selected_targets(names, servers)
    plan = with_targets(planned, targets)
    pin_to(args.affinity)
    words = _run_words(args)  # kept in the result file: they make this run again
    results, failures = run_on_console(plan, path, ["sqla-bench", *words], console, started)
    if plan.instructions and not failures:
        failures += count_instructions(plan, results, words, console)
    present.print_tables(console, results.cells)
    if args.csv:
        write_csv(path.with_suffix(".csv"), results.cells)
    if args.plot:
        present.plot(console, results.cells, path.parent, path.stem)
    return _summary(console, results, failures)


def _run_words(args: argparse.Namespace) -> list[str]:
    """The words that make this run again (the counting child's): one of a file's
    ``[[run]]`` tables is named by its number."""
    words = args.argv[1:]
    return words if args.config_run is None else [*words, "--config-run", str(args.config_run)]


def with_targets(planned: RunPlan, targets: Sequence[Target]) -> RunPlan:
    """The plan checked on the planned targets, on the targets as they run (a container
    started, its URL known): checked again there, its workload (``--models``) not built
    again."""
    return replace(planned, targets=tuple(targets))


def plan_from(args: argparse.Namespace, targets: Sequence[Target | Pending]) -> RunPlan:
    """The run's plan from its options; one ConfigError for options that contradict."""
    try:
        policy, datasets = policy_from(args), datasets_from(args)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    workload = _workload(args)
    if workload is not None and isinstance(args.users, DefaultSizes):
        datasets = workload.fit_rows(datasets)
    return RunPlan(
        targets=tuple(targets),
        workload=workload,
        modes=tuple(dict.fromkeys(args.mode or MODES)),
        drivers=_names(args.driver),
        scenarios=_names(args.scenario),
        modules=_names(args.modules) or (),
        strategies=_names(args.strategy),
        datasets=datasets,
        policy=policy,
        passes=args.passes,
        latencies=args.latency,
        grid=tuple(dict(args.param or ()).items()),
        concurrency=args.concurrency,
        processes=args.processes,
        pool_sizes=args.pool_size,
        max_overflow=args.max_overflow,
        pool_timeout=args.pool_timeout,
        load_seconds=args.load_seconds,
        on_error=args.on_error,
        pgbouncer=args.pgbouncer,
        pgbouncer_pool=args.pgbouncer_pool_size,
        instructions=args.instructions,
        wait_for_lock=args.wait_for_lock,
        **locust_settings(args),
    )


def count_instructions(
    plan: RunPlan, results: ResultFile, run_words: list[str], console: Console
) -> list[str]:
    """The instructions of every cell measured one call at a time, counted in a child
    under callgrind (``sqla_bench.run.instructions``) and written into the run's result
    file; why not, when the child failed (the timed run's cells are kept as they
    were)."""
    urls = {
        URL_VARIABLES[target.name]: target.url.render_as_string(hide_password=False)
        for target in plan.targets
        if target.name in URL_VARIABLES
    }
    say = partial(console.print, highlight=False)
    try:
        counts = instructions.count(run_words, urls, plan.instructions, say)
    except instructions.ChildError as error:
        return [f"instructions not counted: {error}"]
    except KeyboardInterrupt as interruption:  # Ctrl-C or SIGTERM: the timed run is whole
        what, status = stopped_by(interruption)
        fail(
            f"sqla-bench: {what} while counting instructions: the {len(results.cells)} timed "
            f"cells are kept in {results.path}, without instructions",
            status,
        )
    merged = instructions.merge(results.cells, counts)
    results.rewrite_cells()
    say(f"instructions counted for {merged} of {len(results.cells)} cells")
    return []


def _workload(args: argparse.Namespace) -> Workload | None:
    """An application's models, when --models names them."""
    if args.models is None:
        if args.relationship or args.use_existing_data:
            raise ConfigError("--relationship and --use-existing-data go with --models")
        return None
    from sqla_bench.run.application import Workload  # polyfactory, only when asked for

    return Workload(args.models, _names(args.relationship), args.use_existing_data)


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(dict.fromkeys(values)) if values else None


def _summary(console: Console, results: ResultFile, failures: list[str]) -> int:
    failed = [cell for cell in results.cells if cell.failed is not None]
    measured = [cell for cell in results.cells if cell.failed is None]
    differ = [cell for cell in measured if not cell.matches_expected]
    raised = sum(cell.outcome == "raised" for cell in measured)
    outage = f", {len(failed)} failed (the server went away)" if failed else ""
    console.print(
        f"{len(measured)} cells measured, {raised} raised, "
        f"{len(differ)} differ from the catalogue{outage}. Results: {results.path}",
        highlight=False,
    )
    present.print_differences(console, differ, "DIFFERS")
    present.print_failed(console, failed)
    present.print_incomplete(failures)
    if failures:
        return EXIT_INCOMPLETE
    return EXIT_MISMATCH if differ else 0
