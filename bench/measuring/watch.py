"""What a load is watched by: the peak number of the engine's server connections (polled
on a separate connection) and the CPU time of the client, the latency proxy, the web app
and the server around the load, so that a plateau can be told apart: a full pool, or a
saturated CPU."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from sqla_bench.measuring.kernel import Deadline
from sqla_bench.measuring.load import Load
from sqla_bench.results.load_figures import CpuBusy

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


def client_cpu() -> float:
    # Every thread of this process, to the nanosecond (getrusage counts in scheduler
    # ticks here, too coarse for 50 operations of a millisecond).
    return time.process_time()


@dataclass(frozen=True)
class Watched:
    """What a load is watched through, whoever generates it: the target (which server
    processes and which connection count), a URL straight to the server for the
    connection poller, the latency proxy's CPU seconds when the load goes through it, and
    how connections left after the load are counted (at PgBouncer, which keeps its server
    connections; None: at the server)."""

    target: str
    direct_url: URL
    proxy_cpu: Callable[[], float] | None = None
    clients_left: Callable[[], int] | None = None


@contextlib.contextmanager
def watch(
    load: Load, watched: Watched, app_cpu: Callable[[], float] | None = None
) -> Iterator[None]:
    """Poll server connections and read CPU times around the load (of the app's process
    too, when the load is served by one). Through PgBouncer, what is left after the load
    is counted at PgBouncer (``clients_left``): it keeps server connections open."""
    poller = _ConnectionPoller(watched.direct_url, CONNECTIONS_SQL.get(watched.target))
    load.server_max_connections = poller.max_connections(MAX_CONNECTIONS_SQL.get(watched.target))
    poller.start()  # it waits for the server's count to settle: not part of the load
    # CPU is read around the load alone, so a process's share of a CPU is over the time
    # the load ran, not over the settling waits on either side of it.
    before = _cpu(watched.target, watched.proxy_cpu, app_cpu)
    cpus_before = psutil.cpu_times(percpu=True)
    started = time.perf_counter()
    try:
        yield
    finally:
        after = _cpu(watched.target, watched.proxy_cpu, app_cpu)
        load.cpu_busy = CpuBusy.between(cpus_before, psutil.cpu_times(percpu=True), _my_cpus())
        load.watched_seconds = time.perf_counter() - started
        left = watched.clients_left
        load.connections_left = left() if left else poller.left()
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
        "client": client_cpu(),
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
    """The most connections to the database seen at once, less those open at the
    start."""

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
        """Connections above the starting count once the load's have had time to
        close."""
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
