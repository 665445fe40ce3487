"""A load from several worker processes (``run --processes N``), as a deployment of N
uvicorn or gunicorn workers runs: each process has its own engine and pool and runs its
share of the load's workers; the measuring process starts them, opens one measuring
window for all (``time.perf_counter`` is the system's monotonic clock here, the same in
every process), and adds up what they report. Server connections are polled from the
measuring process, so the peak is the deployment's, all processes together.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.kernel import Window, repeat_in_window, run_workers
from sqla_bench.measuring.load import Load, pool_of, tally, worker_operation
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.registry import discover
from sqla_bench.servers.children import Child, ChildFailed
from sqla_bench.servers.targets import Driver

START_SECONDS = 60.0  # importing SQLAlchemy and a driver in a new interpreter
SLACK_SECONDS = 30.0  # beyond the load's own length, before a silent worker is given up


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process needs to build its engine and operation (picklable)."""

    driver: Driver  # routed: through the latency proxy or PgBouncer, as the run's
    size: DatasetSize
    pool: dict[str, Any]
    pgbouncer: str | None
    case_id: str
    modules: tuple[str, ...]  # an application's twins (--scenarios), or ()
    params: dict[str, Any]
    workers: int
    cwd: str


def worker_specs(
    env: DriverEnv,
    case_id: str,
    params: dict[str, Any],
    concurrency: int,
    processes: int,
    modules: tuple[str, ...],
) -> list[WorkerSpec]:
    """A spec per worker process: ``env``'s driver, dataset, pool and route, and its
    share of the ``concurrency`` workers."""
    where = (env.routed, env.size, env.pool, env.setting.pgbouncer)
    return [
        WorkerSpec(*where, case_id, modules, dict(params), workers, os.getcwd())
        for workers in shares(concurrency, processes)
        if workers
    ]


def shares(concurrency: int, processes: int) -> list[int]:
    """``concurrency`` workers spread over ``processes`` as evenly as they go."""
    base, extra = divmod(concurrency, processes)
    return [base + (1 if index < extra else 0) for index in range(processes)]


class WorkerProcess(Child):
    """The measuring process's handle on one worker process."""

    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(multiprocessing.get_context("spawn"), _serve, spec, daemon=True)
        reply = self._first_reply(START_SECONDS, "a worker process")
        if reply != "ready":
            self.close()
            raise ChildFailed(f"a worker process did not start: {reply}")

    def start(self, window: Window) -> None:
        self._control.send(("run", window))

    def result(self, seconds: float) -> dict[str, Any]:
        if not self._control.poll(seconds):
            raise ChildFailed(f"a worker process did not report within {seconds:g} s")
        return self._control.recv()


@contextlib.contextmanager
def started(specs: Sequence[WorkerSpec]) -> Iterator[list[WorkerProcess]]:
    """A worker process per spec, each ready (engine made, nothing run); all stopped on
    leaving, whatever ends the block."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(WorkerProcess(spec)) for spec in specs]


def run_window(handles: Sequence[WorkerProcess], window: Window) -> list[dict[str, Any]]:
    """Every process runs its workers in ``window``; what each reports."""
    for handle in handles:
        handle.start(window)
    wait = window.remaining() + SLACK_SECONDS
    return [handle.result(wait) for handle in handles]


def merge(load: Load, reports: Sequence[dict[str, Any]]) -> None:
    """The processes' tallies as one load; each process's CPU and throughput kept."""
    offset = 0
    for report in reports:
        load.samples_ns += report["samples_ns"]
        load.pool_wait_ns += report["pool_wait_ns"]
        load.completed += report["completed"]
        load.operations += report["operations"]
        for number, count in enumerate(report["per_worker"]):
            load.per_worker[offset + number] = count
        offset += len(report["per_worker"])
        for name, count in report["errors"].items():
            load.errors[name] += count
        load.first_error = load.first_error or report["first_error"]
        load.checked_out_after = (load.checked_out_after or 0) + report["checked_out_after"]
    load.worker_cpu = [report["cpu_seconds"] for report in reports]
    load.extra["processes"] = [
        {"workers": len(report["per_worker"]), "completed": report["completed"],
         "cpu_seconds": round(report["cpu_seconds"], 3)}
        for report in reports
    ]  # fmt: skip


# --- the worker process ------------------------------------------------------------------


def _serve(control: Connection, spec: WorkerSpec, client_cpus: set[int] | None) -> None:
    # A deployment's workers run on any CPU (the measuring process may be pinned to one).
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    try:
        env, operation = _prepare(spec)
    except Exception as error:  # the worker's one line back to the run
        control.send(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
        return
    loop = asyncio.new_event_loop()
    control.send("ready")
    _, window = control.recv()  # ("run", the window every process shares)
    control.send(_run(env, operation, window, spec.workers, loop))
    with contextlib.suppress(EOFError, OSError):
        control.recv()  # ("stop",), or the pipe closing


def _prepare(spec: WorkerSpec) -> tuple[DriverEnv, Any]:
    if spec.modules and spec.cwd not in sys.path:
        sys.path.insert(0, spec.cwd)  # an application's module, as the run found it
    kinds = ("scenario",)
    case = next(case for case in discover(kinds, spec.modules) if case.id == spec.case_id)
    env = DriverEnv(spec.driver, spec.size, None, spec.pool, spec.pgbouncer)
    function = case.function(env.mode)
    params = spec.params
    return env, worker_operation(env, lambda session: function(session, **params))


def _run(env: DriverEnv, operation: Any, window: Window, workers: int, loop: Any) -> dict:
    load = Load(workers)
    lock = threading.Lock()
    started = time.process_time()
    runners = [
        repeat_in_window(operation, window, tally(load, n, window, lock)) for n in range(workers)
    ]
    run_workers(runners, operation.awaits, loop)
    checked_out = pool_of(env).checkedout()
    loop.run_until_complete(env.dispose())
    return {
        "samples_ns": load.samples_ns,
        "pool_wait_ns": load.pool_wait_ns,
        "completed": load.completed,
        "operations": load.operations,
        "per_worker": [load.per_worker[n] for n in range(workers)],
        "errors": dict(load.errors),
        "first_error": load.first_error,
        "checked_out_after": checked_out,
        "cpu_seconds": time.process_time() - started,
    }
