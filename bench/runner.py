"""``sqla-bench run``: which cells to measure, measuring them, and recording each one.

A ``RunPlan`` is what the user asked for (targets, drivers, modes, scenarios,
strategies, dataset sizes, sampling policy), checked before anything is measured. The
``Runner`` prepares each target's database once per dataset size (untimed), measures
every applicable cell of every selected driver on one event loop, and appends each cell
to the result file as soon as it finishes.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import platform
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy.engine import URL
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from bench.children import ChildFailed
from bench.engines import DriverEnv, prepare_database, setting_for
from bench.latency import LatencyProxy
from bench.load import Load, run_load
from bench.measure import (
    Cell,
    Measurement,
    Policy,
    measure,
    measure_driver,
    never,
    subject_for,
)
from bench.owner import owner_label
from bench.probes import RoundTripCounter
from bench.results import SCHEMA_VERSION, CellRecord, ResultFile
from bench.targets import ConfigError, Driver, Target, failure, first_line, redact
from bench.verify import applicable_cells, differences
from scenarios.dataset import DatasetSize
from scenarios.expect import Raises
from scenarios.registry import MODES, RECEIVES, STRATEGY, Case, discover

# Errors that mean the database went away or refused us, not that the scenario raised.
CONNECTION_LOST = (OperationalError, InterfaceError, OSError)
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
DEFAULT_POLICY = Policy()
# One warm-up call (which opens the connection), then the one that counts.
ON_ERROR = ("stop", "continue")
ONE_WARM_CALL = Policy(warmup=1, min_rounds=1, min_time=0.0, max_rounds=1)
# What a cell measured one call at a time may receive: all but "http" (served, under load).
RECEIVES_ALONE = tuple(kind for kind in RECEIVES if kind != "http")


class TargetLost(Exception):
    """A cell failed because its database stopped answering: stop measuring the target."""


@dataclass(frozen=True)
class RunPlan:
    """What to measure, validated: unknown names raise ConfigError before any work."""

    targets: tuple[Target, ...]
    modes: tuple[str, ...] = MODES
    drivers: tuple[str, ...] | None = None
    scenarios: tuple[str, ...] | None = None  # ids, or prefixes such as "crud"
    strategies: tuple[str, ...] | None = None
    datasets: tuple[DatasetSize, ...] = (DatasetSize(),)
    policy: Policy = DEFAULT_POLICY
    latencies: tuple[float, ...] | None = None  # round-trip milliseconds added by the proxy
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # parameter values replacing a grid's
    concurrency: tuple[int, ...] | None = None  # workers per load; None measures one call
    pool_sizes: tuple[int, ...] | None = None
    max_overflow: int | None = None
    pool_timeout: float | None = None
    load_seconds: float = 2.0
    # A cell that fails because the server stopped answering: "stop" measuring that
    # target there, or "continue" with the next cell (which finds the server back or not).
    on_error: str = "stop"

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"--on-error must be one of {', '.join(ON_ERROR)}")
        if self.latencies is not None and any(t.name == "sqlite" for t in self.targets):
            raise ConfigError(
                "--latency needs a network and sqlite has none: choose --target postgresql "
                "or --target mysql"
            )
        self._check_drivers()
        cases = self.cases()  # raises for a scenario that does not exist
        self._check_strategies(cases)
        self._check_grid(cases)
        if self.concurrency is None and cases and all(c.receives == "http" for c in cases):
            raise ConfigError(
                "web scenarios are measured over HTTP under load: add --concurrency N[,N...]"
            )
        if self.concurrency is not None and any(c.receives == "http" for c in cases):
            _check_web_extra()
        if not any(self.cells(d, size) for d in self.selected_drivers() for size in self.datasets):
            raise ConfigError("nothing to measure: no scenario cell matches that selection")

    def cases(self) -> list[Case]:
        """The selected scenarios, with their grids changed as ``grid`` says. Web
        scenarios (which serve an app) are measured only when ``scenarios`` names them."""
        cases = discover("scenario")
        if self.scenarios is not None:
            cases += discover("web")
            for selector in self.scenarios:
                if not any(_selects(selector, case) for case in cases):
                    known = ", ".join(sorted({case.id for case in cases}))
                    raise ConfigError(f"unknown scenario {selector!r}; choose from {known}")
            cases = [case for case in cases if any(_selects(s, case) for s in self.scenarios)]
        return [_with_grid(case, dict(self.grid)) for case in cases]

    def selected_drivers(self) -> list[Driver]:
        return [
            driver
            for target in self.targets
            for driver in target.drivers
            if driver.spec.mode in self.modes
            and (self.drivers is None or driver.spec.name in self.drivers)
        ]

    def pools(self) -> list[dict[str, Any] | None]:
        """Engine pool settings to measure with, one per pool size (None: the defaults)."""
        common = {"max_overflow": self.max_overflow, "pool_timeout": self.pool_timeout}
        common = {name: value for name, value in common.items() if value is not None}
        if self.pool_sizes is None:
            return [common or None]
        return [{"pool_size": size, **common} for size in self.pool_sizes]

    def cells(self, driver: Driver, size: DatasetSize) -> list[Cell]:
        cases = self.cases()
        # Loads either open sessions or send requests; one call at a time needs no server.
        loaded = ("session", "http") if self.concurrency is not None else RECEIVES_ALONE
        cases = [case for case in cases if case.receives in loaded]
        cells = applicable_cells(cases, setting_for(driver), size)
        if self.strategies is None:
            return cells
        # --strategy narrows the cells that have a strategy; it leaves the others alone.
        return [
            (case, params)
            for case, params in cells
            if STRATEGY not in params or params[STRATEGY] in self.strategies
        ]

    def target_urls(self) -> list[URL]:
        return [target.url for target in self.targets]

    def parameters(self) -> dict[str, Any]:
        """The plan as plain data, for the result file."""
        return {
            "targets": [target.name for target in self.targets],
            "drivers": list(self.drivers) if self.drivers else None,
            "modes": list(self.modes),
            "scenarios": list(self.scenarios) if self.scenarios else None,
            "strategies": list(self.strategies) if self.strategies else None,
            "datasets": [asdict(size) for size in self.datasets],
            "policy": asdict(self.policy),
            "latencies_ms": list(self.latencies) if self.latencies else None,
            "grid": {name: list(values) for name, values in self.grid},
            "concurrency": list(self.concurrency) if self.concurrency else None,
            "pools": self.pools(),
            "load_seconds": self.load_seconds,
            "on_error": self.on_error,
        }

    def _check_grid(self, cases: list[Case]) -> None:
        for name, values in self.grid:
            if not any(name in case.params for case in cases):
                known = sorted({param for case in cases for param in case.params})
                raise ConfigError(
                    f"--param {name}: no selected scenario has that parameter; "
                    f"they have {', '.join(known) or 'none'}"
                )
            if name == STRATEGY:
                self._check_strategy_names(
                    values, f"--param {STRATEGY}", discover(("scenario", "web"))
                )

    def _check_drivers(self) -> None:
        if self.drivers is None:
            return
        available = {d.spec.name for target in self.targets for d in target.drivers}
        for name in self.drivers:
            if name not in available:
                raise ConfigError(
                    f"unknown driver {name!r} for the selected targets; "
                    f"choose from {', '.join(sorted(available))}"
                )

    def _check_strategies(self, cases: list[Case]) -> None:
        if self.strategies is not None:
            self._check_strategy_names(self.strategies, "--strategy", cases)

    @staticmethod
    def _check_strategy_names(names: Sequence[Any], option: str, cases: list[Case]) -> None:
        known = {value for case in cases for value in case.params.get(STRATEGY, ())}
        for name in names:
            if name not in known:
                raise ConfigError(
                    f"{option}: unknown strategy {name!r} for the selected scenarios; "
                    f"choose from {', '.join(sorted(known)) or 'none: they have no strategies'}"
                )


WEB_MODULES = ("fastapi", "uvicorn", "aiohttp")


def _check_web_extra() -> None:
    missing = [name for name in WEB_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"web scenarios need {', '.join(missing)}: pip install 'sqla-bench[web]' "
            "(or '.[web]' from a checkout)"
        )


def _with_grid(case: Case, grid: dict[str, tuple[Any, ...]]) -> Case:
    changed = {name: values for name, values in grid.items() if name in case.params}
    return replace(case, params={**case.params, **changed}) if changed else case


def _selects(selector: str, case: Case) -> bool:
    """``crud.get`` or ``crud`` selects crud.get and any baseline that joins its table."""
    names = (case.id, case.table)
    return any(name == selector or name.startswith(f"{selector}.") for name in names)


def run_header(plan: RunPlan, command: Sequence[str], started: datetime) -> dict[str, Any]:
    """Everything about the run except its cells: the result file's header."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "sqla-bench", "version": _distribution_version("sqla-bench") or "dev"},
        "run": {
            "started": started.isoformat(timespec="seconds"),
            "finished": None,
            "status": "running",
            "owner": owner_label(),  # so that a file a killed process left "running" is told
            "reason": None,
            # The command line never carries a URL (targets come from the environment).
            "command": list(command),
            "parameters": plan.parameters(),
        },
        "environment": environment(plan.selected_drivers()),
        "targets": {target.name: _target_facts(target) for target in plan.targets},
    }


