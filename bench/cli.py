"""The ``sqla-bench`` command: ``run`` the benchmarks, ``verify`` the pattern catalogue,
``list`` what is here, ``selfcheck`` the harness.

Errors in what the user asked for end in one line on stderr and exit status 2; an
outcome that disagrees with the catalogue exits 1; a target that failed part-way exits
3 with everything that finished kept. Passwords are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import shlex
import signal
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from bench.baseline import (
    BASELINES,
    baseline_path,
    changed_cells,
    check_baselines,
    write_baselines,
)
from bench.baseline import POLICY as BASELINE_POLICY
from bench.compare import COLUMNS as COMPARE_COLUMNS
from bench.compare import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_EFFECT,
    Comparison,
    Gate,
    cell_name,
    compare,
    load_run,
    summary_line,
    to_markdown,
)
from bench.compare import rows as comparison_rows
from bench.compare import to_json as compare_json
from bench.containers import ContainerError, Leftover, containers, prune
from bench.engines import DriverEnv, prepare_database, setting_for, sqlalchemy_version
from bench.measure import Policy
from bench.report import LOAD_NOTE, NOTE, load_tables, tables
from bench.results import (
    LOCAL_RESULTS,
    ResultFile,
    check_output_path,
    check_writable,
    default_path,
    run_status,
    write_csv,
)
from bench.runner import ON_ERROR, Runner, RunPlan, chosen_cpus, pin_to, run_header
from bench.runner import Progress as RunProgress
from bench.selfcheck import (
    CHECKS,
    Figure,
    driver_against_pgbench,
    overhead,
    proxy_cost,
    repeat_variation,
)
from bench.targets import (
    TARGETS,
    ConfigError,
    Pending,
    Servers,
    Target,
    Unavailable,
    check_reachable,
    check_target_name,
    failure,
    redact,
)
from bench.verify import Check, applicable_cells, check_driver
from scenarios.dataset import MAXIMUM, DatasetSize
from scenarios.expect import Raises, Works
from scenarios.registry import IN_PROCESS, MODES, PARAMETERS, discover
from scenarios.sql import KIND_WORDS
from scenarios.strategies import STRATEGIES, Strategy

EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3  # a target failed part-way; what finished is still reported
EXIT_SOFTWARE = 70  # an internal error: a bug (sysexits' EX_SOFTWARE)
PIPED_WIDTH = 200
KINDS = {"all": IN_PROCESS, "patterns": "pattern", "scenarios": "scenario"}


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"sqla-bench: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sqla-bench",
        description="Benchmark and pattern-verification suite for SQLAlchemy sync and async.",
        epilog=(
            "Server targets come from SQLA_BENCH_POSTGRESQL_URL and SQLA_BENCH_MYSQL_URL "
            "(plain postgresql:// or mysql:// URLs; every driver's URL is derived from them). "
            "Without a URL, sqla-bench starts the server in a container when a Docker engine "
            "answers (images: SQLA_BENCH_POSTGRESQL_IMAGE, SQLA_BENCH_MYSQL_IMAGE; server "
            "options: SQLA_BENCH_POSTGRESQL_SERVER_OPTIONS, SQLA_BENCH_MYSQL_SERVER_OPTIONS) "
            "and removes it when done. SQLite needs nothing."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    commands.add_parser(
        "list",
        help="scenarios, strategies, patterns, targets and drivers available here",
        description="List what can be run here, and why any target is unavailable.",
    )
    verify = commands.add_parser(
        "verify",
        help="run the verification catalogue and print the outcome matrix",
        description=(
            "Run every pattern and scenario cell once per driver and mode, and print what "
            "happened (works with N statements, or raises X) beside what the catalogue "
            "expects. Exit status 1 when anything differs, 2 for bad input, 3 when a "
            "target failed part-way (what finished is still printed and saved)."
        ),
    )
    verify.add_argument(
        "--target",
        action="append",
        metavar="NAME",
        help=f"target to verify, repeatable: {', '.join(TARGETS)} (default: every configured one)",
    )
    verify.add_argument(
        "--only", choices=sorted(KINDS), default="all", help="patterns, scenarios, or all (default)"
    )
    verify.add_argument("--json", type=Path, metavar="PATH", help="also write the matrix as JSON")
    _add_run_parser(commands)
    _add_selfcheck_parser(commands)
    _add_report_parser(commands)
    _add_compare_parser(commands)
    _add_baseline_parser(commands)
    _add_containers_parser(commands)
    return parser


def _add_baseline_parser(commands: argparse._SubParsersAction) -> None:
    baseline = commands.add_parser(
        "baseline",
        help="hold every scenario's counts to the committed baselines (--update rewrites them)",
        description=(
            "Run every scenario cell a few times on each target and hold its outcome, "
            "statements, round trips and rows to the committed baseline of that target "
            "(results/baselines/TARGET.json), exactly: exit status 1 names every cell that "
            "differs, or that one side lacks. --update rewrites the baselines instead. Three "
            "timed calls per cell are too few for a timing verdict: the baselines hold "
            "counts, not speed. The run itself is kept in results/local/."
        ),
    )
    baseline.add_argument(
        "--target",
        action="append",
        metavar="NAME",
        help=f"target, repeatable: {', '.join(TARGETS)} (default: every available one)",
    )
    baseline.add_argument(
        "--update", action="store_true", help="rewrite the baselines from this run"
    )
    baseline.add_argument(
        "--folder",
        type=Path,
        default=BASELINES,
        metavar="DIR",
        help=f"where the baselines are (default: {BASELINES})",
    )


def _add_compare_parser(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare",
        help="the regression gate: compare two runs cell by cell",
        description=(
            "Compare NEW against BASE (result files, or folders of them). Outcome, "
            "statements, round trips and rows per operation must match exactly: any change "
            "fails. A timing fails only when a one-sided Mann-Whitney U test on the raw "
            "samples says slower (p < --alpha) and the median is at least --min-effect "
            "slower; faster and unchanged cells are reported too. Cells that only one run "
            "has are listed; runs from different machines, libraries or servers get a "
            "warning. Exit status 0: no regression, 1: regression, 2: bad input."
        ),
    )
    compare.add_argument("base", type=Path, metavar="BASE", help="result file or folder")
    compare.add_argument("new", type=Path, metavar="NEW", help="result file or folder")
    compare.add_argument(
        "--min-effect",
        type=_number(float, 0.001, 100.0),
        default=DEFAULT_MIN_EFFECT,
        metavar="FRACTION",
        help="how much slower a median must be to count, as a fraction (default: 0.10)",
    )
    compare.add_argument(
        "--alpha",
        type=_number(float, 1e-9, 0.5),
        default=DEFAULT_ALPHA,
        metavar="P",
        help="significance level of the Mann-Whitney U test (default: 0.05)",
    )
    compare.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        default="text",
        help="text (a table), markdown (for a pull-request comment) or json",
    )


def _add_containers_parser(commands: argparse._SubParsersAction) -> None:
    containers = commands.add_parser(
        "containers",
        help="list the containers sqla-bench started that still exist; --prune removes them",
        description=(
            "List every container labelled as sqla-bench's, with the process that owns it. "
            "A run removes its containers when it ends, also on Ctrl-C; one that was killed "
            "cannot, and testcontainers' reaper is off where no registry serves its image. "
            "--prune removes the containers whose owning process has ended."
        ),
    )
    containers.add_argument(
        "--prune", action="store_true", help="remove the containers whose owner has ended"
    )
    containers.add_argument(
        "--all",
        action="store_true",
        help="with --prune: remove every sqla-bench container, even one a live run is using",
    )


def _add_selfcheck_parser(commands: argparse._SubParsersAction) -> None:
    selfcheck = commands.add_parser(
        "selfcheck",
        help="benchmark the harness itself: overhead, raw driver vs pgbench, run-to-run CV",
        description=(
            "Benchmarks of the harness, each printed beside its goal: (overhead) the time "
            "the harness adds per sample, sync and async, with asyncio.run and "
            "run_until_complete per call measured alongside; (driver) raw psycopg2 "
            "primary-key selects per second over pgbench -S -c 1 on the same server "
            "(needs SQLA_BENCH_POSTGRESQL_URL and pgbench); (proxy) the throughput the "
            "latency proxy costs at zero delay (needs the same URL); (cv) the variation of each "
            "cell's median over repeated runs of the default matrix, for cells slower than "
            "1 ms. Takes a few minutes. Exit status 1 when a goal is missed."
        ),
    )
    selfcheck.add_argument(
        "--only",
        action="append",
        choices=CHECKS,
        help="run only this check, repeatable (default: all; driver is skipped without "
        "a PostgreSQL URL unless named)",
    )
    selfcheck.add_argument(
        "--repeats",
        type=_number(int, 2, 100),
        default=5,
        metavar="N",
        help="runs of the default matrix for the cv check (default: 5)",
    )
    selfcheck.add_argument(
        "--seconds",
        type=_number(float, 1, MAX_SECONDS),
        default=10.0,
        metavar="S",
        help="duration of pgbench and of the raw driver cell (default: 10)",
    )
    selfcheck.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help=f"folder for the result files it measures from (default: {LOCAL_RESULTS}/"
        "selfcheck-DATE-TIME)",
    )
    _add_affinity(selfcheck)


def _grid_values(text: str) -> tuple[str, tuple[Any, ...]]:
    """``NAME=V[,V...]``, each value read as the parameter's declaration says; a name no
    case declares is kept as text, for the plan to say which names the scenarios have."""
    name, _, values = text.partition("=")
    if not name or not values:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE[,VALUE...], got {text!r}")
    parameter = PARAMETERS.get(name)
    if parameter is None:
        return name, tuple(values.split(","))
    try:
        return name, tuple(parameter.parse(value) for value in values.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{name}: {error}") from None


# Upper bounds of the numeric options, sized for one measuring process on one machine:
# beyond them a run measures the client's own limits (one process drives a few hundred
# workers at most) or does not end in a working day. Datasets are bounded by
# scenarios.dataset.MAXIMUM.
MAX_WORKERS = 1_000  # --concurrency, --pool-size, --max-overflow
MAX_SECONDS = 3_600.0  # every duration
MAX_LATENCY_MS = 10_000.0
MAX_ROUNDS = 1_000_000


def _finite(kind: type, text: str, low: float, high: float) -> Any:
    """``text`` as a finite ``kind`` from ``low`` to ``high``, or None ("nan" and "inf"
    are numbers to Python, but an infinite load or an unreachable time never ends)."""
    try:
        value = kind(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and low <= value <= high else None


def _range(low: float, high: float) -> str:
    return f"from {_plain(low)} to {_plain(high)}" if math.isfinite(high) else f">= {low:g}"


def _plain(number: float) -> str:
    """1,000,000 rather than 1e+06; 0.001 as it is."""
    return f"{int(number):,}" if float(number).is_integer() else f"{number:g}"


def _number(kind: type, low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = _finite(kind, text, low, high)
        if value is None:
            raise argparse.ArgumentTypeError(f"expected a number {_range(low, high)}, got {text!r}")
        return value

    return parse


def _numbers(kind: type, low: float, high: float, what: str) -> Callable[[str], tuple[Any, ...]]:
    """A parser of comma-separated numbers, e.g. ``--users 10,100,1000``."""

    def parse(text: str) -> tuple[Any, ...]:
        values = tuple(_finite(kind, part, low, high) for part in text.split(","))
        if None in values:
            raise argparse.ArgumentTypeError(
                f"expected {what} {_range(low, high)} separated by commas, got {text!r}"
            )
        return values

    return parse


_workers = _numbers(int, 1, MAX_WORKERS, "whole numbers")
_latencies = _numbers(float, 0, MAX_LATENCY_MS, "round-trip milliseconds")


# option, Policy field, type, minimum, maximum, metavar, help
POLICY_OPTIONS = (
    (
        "--min-time",
        "min_time",
        float,
        0,
        MAX_SECONDS,
        "SECONDS",
        "sample each cell for at least this long",
    ),
    ("--min-rounds", "min_rounds", int, 1, MAX_ROUNDS, "N", "and at least this many samples"),
    ("--max-rounds", "max_rounds", int, 1, MAX_ROUNDS, "N", "but at most this many"),
    (
        "--max-time",
        "max_time",
        float,
        0.001,
        MAX_SECONDS,
        "SECONDS",
        "and stop a slow cell's warm-up, and its sampling, after this long (keeping at "
        "least one sample)",
    ),
    ("--warmup", "warmup", int, 0, MAX_ROUNDS, "N", "discarded calls before sampling"),
)


def _add_run_parser(commands: argparse._SubParsersAction) -> None:
    defaults = Policy()
    run = commands.add_parser(
        "run",
        help="measure scenarios: time, statements and rows per operation, raw samples saved",
        description=(
            "Measure every selected scenario cell on every selected driver and mode: "
            "statements and rows per operation, and the time of each call (after warm-up, "
            "until both --min-rounds and --min-time are reached). Set-up, seeding and the "
            "fresh session each call gets are never timed. Raw samples and metadata go to a "
            "JSON result file, written after every cell, so an interrupted run keeps what "
            "finished. With no options: every scenario on embedded SQLite, in both modes. "
            "Exit status 1 when an outcome differs from the catalogue, 2 for bad input, 3 "
            "when a target failed part-way, 130 when interrupted (Ctrl-C), 143 when "
            "terminated (SIGTERM)."
        ),
    )
    run.add_argument(
        "--target",
        action="append",
        metavar="NAME",
        help=f"target, repeatable: {', '.join(TARGETS)} (default: sqlite)",
    )
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
        "--strategy",
        action="append",
        metavar="NAME",
        help="of the cells that have a loading strategy, only these; repeatable (default: all)",
    )
    _add_dataset_options(run)
    run.add_argument(
        "--param",
        action="append",
        type=_grid_values,
        metavar="NAME=V[,V...]",
        help="replace a scenario parameter's values, repeatable: --param limit=50 makes the "
        "loading scenarios load 50 parents instead of 20; the parameters: "
        + "; ".join(f"{name}: {p.doc} ({p.takes()})" for name, p in PARAMETERS.items()),
    )
    run.add_argument(
        "--latency",
        type=_latencies,
        metavar="MS[,MS...]",
        help="round-trip milliseconds to add with a TCP proxy (in a process of its own) in "
        "front of each server, e.g. 0,1,5,20; also counts round trips per operation "
        "(servers only: SQLite has no network)",
    )
    run.add_argument(
        "--concurrency",
        type=_workers,
        metavar="N[,N...]",
        help="measure under load instead: N workers (threads in sync mode, tasks in async) "
        "share one engine, each opening a session, calling the scenario and closing, for "
        "--load-seconds; records throughput, p50/p95/p99, pool waits and timeouts, peak "
        f"server connections and CPU time of client, proxy and server (at most {MAX_WORKERS:,})",
    )
    run.add_argument(
        "--pool-size",
        type=_workers,
        metavar="N[,N...]",
        help=f"engine pool sizes to measure (at most {MAX_WORKERS:,})",
    )
    run.add_argument(
        "--max-overflow",
        type=_number(int, 0, MAX_WORKERS),
        metavar="N",
        help="engine max_overflow",
    )
    run.add_argument(
        "--pool-timeout",
        type=_number(float, 0.001, MAX_SECONDS),
        metavar="SECONDS",
        help="engine pool_timeout: a checkout that waits longer fails with TimeoutError, "
        "counted per cell",
    )
    run.add_argument(
        "--load-seconds",
        type=_number(float, 0.1, MAX_SECONDS),
        default=2.0,
        metavar="SECONDS",
        help="how long each load runs, the first fifth being warm-up (default: 2)",
    )
    for option, field, kind, minimum, maximum, metavar, text in POLICY_OPTIONS:
        default = getattr(defaults, field)
        run.add_argument(
            option,
            dest=field,
            type=_number(kind, minimum, maximum),
            default=default,
            metavar=metavar,
            help=f"{text} (default: {default})",
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
    _add_affinity(run)


# The run options that set a workload dimension: option, DatasetSize field, what it sets.
DATASET_OPTIONS = (
    ("--users", "users", "users in the dataset"),
    ("--posts", "posts_per_user", "posts per user"),
    ("--comments", "comments_per_post", "comments per post"),
    ("--tags", "tags_per_post", "tags per post"),
    (
        "--payload",
        "payload",
        "bytes of text in a payload column of every row, so a row is as wide as yours and "
        "a JOIN that repeats a parent row pays for it",
    ),
)
MAX_DATASETS = 64


def _add_dataset_options(run: argparse.ArgumentParser) -> None:
    """Each a list: every combination of the values is seeded and measured."""
    default_size = DatasetSize()
    for option, field, text in DATASET_OPTIONS:
        low = 0 if field == "payload" else 1
        default = getattr(default_size, field)
        run.add_argument(
            option,
            dest=field,
            type=_numbers(int, low, math.inf, "whole numbers"),
            default=(default,),
            metavar="N[,N...]",
            help=f"{text} (default: {default}; at most {MAXIMUM[field]:,}); every combination "
            "of the dataset options is seeded and measured",
        )


def _add_report_parser(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="print the tables of result files; --out writes a Markdown and HTML report",
        description=(
            "Read result files written by run (each is validated against the schema; a "
            "folder stands for the result files in it) and print their tables. --out DIR "
            "writes report.md and a self-contained report.html (plots embedded) with where "
            "the numbers come from, a decision guide computed from the tables, the outcome "
            "matrix, the tables and the PNG plots: time per operation against latency when "
            "it was measured at several latencies, throughput and p99 against concurrency "
            "when it was measured under load, and statements per loading strategy. --plot "
            "writes only the PNG plots, beside the first file or in --output; "
            "--verification adds the verification catalogue's matrix (patterns x drivers x "
            "modes) from a file written by verify --json."
        ),
    )
    report.add_argument(
        "results", type=Path, nargs="+", metavar="RESULT", help="result files or folders"
    )
    report.add_argument("--out", type=Path, metavar="DIR", help="write the full report here")
    report.add_argument(
        "--verification",
        type=Path,
        metavar="MATRIX.json",
        help="with --out: add the pattern matrix from a sqla-bench verify --json file",
    )
    report.add_argument("--plot", action="store_true", help="write PNG plots")
    report.add_argument(
        "--output", type=Path, metavar="DIR", help="folder for --plot (default: the file's)"
    )


def _add_affinity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--affinity",
        default="auto",
        metavar="CPUS",
        help="CPUs to run on: auto (one: the last this process may use; repeated runs agree "
        "far better), all (leave it to the OS), or a list such as 0,1 (default: auto)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = ["sqla-bench", *argv]
    # Piped output (CI logs, files) gets a width the matrix fits in, not rich's 80.
    console = Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)
    # The MissingGreenlet patterns abandon a cursor coroutine on purpose (see pyproject).
    warnings.filterwarnings(
        "ignore", "coroutine 'Connection.cursor' was never awaited", RuntimeWarning
    )
    # SIGTERM unwinds like Ctrl-C, so containers and proxies are stopped on the way out.
    signal.signal(signal.SIGTERM, _raise_stop)
    servers: Servers | None = None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="sqla-bench-") as sqlite_dir,
            Servers(Path(sqlite_dir), say=_say_on_stderr) as servers,
        ):
            return COMMANDS[args.command](args, servers, console)
    except ConfigError as error:
        _fail(f"sqla-bench: error: {error}", EXIT_USAGE)
    except KeyboardInterrupt as interruption:
        what, status = _stopped_by(interruption)
        _fail(f"sqla-bench: {what}", status)
    except Exception as error:  # the safety net under every check: a bug of ours
        _internal_error(error, args.argv, servers.urls() if servers else [])
    finally:
        # Abandoned cursor coroutines (the MissingGreenlet cells) are finalised now, while
        # the warning filter above still works, not noisily at interpreter shutdown.
        gc.collect()


def _internal_error(error: Exception, argv: list[str], urls: list[URL]) -> NoReturn:
    """One line, and the traceback in a file of its own (passwords redacted): an error
    that no check foresaw is a bug to report, not a usage error."""
    text = redact("".join(traceback.format_exception(error)), *urls)
    with tempfile.NamedTemporaryFile(
        "w", prefix="sqla-bench-traceback-", suffix=".txt", delete=False
    ) as file:
        file.write(f"{shlex.join(argv)}\n\n{text}")
    first = redact(f"{type(error).__name__}: {error}", *urls).splitlines()[0][:200]
    _fail(
        f"sqla-bench: internal error: {first}; please report it with the command line "
        f"and the traceback in {file.name}",
        EXIT_SOFTWARE,
    )


def _say_on_stderr(text: str) -> None:
    """Progress that is not a result (containers starting): stderr keeps stdout clean."""
    print(f"sqla-bench: {text}", file=sys.stderr, flush=True)


def _fail(message: str, status: int) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(status)


# --- list -------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    scenarios = Table(title="Scenarios", show_lines=False)
    for column in ("id", "what it does", "parameters"):
        scenarios.add_column(column)
    for case in discover(("scenario", "web")):  # web: measured with --concurrency
        grid = ", ".join(
            f"{name}: {'/'.join(map(str, values))}" for name, values in case.params.items()
        )
        scenarios.add_row(case.id, case.doc, grid)
    console.print(scenarios)
    console.print(_strategies_table())
    console.print(
        f"Verification patterns: {len(discover('pattern'))} (sqla-bench verify --only patterns)"
    )
    targets = Table(title="Targets")
    for column in ("target", "status", "drivers"):
        targets.add_column(column)
    for name in TARGETS:
        target = servers.plan(name)  # a container is only named here, not started
        if isinstance(target, Unavailable):
            targets.add_row(name, f"unavailable: {target.reason}", "")
            continue
        drivers = ", ".join(f"{d.spec.name} ({d.spec.mode})" for d in target.drivers)
        where = "started when used" if isinstance(target, Pending) else target.safe_url
        targets.add_row(name, f"{target.source}: {where}", drivers)
    console.print(targets)
    return 0


def _strategies_table() -> Table:
    table = Table(title="Loading strategies (scenarios/strategies.py)")
    for column in ("strategy", "SQL per relationship", "in async code", "what it is"):
        table.add_column(column)
    for strategy in STRATEGIES.values():
        sql = KIND_WORDS[strategy.sql].format(chunk=strategy.chunk)
        table.add_row(strategy.name, sql, _in_async(strategy), strategy.doc)
    return table


def _in_async(strategy: Strategy) -> str:
    if strategy.only is not None:
        return f"{strategy.only} only"
    if strategy.implicit_io:
        return "MissingGreenlet"
    return "raises" if strategy.refuses else "works"


# --- verify -----------------------------------------------------------------------------


def selected_targets(
    names: list[str] | None, servers: Servers
) -> tuple[list[Target], list[Unavailable]]:
    """The named targets (each must be available), or every available one and the rest.

    Containers are started here, side by side, for targets that have no URL.
    """
    if not names:
        resolved = servers.targets(TARGETS)
        available = [target for target in resolved if isinstance(target, Target)]
        return available, [target for target in resolved if isinstance(target, Unavailable)]
    planned_targets(names, servers)  # an unavailable one stops us before any container starts
    return [t for t in servers.targets(dict.fromkeys(names)) if isinstance(t, Target)], []


def planned_targets(names: list[str], servers: Servers) -> list[Target | Pending]:
    """Where each named target will come from, without starting anything; one line and
    exit status 2 for an unknown or unavailable one."""
    for name in names:
        check_target_name(name)
    planned = [servers.plan(name) for name in dict.fromkeys(names)]
    for target in planned:
        if isinstance(target, Unavailable):
            raise ConfigError(target.reason)
    return planned


def cmd_verify(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    if args.json:
        check_writable(args.json)
    size = DatasetSize()
    targets, unavailable = selected_targets(args.target, servers)
    for target in targets:
        if target.name != "sqlite":
            check_reachable(target)
    cases = discover(KINDS[args.only])
    checks: list[Check] = []
    failures: list[str] = []
    loop = asyncio.new_event_loop()  # one loop for every async twin of the run
    try:
        with _progress(console) as progress:
            for target in targets:
                failure = _verify_target(target, cases, size, loop, progress, checks)
                failures += [failure] if failure else []
    finally:
        loop.close()
    # Whatever finished is shown and saved, also when a target failed part-way.
    for target in targets:
        console.print(
            _matrix(target, [c for c in checks if c.driver.startswith(f"{target.name}-")])
        )
    _print_summary(console, checks, unavailable)
    if args.json:
        _write_json(args.json, checks, targets)
    for failure in failures:
        print(f"sqla-bench: incomplete: {failure}", file=sys.stderr)
    if failures:
        return EXIT_INCOMPLETE
    return 0 if all(check.passed for check in checks) else EXIT_MISMATCH


def _verify_target(
    target: Target,
    cases: list,
    size: DatasetSize,
    loop: asyncio.AbstractEventLoop,
    progress: Progress,
    checks: list[Check],
) -> str | None:
    """Append each finished check to ``checks``; return why the target stopped, if it did."""
    try:
        prepare_database(target.drivers[0], size)
        for driver in target.drivers:
            cells = applicable_cells(cases, setting_for(driver), size)
            task = progress.add_task(driver.id, total=len(cells))
            env = DriverEnv(driver, size)
            checks += check_driver(env, cells, loop, lambda _, task=task: progress.advance(task))
    except (SQLAlchemyError, OSError) as error:
        # The database refused us or went away: one line, no traceback, password removed.
        return failure(target, error)
    return None


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def short(outcome: Works | Raises | None) -> str:
    """A matrix cell: ``ok 2`` or ``MissingGreenlet 1/2`` (completed/started)."""
    if outcome is None:
        return "-"
    if isinstance(outcome, Works):
        return f"ok {outcome.statements}"
    name = outcome.error.__name__
    if outcome.wrapped_in is not None:
        name = f"{outcome.wrapped_in.__name__}({name})"
    counts = f"{outcome.statements}" + (
        f"/{outcome.started}" if outcome.started != outcome.statements else ""
    )
    return f"{name} {counts}"


def _row_key(check: Check) -> tuple[str, str]:
    return check.case.id, " ".join(f"{name}={value}" for name, value in check.params.items())


def _matrix(target: Target, checks: list[Check]) -> Table:
    drivers = list(dict.fromkeys(check.driver for check in checks))
    version = ".".join(map(str, sqlalchemy_version()))
    table = Table(title=f"{target.name} ({target.safe_url}), SQLAlchemy {version}")
    table.add_column("pattern / scenario", no_wrap=True)
    table.add_column("parameters", no_wrap=True)
    for driver in drivers:
        _, name, mode = driver.split("-")
        table.add_column(f"{name}\n{mode}", no_wrap=True)
    rows: dict[tuple[str, str], dict[str, Check]] = {}
    for check in checks:
        rows.setdefault(_row_key(check), {})[check.driver] = check
    for (case_id, params), by_driver in rows.items():
        table.add_row(case_id, params, *(_cell(by_driver.get(driver)) for driver in drivers))
    return table


def _cell(check: Check | None) -> str:
    if check is None or check.observation is None:
        return "[dim]n/a[/dim]"
    text = short(check.observed)
    if check.passed:
        return text
    expected = short(check.expected)
    # The outcome may be the one declared while the value, SQL or commits are not.
    said = f"expected {expected}" if expected != text else "see below"
    return f"[bold red]{text} ({said})[/bold red]"


def _print_summary(console: Console, checks: list[Check], unavailable: list[Unavailable]) -> None:
    ran = [check for check in checks if check.observation is not None]
    failed = [check for check in ran if not check.passed]
    console.print(
        "Cells read 'ok N' (works, N statements) or 'Error C/S' (raised after C statements "
        "completed, S started); StatementError(X) means X arrived wrapped. A cell that works "
        "is also held to its value, its SQL and, for a write, what was committed."
    )
    for check in failed:
        # One line per mismatch however long, so a log can be searched for it.
        line = f"[red]MISMATCH[/red] {escape(check.explain())}"
        console.print(line, highlight=False, soft_wrap=True)
    for target in unavailable:
        console.print(f"Not verified: {target.reason}")
    console.print(f"{len(ran) - len(failed)} passed, {len(failed)} failed")


def _write_json(path: Path, checks: list[Check], targets: list[Target]) -> None:
    document = {
        "sqlalchemy": ".".join(map(str, sqlalchemy_version())),
        "targets": {t.name: {"url": t.safe_url, "source": t.source} for t in targets},
        "checks": [_check_record(check) for check in checks if check.observation is not None],
    }
    try:
        path.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None


def _check_record(check: Check) -> dict[str, Any]:
    return {
        "case": check.case.id,
        "kind": check.case.kind,
        "params": check.params,
        "driver": check.driver,
        "expected": check.expected.describe(),
        "observed": check.observed.describe(),
        "passed": check.passed,
        "differences": check.differences,
    }


# --- run --------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    names = args.target or ["sqlite"]
    # Every option is checked against the planned targets before a container starts.
    planned = _plan(args, planned_targets(names, servers))
    chosen_cpus(args.affinity)
    started = datetime.now(timezone.utc)
    path = args.output or default_path(started, list(dict.fromkeys(names)))
    if args.csv and path.suffix == ".csv":  # the CSV would replace the result file
        raise ConfigError(f"--csv writes {path} itself: give --output a .json name")
    if args.dry_run:
        check_output_path(path)
        _print_plan(console, planned)
        return 0
    check_writable(path)
    targets, _ = selected_targets(names, servers)
    for target in targets:
        if target.name != "sqlite":
            check_reachable(target)
    plan = _plan(args, targets)
    pin_to(args.affinity)
    results = ResultFile(path, run_header(plan, args.argv, started))
    failures = _measure(plan, results, console)
    results.finish("incomplete" if failures else "complete", "; ".join(failures) or None)
    _print_tables(console, results.cells)
    if args.csv:
        write_csv(path.with_suffix(".csv"), results.cells)
    if args.plot:
        _plot(console, results.cells, path.parent, path.stem)
    return _run_summary(console, results, failures)


def _print_plan(console: Console, plan: RunPlan) -> None:
    """What a run with these options would measure, without measuring (--dry-run)."""
    for target in plan.targets:
        console.print(f"{target.name}: {target.source}", highlight=False)
    for driver in plan.selected_drivers():
        cells = sum(len(plan.cells(driver, size)) for size in plan.datasets)
        console.print(f"  {driver.id}: {cells} cells per setting", highlight=False)
    console.print(
        f"{len(plan.datasets)} datasets, latencies {plan.latencies or 'none (direct)'}, "
        f"pools {plan.pools()}, concurrency {plan.concurrency or 'one call at a time'}",
        highlight=False,
    )


def _print_tables(console: Console, cells: list) -> None:
    single = [cell for cell in cells if cell.load is None]
    loaded = [cell for cell in cells if cell.load is not None]
    for table in tables(single):
        console.print(table.to_rich())
    for table in load_tables(loaded):
        console.print(table.to_rich())
    console.print(NOTE if single else LOAD_NOTE, style="dim")


def _plot(console: Console, cells: list, folder: Path, stem: str) -> None:
    from bench.plots import write_plots  # matplotlib: imported when a plot is drawn

    written = write_plots(cells, folder, stem)
    for path in written:
        console.print(f"plot: {path}", highlight=False)
    if not written:
        console.print("no plot: measure at several --latency values or --concurrency levels")


# --- report ------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    plots = args.output or (args.results[0] if args.results[0].is_dir() else args.results[0].parent)
    if args.plot:
        check_writable(plots / "probe.png")
    if args.out:
        check_writable(args.out / "report.md")
    cells: dict[tuple, Any] = {}
    for source in args.results:
        headers, run_cells = load_run(source)
        if len(headers) > 1:
            console.print(f"{source}: {len(headers)} runs, {len(run_cells)} cells")
        for header in headers:
            run = header["run"]
            count = f"{len(run_cells)} cells, " if len(headers) == 1 else ""
            console.print(
                f"{source}: {run_status(header)}, {count}started {run['started']}, "
                f"SQLAlchemy {header['environment']['sqlalchemy']}",
                highlight=False,
            )
        cells |= {cell.key: cell for cell in run_cells}
    _print_tables(console, list(cells.values()))
    if args.plot:
        _plot(console, list(cells.values()), plots, args.results[0].stem)
    if args.out:
        from bench.document import write_report  # draws plots: matplotlib

        for path in write_report(args.results, args.out, args.verification):
            console.print(f"written: {path}", highlight=False)
    return 0


def _datasets(args: argparse.Namespace) -> tuple[DatasetSize, ...]:
    """Every combination of the dataset options' values (each a workload dimension)."""
    lists = [dict.fromkeys(getattr(args, field)) for _, field, _ in DATASET_OPTIONS]
    combinations = math.prod(len(values) for values in lists)
    if combinations > MAX_DATASETS:
        raise ValueError(
            f"the dataset options make {combinations} datasets, each seeded and measured; "
            f"at most {MAX_DATASETS} in one run: split it into several runs"
        )
    return tuple(DatasetSize.of(*values) for values in itertools.product(*lists))


