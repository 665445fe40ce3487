"""Faults on the real servers: the suite keeps working and loses nothing.

Every fault here is made by the test itself: a latency proxy of its own that cuts every
connection and refuses new ones, a server-side kill of the test's own connection, a
timeout around a query, a signal to a run it started. The machine's shared servers are
never stopped.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.measure import Policy
from sqla_bench.measuring.watch import Watched
from sqla_bench.measuring.workers import run_load
from sqla_bench.results.files import ResultFile, read_result
from sqla_bench.run.environment import run_header
from sqla_bench.run.plan import RunPlan
from sqla_bench.run.runner import Progress, Runner
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.faults import BACKEND_ID, kill_backend
from sqla_bench.scenarios.registry import scenario
from sqla_bench.servers.latency import LatencyProxy
from sqla_bench.servers.targets import URL_VARIABLES, resolve
from tests import outage_twins
from tests.helpers import signal_after_cells, start_run_process, still_running

SERVERS = ["postgresql", "mysql"]
SLEEP_SECONDS = 0.5
SLEEP = {
    "postgresql": f"SELECT pg_sleep({SLEEP_SECONDS})",
    "mysql": f"SELECT SLEEP({SLEEP_SECONDS})",
}
QUICK = Policy(warmup=0, min_rounds=2, min_time=0.0)


def _server(request, name: str):
    return request.getfixturevalue("servers").target(name)


# --- the server goes away during a run -------------------------------------------------------


def _through_proxy(target, proxy: LatencyProxy, tmp_path: Path):
    """The same target, reached through ``proxy`` (which the test controls)."""
    url = target.url.set(host="127.0.0.1", port=proxy.port)
    variable = URL_VARIABLES[target.name]
    return resolve(target.name, tmp_path, {variable: url.render_as_string(hide_password=False)})


def _run_with_outage(request, tmp_path, name: str, on_error: str):
    """Measure crud on one sync driver; the proxy cuts the server after the 3rd cell and
    brings it back after the 5th. Returns the result file's cells, status and failures."""
    target = _server(request, name)
    with LatencyProxy(target.url.host, target.url.port) as proxy:
        proxied = _through_proxy(target, proxy, tmp_path)
        driver = next(d.spec.name for d in proxied.drivers if d.spec.mode == "sync")
        plan = RunPlan(
            targets=(proxied,), drivers=(driver,), modes=("sync",),
            scenarios=("crud", "tx"), policy=QUICK, on_error=on_error,
        )  # fmt: skip
        seen = []

        def on_cell(cell) -> None:
            seen.append(cell)
            if len(seen) == 3:
                proxy.cut()
            elif len(seen) == 5:
                proxy.restore()

        path = tmp_path / "outage.json"
        results = ResultFile(path, run_header(plan, ["t"], datetime.now(timezone.utc)))
        failures = Runner(plan, results, Progress(on_cell=on_cell)).run()
        results.finish("incomplete" if failures else "complete", "; ".join(failures) or None)
    header, cells = read_result(path)  # and it validates
    return cells, header["run"]["status"], failures


@pytest.mark.parametrize("name", SERVERS)
def test_a_server_going_away_is_recorded_and_the_run_goes_on(request, tmp_path, name) -> None:
    cells, status, failures = _run_with_outage(request, tmp_path, name, "continue")
    lost = [cell for cell in cells if not cell.matches_expected]
    assert [cell.matches_expected for cell in cells[:3]] == [True] * 3  # kept as they were
    assert cells[3] in lost and cells[4] in lost  # the cells while it was away
    assert all(cell.outcome == "raised" and cell.message for cell in lost)
    # Failed for the outage, not a difference of the case's: no timing, said apart.
    assert all(cell.failed == cell.message and not cell.samples_ns for cell in lost)
    assert all(
        cell.differences == [f"failed: the server went away ({cell.failed})"] for cell in lost
    )
    assert all(cell.failed is None for cell in cells if cell not in lost)
    # Back: the next cell reconnects (the pool dropped the dead connections) and works.
    assert cells[5:] and all(cell.matches_expected for cell in cells[5:])
    assert len(cells) >= 7 and status == "incomplete"
    assert len(failures) == 1 and "2 cells failed" in failures[0]


def test_a_cell_the_server_left_midway_is_failed_with_no_timing(request, tmp_path) -> None:
    target = _server(request, "postgresql")
    with LatencyProxy(target.url.host, target.url.port) as proxy:
        outage_twins.CUTTING.append(proxy)
        outage_twins.CALLS[0] = 0
        proxied = _through_proxy(target, proxy, tmp_path)
        plan = RunPlan(
            targets=(proxied,), drivers=("psycopg2",), modes=("sync",),
            modules=(outage_twins.__name__,),
            scenarios=("test.cut_midway",), policy=Policy(warmup=1, min_rounds=8, min_time=0.0),
            on_error="continue",
        )  # fmt: skip
        path = tmp_path / "midway.json"
        results = ResultFile(path, run_header(plan, ["t"], datetime.now(timezone.utc)))
        failures = Runner(plan, results, Progress(on_cell=lambda cell: proxy.restore())).run()
        results.finish("incomplete" if failures else "complete", "; ".join(failures) or None)
    assert outage_twins.CALLS[0] == 4  # a warm-up, the checked call's samples, then the fault
    _, (cell,) = read_result(path)
    assert cell.failed and cell.outcome == "raised" and cell.samples_ns == []
    assert cell.blocks is None and cell.differences[0].startswith("failed: the server went away")
    assert len(failures) == 1 and "1 cells failed" in failures[0]


