"""``sqla-bench verify``: every pattern and scenario cell once per driver and mode, held
to the catalogue, printed as a matrix. The same pipeline as ``run``, with a policy of one
call (``ONCE``), so the two can never disagree; the run is kept in results/local/."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from sqla_bench.base.errors import EXIT_INCOMPLETE, EXIT_MISMATCH, ConfigError
from sqla_bench.commands import present
from sqla_bench.commands.option_groups import add_pgbouncer, add_target
from sqla_bench.commands.run_console import run_on_console
from sqla_bench.measuring.engines import sqlalchemy_version
from sqla_bench.measuring.policy import ONCE
from sqla_bench.reporting.report import observed
from sqla_bench.results.files import (
    LOCAL_RESULTS,
    VERIFY_SCHEMA_VERSION,
    CellRecord,
    check_writable,
)
from sqla_bench.run.plan import RunPlan
from sqla_bench.scenarios.registry import IN_PROCESS
from sqla_bench.servers.targets import Servers, Target, Unavailable, selected_targets

KINDS = {"all": IN_PROCESS, "patterns": ("pattern",), "scenarios": ("scenario",)}
NEEDS_SERVERS = True  # targets come from URLs, containers or SQLite (cli._dispatch)
DESCRIPTION = (
    "Run every pattern and scenario cell once per driver and mode, and print what "
    "happened (works with N statements, or raises X) beside what the catalogue "
    "expects. Exit status 1 when anything differs, 2 for bad input, 3 when a "
    "target failed part-way (what finished is still printed and saved)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target(parser, "every configured one")
    add_pgbouncer(parser)
    parser.add_argument(
        "--only", choices=sorted(KINDS), default="all", help="patterns, scenarios, or all (default)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help=f"also write the matrix as JSON (schema version {VERIFY_SCHEMA_VERSION})",
    )


def execute(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    if args.json:
        check_writable(args.json)
    started = datetime.now(timezone.utc)
    path = LOCAL_RESULTS / f"verify-{started:%Y%m%d-%H%M%S}.json"
    check_writable(path)
    targets, unavailable = selected_targets(args.target, servers)
    plan = RunPlan(
        targets=tuple(targets),
        kinds=KINDS[args.only],
        policy=ONCE,
        pgbouncer=args.pgbouncer,
        pgbouncer_pool=args.pgbouncer_pool_size,
    )
    results, failures = run_on_console(plan, path, args.argv, console, started)
    # Whatever finished is shown and saved, also when a target failed part-way.
    version = ".".join(map(str, sqlalchemy_version()))
    for target in targets:
        title = f"{target.name} ({target.safe_url}), SQLAlchemy {version}"
        cells = [cell for cell in results.cells if cell.target == target.name]
        console.print(present.verification_matrix(title, cells))
    _print_summary(console, results.cells, unavailable)
    if args.json:
        _write_json(args.json, results.cells, targets)
    present.print_incomplete(failures)
    if failures:
        return EXIT_INCOMPLETE
    return 0 if all(cell.matches_expected for cell in results.cells) else EXIT_MISMATCH


def _print_summary(
    console: Console, cells: list[CellRecord], unavailable: list[Unavailable]
) -> None:
    lost = [cell for cell in cells if cell.failed is not None]
    failed = [cell for cell in cells if not cell.matches_expected and cell.failed is None]
    console.print(present.VERIFY_LEGEND)
    present.print_differences(console, failed, "MISMATCH")
    present.print_failed(console, lost)
    present.print_lines(console, (f"Not verified: {target.reason}" for target in unavailable))
    outage = f", {len(lost)} not verified (the server went away)" if lost else ""
    passed = len(cells) - len(failed) - len(lost)
    console.print(f"{passed} passed, {len(failed)} failed{outage}")


def _write_json(path: Path, cells: list[CellRecord], targets: list[Target]) -> None:
    document = {
        "schema_version": VERIFY_SCHEMA_VERSION,
        "sqlalchemy": ".".join(map(str, sqlalchemy_version())),
        "targets": {t.name: {"url": t.safe_url, "source": t.source} for t in targets},
        "checks": [_check_record(cell) for cell in cells],
    }
    try:
        path.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None


def _check_record(cell: CellRecord) -> dict[str, Any]:
    return {
        "case": cell.case,
        "params": cell.params,
        "driver": f"{cell.target}-{cell.driver}-{cell.mode}",
        "pgbouncer": cell.pgbouncer,
        "expected": cell.expected,
        "observed": observed(cell),
        "passed": cell.matches_expected,
        "differences": cell.differences,
    }