def _in_option_names(message: str) -> str:
    """A dataset's complaint about one of its fields, in the words of the run option."""
    for option, field, _ in DATASET_OPTIONS:
        message = message.replace(f"dataset {field} ", f"{option} ")
    return message


def _plan(args: argparse.Namespace, targets: Sequence[Target | Pending]) -> RunPlan:
    try:
        policy = Policy(**{field: getattr(args, field) for _, field, *_ in POLICY_OPTIONS})
        datasets = _datasets(args)
    except ValueError as error:
        raise ConfigError(_in_option_names(str(error))) from None
    return RunPlan(
        targets=tuple(targets),
        modes=tuple(dict.fromkeys(args.mode or MODES)),
        drivers=_names(args.driver),
        scenarios=_names(args.scenario),
        strategies=_names(args.strategy),
        datasets=datasets,
        policy=policy,
        latencies=args.latency,
        grid=tuple(dict(args.param or ()).items()),
        concurrency=args.concurrency,
        pool_sizes=args.pool_size,
        max_overflow=args.max_overflow,
        pool_timeout=args.pool_timeout,
        load_seconds=args.load_seconds,
        on_error=args.on_error,
    )


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(dict.fromkeys(values)) if values else None


class StopOnInterrupt:
    """Ctrl-C asks the run to stop at the next safe point instead of raising anywhere.

    Python's own handler raises KeyboardInterrupt wherever the interpreter happens to be,
    including inside a garbage collector callback, where it is printed and swallowed (seen
    here: the run then went on to the end). Polling a flag between calls always stops.
    A second Ctrl-C raises at once, for a call that hangs. SIGTERM (what CI runners, tox
    and ``timeout`` send) is the same request, so a terminated run also stops its proxy
    and containers and keeps a valid file of what finished.
    """

    def __init__(self) -> None:
        self.signal: int | None = None  # the signal that asked to stop

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopOnInterrupt:
        self._previous = {signum: signal.signal(signum, self._request) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _request(self, signum: int, frame: object) -> None:
        self.signal = signum
        signal.signal(signum, _raise_stop)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop as Ctrl-C does (clean up, keep what finished), but say so."""


def _raise_stop(signum: int, frame: object) -> None:
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _stopped_by(stop: BaseException, signum: int | None = None) -> tuple[str, int]:
    """What stopped us, in words, and the exit status for it (128 + the signal)."""
    if isinstance(stop, Terminated) or signum == signal.SIGTERM:
        return "terminated (SIGTERM)", 128 + signal.SIGTERM
    return "interrupted", 128 + signal.SIGINT


def _measure(plan: RunPlan, results: ResultFile, console: Console) -> list[str]:
    """Run the plan; an interruption or a crash still leaves a valid file of what finished."""
    stop = StopOnInterrupt()
    try:
        with _progress(console) as progress, stop:
            task = progress.add_task("starting", total=None)
            reporting = _run_progress(console, progress, task, lambda: stop.requested)
            runner = Runner(plan, results, reporting)
            progress.update(task, total=runner.total_cells())
            return runner.run()
    except KeyboardInterrupt as interruption:
        what, status = _stopped_by(interruption, stop.signal)
        results.finish("interrupted", what)
        _fail(
            f"sqla-bench: {what}: {len(results.cells)} finished cells kept in {results.path}",
            status,
        )
    except BaseException as error:
        reason = redact(f"{type(error).__name__}: {str(error)[:200]}", *plan.target_urls())
        results.finish("failed", reason)
        print(
            f"sqla-bench: {len(results.cells)} finished cells kept in {results.path}",
            file=sys.stderr,
        )
        raise


def _run_progress(
    console: Console, progress: Progress, task: TaskID, stop_requested: Callable[[], bool]
) -> RunProgress:
    def on_driver(description: str, cells: int) -> None:
        progress.update(task, description=description)
        if not console.is_terminal:  # a log gets one line per driver instead of a bar
            console.print(f"measuring {description}: {cells} cells", highlight=False)

    return RunProgress(on_driver, lambda cell: progress.advance(task), stop_requested)


def _run_summary(console: Console, results: ResultFile, failures: list[str]) -> int:
    differ = [cell for cell in results.cells if not cell.matches_expected]
    raised = sum(cell.outcome == "raised" for cell in results.cells)
    console.print(
        f"{len(results.cells)} cells measured, {raised} raised, "
        f"{len(differ)} differ from the catalogue. Results: {results.path}",
        highlight=False,
    )
    for cell in differ:
        what = "; ".join(cell.differences) or f"expected {cell.expected}"
        console.print(
            "[red]DIFFERS[/red] "
            + escape(
                f"{cell.case} {cell.params} on {cell.target}-{cell.driver}-{cell.mode}: {what}"
            ),
            highlight=False,
            soft_wrap=True,
        )
    for failure_line in failures:
        print(f"sqla-bench: incomplete: {failure_line}", file=sys.stderr)
    if failures:
        return EXIT_INCOMPLETE
    return EXIT_MISMATCH if differ else 0


# --- selfcheck ---------------------------------------------------------------------------


def cmd_selfcheck(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    checks = list(dict.fromkeys(args.only or CHECKS))
    postgresql = servers.plan("postgresql")
    skipped = []
    for check in ("driver", "proxy"):  # the checks that need PostgreSQL
        if check in checks and isinstance(postgresql, Unavailable):
            if args.only:
                raise ConfigError(postgresql.reason)
            checks.remove(check)
            skipped.append(f"{check}: skipped, {postgresql.reason}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = args.output or LOCAL_RESULTS / f"selfcheck-{stamp}"
    check_writable(folder / "probe.json")
    pin_to(args.affinity)
    if "driver" in checks or "proxy" in checks:
        postgresql = servers.target("postgresql")
    figures = _selfcheck_figures(checks, args, servers, postgresql, folder, console)
    table = Table(title="sqla-bench selfcheck", title_justify="left")
    for column in ("figure", "value", "goal", "met", "how"):
        table.add_column(column)
    for figure in figures:
        met = {True: "yes", False: "[bold red]no[/bold red]", None: ""}[figure.met]
        table.add_row(figure.name, figure.shown, figure.goal, met, figure.how)
    console.print(table)
    for line in skipped:
        console.print(line, highlight=False)
    console.print(f"Result files: {folder}", highlight=False)
    return EXIT_MISMATCH if any(figure.met is False for figure in figures) else 0


def _selfcheck_figures(
    checks: list[str],
    args: argparse.Namespace,
    servers: Servers,
    postgresql: Target | Pending | Unavailable,
    folder: Path,
    console: Console,
) -> list[Figure]:
    def say(text: str) -> None:
        console.print(text, style="dim", highlight=False)

    figures: list[Figure] = []
    if "overhead" in checks:
        figures += overhead(servers.target("sqlite"), folder, say)
    if "driver" in checks or "proxy" in checks:
        check_reachable(postgresql)
    if "driver" in checks:
        figures += driver_against_pgbench(postgresql, args.seconds, folder, say)
    if "proxy" in checks:
        figures += proxy_cost(postgresql, args.seconds, folder, say)
    if "cv" in checks:
        figures += repeat_variation(args.repeats, args.affinity, folder, say)
    return figures


# --- compare ---------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    gate = Gate(min_effect=args.min_effect, alpha=args.alpha)
    comparison = compare(load_run(args.base), load_run(args.new), gate)
    if args.format == "json":
        print(json.dumps(compare_json(comparison, gate), indent=2))
    elif args.format == "markdown":
        print(to_markdown(comparison, gate), end="")
    else:
        _print_comparison(console, comparison, gate)
    return EXIT_MISMATCH if comparison.regressed else 0


def _print_comparison(console: Console, comparison: Comparison, gate: Gate) -> None:
    for warning in comparison.warnings:
        console.print(f"warning: {warning}", style="yellow", highlight=False)
    title = f"sqla-bench compare: {len(comparison.cells)} cells in both runs"
    table = Table(title=title, title_justify="left")
    for column in COMPARE_COLUMNS:
        table.add_column(column)
    for row in comparison_rows(comparison):
        style = {"changed": "bold red", "slower": "bold red", "faster": "green"}
        table.add_row(*(row[c] for c in COMPARE_COLUMNS), style=style.get(row["verdict"]))
    console.print(table)
    for title, missing in (
        ("only in base", comparison.only_in_base),
        ("only in new", comparison.only_in_new),
    ):
        for cell in missing:
            console.print(f"{title}: {cell_name(cell)}", highlight=False)
    console.print(summary_line(comparison, gate), highlight=False)


# --- baseline ------------------------------------------------------------------------------


def cmd_baseline(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    targets, unavailable = selected_targets(args.target, servers)
    _check_baseline_folder(args.folder, [target.name for target in targets], args.update)
    for target in targets:
        if target.name != "sqlite":
            check_reachable(target)
    plan = RunPlan(targets=tuple(targets), policy=BASELINE_POLICY)
    started = datetime.now(timezone.utc)
    path = LOCAL_RESULTS / f"baseline-{started:%Y%m%d-%H%M%S}.json"
    check_writable(path)
    results = ResultFile(path, run_header(plan, args.argv, started))
    failures = _measure(plan, results, console)
    results.finish("incomplete" if failures else "complete", "; ".join(failures) or None)
    for target in unavailable:
        console.print(f"{target.name}: skipped, {target.reason}", highlight=False)
    if failures:
        print(f"sqla-bench: incomplete: {'; '.join(failures)}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if args.update:
        for written in write_baselines(results.header, results.cells, args.folder):
            console.print(f"baseline written: {written}", highlight=False)
        return 0
    differences = changed_cells(check_baselines(results.header, results.cells, args.folder))
    for line in differences:
        console.print(line, style="bold red", highlight=False)
    console.print(
        f"{len(results.cells)} cells on {', '.join(t.name for t in targets)}: "
        f"{len(differences)} differ from the baselines in {args.folder}",
        highlight=False,
    )
    return EXIT_MISMATCH if differences else 0


def _check_baseline_folder(folder: Path, targets: list[str], update: bool) -> None:
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


# --- containers --------------------------------------------------------------------------


def cmd_containers(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    if args.all and not args.prune:
        raise ConfigError("--all only goes with --prune")
    try:
        if args.prune:
            removed = prune(everything=args.all, say=lambda line: console.print(line))
            console.print(f"removed {len(removed)} container(s)")
        left = containers()
    except ContainerError as error:
        raise ConfigError(str(error)) from None
    table = Table(title="sqla-bench containers", title_justify="left")
    for column in ("id", "target", "image", "status", "owner"):
        table.add_column(column)
    for leftover in left:
        table.add_row(
            leftover.id, leftover.target, leftover.image, leftover.status, _owner(leftover)
        )
    console.print(table if left else "no sqla-bench containers")
    return 0


def _owner(leftover: Leftover) -> str:
    state = {True: "running", False: "ended: --prune removes it", None: "on another host"}
    return f"{leftover.owner or '?'} ({state[leftover.owner_alive]})"


COMMANDS = {
    "list": cmd_list,
    "verify": cmd_verify,
    "run": cmd_run,
    "selfcheck": cmd_selfcheck,
    "report": cmd_report,
    "compare": cmd_compare,
    "baseline": cmd_baseline,
    "containers": cmd_containers,
}
