"""The tables of cells measured under load (``run --concurrency``): throughput, latency
percentiles, pool waits, connections against their budget, errors, CPU per owner and
what limited the load."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.markup import escape

from sqla_bench.reporting.report import TableData, _dataset_key, cpu_bound, variant_of
from sqla_bench.results.files import CellRecord, duration
from sqla_bench.results.load_figures import pool_capacity
from sqla_bench.results.stats import percentile

LOAD_COLUMNS = (
    "variant", "pool", "workers", "served", "mode", "driver", "ops/s", "p50", "p95", "p99",
    "wait p50/p95", "conns (budget)", "errors", "cpu c/a/p/s", "cpu/op", "limited by",
)  # fmt: skip


CPU_OWNERS = ("client", "app", "proxy", "server")
LOAD_NOTE = (
    "under load: ops/s is what completed in the measuring window over its length; p50/p95/"
    "p99 time each operation from asking the pool for a connection to the end of the call; "
    "wait is the part spent waiting for the connection; served is how many workers completed "
    "an operation in the window (the pools are not fair: a worker that returns a connection "
    "takes it back before a waiting one wakes); workers reads '64 in 4 procs' for a load "
    "split over worker processes (--processes), each with its own engine; conns is the most "
    "server connections held at once (through PgBouncer, those PgBouncer opened), and in "
    "brackets the most the load could open (pool_size + max_overflow per process, or "
    "PgBouncer's pool) of the server's max_connections; cpu c/a/p/s is seconds of CPU in "
    "the load of the client, web app, latency proxy and database server; cpu/op is the "
    "client's CPU per operation, and how many times what one worker alone spends on it "
    "(the harness's own cost and the workers' contention); limited by names the client, a "
    "worker process, the app or the proxy when it used at least 90 % of a CPU over the "
    "load (each runs Python on one CPU at a time), client's CPUs when the CPUs the client "
    "runs on were 85 % busy, other CPUs when one of the others was (the proxy's, the app's, "
    "the server's), machine CPUs when all were: such a cell measured that CPU, not the "
    "pool, and the plots leave it out of Little's law. Web scenarios (web.*) time each HTTP "
    "request from sending it to its answer; their errors are by HTTP status, with the "
    "median time to a failed answer and the app's exceptions in brackets. With Locust, a "
    "table of its worker processes follows: requests include the warm-up, no answer counts "
    "those that got no HTTP answer at all"
)


def load_tables(cells: Iterable[CellRecord]) -> list[TableData]:
    """One table per scenario table, rtt and dataset for cells measured under load;
    after it, where Locust made the load, one of its worker processes."""
    grouped: dict[tuple, list[CellRecord]] = {}
    for cell in cells:
        key = (cell.table, cell.timed_latency, _dataset_key(cell), cell.pgbouncer)
        grouped.setdefault(key, []).append(cell)
    tables = []
    for group in grouped.values():
        tables.append(_load_table(group))
        if any(cell.load.get("worker_processes") for cell in group):
            tables.append(_processes_table(group, tables[-1].title))
    return tables


PROCESS_COLUMNS = (
    "variant", "workers", "host", "pid", "users", "requests", "ok", "errors", "no answer",
    "cpu s", "first error",
)  # fmt: skip


def _processes_table(cells: list[CellRecord], title: str) -> TableData:
    """Per Locust worker process of each cell: where it ran and what it did."""
    left = ("variant", "host", "first error")
    columns = [(name, "left" if name in left else "right") for name in PROCESS_COLUMNS]
    rows = [
        [variant_of(cell, cells), str(cell.concurrency), str(p["host"]), str(p["pid"]),
         str(p["users"]), f"{p['requests']:,}", f"{p['ok']:,}", f"{p['errors']:,}",
         f"{p['unanswered']:,}", f"{p['cpu_seconds']:.2f}", escape(p["first_error"] or "-")]
        for cell in cells
        for p in cell.load.get("worker_processes") or []
    ]  # fmt: skip
    return TableData(f"{title}: Locust worker processes", columns, rows)


def _load_table(cells: list[CellRecord]) -> TableData:
    first = cells[0]
    latency = first.timed_latency
    rtt = "" if latency is None else f", +{latency:g} ms per round trip"
    if first.pgbouncer is not None:
        rtt = f", through PgBouncer ({first.pgbouncer} pooling){rtt}"
    columns = [
        (name, "left" if name in ("variant", "mode", "driver") else "right")
        for name in LOAD_COLUMNS
    ]
    rows = [_load_row(cell, variant_of(cell, cells)) for cell in cells]
    return TableData(f"{first.table} under load{rtt}", columns, rows)


def _load_row(cell: CellRecord, variant: str) -> list[str]:
    load = cell.load
    waits = load["pool_wait_ns"]
    cpu = load["cpu_seconds"]
    times = "-", "-", "-"
    if cell.samples_ns:
        times = tuple(duration(percentile(cell.samples_ns, p)) for p in (50, 95, 99))
    served = sum(1 for count in load["per_worker"] if count)
    return [
        variant,
        "+".join(map(str, pool_capacity(cell.pool))),
        _workers(cell),
        str(served),
        cell.mode,
        f"{cell.target}+{cell.driver}",
        f"{load['throughput']:,.0f}",
        *times,
        " / ".join(duration(percentile(waits, p)) for p in (50, 95)) if waits else "-",
        _connections(load),
        _errors(load),
        "/".join("-" if cpu.get(k) is None else f"{cpu[k]:.2f}" for k in CPU_OWNERS),
        _cpu_per_operation(load),
        ", ".join(cpu_bound(cell)) or "-",
    ]


def _cpu_per_operation(load: dict[str, Any]) -> str:
    """The client's CPU per operation under the load, and over what one worker alone
    spends on it: ``2.3 ms 1.40x``."""
    figures = load.get("cpu_per_operation")
    if not figures:
        return "-"
    under = duration(round(figures["under_load"] * 1e9))
    ratio = figures["ratio"]
    return under if ratio is None else f"{under} {ratio:.2f}x"


def _workers(cell: CellRecord) -> str:
    """``64``, or ``64 in 4 procs`` for a load split over worker processes."""
    count = cell.processes
    if count is None:
        return str(cell.concurrency)
    return f"{cell.concurrency} in {count} proc{'s' if count != 1 else ''}"


def _connections(load: dict[str, Any]) -> str:
    """The most server connections held, and what the load could open of what the
    server allows: ``19 (20 of 100)``."""
    peak = "-" if load["peak_connections"] is None else str(load["peak_connections"])
    budget, allowed = load.get("connection_budget"), load.get("server_max_connections")
    if budget is None:
        return peak
    return f"{peak} ({budget})" if allowed is None else f"{peak} ({budget} of {allowed})"


def _errors(load: dict[str, Any]) -> str:
    """Errors by kind; for a served load, how long a failed answer took and the app's
    exceptions (a pool timeout is a TimeoutError inside, a 500 outside)."""
    text = ", ".join(f"{count} {name}" for name, count in load["errors"].items()) or "0"
    failed = load.get("failed_ns")
    if failed:
        text += f" after {duration(percentile(failed, 50))}"
    inside = load.get("server_errors")
    if inside:
        text += " (" + ", ".join(f"{count} {name}" for name, count in inside.items()) + ")"
    return text
