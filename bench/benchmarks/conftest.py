"""Targets for the pytest-benchmark entry, provisioned as everywhere else in sqla-bench.

SQLite always; PostgreSQL and MySQL from their URL variables, or from containers when a
Docker engine answers (``sqla_bench.servers.targets.Servers``), each database seeded
once. Every async cell of the session runs on one event loop, created before any timing:
a round is ``loop.run_until_complete(call)`` on it, never ``asyncio.run``."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from sqla_bench.measuring.engines import DriverEnv, prepare_database, setting_for
from sqla_bench.measuring.verify import applicable_cells
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import Raises
from sqla_bench.scenarios.registry import discover
from sqla_bench.servers.targets import (
    TARGETS,
    ConfigError,
    Servers,
    Target,
    Unavailable,
    check_reachable,
)

SIZE = DatasetSize()
ROUNDS = 50
WARMUP_ROUNDS = 3


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqla-bench")
    group.addoption(
        "--sqla-rounds",
        type=int,
        default=ROUNDS,
        help=f"timed rounds per scenario cell (default: {ROUNDS}; {WARMUP_ROUNDS} warm-up "
        "rounds come first)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" not in metafunc.fixturenames:
        return
    servers = _servers(metafunc.config)
    params = []
    for name in TARGETS:
        planned = servers.plan(name)
        if isinstance(planned, Unavailable):
            continue
        for driver in planned.drivers:
            params += [
                pytest.param((name, driver.spec, case, cell), id=_cell_id(driver, case, cell))
                for case, cell in applicable_cells(discover("scenario"), setting_for(driver), SIZE)
                # A cell that raises by design has nothing to time: verify shows it.
                if not isinstance(case.expected(setting_for(driver), SIZE, **cell), Raises)
            ]
    metafunc.parametrize("cell", params)


def _cell_id(driver, case, cell) -> str:
    return f"{driver.id}-{case.id}" + "".join(f"[{value}]" for value in cell.values())


_SERVERS = pytest.StashKey[Servers]()


def _servers(config: pytest.Config) -> Servers:
    if _SERVERS not in config.stash:
        folder = Path(tempfile.mkdtemp(prefix="sqla-bench-benchmarks-"))
        config.stash[_SERVERS] = Servers(folder)
    return config.stash[_SERVERS]


def pytest_unconfigure(config: pytest.Config) -> None:
    servers = config.stash.get(_SERVERS, None)
    if servers is not None:
        servers.close()
        shutil.rmtree(servers.sqlite_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def envs(request: pytest.FixtureRequest, loop):
    """One DriverEnv per driver, made on first use; the database seeded once per target."""
    servers = _servers(request.config)
    made: dict[tuple, DriverEnv] = {}

    def env_for(target_name: str, spec) -> DriverEnv:
        key = (target_name, spec)
        if key not in made:
            target = servers.target(target_name)
            if not isinstance(target, Target):
                raise ConfigError(target.reason)
            if not any(t == target_name for t, _ in made):
                if target_name != "sqlite":
                    check_reachable(target)
                prepare_database(target.drivers[0], SIZE)
            driver = next(d for d in target.drivers if d.spec == spec)
            made[key] = DriverEnv(driver, SIZE)
        return made[key]

    yield env_for
    for env in made.values():
        loop.run_until_complete(env.dispose())
