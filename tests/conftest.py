"""Targets and drivers for the tests.

Every test that takes ``sync_env`` or ``async_env`` runs once per configured driver of
that mode. A server target comes from its URL variable; without one, from a container
started the first time a test needs it (when a Docker engine answers), shared by every
test of the session and removed at its end, also after a failure or Ctrl-C. A server
target with neither is skipped with both ways to get one, unless ``SQLA_BENCH_REQUIRE``
names it; bad configuration stops the session with one line. Each target's database is
seeded when a test first needs it, and again after a run a test made removed the seed
(``Seeds``); all async tests and fixtures share the session's event loop (see
pyproject.toml), because pooled async connections belong to the loop that opened them.
"""

from __future__ import annotations

import gc
import importlib
import shutil
import tempfile
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import Engine

from sqla_bench.measuring.engines import (
    DriverEnv,
    prepare_database,
    release_database,
    setting_for,
    sync_engine,
)
from sqla_bench.measuring.verify import applicable_cells
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.models import USERS
from sqla_bench.scenarios.registry import IN_PROCESS, discover
from sqla_bench.servers import owned
from sqla_bench.servers.targets import (
    TARGETS,
    ConfigError,
    Driver,
    Pending,
    Servers,
    Target,
    Unavailable,
    check_reachable,
    required_targets,
)
from tests import FOLDERS
from tests.quick_suite import SLOW_VARIABLE, processes_for, slow_tests_run

SIZE = DatasetSize()


class Configured:
    """The targets of this test session, planned at start-up; containers start on use."""

    def __init__(self) -> None:
        self.sqlite_dir = Path(tempfile.mkdtemp(prefix="sqla-bench-tests-"))
        try:
            self._plan()
        except BaseException:  # a server out of reach ends the session: no folder left
            shutil.rmtree(self.sqlite_dir, ignore_errors=True)
            raise

    def _plan(self) -> None:
        self.required = required_targets()
        self.servers = Servers(self.sqlite_dir)
        self.targets: dict[str, Target | Pending | Unavailable] = {
            name: self.servers.plan(name) for name in TARGETS
        }
        for target in self.targets.values():
            if isinstance(target, Target) and target.name != "sqlite":
                check_reachable(target)
        for name in set(self.required) & set(TARGETS):
            if isinstance(self.targets[name], Unavailable):
                raise ConfigError(
                    f"SQLA_BENCH_REQUIRE names {name}, but {self.targets[name].reason}"
                )

    def target(self, name: str) -> Target:
        """The target called ``name``, its container started if it needs one; a test
        that asks for an unconfigured target is skipped (or fails, if it is required)."""
        target = self.servers.target(name)
        if isinstance(target, Unavailable):
            pytest.skip(target.reason)
        return target

    def live(self, driver: Driver) -> Driver:
        """``driver`` with its server's URL (a container's is known once it runs)."""
        target = self.target(driver.spec.target)
        return next(d for d in target.drivers if d.spec == driver.spec)

    def close(self) -> None:
        self.servers.close()
        shutil.rmtree(self.sqlite_dir, ignore_errors=True)

    def drivers(self, mode: str) -> list[pytest.param]:
        """One pytest param per driver of ``mode``; unconfigured targets appear skipped."""
        params = []
        for name, target in self.targets.items():
            if isinstance(target, Unavailable):
                params.append(
                    pytest.param(
                        None, id=f"{name}-{mode}", marks=pytest.mark.skip(reason=target.reason)
                    )
                )
                continue
            params += [pytest.param(d, id=d.id) for d in target.drivers if d.spec.mode == mode]
        return params


ROOT = Path(__file__).resolve().parent.parent


def stale_installed_files() -> list[str]:
    """The checkout's source files that the imported sqla_bench lacks or holds otherwise:
    the tests exercise the installed package, so a copy installed before an edit (pip
    install without -e) would test other code than the checkout's without a word."""
    stale = []
    for package, folder in FOLDERS:
        # Not resolved: a strict editable install links each file into a tree of its own,
        # and a module added since is missing there until the install runs again.
        installed = Path(importlib.import_module(package).__file__).parent
        for source in sorted((ROOT / folder).rglob("*.py")):
            copy = installed / source.relative_to(ROOT / folder)
            if not copy.is_file() or copy.read_bytes() != source.read_bytes():
                stale.append(str(source.relative_to(ROOT)))
    return stale


