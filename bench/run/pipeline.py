"""The one pipeline: a plan -> the runner -> a result file.

::

    RunPlan           sqla_bench.run.plan: which cells (targets x drivers x modes x cases
       |              x parameters x datasets x latencies x pools x loads), checked up
       v              front
    Runner            sqla_bench.run.runner: per target, seed, route, then each cell
       |
       v
    measuring path    sqla_bench.measuring.measure (calls, checked and traced ones);
       |              sqla_bench.measuring.load and .web under load; the clock is
       v              sqla_bench.measuring.kernel's
    ResultFile        sqla_bench.results.files: written after every cell; finished as
       |              complete, incomplete, interrupted or failed, never lost
       v
    compare / baseline / report / guide      read result files only

``run``, ``verify``, ``baseline`` and ``selfcheck`` are policies over it: which cells
(a plan), how many calls (its ``Policy``), and what is compared afterwards. The console's
side of a run (progress, Ctrl-C) is ``sqla_bench.commands.run_console``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqla_bench.base.errors import redact
from sqla_bench.base.stopping import StopOnInterrupt, stopped_by
from sqla_bench.results.files import ResultFile
from sqla_bench.run.dblock import run_lock
from sqla_bench.run.environment import run_header
from sqla_bench.run.plan import RunPlan
from sqla_bench.run.runner import Progress, Runner


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


@contextmanager
def databases_held(plan: RunPlan, say: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """The run's lock on each server database it creates tables in
    (``sqla_bench.run.dblock``), every one taken before any work and held until the run
    is done. A run on an application's own data creates nothing: it takes none."""
    if plan.workload is not None and plan.workload.existing:
        yield
        return
    with ExitStack() as held:
        for target in plan.targets:
            held.enter_context(run_lock(target.drivers[0], plan.wait_for_lock, say))
        yield
