"""A load's workers run: in this process (threads or tasks) or in worker processes
(``--processes``), and the client's CPU per operation alone, for comparison."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.kernel import Operation, Timed, Window, repeat_in_window, run_workers
from sqla_bench.measuring.load import Load, pool_of, tally, worker_operation
from sqla_bench.measuring.processes import WorkerSpec
from sqla_bench.measuring.watch import Watched, client_cpu, watch
from sqla_bench.results.load_figures import WARMUP_SHARE
from sqla_bench.scenarios.registry import Case


def run_load(
    env: DriverEnv,
    case: Case,
    params: dict[str, Any],
    concurrency: int,
    seconds: float,
    loop: asyncio.AbstractEventLoop,
    watched: Watched,
    processes: Sequence[WorkerSpec] = (),
) -> Load:
    """``concurrency`` workers on ``env`` for ``seconds`` (the first share is warm-up);
    in the worker processes ``processes`` describes instead, when it describes any."""
    load = Load(concurrency)
    function = case.function(env.mode)

    def call(session: Any) -> Any:
        return function(session, **params)

    # An empty pool, so the poller's count at the start is other clients' connections
    # only; opening connections again falls in the warm-up.
    loop.run_until_complete(env.dispose())
    operation = worker_operation(env, call)
    load.cpu_alone = cpu_alone(operation, loop)
    loop.run_until_complete(env.dispose())  # the load opens its connections again
    watching = watch(load, watched)
    # Worker processes are started, and ready, before the watch begins.
    with _processes(processes) as handles, watching:
        window = Window.starting_now(seconds, WARMUP_SHARE)  # once the watcher settled
        if handles:
            _from_processes(load, handles, window)
        else:
            _in_process(load, env, operation, window, loop)
        loop.run_until_complete(env.dispose())  # inside the watch: it counts what is left
    load.window_seconds = window.seconds
    if load.worker_cpu is not None:  # the client is this process and its workers
        client = (load.cpu_seconds.get("client") or 0.0) + sum(load.worker_cpu)
        load.cpu_seconds["client"] = round(client, 3)
    return load


def _in_process(
    load: Load, env: DriverEnv, operation: Operation, window: Window, loop: Any
) -> None:
    lock = threading.Lock()
    workers = [
        repeat_in_window(operation, window, tally(load, n, window, lock))
        for n in range(load.concurrency)
    ]
    run_workers(workers, operation.awaits, loop)
    load.checked_out_after = pool_of(env).checkedout()


def _processes(specs: Sequence[WorkerSpec]) -> contextlib.AbstractContextManager[list]:
    if not specs:
        return contextlib.nullcontext([])
    from sqla_bench.measuring.processes import started  # spawns interpreters: only when asked

    return started(specs)


def _from_processes(load: Load, handles: list, window: Window) -> None:
    from sqla_bench.measuring.processes import merge, run_window

    merge(load, run_window(handles, window))


# One worker's operations, run before a load to learn the client's CPU per operation
# alone: this many, or as many as end within the time (a slow operation's few suffice).
ALONE_OPERATIONS = 50
ALONE_SECONDS = 1.0


def cpu_alone(operation: Operation, loop: asyncio.AbstractEventLoop) -> float | None:
    """The client's CPU seconds per operation with one worker running it, through the
    same kernel path as a load's workers; the first (which opens a connection) is left
    out. None when fewer than two ended, or one failed."""
    ended: list[float] = []
    failed: list[BaseException] = []

    def note(timed: Timed) -> None:
        ended.append(client_cpu())
        if timed.error is not None:
            failed.append(timed.error)

    def another() -> bool:  # an operation that fails has no CPU alone to compare with
        return len(ended) <= ALONE_OPERATIONS and not failed

    window = Window.starting_now(ALONE_SECONDS, 0.0)
    run_workers([repeat_in_window(operation, window, note, another)], operation.awaits, loop)
    if failed or len(ended) < 2:
        return None
    return (ended[-1] - ended[0]) / (len(ended) - 1)
