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
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from sqla_bench.engines import DriverEnv
from sqla_bench.kernel import Deadline, Operation, Timed, Window, repeat_in_window, run_workers
from sqla_bench.scenarios.registry import Case

if TYPE_CHECKING:
    from sqla_bench.processes import WorkerSpec

WARMUP_SHARE = 0.2
# SQLAlchemy's QueuePool defaults, which an engine keeps when the run does not set them.
DEFAULT_POOL = {"pool_size": 5, "max_overflow": 10}
# A process that used this share of a CPU over a load, or processes that together used
# this share of the machine's CPUs, are what the load measured, not the pool.
CPU_BOUND = 0.9
# A CPU busy this share of a load's time (whoever kept it so) has no room left: queueing
# for it then sets the pace (at 85 % busy a request waits about 5.7 times its own CPU
# time, M/M/1). In three runs of issue 18's measurement on this 2-CPU machine
# (PostgreSQL, +5 ms, pools of 5 and 20, 1 to 64 workers), the 22 cells with a CPU this
# busy reached 56-85 % of the throughput Little's law predicts; of the 50 others, 49
# reached 88-111 % and one 78 % (its CPUs 84 % busy).
BUSY_CPU = 0.85
# Each runs Python on one CPU at a time (the GIL): a CPU is all one of them can use.
ONE_CPU_OWNERS = ("client", "app", "proxy")
# Server connections are polled this often during a load. Every 20 ms, the poller's
# wake-ups cost a worker alone about a tenth more CPU per operation than every 100 ms
# (issue 18); a pool's connections stay open for the whole load, so 50 ms finds the peak.
POLL_SECONDS = 0.05
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
# The server's limit, beside which a load states its connection budget.
MAX_CONNECTIONS_SQL = {"postgresql": "SHOW max_connections", "mysql": "SELECT @@max_connections"}


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
    extra: dict[str, Any] = field(default_factory=dict)  # what one kind of load adds

    @property
    def throughput(self) -> float:
        return self.completed / self.window_seconds if self.window_seconds else 0.0

    def cpu_per_operation(self) -> dict[str, float | None] | None:
        """The client's CPU seconds per operation under this load and alone, and their
        ratio: what the harness and the contention of the workers add to each operation.
        None where the client was not the measuring process's workers (a served load)."""
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
            **self.extra,
        }


def cpu_bound(
    cpu_seconds: dict[str, float | None],
    seconds: float,
    worker_cpu: Sequence[float] | None = None,
    cpus: int | None = None,
    busy: CpuBusy | None = None,
) -> list[str]:
    """What limited a load by CPU, in words: each of the client (or, with several worker
    processes, any one of them), the web app and the latency proxy that used at least
    ``CPU_BOUND`` of one CPU over ``seconds`` ("client CPU", "worker CPU"); "client's
    CPUs" when the CPUs the client may run on were ``BUSY_CPU`` busy, whoever kept them
    so (a client pinned to one CPU shares it with server backends); "other CPUs" when one
    of the others was (the proxy's, the app's, the server's); and "machine CPUs" when
    the machine's CPUs were (without ``busy``, as in files written before it was
    recorded: when all the processes' CPU seconds add up to ``CPU_BOUND`` of the
    machine's ``cpus``). Empty when nothing was: then the pool, the latency
    or the server set the pace."""
    if seconds <= 0:
        return []
    shares = {owner: (cpu_seconds.get(owner) or 0.0) / seconds for owner in ONE_CPU_OWNERS}
    if worker_cpu:  # the client's figure is the processes' sum: each is held to one CPU
        shares["client"] = 0.0
        shares["worker"] = max(worker_cpu) / seconds
    found = [f"{owner} CPU" for owner, share in shares.items() if share >= CPU_BOUND]
    if busy is not None:
        if busy.clients() >= BUSY_CPU and "client CPU" not in found and not worker_cpu:
            found.append("client's CPUs")
        if busy.others() >= BUSY_CPU:
            found.append("other CPUs")
        if busy.machine() >= BUSY_CPU:
            found.append("machine CPUs")
        return found
    total = sum(value for value in cpu_seconds.values() if value is not None)
    if total / seconds / (cpus or os.cpu_count() or 1) >= CPU_BOUND:
        found.append("machine CPUs")
    return found


