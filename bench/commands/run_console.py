"""A measuring run on the console, for the commands that measure: the pipeline
(``sqla_bench.run.pipeline``) with progress drawn (a bar on a terminal, a line per
driver in a log) and Ctrl-C or SIGTERM taken at a safe point, keeping what finished.

Kept apart from ``present``, which prints what result files hold: the commands that
only read results never load the runner."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from sqla_bench.base.errors import OutputError, fail
from sqla_bench.base.stopping import StopOnInterrupt, stopped_by
from sqla_bench.commands.present import say_on_stderr
from sqla_bench.results.files import ResultFile
from sqla_bench.run.pipeline import databases_held, measure_into, open_results
from sqla_bench.run.plan import RunPlan
from sqla_bench.run.runner import Progress as RunProgress


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def run_progress(
    console: Console, progress: Progress, task: TaskID, stop_requested: Callable[[], bool]
) -> RunProgress:
    """The runner's reports, drawn: a bar on a terminal, a line per driver in a log."""

    def on_driver(description: str, cells: int) -> None:
        progress.update(task, description=description)
        if not console.is_terminal:
            console.print(f"measuring {description}: {cells} cells", highlight=False)

    def on_note(line: str) -> None:
        console.print(line, highlight=False)

    return RunProgress(on_driver, lambda cell: progress.advance(task), stop_requested, on_note)


def run_on_console(
    plan: RunPlan,
    path: Path,
    command: Sequence[str],
    console: Console,
    started: datetime | None = None,
) -> tuple[ResultFile, list[str]]:
    """``run_to_file`` with progress on the console and Ctrl-C taken at a safe point: an
    interruption exits 130 (143 for SIGTERM) saying where the finished cells are
    kept."""
    with databases_held(plan, say_on_stderr):
        return _run_on_console(plan, path, command, console, started)


def _run_on_console(
    plan: RunPlan, path: Path, command: Sequence[str], console: Console, started: datetime | None
) -> tuple[ResultFile, list[str]]:
    results = open_results(plan, path, command, started)
    stop = StopOnInterrupt()
    try:
        with progress_bar(console) as bar, stop:
            task = bar.add_task("starting", total=plan.total_cells())
            reporting = run_progress(console, bar, task, lambda: stop.requested)
            return results, measure_into(plan, results, reporting, stop)
    except KeyboardInterrupt as interruption:
        what, status = stopped_by(interruption, stop.signal)
        fail(f"sqla-bench: {what}: {_kept(results)}", status)
    except OutputError:
        raise  # its own line says what the file holds
    except BaseException:
        print(f"sqla-bench: {_kept(results)}", file=sys.stderr)
        raise


def _kept(results: ResultFile) -> str:
    return f"{len(results.cells)} finished cells kept in {results.path}"
