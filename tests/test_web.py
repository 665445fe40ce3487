"""The FastAPI integration pattern, verified on every configured target.

In-process: httpx over ASGI (lifespan entered by hand, as ASGITransport does not run it),
each async app against its sync twin on the same database. Over real HTTP: the runner
serves the app with uvicorn and loads it (``run --scenario web --concurrency``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import Engine, bindparam, create_engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.measure import Observation
from sqla_bench.measuring.served_app import observed_error
from sqla_bench.measuring.verify import matches
from sqla_bench.results.files import read_result
from sqla_bench.scenarios.expect import Raises
from sqla_bench.scenarios.models import POST_TAGS, POSTS, TAGS, USERS
from sqla_bench.scenarios.registry import discover
from sqla_bench.scenarios.web import STRATEGIES
from sqla_bench.scenarios.web.app import create_app
from tests.helpers import run

WEB = {case.id: case for case in discover("web")}
EAGER = ("selectin", "joined", "subquery")
MARK = "web-test"  # what the write tests create starts with this; cleaned up after each
BACKEND_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
STILL_OPEN = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE pid IN :ids",
    "mysql": "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID IN :ids",
}


def _sync_engine(engine: Engine | AsyncEngine) -> Engine:
    return engine.sync_engine if isinstance(engine, AsyncEngine) else engine


@asynccontextmanager
async def served(
    env: DriverEnv, **app_options: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app for ``env`` (its mode, its driver), started and shut down by its lifespan."""
    app = create_app(
        env.mode, env.url, engine_options={"connect_args": env.connect_args}, **app_options
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            yield app, http


class Probe:
    """Statements, commits and server connection ids of an app's engine."""

    def __init__(self, engine: Engine | AsyncEngine, target: str) -> None:
        engine = _sync_engine(engine)
        self.started = self.completed = self.commits = 0
        self.backend_ids: set[int] = set()
        self.id_sql = BACKEND_ID.get(target)
        event.listen(engine, "before_cursor_execute", self._start)
        event.listen(engine, "after_cursor_execute", self._complete)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "connect", self._connect)

    def reset(self) -> None:
        self.started = self.completed = self.commits = 0

    def _start(self, *_: Any) -> None:
        self.started += 1

    def _complete(self, *_: Any) -> None:
        self.completed += 1

    def _commit(self, *_: Any) -> None:
        self.commits += 1

    def _connect(self, dbapi_connection: Any, _record: Any) -> None:
        if self.id_sql is None:
            return
        # Before the pool counts this connection: its own statement is not the app's.
        cursor = dbapi_connection.cursor()
        cursor.execute(self.id_sql)
        self.backend_ids.add(cursor.fetchone()[0])
        cursor.close()


async def _outcome(http: httpx.AsyncClient, probe: Probe, case_id: str, **params: Any):
    """The request a web case declares, its outcome as the runner records it."""
    request = WEB[case_id].function("async")(**params)
    probe.reset()
    try:
        response = await http.request(request.method, request.path, json=request.json)
    except Exception as error:  # ASGITransport hands the app's exception on
        cause, wrapper = observed_error(error)
        observation = Observation(error=error, started=probe.started, completed=probe.completed)
        return observation, cause, wrapper
    assert response.status_code == request.status, response.text
    return Observation(value=response.json(), completed=probe.completed), None, None


def _check(env: DriverEnv, observation: Observation, cause, wrapper, case_id: str, **params):
    expected = WEB[case_id].expected(env.setting, env.size, **params)
    if cause is not None:
        observed = Raises(cause, observation.completed, observation.started, wrapper)
    else:
        observed = observation.outcome()
    assert matches(expected, observed), (
        f"{env.id} {case_id}{params}: expected {expected.describe()}, got {observed.describe()}"
    )
    return observed


@pytest.mark.asyncio
async def test_async_and_sync_apps_answer_alike(twin_envs) -> None:
    answers = []
    for env in twin_envs:
        got = []
        for strategy in EAGER:
            async with served(env, strategy=strategy) as (_, http):
                listed = await http.get("/users?limit=20")
                got.append((listed.status_code, listed.json()))
        async with served(env) as (_, http):
            for path in ("/users/1", "/users/999999", "/users?limit=3"):
                response = await http.get(path)
                got.append((response.status_code, response.json()))
        answers.append(got)
    sync_answers, async_answers = answers
    assert sync_answers == async_answers
    # Guard against agreeing on nothing: the lists are full, ordered, and alike per strategy.
    lists = [body for status, body in sync_answers[:3]]
    assert all(len(body) == 20 and body[0]["posts"] for body in lists)
    assert lists[0] == lists[1] == lists[2]
    assert [name["name"] for name in lists[0]] == sorted(name["name"] for name in lists[0])
    assert sync_answers[3][0] == 200 and sync_answers[3][1]["id"] == 1
    assert sync_answers[4] == (404, {"detail": "user not found"})


