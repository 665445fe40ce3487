"""``sqla-bench selfcheck``: benchmarks of the harness itself, each beside its goal."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from sqla_bench.base.errors import EXIT_MISMATCH, ConfigError
from sqla_bench.commands import present
from sqla_bench.commands.option_groups import add_affinity
from sqla_bench.commands.options import MAX_SECONDS, number
from sqla_bench.results.files import LOCAL_RESULTS, check_writable
from sqla_bench.run.environment import pin_to
from sqla_bench.run.selfcheck import (
    CHECKS,
    Figure,
    driver_against_pgbench,
    overhead,
    proxy_cost,
    repeat_variation,
)
from sqla_bench.servers.targets import Servers, Unavailable, check_reachable

NEEDS_POSTGRESQL = ("driver", "proxy")
NEEDS_SERVERS = True  # targets come from URLs, containers or SQLite (cli._dispatch)
DESCRIPTION = (
    "Benchmarks of the harness, each printed beside its goal: (overhead) the time "
    "the harness adds per sample, sync and async, with asyncio.run and "
    "run_until_complete per call measured alongside; (driver) raw psycopg2 "
    "primary-key selects per second over pgbench -S -c 1 on the same server "
    "(needs SQLA_BENCH_POSTGRESQL_URL and pgbench); (proxy) the time the latency proxy "
    "adds per round trip beyond a 1 ms one-way delay, and a raw select at --latency 0 "
    "(timed straight to the server) over one without --latency (needs the same URL); "
    "(cv) the variation of each "
    "cell's median over repeated runs of the default matrix, for cells slower than "
    "1 ms. Takes a few minutes. Exit status 1 when a goal is missed."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        action="append",
        choices=CHECKS,
        help="run only this check, repeatable (default: all; driver is skipped without "
        "a PostgreSQL URL unless named)",
    )
    parser.add_argument(
        "--repeats",
        type=number(int, 2, 100),
        default=5,
        metavar="N",
        help="runs of the default matrix for the cv check (default: 5)",
    )
    parser.add_argument(
        "--seconds",
        type=number(float, 1, MAX_SECONDS),
        default=10.0,
        metavar="S",
        help="duration of pgbench and of the raw driver cell, and of the proxy check's "
        "three cells together in each of its rounds (default: 10)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help=f"folder for the result files it measures from (default: {LOCAL_RESULTS}/"
        "selfcheck-DATE-TIME)",
    )
    add_affinity(parser)


def execute(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    checks = list(dict.fromkeys(args.only or CHECKS))
    postgresql = servers.plan("postgresql")
    skipped = []
    for check in NEEDS_POSTGRESQL:
        if check in checks and isinstance(postgresql, Unavailable):
            if args.only:
                raise ConfigError(postgresql.reason)
            checks.remove(check)
            skipped.append(f"{check}: skipped, {postgresql.reason}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = args.output or LOCAL_RESULTS / f"selfcheck-{stamp}"
    check_writable(folder / "probe.json")
    pin_to(args.affinity)
    figures = _figures(checks, args, servers, folder, console)
    console.print(present.figures_table(figures))
    present.print_lines(console, skipped)
    console.print(f"Result files: {folder}", highlight=False)
    return EXIT_MISMATCH if any(figure.met is False for figure in figures) else 0


def _figures(
    checks: list[str], args: argparse.Namespace, servers: Servers, folder: Path, console: Console
) -> list[Figure]:
    def say(text: str) -> None:
        console.print(text, style="dim", highlight=False)

    figures: list[Figure] = []
    if "overhead" in checks:
        figures += overhead(servers.target("sqlite"), folder, say)
    if any(check in checks for check in NEEDS_POSTGRESQL):
        postgresql = servers.target("postgresql")
        check_reachable(postgresql)
        if "driver" in checks:
            figures += driver_against_pgbench(postgresql, args.seconds, folder, say)
        if "proxy" in checks:
            figures += proxy_cost(postgresql, args.seconds, folder, say)
    if "cv" in checks:
        figures += repeat_variation(args.repeats, args.affinity, folder, say)
    return figures
