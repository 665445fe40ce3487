"""The one pipeline: a plan -> the runner -> a result file.

::

    RunPlan (bench.plan)       which cells: targets x drivers x modes x cases x parameters
       |                       x datasets x latencies x pools x loads, checked up front
       v
    Runner (bench.runner)      per target: seed, route, then each cell in turn
       |
       v
    measuring path             bench.measure (calls, checked and traced ones), bench.load
       |                       and bench.web (under load); the clock is bench.kernel's
       v
    ResultFile (bench.results) written after every cell; finished as complete,
       |                       incomplete, interrupted or failed, never lost
       v
    compare / baseline / report / guide      read result files only

``run``, ``verify``, ``baseline`` and ``selfcheck`` are policies over it: which cells
(a plan), how many calls (its ``Policy``), and what is compared afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from sqla_bench import present
from sqla_bench.dblock import run_lock
from sqla_bench.environment import run_header
from sqla_bench.errors import OutputError, fail, redact
from sqla_bench.plan import RunPlan
from sqla_bench.results import ResultFile
from sqla_bench.runner import Progress, Runner
from sqla_bench.stopping import StopOnInterrupt, stopped_by


def run_to_file(
    plan: RunPlan,
    path: Path,
    command: Sequence[str],
    progress: Progress | None = None,
    started: datetime | None = None,
) -> tuple[ResultFile, list[str]]:
    """Measure ``plan`` into a result file at ``path``; returns it and why any target
    stopped part-way."""
    with databases_held(plan):
        results = open_results(plan, path, command, started)
        return results, measure_into(plan, results, progress or Progress())


def open_results(
    plan: RunPlan, path: Path, command: Sequence[str], started: datetime | None = None
) -> ResultFile:
    """A result file with the run's header and no cells yet, status running."""
    return ResultFile(path, run_header(plan, command, started or datetime.now(timezone.utc)))


def measure_into(
    plan: RunPlan, results: ResultFile, progress: Progress, stop: StopOnInterrupt | None = None
) -> list[str]:
    """Run ``plan`` into ``results``; why any target stopped part-way. However the run
    ends, the file is finished and valid: complete or incomplete, or interrupted (Ctrl-C,
    SIGTERM) or failed, and then the interruption or the error goes on up."""
    try:
        failures = Runner(plan, results, progress).run()
    except KeyboardInterrupt as interruption:
        results.finish("interrupted", stopped_by(interruption, stop and stop.signal)[0])
        raise
    except BaseException as error:
        reason = redact(f"{type(error).__name__}: {str(error)[:200]}", *plan.target_urls())
        results.finish("failed", reason)
        raise
    results.finish("incomplete" if failures else "complete", "; ".join(failures) or None)
    return failures


def run_on_console(
    plan: RunPlan,
    path: Path,
    command: Sequence[str],
    console: Console,
    started: datetime | None = None,
) -> tuple[ResultFile, list[str]]:
    """``run_to_file`` with progress on the console and Ctrl-C taken at a safe point: an
    interruption exits 130 (143 for SIGTERM) saying where the finished cells are kept."""
    with databases_held(plan, present.say_on_stderr):
        return _run_on_console(plan, path, command, console, started)


def _run_on_console(
    plan: RunPlan, path: Path, command: Sequence[str], console: Console, started: datetime | None
) -> tuple[ResultFile, list[str]]:
    results = open_results(plan, path, command, started)
    stop = StopOnInterrupt()
    try:
        with present.progress_bar(console) as bar, stop:
            task = bar.add_task("starting", total=plan.total_cells())
            reporting = present.run_progress(console, bar, task, lambda: stop.requested)
            return results, measure_into(plan, results, reporting, stop)
    except KeyboardInterrupt as interruption:
        what, status = stopped_by(interruption, stop.signal)
        fail(f"sqla-bench: {what}: {_kept(results)}", status)
    except OutputError:
        raise  # its own line says what the file holds
    except BaseException:
        print(f"sqla-bench: {_kept(results)}", file=sys.stderr)
        raise


@contextmanager
def databases_held(plan: RunPlan, say: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """The run's lock on each server database it creates tables in (``bench.dblock``),
    every one taken before any work and held until the run is done. A run on an
    application's own data creates nothing: it takes none."""
    if plan.workload is not None and plan.workload.existing:
        yield
        return
    with ExitStack() as held:
        for target in plan.targets:
            held.enter_context(run_lock(target.drivers[0], plan.wait_for_lock, say))
        yield


def _kept(results: ResultFile) -> str:
    return f"{len(results.cells)} finished cells kept in {results.path}"