@pytest.mark.parametrize("name", SERVERS)
def test_on_error_stop_ends_the_target_at_the_failed_cell(request, tmp_path, name) -> None:
    cells, status, failures = _run_with_outage(request, tmp_path, name, "stop")
    assert len(cells) == 4 and not cells[3].matches_expected
    assert status == "incomplete" and len(failures) == 1 and name in failures[0]


# --- a connection killed server-side ---------------------------------------------------------


async def _scalar(engine, sql: str):
    """One statement on a connection from ``engine``'s pool, sync or async."""
    if isinstance(engine, AsyncEngine):
        async with engine.connect() as connection:
            return await connection.scalar(text(sql))
    with engine.connect() as connection:
        return connection.scalar(text(sql))


async def _attempt(engine) -> str:
    try:
        await _scalar(engine, "SELECT 1")
    except Exception as error:
        return type(error).__name__
    return "ok"


def _envs(request, name: str, modes: tuple[str, ...] = ("sync", "async")) -> list[DriverEnv]:
    """An env per driver of the server target ``name`` in ``modes``."""
    target = _server(request, name)
    return [DriverEnv(d, DatasetSize()) for d in target.drivers if d.spec.mode in modes]


@pytest.mark.asyncio
@pytest.mark.parametrize("name", SERVERS)
async def test_a_killed_connection_fails_once_then_the_pool_recovers(request, name) -> None:
    # The catalogue's killed_connection pattern holds the error and the pre-ping cure on
    # every driver; this is what follows the error without pre-ping.
    for env in _envs(request, name):
        engine = env.new_engine(pool_size=1, max_overflow=0)
        try:
            kill_backend(env, await _scalar(engine, BACKEND_ID[env.setting.target]))
            outcomes = [await _attempt(engine), await _attempt(engine)]
        finally:
            await engine.dispose() if isinstance(engine, AsyncEngine) else engine.dispose()
        assert outcomes[0] != "ok" and outcomes[1] == "ok", f"{env.id}: {outcomes}"
        await env.dispose()


# --- cancelled tasks and leaks ---------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("name", SERVERS)
async def test_cancelled_queries_give_their_connections_back(request, name) -> None:
    for env in _envs(request, name, modes=("async",)):
        await _cancel_queries(env, SLEEP[name])
        await env.dispose()


async def _cancel_queries(env: DriverEnv, sleep: str) -> None:
    engine = env.new_engine(pool_size=2, max_overflow=0)
    pool = engine.sync_engine.pool

    async def cancelled() -> None:
        async with engine.connect() as connection:
            await asyncio.wait_for(connection.execute(text(sleep)), 0.05)

    try:
        results = await asyncio.gather(*(cancelled() for _ in range(6)), return_exceptions=True)
        assert all(isinstance(result, TimeoutError) for result in results), (env.id, results)
        assert pool.checkedout() == 0, (env.id, pool.status())
        async with engine.connect() as connection:  # and the pool still serves
            assert await connection.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
        # MySQL finishes a sleep whose client has gone before it notices: let it, so that
        # the next test's connection counts start from a quiet server.
        await asyncio.sleep(SLEEP_SECONDS + 0.3)


LEAKED: list = []


@scenario("test.leaky", statements=1)
def leaky(session) -> int:
    """Keeps a connection of its engine's pool and never gives it back."""
    LEAKED.append(session.bind.connect())
    return 1


@pytest.mark.parametrize("name", SERVERS)
def test_a_leaking_load_is_caught(request, monkeypatch, name) -> None:
    # Only the load's own leaks: one worker alone (the CPU per operation) would leak too.
    monkeypatch.setattr("sqla_bench.measuring.workers.cpu_alone", lambda operation, loop: None)
    target = _server(request, name)
    driver = next(d for d in target.drivers if d.spec.mode == "sync")
    env = DriverEnv(
        driver, DatasetSize(), pool={"pool_size": 3, "max_overflow": 0, "pool_timeout": 0.1}
    )
    loop = asyncio.new_event_loop()
    try:
        load = run_load(env, leaky, {}, 2, 0.3, loop, Watched(target.name, driver.sync_url()))
        kept = len(LEAKED)  # the worker's own session needs a connection too: 2 of 3
        assert kept >= 1 and load.checked_out_after == kept, load.to_json()
        assert load.connections_left == kept, load.to_json()
        assert f"{kept} connections still checked out" in load.leak
    finally:
        for connection in LEAKED:
            connection.close()
        LEAKED.clear()
        env.default_engine.dispose()
        loop.close()


# --- signals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "status", "words"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signalled_run_stops_cleanly_and_keeps_its_cells(
    request, tmp_path, signum, status, words
):
    target = _server(request, "postgresql")
    variable = URL_VARIABLES["postgresql"]
    url = target.url.render_as_string(hide_password=False)
    process, path = start_run_process(tmp_path, "postgresql", {variable: url})
    children = signal_after_cells(process, path, signum)
    stderr = process.stderr.read()
    assert process.returncode == status, stderr
    assert words in stderr and "Traceback" not in stderr
    header, cells = read_result(path)  # valid
    assert header["run"]["status"] == "interrupted" and header["run"]["reason"] == words
    assert len(cells) >= 2
    assert children, "the run had no proxy process to stop"
    assert not still_running(children), "children left running"