def pytest_configure(config: pytest.Config) -> None:
    stale = stale_installed_files()
    if stale:
        raise pytest.UsageError(
            f"sqla-bench: the installed sqla_bench is not this checkout's ({len(stale)} "
            f"files differ, first {stale[0]}): pip install -e '.[test]' "
            "--config-settings editable_mode=strict"
        )
    try:
        config.stash[CONFIGURED] = Configured()
    except ConfigError as error:
        raise pytest.UsageError(f"sqla-bench: {error}") from None


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads its options
def pytest_cmdline_main(config: pytest.Config) -> None:
    processes = processes_for(config)  # tests/quick_suite.py says when, and why
    if processes:
        config.option.numprocesses = processes
        # A process that runs out of tests takes half of another's: the longest tests
        # (seconds each) then do not leave one process working alone at the end.
        config.option.dist = "worksteal"


def pytest_unconfigure(config: pytest.Config) -> None:
    # The ``servers`` fixture stops the containers at the end of the session; this is
    # the backstop for a session that ends before its fixtures are torn down.
    configured = config.stash.get(CONFIGURED, None)
    if configured is not None:
        configured.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if slow_tests_run():
        return
    skip = pytest.mark.skip(reason=f"slow: runs in CI (CI=true) or with {SLOW_VARIABLE}=1")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Every command run in process ends in a full garbage collection (bench/cli.py says
    # why), which walks the whole heap: here every test module, Hypothesis, SQLAlchemy,
    # 80 ms a command, about a sixth of the quick suite. What collection built lives as
    # long as the session does; frozen, the collector passes over it.
    gc.collect()
    gc.freeze()


def pytest_report_header(config: pytest.Config) -> list[str]:
    configured = config.stash[CONFIGURED]
    slow = "run" if slow_tests_run() else f"skipped (CI=true or {SLOW_VARIABLE}=1 runs them)"
    processes = config.option.numprocesses if config.pluginmanager.hasplugin("xdist") else None
    in_parallel = (
        f"{processes} processes (pytest-xdist; -n 0 runs it in one)" if processes else "one process"
    )
    return [
        *(f"sqla-bench {name}: {_where(target)}" for name, target in configured.targets.items()),
        f"sqla-bench slow tests: {slow}",
        f"sqla-bench tests run on {in_parallel}",
    ]


def _where(target: Target | Pending | Unavailable) -> str:
    if isinstance(target, Unavailable):
        return f"skipped ({target.reason})"
    if isinstance(target, Pending):
        return f"{target.source}, started when a test first needs it"
    return f"{target.source}: {target.safe_url}"


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    for line in config.stash[CONFIGURED].servers.started():
        terminalreporter.write_line(f"sqla-bench: {line}")


CONFIGURED = pytest.StashKey[Configured]()


def _case_params(driver: Driver | None) -> list[pytest.param]:
    """Every applicable (case, cell) for this driver, with readable ids."""
    if driver is None:
        return [pytest.param(None, id="unconfigured")]
    cells = applicable_cells(discover(IN_PROCESS), setting_for(driver), SIZE)
    return [pytest.param((case, params), id=_cell_id(case, params)) for case, params in cells]


def _cell_id(case, params) -> str:
    return case.id + "".join(f"[{value}]" for value in params.values())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    configured = metafunc.config.stash[CONFIGURED]
    modes = [m for m in ("sync", "async") if f"{m}_env" in metafunc.fixturenames]
    if "twin_envs" in metafunc.fixturenames:
        metafunc.parametrize("twin_envs", _twin_pairs(configured), indirect=True)
    elif len(modes) == 1 and "cell" in metafunc.fixturenames:
        combos = [
            pytest.param(
                driver.values[0], cell.values[0], id=f"{driver.id}-{cell.id}", marks=driver.marks
            )
            for driver in configured.drivers(modes[0])
            for cell in _case_params(driver.values[0])
        ]
        metafunc.parametrize((f"{modes[0]}_env", "cell"), combos, indirect=[f"{modes[0]}_env"])
    elif len(modes) == 1:
        metafunc.parametrize(f"{modes[0]}_env", configured.drivers(modes[0]), indirect=True)


def _twin_pairs(configured: Configured) -> list[pytest.param]:
    pairs = []
    for name, target in configured.targets.items():
        if isinstance(target, Unavailable):
            pairs.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=target.reason)))
            continue
        sync_drivers = {d.spec.name: d for d in target.drivers if d.spec.mode == "sync"}
        for async_driver in (d for d in target.drivers if d.spec.mode == "async"):
            sync_driver = sync_drivers.get(async_driver.spec.sync_name)
            if sync_driver is not None:
                pair_id = f"{sync_driver.id}+{async_driver.spec.name}"
                pairs.append(pytest.param((sync_driver, async_driver), id=pair_id))
    return pairs


