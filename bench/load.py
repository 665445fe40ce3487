"""Concurrent load: C workers sharing one engine, each opening a session, running one
scenario call and closing, over and over, for a bounded time.

This module describes the operation and tallies it; the measuring kernel
(``bench.kernel``) runs the workers and times each operation: sync workers are threads,
async workers tasks on the run's event loop. Each operation is timed from the moment it
asks the pool for a connection, and the pool wait is timed on its own. The first
``WARMUP_SHARE`` of the time warms the pool and caches up; operations that start in it
are not recorded, and throughput is what completed in the rest over its length.

Around each load: the peak number of the engine's server connections (polled on a
separate connection) and the CPU time of the client, the latency proxy and the server,
so a plateau can be told apart: a full pool, or a saturated CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from sqla_bench.engines import DriverEnv
from sqla_bench.kernel import Deadline, Operation, Timed, Window, repeat_in_window, run_workers
from sqla_bench.scenarios.registry import Case

WARMUP_SHARE = 0.2
POLL_SECONDS = 0.02
SETTLE_SECONDS = 1.0
SERVER_PROCESSES = {"postgresql": ("postgres",), "mysql": ("mariadbd", "mysqld")}
# Client connections to this database other than the poller's own. An autovacuum worker
# shows in pg_stat_activity with the database's name too (seen in a freshly seeded
# container: a peak of 3 on a pool of 2), so only client backends count.
CONNECTIONS_SQL = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend'",
    "mysql": "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
    "WHERE DB = DATABASE() AND ID <> CONNECTION_ID()",
}


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
    # After the load: connections still checked out of the pool (a worker that did not
    # give its connection back, e.g. a cancelled task), and server connections left once
    # the engine was disposed. Anything but 0 is a leak, and fails the cell.
    checked_out_after: int | None = None
    connections_left: int | None = None
    cpu_seconds: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # what one kind of load adds

    @property
    def throughput(self) -> float:
        return self.completed / self.window_seconds if self.window_seconds else 0.0

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
            "checked_out_after": self.checked_out_after,
            "connections_left": self.connections_left,
            "cpu_seconds": self.cpu_seconds,
            **self.extra,
        }


def _operation(env: DriverEnv, call: Callable[[Any], Any]) -> Operation:
    """One operation under load: a session, its connection out of the pool (the wait),
    the call, and the session closed again."""
    return Operation(
        begin=env.session,
        acquire=lambda session: session.connection(),
        call=call,
        end=lambda session: session.close(),
        awaits=env.awaits,
    )


def _tally(load: Load, number: int, window: Window, lock: threading.Lock) -> Callable:
    """What worker ``number`` adds to ``load`` for each operation it finishes."""

    def note(operation: Timed) -> None:
        if not window.overlaps(operation):
            return  # entirely in the warm-up
        with lock:
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


def run_load(
    env: DriverEnv,
    case: Case,
    params: dict[str, Any],
    concurrency: int,
    seconds: float,
    loop: asyncio.AbstractEventLoop,
    proxy_cpu: Callable[[], float] | None,
    direct_url: URL,
    clients_left: Callable[[], int] | None = None,
) -> Load:
    """``concurrency`` workers on ``env`` for ``seconds`` (the first share is warm-up)."""
    load = Load(concurrency)
    function = case.function(env.mode)

    def call(session: Any) -> Any:
        return function(session, **params)

    # An empty pool, so the poller's count at the start is other clients' connections
    # only; opening connections again falls in the warm-up.
    loop.run_until_complete(env.dispose())
    lock = threading.Lock()
    operation = _operation(env, call)
    with watch(load, env.setting.target, proxy_cpu, direct_url, clients_left=clients_left):
        window = Window.starting_now(seconds, WARMUP_SHARE)  # after the watcher has settled
        workers = [
            repeat_in_window(operation, window, _tally(load, n, window, lock))
            for n in range(concurrency)
        ]
        run_workers(workers, operation.awaits, loop)
        load.checked_out_after = _pool(env).checkedout()
        loop.run_until_complete(env.dispose())  # inside the watch: it counts what is left
    load.window_seconds = window.seconds
    return load


def _pool(env: DriverEnv) -> Any:
    engine = env.default_engine
    return getattr(engine, "sync_engine", engine).pool


@contextlib.contextmanager
def watch(
    load: Load,
    target: str,
    proxy_cpu: Callable[[], float] | None,
    direct_url: URL,
    app_cpu: Callable[[], float] | None = None,
    clients_left: Callable[[], int] | None = None,
) -> Iterator[None]:
    """Poll server connections and read CPU times around the load (of the app's process
    too, when the load is served by one). Through PgBouncer, what is left after the
    load is counted at PgBouncer (``clients_left``): it keeps server connections open."""
    poller = _ConnectionPoller(direct_url, CONNECTIONS_SQL.get(target))
    before = _cpu(target, proxy_cpu, app_cpu)
    poller.start()
    try:
        yield
    finally:
        load.connections_left = clients_left() if clients_left else poller.left()
        load.peak_connections = poller.stop()
        after = _cpu(target, proxy_cpu, app_cpu)
        load.cpu_seconds = {
            name: None if after[name] is None else round(after[name] - before[name], 3)
            for name in after
        }


def _cpu(
    target: str, proxy_cpu: Callable[[], float] | None, app_cpu: Callable[[], float] | None
) -> dict[str, float | None]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    times = {
        "client": usage.ru_utime + usage.ru_stime,
        "proxy": proxy_cpu() if proxy_cpu else None,
        "server": _server_cpu(SERVER_PROCESSES.get(target, ())),
    }
    return times if app_cpu is None else {**times, "app": app_cpu()}


def _server_cpu(names: tuple[str, ...]) -> float | None:
    """CPU seconds of the database server's processes, when they run on this machine.

    PostgreSQL runs a process per connection, and one that exits takes its CPU time with
    it: the time reaped children used (kept by the postmaster) is added, so the total
    only grows and a difference of two readings is the server's CPU in between.
    """
    if not names:
        return None
    total, found = 0.0, False
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in names:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
                found = True
    return total if found else None


class _ConnectionPoller:
    """The most connections to the database seen at once, less those open at the start."""

    def __init__(self, url: URL, sql: str | None) -> None:
        self.sql = sql
        self.engine = create_engine(url, poolclass=NullPool) if sql else None
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> None:
        if self.engine is not None:
            self._connection = self.engine.connect()
            self._idle = self._settled_count()
            self._thread.start()

    def left(self) -> int | None:
        """Connections above the starting count once the load's have had time to close."""
        if self.engine is None:
            return None
        self._stop.set()
        self._thread.join()
        deadline = Deadline(SETTLE_SECONDS)
        while (count := self._count()) > self._idle and not deadline.passed():
            time.sleep(POLL_SECONDS)  # a closed connection's backend exits a moment later
        return max(count - self._idle, 0)

    def _settled_count(self) -> int:
        # Connections the engine just closed linger on the server for a moment (a
        # backend exits after its socket closes): wait until the count stops falling,
        # or it would be taken for other clients' and hide part of the peak.
        deadline = Deadline(SETTLE_SECONDS)
        count = self._count()
        while not deadline.passed():
            time.sleep(POLL_SECONDS)
            now = self._count()
            if now >= count:
                return now
            count = now
        return count

    def stop(self) -> int | None:
        if self.engine is None:
            return None
        self._stop.set()
        self._thread.join()
        self._connection.close()
        self.engine.dispose()
        return None if self.peak is None else max(self.peak - self._idle, 0)

    def _count(self) -> int:
        count = self._connection.scalar(text(self.sql))
        self._connection.rollback()  # a fresh snapshot of the server's view each time
        return count

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            count = self._count()
            self.peak = count if self.peak is None else max(self.peak, count)
