"""What a run measures: the targets, drivers, modes, scenarios, strategies, datasets,
latencies, pools and loads the user asked for, checked before anything starts (an
unknown name is one ConfigError), and the explicit list of cells they make for each
driver and dataset (``cells``), which the runner measures in turn."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, inspect
from sqlalchemy.engine import URL
from sqlalchemy.orm import Mapper

from sqla_bench.base.errors import ConfigError, shown
from sqla_bench.measuring.engines import check_owned, setting_for
from sqla_bench.measuring.measure import Cell, Policy
from sqla_bench.measuring.verify import applicable_cells
from sqla_bench.run.application_modules import import_application
from sqla_bench.scenarios.dataset import TABLES, DatasetSize
from sqla_bench.scenarios.registry import MODES, RECEIVES, STRATEGY, Case, discover, problems
from sqla_bench.servers.pgbouncer import DEFAULT_POOL_SIZE, DIRECT
from sqla_bench.servers.pgbouncer import binary as pgbouncer_binary
from sqla_bench.servers.pgbouncer import run_as as pgbouncer_user
from sqla_bench.servers.targets import Driver, Target

if TYPE_CHECKING:
    from sqla_bench.measuring.locust_load import LocustWorkers
    from sqla_bench.run.application import Workload

DEFAULT_POLICY = Policy()
ON_ERROR = ("stop", "continue")
# What a cell measured one call at a time may receive: all but "http" (served, under load).
RECEIVES_ALONE = tuple(kind for kind in RECEIVES if kind != "http")


@dataclass(frozen=True)
class RunPlan:
    """What to measure, validated: unknown names raise ConfigError before any work."""

    targets: tuple[Target, ...]
    kinds: tuple[str, ...] = ("scenario",)  # "pattern" too, for verify
    modes: tuple[str, ...] = MODES
    drivers: tuple[str, ...] | None = None
    scenarios: tuple[str, ...] | None = None  # ids, or prefixes such as "crud"
    # An application's modules of twins to measure instead of the built-in scenarios.
    modules: tuple[str, ...] = ()
    # An application's models (run --models): its relationships are the cases, and it
    # prepares each target's data in place of the built-in dataset.
    workload: Workload | None = None
    strategies: tuple[str, ...] | None = None
    datasets: tuple[DatasetSize, ...] = (DatasetSize(),)
    policy: Policy = DEFAULT_POLICY
    # How many times the workload is measured, at each dataset: a verdict that differs
    # between passes is "unstable", not a winner.
    passes: int = 1
    latencies: tuple[float, ...] | None = None  # round-trip milliseconds added by the proxy
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # parameter values replacing a grid's
    concurrency: tuple[int, ...] | None = None  # workers per load; None measures one call
    # Worker processes a load runs in, each with its own engine and pool and its share
    # of the concurrency (run --processes); None: the measuring process's workers.
    processes: tuple[int, ...] | None = None
    pool_sizes: tuple[int, ...] | None = None
    max_overflow: int | None = None
    pool_timeout: float | None = None
    load_seconds: float = 2.0
    # What sends a web scenario's HTTP load: the built-in aiohttp client in this process,
    # or Locust's master and ``load_workers`` workers in processes of their own.
    load_generator: str = "aiohttp"
    load_workers: int = 2
    remote_workers: int = 0  # Locust workers that attach from other machines
    locust_master: str = "127.0.0.1:0"  # where Locust's master listens for its workers
    serve_host: str = "127.0.0.1"  # where a web app Locust loads listens
    serve_port: int = 0  # 0: a free port for each load
    advertise_host: str | None = None  # where Locust's workers send to; None: serve_host
    # PgBouncer's pool modes to measure through ("direct": without it), and its server
    # connections per database and user; None: no PgBouncer.
    pgbouncer: tuple[str, ...] | None = None
    pgbouncer_pool: int = DEFAULT_POOL_SIZE
    # A cell that fails because the server stopped answering: "stop" measuring that
    # target there, or "continue" with the next cell (which finds the server back or not).
    on_error: str = "stop"
    # Calls per cell counted in instructions, after the timed run, in a child process
    # under callgrind (run --instructions, ``sqla_bench.run.instructions``); None: not counted.
    instructions: int | None = None
    # How long to wait for another run's lock on a database (``sqla_bench.run.dblock``).
    wait_for_lock: float = 0.0

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"--on-error must be one of {', '.join(ON_ERROR)}")
        if self.latencies is not None and any(t.name == "sqlite" for t in self.targets):
            raise ConfigError(
                "--latency needs a network and sqlite has none: choose --target postgresql "
                "or --target mysql"
            )
        self._check_pgbouncer()
        self._check_processes()
        for module in self.modules:
            _check_module(module, self.workload)
        if self.workload is not None:
            limits = dict(self.grid).get("limit", ())
            self.workload.check(self.targets, self.datasets, limits)
        self._check_owned()
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
            if self.load_generator == "locust":
                _check_locust(self)
            if self.processes is not None:
                raise ConfigError(
                    "--processes splits in-process loads; a web scenario's app serves in "
                    "one process: leave web.* out, or --processes out"
                )
        if self.load_generator not in LOAD_GENERATORS:
            raise ConfigError(f"--load-generator: one of {', '.join(LOAD_GENERATORS)}")
        served_elsewhere = (self.serve_host, self.serve_port, self.advertise_host)
        if self.load_generator != "locust" and served_elsewhere != ("127.0.0.1", 0, None):
            raise ConfigError(
                "--serve-host, --serve-port and --advertise-host place the app for Locust's "
                "workers: add --load-generator locust"
            )
        if self.load_generator != "aiohttp" and not any(c.receives == "http" for c in cases):
            raise ConfigError(
                "--load-generator locust sends the web scenarios' HTTP load: add "
                "--scenario web and --concurrency N[,N...]"
            )
        if not any(self.cells(d, size) for d in self.selected_drivers() for size in self.datasets):
            raise ConfigError("nothing to measure: no scenario cell matches that selection")

    def cases(self) -> list[Case]:
        """The selected scenarios, with their grids changed as ``grid`` says. Web
        scenarios (which serve an app) are measured only when ``scenarios`` names them."""
        if self.workload is not None:  # its relationships, and twins on its data
            twins = discover(self.kinds, self.modules) if self.modules else []
            cases = self.workload.cases() + twins
        else:
            cases = discover(self.kinds, self.modules)
        if self.scenarios is not None:
            cases += discover("web", self.modules) if self.workload is None else []
            for selector in self.scenarios:
                if not any(_selects(selector, case) for case in cases):
                    known = ", ".join(sorted({case.id for case in cases}))
                    raise ConfigError(f"unknown scenario {selector!r}; choose from {known}")
            cases = [case for case in cases if any(_selects(s, case) for s in self.scenarios)]
        return [_with_grid(case, dict(self.grid)) for case in cases]

    def tables_created(self) -> tuple[str, ...]:
        """Every table the run creates on a target (and drops when done with it)."""
        if self.workload is not None:
            return tuple(self.workload.tables_created())
        return TABLES

    def _check_owned(self) -> None:
        """No table the run would create or drop exists unless sqla-bench created it.
        Only a database given by URL can hold one: a container and the SQLite file in a
        temporary folder are the run's own."""
        names = self.tables_created()
        for target in self.targets:
            if names and isinstance(target, Target) and str(target.source).startswith("url"):
                check_owned(target.drivers[0], names)

    def pgbouncer_modes(self) -> list[str | None]:
        """PgBouncer's pool mode for each route the run takes; None is direct."""
        if self.pgbouncer is None:
            return [None]
        return [None if mode == DIRECT else mode for mode in self.pgbouncer]

    def _check_processes(self) -> None:
        if self.processes is None:
            return
        if self.concurrency is None:
            raise ConfigError("--processes splits a load's workers: add --concurrency N[,N...]")
        if self.workload is not None:
            raise ConfigError("--processes runs built-in or --scenarios twins, not --models")
        if max(self.processes) > min(self.concurrency):
            raise ConfigError(
                f"--processes {max(self.processes)}: each process needs a worker, and the "
                f"lowest --concurrency is {min(self.concurrency)}"
            )

    def _check_pgbouncer(self) -> None:
        if self.pgbouncer is None:
            return
        others = sorted({t.name for t in self.targets if t.name != "postgresql"})
        if others:
            raise ConfigError(
                f"--pgbouncer pools PostgreSQL connections; {', '.join(others)} cannot go "
                "through it: choose --target postgresql"
            )
        if any(mode != DIRECT for mode in self.pgbouncer):
            pgbouncer_binary()  # ConfigError, naming the package, when it is missing
            pgbouncer_user()  # and when root has nobody to run it as

    def locust(self) -> LocustWorkers | None:
        """Locust's workers, when it sends the HTTP load."""
        if self.load_generator != "locust":
            return None
        from sqla_bench.measuring.locust_load import LocustWorkers

        return LocustWorkers(
            self.load_workers, self.remote_workers, self.locust_master,
            self.serve_host, self.serve_port, self.advertise_host,
        )  # fmt: skip

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

    def cells(self, driver: Driver, size: DatasetSize, pgbouncer: str | None = None) -> list[Cell]:
        cases = self.cases()
        # Loads either open sessions or send requests; one call at a time needs no server.
        loaded = ("session", "http") if self.concurrency is not None else RECEIVES_ALONE
        cases = [case for case in cases if case.receives in loaded]
        cells = applicable_cells(cases, setting_for(driver, pgbouncer), size)
        if self.strategies is None:
            return cells
        # --strategy narrows the cells that have a strategy; it leaves the others alone.
        return [
            (case, params)
            for case, params in cells
            if STRATEGY not in params or params[STRATEGY] in self.strategies
        ]

    def total_cells(self) -> int:
        """Every cell the run will record: each load level and latency is a cell."""
        per_latency = sum(
            len(self.cells(driver, size, pgbouncer))
            for driver in self.selected_drivers()
            for size in self.datasets
            for pgbouncer in self.pgbouncer_modes()
        )
        levels = len(self.concurrency or (None,)) * len(self.processes or (None,))
        per_pass = per_latency * len(self.latencies or (None,)) * len(self.pools()) * levels
        return per_pass * self.passes

    def target_urls(self) -> list[URL]:
        return [target.url for target in self.targets]

    def parameters(self) -> dict[str, Any]:
        """The plan as plain data, for the result file."""
        return {
            "targets": [target.name for target in self.targets],
            "kinds": list(self.kinds),
            "drivers": list(self.drivers) if self.drivers else None,
            "modes": list(self.modes),
            "scenarios": list(self.scenarios) if self.scenarios else None,
            "modules": list(self.modules),
            "models": self.workload.parameters() if self.workload is not None else None,
            "strategies": list(self.strategies) if self.strategies else None,
            "datasets": [
                self.workload.dataset(size) if self.workload is not None else asdict(size)
                for size in self.datasets
            ],
            "policy": asdict(self.policy),
            "passes": self.passes,
            "latencies_ms": list(self.latencies) if self.latencies else None,
            "grid": {name: list(values) for name, values in self.grid},
            "concurrency": list(self.concurrency) if self.concurrency else None,
            "processes": list(self.processes) if self.processes else None,
            "pools": self.pools(),
            "load_seconds": self.load_seconds,
            "load_generator": self.load_generator,
            "load_workers": self.load_workers if self.load_generator == "locust" else None,
            "remote_workers": self.remote_workers if self.load_generator == "locust" else None,
            "on_error": self.on_error,
            "pgbouncer": list(self.pgbouncer) if self.pgbouncer else None,
            "pgbouncer_pool_size": self.pgbouncer_pool if self.pgbouncer else None,
            "instructions": self.instructions,
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
                    values, f"--param {STRATEGY}", discover(("scenario", "web"), self.modules)
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
LOAD_GENERATORS = ("aiohttp", "locust")


def _check_locust(plan: RunPlan) -> None:
    host, _, port = plan.locust_master.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"--locust-master: expected HOST:PORT (port 0 for any), got {plan.locust_master!r}"
        )
    if plan.load_workers + plan.remote_workers == 0:
        raise ConfigError("--load-workers 0 needs --load-remote-workers M: no worker would load")
    if plan.remote_workers:
        _check_reachable(plan, host, int(port))
    if importlib.util.find_spec("locust") is None:
        raise ConfigError(
            "--load-generator locust needs Locust: pip install 'sqla-bench[locust]' "
            "(or '.[locust]' from a checkout)"
        )


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_reachable(plan: RunPlan, master_host: str, master_port: int) -> None:
    """Remote workers must find the master and the app: neither on this machine's
    loopback, and the master on a port they can be told."""
    if master_port == 0:
        raise ConfigError(
            "--load-remote-workers: remote workers must be told the master's port: give "
            "--locust-master HOST:PORT with a port"
        )
    for option, host in (
        ("--locust-master", master_host),
        ("--serve-host", plan.serve_host),
        ("--advertise-host", plan.advertise_host),
    ):
        if host in LOOPBACK or (host or "").startswith("127."):
            raise ConfigError(
                f"{option} {host}: other machines cannot reach this machine's loopback; give "
                "an address of this machine they reach (or 0.0.0.0 to listen on every one)"
            )
    if plan.advertise_host is None and plan.serve_host in ("0.0.0.0", "::", "*"):
        raise ConfigError(
            "--serve-host listens on every interface: give --advertise-host, the address "
            "remote workers reach this machine at"
        )


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


