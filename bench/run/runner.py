"""The runner: measures a plan's cells into a result file, whatever the policy.

For each target it prepares the database once per dataset size (untimed), sets the route
(direct, or through the latency proxy at each latency), and measures every cell of every
selected driver on one event loop, through the measuring path
(``sqla_bench.measuring.measure``), or under load (``sqla_bench.measuring.load``,
``sqla_bench.measuring.web``) when the plan has a concurrency; each cell is appended to
the result file as soon as it finishes, with its verdict against the catalogue
(``sqla_bench.measuring.verify.differences``). ``run``, ``verify``, ``baseline`` and
``selfcheck`` all measure through it (``sqla_bench.run.pipeline``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from sqla_bench.base.errors import ConfigError, redact
from sqla_bench.measuring.engines import DriverEnv, prepare_database, release_database
from sqla_bench.measuring.load import Load
from sqla_bench.measuring.machine import Snapshot, state_between
from sqla_bench.measuring.measure import (
    Cell,
    Measurement,
    Policy,
    measure_driver,
    never,
)
from sqla_bench.measuring.policy import ONE_WARM_CALL
from sqla_bench.results.files import CellRecord, ResultFile
from sqla_bench.results.load_figures import pool_capacity
from sqla_bench.run.loads import LoadPlace, in_process_loads, served_loads
from sqla_bench.run.plan import RunPlan
from sqla_bench.run.records import Where, cell_record
from sqla_bench.run.routes import Route, driver_env, route_to
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.registry import Case
from sqla_bench.servers.children import ChildFailed
from sqla_bench.servers.owned import PRUNE_HINT
from sqla_bench.servers.pgbouncer import PgBouncer
from sqla_bench.servers.pgbouncer import version as pgbouncer_version
from sqla_bench.servers.targets import Driver, Target, failure, said_by

if TYPE_CHECKING:
    from sqla_bench.run.application import Workload

# Errors that mean the database went away or refused us, not that the scenario raised.
CONNECTION_LOST = (OperationalError, InterfaceError, OSError)


def _failed(cell: CellRecord, reason: str) -> None:
    """A cell the server's going away cut short: failed, with no timing. Its samples
    before the fault are dropped with the blocks they were taken in, and the outcome it
    ended with (the connection error) is the outage's, not the case's."""
    cell.failed = reason
    cell.samples_ns, cell.blocks, cell.slots, cell.comparison = [], None, None, None
    cell.differences = [f"failed: the server went away ({reason})"]


@dataclass
class Progress:
    """What the runner reports while it works (the CLI draws it; tests may ignore
    it)."""

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
            self.results.note_target(target.name, machine=machine)
            if workload is not None:
                finished = _finish(workload, target)
                checksums = workload.checksums(target.name)
                if checksums is not None:
                    self.results.note_target(target.name, checksums=checksums)
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
        """Seed the target (set-up: never timed, straight to the server, once per
        size)."""
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
            self.results.note_target(target.name, server_version=version)
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
        """What the result file keeps of PgBouncer: its version and each mode's
        settings."""
        if route.bouncer is not None:
            modes = {route.bouncer.mode: route.bouncer.settings()}
            pgbouncer = {"version": pgbouncer_version(), "modes": modes}
            self.results.note_target(target.name, pgbouncer=pgbouncer)
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
        """Each cell alone (its outcome and counts, from a warm call), then under
        load."""
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
        if load.failure:
            load.failure = redact(load.failure, target.url)
        record = self._record(target, route, env, cell, alone, ONE_WARM_CALL)
        # Loudly: a cell that leaks connections, or whose load was not made, does not pass.
        problem = (load.leak and f"leak: {load.leak}") or (
            load.failure and f"load failed: {load.failure}"
        )
        if problem:
            record.matches_expected = False
            record.message = problem
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
        where = Where(target, route, self._dataset(env.size), self.run_pass)
        return cell_record(where, env, cell, measurement, policy)


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