@pytest.mark.asyncio
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_each_strategy_costs_or_fails_as_the_catalogue_says(twin_envs, strategy) -> None:
    for env in twin_envs:
        async with served(env, strategy=strategy) as (app, http):
            probe = Probe(app.state.engine, env.setting.target)
            await _outcome(http, probe, "web.list_users", strategy=strategy, limit=20)  # warm
            observation, cause, wrapper = await _outcome(
                http, probe, "web.list_users", strategy=strategy, limit=20
            )
        observed = _check(
            env, observation, cause, wrapper, "web.list_users", strategy=strategy, limit=20
        )
        if strategy in EAGER:
            assert observed.__class__.__name__ == "Works", f"{env.id}: {strategy} must not raise"


@pytest.mark.asyncio
async def test_get_user_is_one_statement_and_reads_never_commit(twin_envs) -> None:
    for env in twin_envs:
        async with served(env) as (app, http):
            probe = Probe(app.state.engine, env.setting.target)
            await _outcome(http, probe, "web.get_user", user_id=1)
            observation, cause, wrapper = await _outcome(http, probe, "web.get_user", user_id=1)
            _check(env, observation, cause, wrapper, "web.get_user", user_id=1)
            probe.reset()
            for path in ("/users/1", "/users/999999", "/users?limit=5"):
                await http.get(path)
            assert probe.commits == 0, f"{env.id}: a read-only request committed"
            # The probe can see a commit: a write makes exactly one.
            renamed = await http.patch("/users/1", json={"name": "alan-00001"})
            assert renamed.status_code == 200, renamed.text
            assert probe.commits == 1, f"{env.id}: a write made {probe.commits} commits"