def _check_module(name: str, workload: Workload | None = None) -> None:
    """An application's module of twins (``--scenarios``) imports and declares whole
    cases, on sqla-bench's own tables or (with ``--models``) on the tables that workload
    holds; else one ConfigError that says what is wrong."""
    module = import_application("--scenarios", name)
    try:
        cases = discover(None, (name,))
    except RuntimeError as error:
        raise ConfigError(f"--scenarios {shown(name)}: {error}") from None
    if not cases:
        raise ConfigError(
            f"--scenarios {shown(name)}: {module.__file__} declares no scenario (decorate its "
            "twins with sqla_bench.scenarios.registry.scenario)"
        )
    known = {case.id for case in cases}
    found = [problem for case in cases for problem in problems(case, known)]
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ConfigError(f"--scenarios {shown(name)}: {found[0]}{more}")
    if workload is not None:
        outside = sorted(_mapped_tables(module) - set(workload.table_names()))
        if outside:
            raise ConfigError(
                f"--scenarios {shown(name)}: its twins map tables the --models data does "
                f"not hold ({', '.join(outside)}): give their models' module to --models, "
                "and --relationship for a relationship of theirs"
            )
        workload.include(_mapped_tables(module))
        return
    foreign = sorted(_mapped_tables(module) - set(TABLES))
    if foreign:
        raise ConfigError(
            f"--scenarios {shown(name)}: its twins map tables sqla-bench does not create "
            f"({', '.join(foreign)}), and it never writes or reads an application's tables "
            f"with its own dataset: run them on your models' data with --models MODULE "
            f"--scenarios {name} (generated data) or --models MODULE --use-existing-data "
            f"--scenarios {name} (read-only), or declare them on sqla_bench.scenarios.models"
        )


def _mapped_tables(module: ModuleType) -> set[str]:
    """The tables of the mapped classes and ``Table`` objects a module's names hold."""
    tables = set()
    for value in vars(module).values():
        if isinstance(value, Table):
            tables.add(value.name)
        mapper = inspect(value, raiseerr=False) if isinstance(value, type) else None
        if isinstance(mapper, Mapper):
            tables |= {table.name for table in mapper.tables}
    return tables