def _target_facts(target: Target) -> dict[str, Any]:
    """Where the target's server came from; its version is filled in once it answers."""
    facts = {"url": target.safe_url, "source": target.source, "server_version": None}
    if target.container is not None:
        facts["container"] = dict(target.container)
    return facts


def environment(drivers: Sequence[Driver]) -> dict[str, Any]:
    """Library, driver and machine facts for the result file."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlalchemy": sqlalchemy.__version__,
        "greenlet": _distribution_version("greenlet"),
        "drivers": {d.spec.module: _module_version(d.spec.module) for d in drivers},
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": current_affinity(),
            "platform": platform.platform(),
            "architecture": platform.machine(),
        },
    }


def current_affinity() -> list[int] | None:
    """The CPUs this process may run on (None where the platform cannot tell)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))


def pin_to(cpus: str) -> None:
    """Restrict this process to ``cpus``: ``auto`` (the last CPU it may use), ``all``
    (leave scheduling to the OS) or a list such as ``1`` or ``0,1``.

    Pinning is what makes repeated runs agree on a small machine: with the event loop
    and aiosqlite's worker thread free to land on different cores, one run's medians
    differed from the next by up to 20 %; pinned to one core, by under 3 %. Threads
    started later (driver threads) inherit the setting. Call before any is started.
    """
    chosen = chosen_cpus(cpus)
    if chosen is not None:
        os.sched_setaffinity(0, chosen)