def _count(env: DriverEnv, sql: str, **params: Any) -> int:
    engine = create_engine(env.sync_driver_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.scalar(text(sql), params)
    finally:
        engine.dispose()


def _remove_test_rows(env: DriverEnv) -> None:
    engine = create_engine(env.sync_driver_url(), poolclass=NullPool)
    like = {"mark": f"{MARK}%"}
    try:
        with engine.begin() as connection:
            for sql in (
                f"DELETE FROM {POST_TAGS} WHERE post_id IN "
                f"(SELECT id FROM {POSTS} WHERE title LIKE :mark)",
                f"DELETE FROM {POST_TAGS} WHERE tag_id IN "
                f"(SELECT id FROM {TAGS} WHERE name LIKE :mark)",
                f"DELETE FROM {POSTS} WHERE title LIKE :mark",
                f"DELETE FROM {TAGS} WHERE name LIKE :mark",
                f"DELETE FROM {USERS} WHERE name LIKE :mark",
            ):
                connection.execute(text(sql), like)
    finally:
        engine.dispose()


@pytest.fixture
def cleaned(twin_envs):
    """The twin envs; rows the test wrote (marked ``MARK``) are deleted afterwards."""
    yield twin_envs
    _remove_test_rows(twin_envs[0])


@pytest.mark.asyncio
async def test_writes_commit_and_a_failing_write_rolls_back_whole(cleaned) -> None:
    for env in cleaned:
        title = f"{MARK}-post-{env.mode}"
        async with served(env) as (_, http):
            created = await http.post("/users", json={"name": f"{MARK}-{env.mode}", "email": "w@t"})
            assert created.status_code == 201, created.text
            kept = await http.post(
                "/users/1/posts", json={"title": f"{title}-kept", "tags": [f"{MARK}-a-{env.mode}"]}
            )
            assert kept.status_code == 201, kept.text
            # The post is written, then the tags: the second tag exists, so the whole
            # transaction (post and first tag included) must go.
            failed = await http.post(
                "/users/1/posts",
                json={"title": title, "tags": [f"{MARK}-b-{env.mode}", f"{MARK}-a-{env.mode}"]},
            )
            assert failed.status_code == 409, failed.text
            missing = await http.post("/users/999999/posts", json={"title": title})
            assert missing.status_code == 404
        assert (
            _count(env, f"SELECT COUNT(*) FROM {USERS} WHERE name = :n", n=f"{MARK}-{env.mode}")
            == 1
        )
        assert _count(env, f"SELECT COUNT(*) FROM {POSTS} WHERE title = :t", t=f"{title}-kept") == 1
        assert _count(env, f"SELECT COUNT(*) FROM {POSTS} WHERE title = :t", t=title) == 0
        assert (
            _count(env, f"SELECT COUNT(*) FROM {TAGS} WHERE name = :n", n=f"{MARK}-b-{env.mode}")
            == 0
        )


def _left_open(env: DriverEnv, ids: set[int], closing: bool) -> int:
    """How many of the server connections ``ids`` still exist; when they are ``closing``,
    once they have gone (a backend leaves the server's lists a moment after its socket
    closes), or after 3 s."""
    sql = STILL_OPEN[env.setting.target]
    deadline = time.monotonic() + (3 if closing else 0)
    while True:
        engine = create_engine(env.sync_driver_url(), poolclass=NullPool)
        try:
            with engine.connect() as connection:
                statement = text(sql).bindparams(bindparam("ids", expanding=True))
                left = connection.scalar(statement, {"ids": sorted(ids)})
        finally:
            engine.dispose()
        if left == 0 or time.monotonic() > deadline:
            return left


@pytest.mark.asyncio
@pytest.mark.parametrize("dispose", [True, False], ids=["dispose", "no-dispose"])
async def test_shutdown_leaves_connections_only_without_dispose(twin_envs, dispose) -> None:
    for env in twin_envs:
        async with served(env, dispose=dispose) as (app, http):
            engine = app.state.engine
            probe = Probe(engine, env.setting.target)
            answers = [await http.get(f"/users/{n}") for n in (1, 2, 3)]
            assert all(answer.status_code == 200 for answer in answers)
        pool = _sync_engine(engine).pool
        try:
            if env.setting.target == "sqlite":  # no server: the pool is what holds them
                assert (pool.checkedin() == 0) is dispose, f"{env.id}: {pool.status()}"
                continue
            assert probe.backend_ids, f"{env.id}: the app opened no connection"
            left = _left_open(env, probe.backend_ids, closing=dispose)
            if dispose:
                assert left == 0, f"{env.id}: {left} connections left after dispose()"
            else:
                assert left == len(probe.backend_ids) >= 1, f"{env.id}: {left} left"
        finally:
            await engine.dispose() if isinstance(engine, AsyncEngine) else engine.dispose()


# --- over real HTTP: the runner ------------------------------------------------------------


def _web_run(tmp_path, target: str, scenario: str, *options: str, **env: str) -> list:
    path = tmp_path / "web.json"
    result = run(
        "sqla_bench", "run", "--target", target, "--scenario", scenario, "--output", str(path),
        "--affinity", "all", *options, **env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return read_result(path)[1]


@pytest.mark.harness
@pytest.mark.slow
def test_the_runner_serves_both_apps_over_http_and_leaves_nothing_running(tmp_path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cells = _web_run(
        tmp_path, "sqlite", "web.list_users", "--concurrency", "3", "--load-seconds", "0.4"
    )
    assert {cell.mode for cell in cells} == {"sync", "async"}
    assert len(cells) == 2 * len(STRATEGIES)  # modes x strategies
    assert all(cell.matches_expected for cell in cells), [
        c.expected for c in cells if not c.matches_expected
    ]
    working = [cell for cell in cells if cell.outcome == "ok"]
    assert working and all(cell.load["throughput"] > 0 and cell.samples_ns for cell in working)
    assert all(cell.load["errors"] == {} for cell in working)
    assert all(cell.load["cpu_seconds"]["app"] > 0 for cell in cells)
    failing = [cell for cell in cells if cell.outcome == "raised"]
    # lazy in async, raise in both: every request is a 500, and the app says why.
    assert len(failing) == 3
    for cell in failing:
        assert set(cell.load["errors"]) == {"HTTP 500"}, cell.load["errors"]
        assert set(cell.load["server_errors"]) == {cell.error}
        assert cell.wrapped_in == "ResponseValidationError"
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before


@pytest.mark.slow
@pytest.mark.parametrize("name", ["postgresql", "mysql"])
def test_an_exhausted_pool_answers_500_after_the_pool_timeout(request, tmp_path, name) -> None:
    target = request.getfixturevalue("servers").target(name)
    variable = {"postgresql": "SQLA_BENCH_POSTGRESQL_URL", "mysql": "SQLA_BENCH_MYSQL_URL"}[name]
    cells = _web_run(
        tmp_path, name, "web.get_user", "--mode", "async",
        "--concurrency", "12", "--pool-size", "1", "--max-overflow", "0",
        "--pool-timeout", "0.05", "--latency", "20", "--load-seconds", "1",
        **{variable: target.url.render_as_string(hide_password=False)},
    )  # fmt: skip
    for cell in cells:
        load = cell.load
        assert cell.outcome == "ok" and load["peak_connections"] == 1, load
        assert load["errors"].get("HTTP 500", 0) > 0, load["errors"]
        assert set(load["server_errors"]) == {"TimeoutError"}, load["server_errors"]
        # A request that waits for the pool fails no sooner than pool_timeout, less the
        # event loop's timer granularity (uvloop's timers count whole milliseconds).
        assert min(load["failed_ns"]) >= 49e6, min(load["failed_ns"])
        assert load["completed"] > 0  # the one connection kept serving meanwhile


@pytest.mark.harness
@pytest.mark.slow
def test_an_app_that_cannot_start_fails_its_target_in_one_line(tmp_path) -> None:
    path = tmp_path / "web.json"
    result = run(
        # Declared, but no query option: the app factory refuses it as the app starts.
        "sqla_bench", "run", "--scenario", "web.list_users", "--param", "strategy=model_selectin",
        "--concurrency", "1", "--load-seconds", "0.2", "--output", str(path),
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = [line for line in result.stderr.splitlines() if "incomplete" in line]
    assert "the web app did not start" in line and "no strategy 'model_selectin'" in line
    header, cells = read_result(path)
    assert header["run"]["status"] == "incomplete" and cells == []
