"""Targets and drivers for the tests.

Every test that takes ``sync_env`` or ``async_env`` runs once per configured driver of
that mode. A server target without a URL is skipped with the variable to set, unless
``SQLA_BENCH_REQUIRE`` names it; bad configuration stops the session with one line.
Each target's database is rebuilt and seeded once per session; all async tests and
fixtures share the session's event loop (see pyproject.toml), because pooled async
connections belong to the loop that opened them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import pytest_asyncio

from bench.engines import DriverEnv, prepare_database, setting_for
from bench.targets import (
    TARGETS,
    ConfigError,
    Driver,
    Target,
    Unavailable,
    check_reachable,
    required_targets,
    resolve,
)
from bench.verify import applicable_cells
from scenarios.dataset import DatasetSize
from scenarios.registry import discover

SIZE = DatasetSize()


class Configured:
    """The targets of this test session, resolved once at start-up."""

    def __init__(self) -> None:
        self.sqlite_dir = Path(tempfile.mkdtemp(prefix="sqla-bench-tests-"))
        self.required = required_targets()
        self.targets: dict[str, Target | Unavailable] = {
            name: resolve(name, self.sqlite_dir) for name in TARGETS
        }
        for target in self.targets.values():
            if isinstance(target, Target) and target.name != "sqlite":
                check_reachable(target)
        for name in self.required:
            if isinstance(self.targets[name], Unavailable):
                raise ConfigError(
                    f"SQLA_BENCH_REQUIRE names {name}, but {self.targets[name].reason}"
                )

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


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[CONFIGURED] = Configured()
    except ConfigError as error:
        raise pytest.UsageError(f"sqla-bench: {error}") from None


def pytest_unconfigure(config: pytest.Config) -> None:
    configured = config.stash.get(CONFIGURED, None)
    if configured is not None:
        shutil.rmtree(configured.sqlite_dir, ignore_errors=True)


CONFIGURED = pytest.StashKey[Configured]()


def _case_params(driver: Driver | None) -> list[pytest.param]:
    """Every applicable (case, cell) for this driver, with readable ids."""
    if driver is None:
        return [pytest.param(None, id="unconfigured")]
    cells = applicable_cells(discover(), setting_for(driver), SIZE)
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
def prepared() -> set[str]:
    """Names of targets whose database has been rebuilt and seeded in this session."""
    return set()


def _prepare_once(prepared: set[str], driver: Driver) -> None:
    if driver.spec.target not in prepared:
        prepare_database(driver, SIZE)
        prepared.add(driver.spec.target)


def _open_env(driver: Driver, prepared: set[str]) -> DriverEnv:
    _prepare_once(prepared, driver)
    return DriverEnv(driver, SIZE)


@pytest_asyncio.fixture(scope="session")
async def sync_env(request: pytest.FixtureRequest, prepared: set[str]):
    env = _open_env(request.param, prepared)
    yield env
    await env.dispose()


@pytest_asyncio.fixture(scope="session")
async def async_env(request: pytest.FixtureRequest, prepared: set[str]):
    env = _open_env(request.param, prepared)
    yield env
    await env.dispose()


@pytest_asyncio.fixture(scope="session")
async def twin_envs(request: pytest.FixtureRequest, prepared: set[str]):
    sync_driver, async_driver = request.param
    envs = (_open_env(sync_driver, prepared), _open_env(async_driver, prepared))
    yield envs
    for env in envs:
        await env.dispose()