def chosen_cpus(cpus: str) -> set[int] | None:
    """The CPUs ``--affinity`` names (None: leave it to the OS), or ConfigError."""
    if cpus == "all" or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    chosen = {max(allowed)} if cpus == "auto" else _cpu_list(cpus)
    if not chosen <= allowed:
        raise ConfigError(f"--affinity {cpus}: this process may only use CPUs {sorted(allowed)}")
    return chosen


def _cpu_list(text: str) -> set[int]:
    try:
        return {int(part) for part in text.split(",")}
    except ValueError:
        raise ConfigError(
            f"--affinity: expected auto, all or CPU numbers such as 0,1, got {text!r}"
        ) from None


def _module_version(module: str) -> str | None:
    if module == "sqlite3":  # in the standard library: the SQLite library's version matters
        import sqlite3

        return sqlite3.sqlite_version
    distributions = importlib.metadata.packages_distributions().get(module, [module])
    return _distribution_version(distributions[0])


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


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


class Runner:
    """Measures a plan into a result file; returns why any target stopped part-way."""

    def __init__(self, plan: RunPlan, results: ResultFile, progress: Progress) -> None:
        self.plan = plan
        self.results = results
        self.progress = progress

    def total_cells(self) -> int:
        per_latency = sum(
            len(self.plan.cells(driver, size))
            for driver in self.plan.selected_drivers()
            for size in self.plan.datasets
        )
        levels = len(self.plan.concurrency or (None,))
        return per_latency * len(self.plan.latencies or (None,)) * len(self.plan.pools()) * levels

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
        drivers = [d for d in self.plan.selected_drivers() if d.spec.target == target.name]
        self.lost: list[str] = []  # cells the server failed, when the run continues past them
        try:
            with route_to(target, self.plan.latencies is not None) as route:
                for size in self.plan.datasets:
                    # Seeding is set-up: never timed, straight to the server, once per size.
                    version = prepare_database(target.drivers[0], size)
                    self.results.header["targets"][target.name]["server_version"] = version
                    for latency in self.plan.latencies or (None,):
                        route.set_latency(latency)
                        for pool in self.plan.pools():
                            for driver in drivers:
                                self._run_driver(target, route, driver, size, pool, loop)
        except (SQLAlchemyError, OSError, TargetLost, ChildFailed) as error:
            return failure(target, error)
        if self.lost:
            return (
                f"{target.name} at {target.safe_url}: {len(self.lost)} cells failed because "
                f"the server did not answer, the first with: {self.lost[0]}"
            )
        return None

    def _run_driver(
        self,
        target: Target,
        route: Route,
        driver: Driver,
        size: DatasetSize,
        pool: dict[str, Any] | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        cells = self.plan.cells(driver, size)
        described = size.describe() + route.describe() + _describe_pool(pool)
        loads = len(self.plan.concurrency or (None,))  # each load is a cell of its own
        self.progress.on_driver(f"{driver.id} ({described})", len(cells) * loads)
        env = DriverEnv(route.driver(driver), size, route.round_trip_counter(), pool)
        if self.plan.concurrency is not None:
            self._load_driver(target, route, env, cells, loop)
            return
        policy = self.plan.policy

        def record(case: Case, params: dict[str, Any], measurement: Measurement) -> None:
            cell = self._record(target, route, env, (case, params), measurement, policy)
            self.results.add(cell)
            self.progress.on_cell(cell)
            failed = measurement.failure
            lost = failed is not None and isinstance(failed.error, CONNECTION_LOST)
            if lost and not cell.matches_expected:
                if self.plan.on_error == "stop":
                    raise TargetLost(cell.message or cell.error)
                self.lost.append(cell.message or cell.error or "connection lost")

        measure_driver(env, cells, policy, loop, record, self.progress.stop_requested)

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
                with loads(case, params, env, route, loop, direct, self.plan) as (alone, load):
                    for workers in self.plan.concurrency:
                        self._record_load(target, route, env, (case, params), alone, load(workers))
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
        self.results.add(record)
        self.progress.on_cell(record)
        if self.progress.stop_requested():
            raise KeyboardInterrupt

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
        found = [redact(text, target.url) for text in differences(expected, observed, checked)]
        return CellRecord(
            case=case.id,
            table=case.table,
            label=case.doc,
            baseline=case.baseline,
            params=dict(params),
            dataset=asdict(env.size),
            target=target.name,
            driver=env.driver,
            mode=env.mode,
            outcome="raised" if raised else "ok",
            error=observed.error.__name__ if raised else None,
            wrapped_in=observed.wrapped_in.__name__ if raised and observed.wrapped_in else None,
            message=first_line(failed.error, target) if failed else None,
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
            # A cell that raised has no samples: its round trips and bytes are the failing
            # call's, up to the raise.
            round_trips=failed.round_trips if raised else _usual(measurement.round_trips),
            round_trips_seen=sorted(measurement.round_trips),
            rows_fetched=None if checked is None else checked.rows_fetched,
            bytes_up=failed.bytes_up if raised else _usual(measurement.bytes_up),
            bytes_down=failed.bytes_down if raised else _usual(measurement.bytes_down),
            peak_memory=measurement.peak_memory,
        )


# A cell's loads: the cell measured alone (its outcome and counts, from a warm call), and
# a function that runs it under load with N workers.
Loads = Iterator[tuple[Measurement, Callable[[int], Load]]]


@contextmanager
def in_process_loads(
    case: Case,
    params: dict[str, Any],
    env: DriverEnv,
    route: Route,
    loop: asyncio.AbstractEventLoop,
    direct: URL,
    plan: RunPlan,
) -> Loads:
    """Workers in this process, sharing ``env``'s engine."""
    alone = loop.run_until_complete(measure(subject_for(case, params, env), ONE_WARM_CALL))

    def load(workers: int) -> Load:
        return run_load(
            env, case, params, workers, plan.load_seconds, loop, route.proxy_cpu(), direct
        )

    yield alone, load


@contextmanager
def served_loads(
    case: Case,
    params: dict[str, Any],
    env: DriverEnv,
    route: Route,
    loop: asyncio.AbstractEventLoop,
    direct: URL,
    plan: RunPlan,
) -> Loads:
    """The case's app served in a process of its own (on ``env``'s driver, through the
    route, with the plan's pool), and HTTP clients in this one. Each load gets an app of
    its own, so it starts with an empty pool, as in-process loads do: the connection
    poller's count at the start is then other clients' only."""
    from bench.web import AppServer, measure_once, run_web_load

    request = case.function(env.mode)(**params)
    options = {**env.pool, "connect_args": env.connect_args}

    def serve() -> AppServer:
        return AppServer(case, request, env.mode, env.url, options)

    with serve() as server:
        alone = loop.run_until_complete(measure_once(server, request, route.round_trip_counter()))

    def load(workers: int) -> Load:
        with serve() as server:
            return run_web_load(
                server, request, workers, plan.load_seconds, loop,
                env.setting.target, route.proxy_cpu(), direct,
            )  # fmt: skip

    yield alone, load


def _usual(counts: Counter[int]) -> int | None:
    return counts.most_common(1)[0][0] if counts else None


def run_to_file(
    plan: RunPlan, path: Path, command: Sequence[str], progress: Progress | None = None
) -> tuple[ResultFile, list[str]]:
    """Measure ``plan`` into a result file at ``path``, finished as complete or incomplete;
    returns it and why any target stopped part-way."""
    results = ResultFile(path, run_header(plan, command, datetime.now(timezone.utc)))
    failures = Runner(plan, results, progress or Progress()).run()
    results.finish("incomplete" if failures else "complete", "; ".join(failures) or None)
    return results, failures


class Route:
    """How drivers reach a target: directly, or through a latency proxy."""

    def __init__(self, proxy: LatencyProxy | None = None) -> None:
        self.proxy = proxy
        self.latency_ms: float | None = None

    def set_latency(self, round_trip_ms: float | None) -> None:
        self.latency_ms = round_trip_ms
        if self.proxy is not None and round_trip_ms is not None:
            self.proxy.set_delay(round_trip_ms / 2000)  # one way, in seconds

    def driver(self, driver: Driver) -> Driver:
        if self.proxy is None:
            return driver
        return replace(driver, url=driver.url.set(host="127.0.0.1", port=self.proxy.port))

    def round_trip_counter(self) -> RoundTripCounter | None:
        return None if self.proxy is None else RoundTripCounter(self.proxy.totals)

    def proxy_cpu(self) -> Callable[[], float] | None:
        if self.proxy is None:
            return None
        proxy = self.proxy
        return lambda: proxy.report()["cpu_seconds"]

    def describe(self) -> str:
        return "" if self.latency_ms is None else f", +{self.latency_ms:g} ms per round trip"


@contextmanager
def route_to(target: Target, through_proxy: bool) -> Iterator[Route]:
    """A route to ``target``; through a proxy process (stopped afterwards) if asked."""
    if not through_proxy:
        yield Route()
        return
    url = target.url
    with LatencyProxy(url.host or "127.0.0.1", url.port or DEFAULT_PORTS[target.name]) as proxy:
        yield Route(proxy)


def _describe_pool(pool: dict[str, Any] | None) -> str:
    return "".join(f", {name}={value}" for name, value in (pool or {}).items())
