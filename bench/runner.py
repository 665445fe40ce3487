"""The runner: measures a plan's cells into a result file, whatever the policy.

For each target it prepares the database once per dataset size (untimed), sets the
route (direct, or through the latency proxy at each latency), and measures every cell
of every selected driver on one event loop, through the measuring path
(``bench.measure``), or under load (``bench.load``, ``bench.web``) when the plan has a
concurrency; each cell is appended to the result file as soon as it finishes, with its
verdict against the catalogue (``bench.verify.differences``). ``run``, ``verify``,
``baseline`` and ``selfcheck`` all measure through it (``bench.pipeline``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from sqla_bench.children import ChildFailed
from sqla_bench.containers import PORTS
from sqla_bench.engines import DriverEnv, prepare_database, release_database
from sqla_bench.errors import ConfigError, redact
from sqla_bench.latency import LatencyProxy
from sqla_bench.load import Load, pool_capacity, run_load
from sqla_bench.machine import Snapshot, state_between
from sqla_bench.measure import (
    Cell,
    Measurement,
    Policy,
    measure,
    measure_driver,
    never,
    subject_for,
)
from sqla_bench.owned import PRUNE_HINT
from sqla_bench.pgbouncer import PgBouncer
from sqla_bench.pgbouncer import version as pgbouncer_version
from sqla_bench.plan import RunPlan
from sqla_bench.probes import RoundTripCounter, sql_of
from sqla_bench.processes import worker_specs
from sqla_bench.results import CellRecord, ResultFile
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import Raises
from sqla_bench.scenarios.registry import Case
from sqla_bench.targets import Driver, Target, failure, said_by
from sqla_bench.verify import differences, wrong_from

if TYPE_CHECKING:
    from sqla_bench.application import Workload
    from sqla_bench.locust_load import LocustWorkers

# Errors that mean the database went away or refused us, not that the scenario raised.
CONNECTION_LOST = (OperationalError, InterfaceError, OSError)
# One warm-up call (which opens the connection), then the one that counts.
ONE_WARM_CALL = Policy(warmup=1, min_rounds=1, min_time=0.0, max_rounds=1)


def _failed(cell: CellRecord, reason: str) -> None:
    """A cell the server's going away cut short: failed, with no timing. Its samples
    before the fault are dropped with the blocks they were taken in, and the outcome it
    ended with (the connection error) is the outage's, not the case's."""
    cell.failed = reason
    cell.samples_ns, cell.blocks, cell.slots, cell.comparison = [], None, None, None
    cell.differences = [f"failed: the server went away ({reason})"]


def rows_in(value: Any) -> int:
    """Rows or items an operation returned: a list counts its items, one tuple is a row."""
    if value is None:
        return 0
    return len(value) if isinstance(value, list) else 1


@dataclass
class Progress:
    """What the runner reports while it works (the CLI draws it; tests may ignore it)."""

    on_driver: Callable[[str, int], None] = lambda description, cells: None
    on_cell: Callable[[CellRecord], None] = lambda record: None
    stop_requested: Callable[[], bool] = never  # polled between calls
    # What was done to a database besides measuring (leftovers of an ended run removed).
    on_note: Callable[[str], None] = lambda line: None


class Runner:
    """Measures a plan into a result file; returns why any target stopped part-way."""

    def __init__(self, plan: RunPlan, results: ResultFile, progress: Progress) -> None:
        self.plan = plan
        self.results = results
        self.progress = progress
        self.run_pass = 1  # the pass over the workload being measured (run --passes)

    def run(self) -> list[str]:
        failures = []
        loop = asyncio.new_event_loop()  # one loop, created before timing, for the whole run
        try:
            for target in self.plan.targets:
                reason = self._run_target(target, loop)
                failures += [reason] if reason else []
        finally:
            loop.close()
        return failures

    def _run_target(self, target: Target, loop: asyncio.AbstractEventLoop) -> str | None:
        workload, finished = self.plan.workload, None
        before = Snapshot.now()
        try:
            reason = self._measure_target(target, loop)
        finally:
            machine = state_between(before, Snapshot.now())
            self.results.header["targets"][target.name]["machine"] = machine
            if workload is not None:
                finished = _finish(workload, target)
                checksums = workload.checksums(target.name)
                if checksums is not None:
                    self.results.header["targets"][target.name]["checksums"] = checksums
            else:
                finished = self._release(target)
        if reason is None and finished is not None:
            return failure(target, finished)
        return reason

    def _release(self, target: Target) -> str | None:
        """Drop the dataset's tables once the target is done, however it ended; why
        not, when the server no longer answers (``sqla-bench tables --prune`` then)."""
        try:
            release_database(target.drivers[0])
        except SQLAlchemyError as error:
            return f"its tables could not be removed ({said_by(error, target)}): {PRUNE_HINT}"
        return None

    def _prepare(self, target: Target, size: DatasetSize) -> str:
        """Seed the target (set-up: never timed, straight to the server, once per size)."""
        if self.plan.workload is not None:
            return self.plan.workload.prepare(target.drivers[0], size, self.progress.on_note)
        return prepare_database(target.drivers[0], size, self.progress.on_note)

    def _measure_target(self, target: Target, loop: asyncio.AbstractEventLoop) -> str | None:
        self.lost: list[str] = []  # cells the server failed, when the run continues past them
        try:
            for pgbouncer in self.plan.pgbouncer_modes():
                proxied = self.plan.latencies is not None
                with route_to(
                    target, proxied, pgbouncer, self.plan.pgbouncer_pool, self.progress.on_note
                ) as route:
                    self._note_route(target, route)
                    lost = self._measure_route(target, route, loop)
                if lost is not None:  # --on-error stop
                    return failure(target, lost)
        except (SQLAlchemyError, OSError, ChildFailed, ConfigError) as error:
            return failure(target, error)
        if self.lost:
            return (
                f"{target.name} at {target.safe_url}: {len(self.lost)} cells failed because "
                f"the server did not answer, the first with: {self.lost[0]}"
            )
        return None

    def _measure_route(
        self, target: Target, route: Route, loop: asyncio.AbstractEventLoop
    ) -> str | None:
        """Every dataset, latency, pool and driver on one route; why the target stopped
        answering, when a cell found it gone and the plan says to stop there."""
        drivers = [d for d in self.plan.selected_drivers() if d.spec.target == target.name]
        for size in self.plan.datasets:
            version = self._prepare(target, size)
            self.results.header["targets"][target.name]["server_version"] = version
            for run_pass in range(1, self.plan.passes + 1):
                self.run_pass = run_pass
                lost = self._measure_pass(target, route, drivers, size, loop)
                if lost is not None:
                    return lost
        return None

    def _measure_pass(
        self,
        target: Target,
        route: Route,
        drivers: list[Driver],
        size: DatasetSize,
        loop: asyncio.AbstractEventLoop,
    ) -> str | None:
        """One pass over the workload at one dataset: every latency, pool and driver."""
        for latency in self.plan.latencies or (None,):
            route.set_latency(latency)
            for pool in self.plan.pools():
                for driver in drivers:
                    lost = self._run_driver(target, route, driver, size, pool, loop)
                    if lost is not None:
                        return lost
        return None

    def _note_route(self, target: Target, route: Route) -> None:
        """What the result file keeps of PgBouncer: its version and each mode's settings."""
        if route.bouncer is not None:
            entry = self.results.header["targets"][target.name]
            kept = entry.setdefault("pgbouncer", {"version": pgbouncer_version(), "modes": {}})
            kept["modes"][route.bouncer.mode] = route.bouncer.settings()
            self.results.flush()

    def _run_driver(
        self,
        target: Target,
        route: Route,
        driver: Driver,
        size: DatasetSize,
        pool: dict[str, Any] | None,
        loop: asyncio.AbstractEventLoop,
    ) -> str | None:
        """Measure the driver's cells; why the target stopped answering, when a cell
        found it gone and the plan says to stop there."""
        cells = self.plan.cells(driver, size, route.pgbouncer)
        workload = self.plan.workload
        data = size.describe() if workload is None else workload.describe(size)
        described = data + route.describe() + _describe_pool(pool)
        if self.plan.passes > 1:
            described += f", pass {self.run_pass} of {self.plan.passes}"
        # Each load is a cell of its own: a level of concurrency, in a number of processes.
        loads = len(self.plan.concurrency or (None,)) * len(self.plan.processes or (None,))
        self.progress.on_driver(f"{driver.id} ({described})", len(cells) * loads)
        env = driver_env(route, driver, size, pool)
        if workload is not None:
            read = workload.reader(target.name)
            for each in {id(e): e for e in (env, env.counting) if e is not None}.values():
                workload.guard(each.default_engine)
                each.setting = replace(each.setting, read=read)  # twins' FromDatabase
        if self.plan.concurrency is not None:
            self._load_driver(target, route, env, cells, loop)
            return None
        policy = self.plan.policy
        stopped: list[str] = []

        def record(case: Case, params: dict[str, Any], measurement: Measurement) -> bool:
            cell = self._record(target, route, env, (case, params), measurement, policy)
            failed = measurement.failure
            lost = failed is not None and isinstance(failed.error, CONNECTION_LOST)
            if lost and not cell.matches_expected:
                reason = cell.message or cell.error or "connection lost"
                _failed(cell, reason)
            self.results.add(cell)
            self.progress.on_cell(cell)
            if cell.failed is not None:
                if self.plan.on_error == "stop":
                    stopped.append(cell.failed)
                    return False
                self.lost.append(cell.failed)
            return True

        measure_driver(env, cells, policy, loop, record, self.progress.stop_requested)
        return stopped[0] if stopped else None

    def _load_driver(
        self,
        target: Target,
        route: Route,
        env: DriverEnv,
        cells: list[Cell],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Each cell alone (its outcome and counts, from a warm call), then under load."""
        direct = target.drivers[0].sync_url()  # the poller goes straight to the server
        try:
            for case, params in cells:
                loads = served_loads if case.receives == "http" else in_process_loads
                plan = self.plan
                where = LoadPlace(
                    env, route, loop, direct, plan.load_seconds, plan.modules, plan.locust()
                )
                with loads(case, params, where) as (alone, load):
                    for workers in self.plan.concurrency:
                        for processes in self.plan.processes or (None,):
                            done = load(workers, processes)
                            self._record_load(target, route, env, (case, params), alone, done)
        finally:
            loop.run_until_complete(env.dispose())

    def _record_load(
        self,
        target: Target,
        route: Route,
        env: DriverEnv,
        cell: Cell,
        alone: Measurement,
        load: Load,
    ) -> None:
        if load.first_error:  # it goes into the result file
            load.first_error = redact(load.first_error, target.url)
        record = self._record(target, route, env, cell, alone, ONE_WARM_CALL)
        if load.leak:  # loudly: a cell that leaks connections does not pass
            record.matches_expected = False
            record.message = f"leak: {load.leak}"
        record.samples_ns = load.samples_ns  # the load's, not the call's alone
        record.concurrency, record.pool, record.load = load.concurrency, env.pool, load.to_json()
        record.processes = load.processes
        record.load["connection_budget"] = _budget(env.pool, load.processes, route.bouncer)
        self.results.add(record)
        self.progress.on_cell(record)
        if self.progress.stop_requested():
            raise KeyboardInterrupt

    def _dataset(self, size: DatasetSize) -> dict[str, int]:
        """The data a cell ran on, as the result file keeps it."""
        if self.plan.workload is not None:
            return self.plan.workload.dataset(size)
        return asdict(size)

    def _record(
        self,
        target: Target,
        route: Route,
        env: DriverEnv,
        cell: Cell,
        measurement: Measurement,
        policy: Policy,
    ) -> CellRecord:
        case, params = cell
        expected = case.expected(env.setting, env.size, **params)
        observed = measurement.outcome()
        failed = measurement.failure
        raised = isinstance(observed, Raises)
        checked = measurement.first  # the call a verdict on value, SQL and commits is drawn from
        wire = measurement.on_the_wire
        wire_failed = wire.failure
        found = [redact(text, target.url) for text in differences(expected, observed, checked)]
        wrong = wrong_from(expected, observed, checked)
        return CellRecord(
            case=case.id,
            table=case.table,
            label=case.doc,
            baseline=case.baseline,
            params=dict(params),
            dataset=self._dataset(env.size),
            target=target.name,
            driver=env.driver,
            mode=env.mode,
            outcome="raised" if raised else "ok",
            error=observed.error.__name__ if raised else None,
            wrapped_in=observed.wrapped_in.__name__ if raised and observed.wrapped_in else None,
            message=said_by(failed.error, target) if failed else None,
            expected=expected.describe(),
            matches_expected=not found,
            differences=found,
            statements=observed.statements,
            statements_started=observed.started if raised else observed.statements,
            statements_seen=sorted(measurement.statements),
            # Every call of a cell that works returns the same data: the first one's rows.
            rows=None if raised else rows_in(measurement.worked.value),
            warmup=policy.warmup,
            samples_ns=measurement.samples_ns,
            latency_ms=route.latency_ms,
            timed_through_proxy=None if route.proxy is None else route.delays,
            pgbouncer=route.pgbouncer,
            # Counted where the calls went through the proxy (the samples, or at 0 ms the
            # same calls repeated through it). A cell that raised has no samples: its
            # round trips and bytes are the failing call's, up to the raise.
            round_trips=wire_failed.round_trips if wire_failed else _usual(wire.round_trips),
            round_trips_seen=sorted(wire.round_trips),
            rows_fetched=None if checked is None else checked.rows_fetched,
            bytes_up=wire_failed.bytes_up if wire_failed else _usual(wire.bytes_up),
            bytes_down=wire_failed.bytes_down if wire_failed else _usual(wire.bytes_down),
            peak_memory=measurement.peak_memory,
            calls=measurement.calls,
            instructions=measurement.instructions,
            sql=None if checked is None or checked.executed is None else sql_of(checked.executed),
            wrong_from=wrong,
            **_design(measurement),
            run_pass=self.run_pass,
        )


# A cell's loads: the cell measured alone (its outcome and counts, from a warm call), and
# a function that runs it under load with N workers.
Loads = Iterator[tuple[Measurement, Callable[[int], Load]]]


@dataclass(frozen=True)
class LoadPlace:
    """Where a cell's loads run: its driver's engine, the route to the server, the run's
    loop, a direct URL for the connection poller, and how long each load lasts."""

    env: DriverEnv
    route: Route
    loop: asyncio.AbstractEventLoop
    direct: URL
    seconds: float
    modules: tuple[str, ...] = ()  # an application's twins, for worker processes to import
    locust: LocustWorkers | None = None  # Locust's workers for HTTP loads; None: aiohttp


@contextmanager
def in_process_loads(case: Case, params: dict[str, Any], where: LoadPlace) -> Loads:
    """Workers in this process, sharing the place's engine."""
    env, loop = where.env, where.loop
    alone = loop.run_until_complete(measure(subject_for(case, params, env), ONE_WARM_CALL))

    def load(workers: int, processes: int | None) -> Load:
        where.route.before_load()
        proxy_cpu = where.route.proxy_cpu()
        specs = ()
        if processes is not None:
            specs = worker_specs(env, case.id, params, workers, processes, where.modules)
        done = run_load(
            env, case, params, workers, where.seconds, loop, proxy_cpu, where.direct,
            where.route.clients_left(), specs,
        )  # fmt: skip
        done.processes = processes
        return done

    yield alone, load


@contextmanager
def served_loads(case: Case, params: dict[str, Any], where: LoadPlace) -> Loads:
    """The case's app served in a process of its own (on ``env``'s driver, through the
    route, with the plan's pool), and HTTP clients in this one. Each load gets an app of
    its own, so it starts with an empty pool, as in-process loads do: the connection
    poller's count at the start is then other clients' only."""
    from sqla_bench.web import AppServer, measure_once, run_web_load

    env, route, loop = where.env, where.route, where.loop
    request = case.function(env.mode)(**params)

    def serve(on: DriverEnv = env) -> AppServer:
        options = {**on.pool, "connect_args": on.connect_args}
        return AppServer(case, request, on.mode, on.url, options)

    # Alone, the app is served through the proxy, when the run has one, for the round trips.
    counting = env.counting
    with serve(counting or env) as server:
        counter = None if counting is None else counting.round_trips
        alone = loop.run_until_complete(measure_once(server, request, counter))

    def load(workers: int, processes: int | None) -> Load:
        route.before_load()  # a served load runs in the app's one process
        watched = (env.setting.target, route.proxy_cpu(), where.direct, route.clients_left())
        with serve() as server:
            if where.locust:  # Locust's master and workers, in processes of their own
                from sqla_bench.locust_load import run_locust_load

                return run_locust_load(
                    server, request, workers, where.seconds, where.locust, *watched
                )
            return run_web_load(server, request, workers, where.seconds, loop, *watched)

    yield alone, load


def _design(measurement: Measurement) -> dict[str, Any]:
    """How a cell compared with others was sampled: its blocks, its places in them, and
    the comparison's design; nothing for a cell measured alone."""
    design = measurement.design
    if design is None or design.cells < 2:
        return {}
    return {
        "blocks": measurement.blocks,
        "slots": measurement.slots,
        "comparison": design.to_json(),
    }


def _usual(counts: Counter[int]) -> int | None:
    return counts.most_common(1)[0][0] if counts else None


def driver_env(
    route: Route, driver: Driver, size: DatasetSize, pool: dict[str, Any] | None
) -> DriverEnv:
    """The driver as the route's timed calls reach the server, and, when they do not go
    through the proxy but the run has one, the same driver through it for counting."""
    fresh = None if route.bouncer is None else route.bouncer.fresh_servers

    def on(routed: Driver, counted: bool, counting: DriverEnv | None = None) -> DriverEnv:
        counter = route.round_trip_counter() if counted else None
        return DriverEnv(
            routed, size, counter, pool, route.pgbouncer, server=driver, fresh_servers=fresh,
            counting=counting,
        )  # fmt: skip

    if route.delays:
        return on(route.through_proxy(driver), counted=True)
    counting = None if route.proxy is None else on(route.through_proxy(driver), counted=True)
    return on(route.past_proxy(driver), counted=False, counting=counting)


class Route:
    """How drivers reach a target: directly, through PgBouncer, through a latency proxy,
    or through both (the proxy in front of PgBouncer: the delay is the application's
    network, PgBouncer sits beside the server)."""

    def __init__(self, proxy: LatencyProxy | None = None, bouncer: PgBouncer | None = None) -> None:
        self.proxy = proxy
        self.bouncer = bouncer
        self.latency_ms: float | None = None

    @property
    def pgbouncer(self) -> str | None:
        """PgBouncer's pool mode on this route; None when there is no PgBouncer."""
        return None if self.bouncer is None else self.bouncer.mode

    def set_latency(self, round_trip_ms: float | None) -> None:
        self.latency_ms = round_trip_ms
        if self.proxy is not None and round_trip_ms is not None:
            self.proxy.set_delay(round_trip_ms / 2000)  # one way, in seconds

    @property
    def delays(self) -> bool:
        """Whether timed calls and loads go through the proxy: only to add latency. At
        0 ms it would add nothing but its own hops, so they go past it."""
        return self.proxy is not None and bool(self.latency_ms)

    def through_proxy(self, driver: Driver) -> Driver:
        """The driver through the proxy (then PgBouncer, if any): where round trips are
        counted."""
        return _entering(driver, self.proxy or self.bouncer)

    def past_proxy(self, driver: Driver) -> Driver:
        """The driver straight to PgBouncer or the server."""
        return _entering(driver, self.bouncer)

    def round_trip_counter(self) -> RoundTripCounter | None:
        return None if self.proxy is None else RoundTripCounter(self.proxy.totals)

    def proxy_cpu(self) -> Callable[[], float] | None:
        """The proxy's CPU seconds, when loads go through it."""
        if not self.delays:
            return None
        proxy = self.proxy
        return lambda: proxy.report()["cpu_seconds"]

    def before_load(self) -> None:
        """Through PgBouncer, a load starts with its server pool empty, as a load
        straight to the server starts with an empty engine pool."""
        if self.bouncer is not None:
            self.bouncer.close_servers()

    def clients_left(self) -> Callable[[], int] | None:
        """Through PgBouncer, how a load's leftover connections are counted (at
        PgBouncer, which keeps its server connections); None: at the server."""
        return None if self.bouncer is None else self.bouncer.clients_left

    def describe(self) -> str:
        words = ""
        if self.bouncer is not None:
            words += (
                f", through PgBouncer ({self.bouncer.mode} pooling, "
                f"{self.bouncer.pool_size} server connections)"
            )
        if self.delays:
            words += f", +{self.latency_ms:g} ms per round trip"
        elif self.latency_ms is not None:
            words += ", 0 ms: timed direct, round trips counted through the proxy"
        return words


def _entering(driver: Driver, entry: LatencyProxy | PgBouncer | None) -> Driver:
    if entry is None:
        return driver
    return replace(driver, url=driver.url.set(host="127.0.0.1", port=entry.port))


@contextmanager
def route_to(
    target: Target,
    through_proxy: bool,
    pgbouncer: str | None = None,
    pgbouncer_pool: int = 0,
    say: Callable[[str], None] = lambda _: None,
) -> Iterator[Route]:
    """A route to ``target``: through PgBouncer in ``pgbouncer`` mode and a proxy process,
    when asked; each started here and stopped on leaving, whatever ends the block."""
    with ExitStack() as stack:
        bouncer, proxy = None, None
        if pgbouncer is not None:
            bouncer = stack.enter_context(PgBouncer(target.url, pgbouncer, pgbouncer_pool, say))
        if through_proxy:  # never for SQLite (the plan refuses it): a server has a port
            url = target.url
            host, port = url.host or "127.0.0.1", url.port or PORTS[target.name]
            if bouncer is not None:
                host, port = "127.0.0.1", bouncer.port
            proxy = stack.enter_context(LatencyProxy(host, port))
        yield Route(proxy, bouncer)


def _finish(workload: Workload, target: Target) -> str | None:
    """The workload's own check once a target is done, as a reason it failed, if any."""
    try:
        return workload.finish(target.name)
    except (SQLAlchemyError, OSError) as error:
        return said_by(error, target)


def _budget(pool: dict[str, Any] | None, processes: int | None, bouncer: PgBouncer | None) -> int:
    """The most server connections a load may open: each process's pool and overflow,
    or PgBouncer's pool when it stands between (what the server sees)."""
    engines = sum(pool_capacity(pool)) * (processes or 1)
    return engines if bouncer is None else min(engines, bouncer.pool_size)


def _describe_pool(pool: dict[str, Any] | None) -> str:
    return "".join(f", {name}={value}" for name, value in (pool or {}).items())