@pytest.fixture(scope="session")
def servers(request: pytest.FixtureRequest):
    """This session's targets; the containers it started are removed at its end (pytest
    tears session fixtures down after a failure and after Ctrl-C too)."""
    configured = request.config.stash[CONFIGURED]
    yield configured
    configured.servers.close()


class Seeds:
    """Each server's database seeded with ``SIZE`` for the tests that take an env, and
    seeded again whenever a run that a test made in between (in this process or in a
    subprocess) removed the dataset when it was done, or seeded one of its own: the
    dataset's record (``sqla_bench.servers.owned``) then no longer names this session's
    seed. The session's tables are removed at its end; its environments are opened
    once."""

    def __init__(self, servers: Configured) -> None:
        self.servers = servers
        self._seeds: dict[str, str | None] = {}  # target -> the record of our seed
        self._engines: dict[str, Engine] = {}  # target -> a set-up engine, for the record
        self._drivers: dict[str, Driver] = {}  # target -> the driver that seeded it
        self._envs: dict[str, DriverEnv] = {}

    def env(self, driver: Driver) -> DriverEnv:
        driver = self.seeded(driver)
        if driver.id not in self._envs:
            self._envs[driver.id] = DriverEnv(driver, SIZE)
        return self._envs[driver.id]

    def seeded(self, driver: Driver) -> Driver:
        """``driver`` with its server's URL, the server seeded with ``SIZE``."""
        driver = self.servers.live(driver)
        target = driver.spec.target
        if target not in self._engines:
            self._engines[target], self._drivers[target] = sync_engine(driver), driver
        seed = self._record(target)
        if seed is None or seed != self._seeds.get(target):
            prepare_database(driver, SIZE)
            self._seeds[target] = self._record(target)
        return driver

    def _record(self, target: str) -> str | None:
        with self._engines[target].connect() as connection:
            records = owned.leftovers(connection)
        return next((f"{r.owner} {r.created}" for r in records if r.name == USERS), None)

    async def close(self) -> None:
        for env in self._envs.values():
            await env.dispose()
        for target, engine in self._engines.items():
            if self._record(target) == self._seeds.get(target):  # still ours to remove
                release_database(self._drivers[target])
            engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def seeds(servers: Configured):
    seeds = Seeds(servers)
    yield seeds
    await seeds.close()


@pytest.fixture
def sync_env(request: pytest.FixtureRequest, seeds: Seeds) -> DriverEnv:
    return seeds.env(request.param)


@pytest.fixture
def async_env(request: pytest.FixtureRequest, seeds: Seeds) -> DriverEnv:
    return seeds.env(request.param)


@pytest.fixture
def twin_envs(request: pytest.FixtureRequest, seeds: Seeds) -> tuple[DriverEnv, DriverEnv]:
    sync_driver, async_driver = request.param
    return seeds.env(sync_driver), seeds.env(async_driver)
