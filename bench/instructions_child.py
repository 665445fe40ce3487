"""The child that counts instructions (``run --instructions``), run as ``python -m
sqla_bench.instructions_child`` under callgrind by ``sqla_bench.run.instructions``: it
reads its spec on stdin, rebuilds the run's plan from the run's own words (the ``run``
command's parser), measures it with a window per cell and writes the result file the
spec names."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqla_bench.cli import build_parser, quiet_abandoned_cursors
from sqla_bench.commands.config_file import configured_runs
from sqla_bench.commands.run import add_arguments, plan_from
from sqla_bench.measuring import callgrind
from sqla_bench.measuring.callgrind import CUT_CALLER
from sqla_bench.results.files import CellRecord
from sqla_bench.run.instructions import child_policy
from sqla_bench.run.pipeline import run_to_file
from sqla_bench.run.plan import RunPlan
from sqla_bench.run.runner import Progress
from sqla_bench.servers.targets import Servers, selected_targets


def _child_plan(spec: dict[str, Any], servers: Servers) -> RunPlan:
    args = build_parser(["run"]).parse_args(spec["run"])
    # The options the run took from a file too (--config, or ./pyproject.toml: the child
    # starts in the run's folder), or it would count another workload than it timed.
    (args,), _ = configured_runs(args, spec["run"][1:], add_arguments)
    targets, _ = selected_targets(args.target or ["sqlite"], servers)
    plan = plan_from(args, targets)
    return replace(
        plan,
        policy=child_policy(plan.policy, spec["calls"]),
        latencies=None,
        pgbouncer=None,
        concurrency=None,
        processes=None,
        passes=1,
    )


def _on_cell(record: CellRecord) -> None:
    counted = f"{record.instructions:,}" if record.instructions else "not counted"
    print(f"  {record.case} {record.driver} {record.mode}: {counted}", file=sys.stderr)


def child_main() -> int:
    """Read the spec on stdin, measure its plan with a window per cell, write the
    result file it names."""
    quiet_abandoned_cursors()

    spec = json.loads(sys.stdin.read())
    output = Path(spec["output"])
    callgrind.counting_in(output.parent)
    command = ["sqla-bench", *spec["run"]]
    # SQLite's file goes in the child's own folder (removed with it by the parent): a
    # folder name of its own would be one more string that differs from run to run.
    sqlite_dir = output.parent / "sqlite"
    sqlite_dir.mkdir()
    with Servers(sqlite_dir, environ=spec["urls"]) as servers:
        plan = _child_plan(spec, servers)
        _, failures = run_to_file(plan, output, command, Progress(on_cell=_on_cell))
    if callgrind.window().closed and not callgrind.window().cut_seen:
        print(
            f"note: this Python's symbols do not name {CUT_CALLER}, so the counts include "
            "the misses of its type attribute cache, which moved counts by up to 3.3 % "
            "with memory layout alone here (a wider --instructions-tolerance may be needed)",
            file=sys.stderr,
        )
    return 3 if failures else 0


if __name__ == "__main__":
    raise SystemExit(child_main())
