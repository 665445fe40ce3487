"""Concurrent load: C workers sharing one engine, each opening a session, running one
scenario call and closing, over and over, for a bounded time.

This module describes the operation and tallies it; the measuring kernel
(``sqla_bench.measuring.kernel``) runs the workers and times each operation: sync
workers are threads, async workers tasks on the run's event loop. Each operation is
timed from the moment it asks the pool for a connection, and the pool wait is timed on
its own. The first ``WARMUP_SHARE`` of the time warms the pool and caches up; operations
that start in it are not recorded, and throughput is what completed in the rest over its
length.

Around each load: the peak number of the engine's server connections (polled on a
separate connection) and the CPU time of the client, the latency proxy and the server,
so a plateau can be told apart: a full pool, or a saturated CPU.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.kernel import (
    Operation,
    Timed,
    Window,
)
from sqla_bench.results.load_figures import CpuBusy, cpu_bound

if TYPE_CHECKING:
    pass


@dataclass
class Load:
    """What C workers did in the measuring window."""

    concurrency: int
    window_seconds: float = 0.0
    samples_ns: list[int] = field(default_factory=list)  # each operation, pool wait included
    pool_wait_ns: list[int] = field(default_factory=list)
    completed: int = 0  # operations that ended inside the window: the throughput
    per_worker: Counter[int] = field(default_factory=Counter)  # completed, per worker
    errors: Counter[str] = field(default_factory=Counter)  # e.g. TimeoutError: pool timeouts
    first_error: str | None = None
    peak_connections: int | None = None
    server_max_connections: int | None = None
    # After the load: connections still checked out of the pool (a worker that did not
    # give its connection back, e.g. a cancelled task), and server connections left once
    # the engine was disposed. Anything but 0 is a leak, and fails the cell.
    checked_out_after: int | None = None
    connections_left: int | None = None
    cpu_seconds: dict[str, float | None] = field(default_factory=dict)
    watched_seconds: float = 0.0  # wall time between the two CPU readings
    operations: int = 0  # every operation that ended while watched, warm-up included
    cpu_alone: float | None = None  # client CPU seconds per operation run by one worker
    # With --processes: each worker process's CPU seconds over its load (the client's
    # figure is then their sum).
    worker_cpu: list[float] | None = None
    processes: int | None = None  # the worker processes it ran in; None: this process
    cpu_busy: CpuBusy | None = None  # how busy each CPU was over the load
    # Why the load did not measure what it claims (a load generator's worker that never
    # reached the app, say), in words: it fails the cell. None when it did.
    failure: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # what one kind of load adds

    @property
    def throughput(self) -> float:
        return self.completed / self.window_seconds if self.window_seconds else 0.0

    def cpu_per_operation(self) -> dict[str, float | None] | None:
        """The client's CPU seconds per operation under this load and alone, and their
        ratio: what the harness and the contention of the workers add to each operation.
        None where the client was not the measuring process's workers (a served
        load)."""
        client = self.cpu_seconds.get("client")
        if self.cpu_alone is None or client is None or not self.operations:
            return None
        under_load = client / self.operations
        ratio = under_load / self.cpu_alone if self.cpu_alone > 0 else None
        return {
            "alone": round(self.cpu_alone, 9),
            "under_load": round(under_load, 9),
            "ratio": None if ratio is None else round(ratio, 3),
        }

    @property
    def leak(self) -> str | None:
        """What the load left behind, in words; None when nothing."""
        found = []
        if self.checked_out_after:
            found.append(f"{self.checked_out_after} connections still checked out")
        if self.connections_left:
            found.append(f"{self.connections_left} server connections left after dispose")
        return "; ".join(found) or None

    def to_json(self) -> dict[str, Any]:
        """What the result file keeps beside the samples (which are the cell's own)."""
        return {
            "window_seconds": round(self.window_seconds, 6),
            "throughput": round(self.throughput, 3),
            "pool_wait_ns": self.pool_wait_ns,
            "errors": dict(self.errors),
            "first_error": self.first_error,
            "completed": self.completed,
            # How evenly the workers were served: completed operations per worker.
            "per_worker": [self.per_worker[n] for n in range(self.concurrency)],
            "peak_connections": self.peak_connections,
            "server_max_connections": self.server_max_connections,
            "checked_out_after": self.checked_out_after,
            "connections_left": self.connections_left,
            "cpu_seconds": self.cpu_seconds,
            "watched_seconds": round(self.watched_seconds, 6),
            "cpu_busy": None if self.cpu_busy is None else self.cpu_busy.to_json(),
            "cpu_bound": cpu_bound(
                self.cpu_seconds, self.watched_seconds, self.worker_cpu, busy=self.cpu_busy
            ),
            "cpu_per_operation": self.cpu_per_operation(),
            "failure": self.failure,
            **self.extra,
        }


def worker_operation(env: DriverEnv, call: Callable[[Any], Any]) -> Operation:
    """One operation under load: a session, its connection out of the pool (the wait),
    the call, and the session closed again."""
    return Operation(
        begin=env.session,
        acquire=lambda session: session.connection(),
        call=call,
        end=lambda session: session.close(),
        awaits=env.awaits,
    )


def tally(load: Load, number: int, window: Window, lock: threading.Lock) -> Callable:
    """What worker ``number`` adds to ``load`` for each operation it finishes."""

    def note(operation: Timed) -> None:
        if not window.overlaps(operation):
            with lock:
                load.operations += 1
            return  # entirely in the warm-up
        with lock:
            load.operations += 1
            _note(load, operation)
            if operation.error is None and window.holds(operation):
                load.completed += 1
                load.per_worker[number] += 1

    return note


def _note(load: Load, operation: Timed) -> None:
    error = operation.error
    if error is not None:
        load.errors[type(error).__name__] += 1
        load.first_error = load.first_error or f"{type(error).__name__}: {error}"[:200]
        return
    load.samples_ns.append(operation.elapsed_ns)
    load.pool_wait_ns.append(operation.wait_ns)


def pool_of(env: DriverEnv) -> Any:
    engine = env.default_engine
    return getattr(engine, "sync_engine", engine).pool