@dataclass(frozen=True)
class CpuBusy:
    """How busy each CPU of the machine was over a load (0 to 1), and which of them the
    client may run on."""

    per_cpu: tuple[float, ...]
    client_cpus: tuple[int, ...]

    @classmethod
    def between(cls, before: list, after: list, client_cpus: Sequence[int]) -> CpuBusy:
        shares = []
        for start, end in zip(before, after, strict=True):
            total = sum(end) - sum(start)
            idle = (end.idle + getattr(end, "iowait", 0)) - (
                start.idle + getattr(start, "iowait", 0)
            )
            shares.append(round(1 - idle / total, 3) if total > 0 else 0.0)
        return cls(tuple(shares), tuple(client_cpus))

    def clients(self) -> float:
        mine = [self.per_cpu[n] for n in self.client_cpus if n < len(self.per_cpu)]
        return sum(mine) / len(mine) if mine else 0.0

    def others(self) -> float:
        """The busiest CPU the client may not run on: the proxy's and the web app's (they
        move off the client's), and the server's, which runs anywhere."""
        theirs = [share for n, share in enumerate(self.per_cpu) if n not in self.client_cpus]
        return max(theirs, default=0.0)

    def machine(self) -> float:
        return sum(self.per_cpu) / len(self.per_cpu) if self.per_cpu else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"per_cpu": list(self.per_cpu), "client_cpus": list(self.client_cpus)}


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
    watching = watch(load, env.setting.target, proxy_cpu, direct_url, clients_left=clients_left)
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
    from sqla_bench.processes import started  # spawns interpreters: only when asked

    return started(specs)


def _from_processes(load: Load, handles: list, window: Window) -> None:
    from sqla_bench.processes import merge, run_window

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
        ended.append(_client_cpu())
        if timed.error is not None:
            failed.append(timed.error)

    def another() -> bool:  # an operation that fails has no CPU alone to compare with
        return len(ended) <= ALONE_OPERATIONS and not failed

    window = Window.starting_now(ALONE_SECONDS, 0.0)
    run_workers([repeat_in_window(operation, window, note, another)], operation.awaits, loop)
    if failed or len(ended) < 2:
        return None
    return (ended[-1] - ended[0]) / (len(ended) - 1)


def _client_cpu() -> float:
    # Every thread of this process, to the nanosecond (getrusage counts in scheduler
    # ticks here, too coarse for 50 operations of a millisecond).
    return time.process_time()


def pool_capacity(pool: dict[str, Any] | None) -> tuple[int, int]:
    """An engine's ``pool_size`` and ``max_overflow``, SQLAlchemy's defaults where unset."""
    settings = {**DEFAULT_POOL, **(pool or {})}
    return settings["pool_size"], settings["max_overflow"]


def pool_of(env: DriverEnv) -> Any:
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
    load.server_max_connections = poller.max_connections(MAX_CONNECTIONS_SQL.get(target))
    poller.start()  # it waits for the server's count to settle: not part of the load
    # CPU is read around the load alone, so a process's share of a CPU is over the time
    # the load ran, not over the settling waits on either side of it.
    before = _cpu(target, proxy_cpu, app_cpu)
    cpus_before = psutil.cpu_times(percpu=True)
    started = time.perf_counter()
    try:
        yield
    finally:
        after = _cpu(target, proxy_cpu, app_cpu)
        load.cpu_busy = CpuBusy.between(cpus_before, psutil.cpu_times(percpu=True), _my_cpus())
        load.watched_seconds = time.perf_counter() - started
        load.connections_left = clients_left() if clients_left else poller.left()
        load.peak_connections = poller.stop()
        load.cpu_seconds = {
            name: None if after[name] is None else round(after[name] - before[name], 3)
            for name in after
        }


def _my_cpus() -> list[int]:
    """The CPUs this process may run on (all, where the OS cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _cpu(
    target: str, proxy_cpu: Callable[[], float] | None, app_cpu: Callable[[], float] | None
) -> dict[str, float | None]:
    times = {
        "client": _client_cpu(),
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
        # Autocommit: each poll is a transaction of its own, so it sees the server's
        # view afresh in one round trip (it was a SELECT and a ROLLBACK).
        self.engine = (
            create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT") if sql else None
        )
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> None:
        if self.engine is not None:
            # The driver's own cursor: a poll through SQLAlchemy cost 63 us of the client's
            # CPU here, through the cursor 26 us, at every poll of a load.
            self._connection = self.engine.raw_connection()
            self._cursor = self._connection.cursor()
            self._idle = self._settled_count()
            self._thread.start()

    def max_connections(self, sql: str | None) -> int | None:
        """The server's max_connections, read once on the poller's engine."""
        if self.engine is None or sql is None:
            return None
        with self.engine.connect() as connection:
            return int(connection.scalar(text(sql)))

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
        self._cursor.close()
        self._connection.close()
        self.engine.dispose()
        return None if self.peak is None else max(self.peak - self._idle, 0)

    def _count(self) -> int:
        self._cursor.execute(self.sql)
        return self._cursor.fetchone()[0]

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            count = self._count()
            self.peak = count if self.peak is None else max(self.peak, count)
