"""``sqla-bench run``: what it records agrees with the catalogue, on every target; the
command keeps what finished when interrupted, never writes a password, and refuses bad
input in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sqla_bench.base.owner import owned_folders
from sqla_bench.cli import SQLITE_FOLDER_PREFIX
from sqla_bench.measuring.engines import prepare_database, sqlalchemy_version
from sqla_bench.measuring.measure import Policy
from sqla_bench.results.files import read_result
from sqla_bench.run.pipeline import run_to_file
from sqla_bench.run.plan import RunPlan
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import Setting, Works
from sqla_bench.scenarios.registry import discover
from sqla_bench.servers.targets import TARGETS, ConfigError, resolve
from tests.conftest import SIZE
from tests.helpers import (
    VARIABLES,
    assert_one_line_error,
    configured_target,
    run,
)

QUICK = ("--min-time", "0", "--min-rounds", "3", "--warmup", "1")


def _expected(cell) -> Works:
    case = next(case for case in discover("scenario") if case.id == cell.case)
    setting = Setting(cell.target, cell.driver, cell.mode, sqlalchemy_version())
    return case.expected(setting, DatasetSize(**cell.dataset), **cell.params)


@pytest.fixture
def reseeded_target(request, tmp_path):
    """The target named by the test's parameter, seeded as the rest of the suite expects
    again afterwards (a run reseeds it at its own size); SQLite gets a file of its own."""
    name = request.param
    if name == "sqlite":
        yield resolve("sqlite", tmp_path)
        return
    target = configured_target(request, name)
    try:
        yield target
    finally:
        prepare_database(target.drivers[0], SIZE)


@pytest.mark.parametrize("reseeded_target", TARGETS, indirect=True)
def test_statements_in_results_equal_the_catalogue(tmp_path, reseeded_target) -> None:
    size = DatasetSize(users=30, posts_per_user=3)  # not the default: counts must follow it
    # Counts only: one block of side-by-side sampling, two samples a cell.
    policy = Policy(1, 2, 0.0, block_time=0.0, min_blocks=1, max_blocks=1)
    plan = RunPlan(targets=(reseeded_target,), datasets=(size,), policy=policy)
    assert run_to_file(plan, tmp_path / "r.json", ["t"])[1] == []
    _, cells = read_result(tmp_path / "r.json")
    expected_cells = sum(len(plan.cells(d, size)) for d in plan.selected_drivers())
    assert len(cells) == expected_cells and len(cells) >= 70
    for cell in cells:
        expected = _expected(cell)
        where = f"{cell.case} {cell.params} {cell.driver}-{cell.mode}"
        assert cell.matches_expected, where
        if isinstance(expected, Works):
            assert cell.outcome == "ok", where
            assert cell.statements_seen == [expected.statements], where
        else:
            assert (cell.outcome, cell.error) == ("raised", expected.error.__name__), where
            assert cell.statements == expected.statements, where


@pytest.mark.parametrize("reseeded_target", TARGETS, indirect=True)
def test_rows_fetched_bytes_and_memory_follow_the_workload(tmp_path, reseeded_target) -> None:
    """A JOIN repeats each parent row once per child, so it fetches a row per post where
    selectin fetches the users and then the posts; a wider payload costs that many more
    bytes per row fetched, and more memory."""
    server = reseeded_target.name != "sqlite"
    datasets = tuple(
        DatasetSize(users=30, posts_per_user=p, payload=b) for p in (2, 8) for b in (0, 500)
    )
    # Rows and memory come from calls with roles, bytes from calls of their own through the
    # proxy, none from the timed samples: one block of sampling is enough.
    policy = Policy(3, 2, 0.0, block_time=0.0, min_blocks=1, max_blocks=1)
    plan = RunPlan(
        targets=(reseeded_target,), scenarios=("load.users_with_posts",),
        strategies=("joined", "selectin"), datasets=datasets, policy=policy,
        latencies=(0.0,) if server else None,
    )  # fmt: skip
    assert run_to_file(plan, tmp_path / "r.json", ["t"])[1] == []
    cells = {
        (c.params["strategy"], c.dataset["posts_per_user"], c.dataset["payload"], c.driver): c
        for c in read_result(tmp_path / "r.json")[1]
    }
    for (strategy, posts, payload, driver), cell in cells.items():
        where = f"{strategy} {posts} posts/user, {payload} B on {driver}"
        narrow = cells[(strategy, posts, 0, driver)]
        parents = 20  # the scenario's limit
        assert cell.rows_fetched == parents * posts + (parents if strategy == "selectin" else 0), (
            where
        )
        # A small result's peak can be a fixed buffer (asyncio reads up to 256 KiB at a
        # time); at 8 posts per user the payload is what the client holds most of.
        assert cell.peak_memory > (narrow.peak_memory if payload and posts == 8 else 0), where
        if not server:
            assert cell.bytes_down is None and cell.bytes_up is None, where
            continue
        # Each row the JOIN fetches carries a user's payload and a post's.
        widths = 2 * payload if strategy == "joined" else payload
        assert cell.bytes_down - narrow.bytes_down >= 0.95 * widths * cell.rows_fetched, where
        assert cell.bytes_up > 0, where


@pytest.mark.harness
def test_function_calls_are_the_same_run_after_run_and_follow_the_work(tmp_path) -> None:
    """Counted, not timed: two runs in one process give every cell the same calls, sync
    and async (a sync session of a new class per call once made this fail: SQLAlchemy
    set up each new class's events inside the call); a lazy load of 20 collections
    sends 19 statements more than selectin, each through the ORM, and the driver alone
    makes fewer calls than the ORM's get."""
    runs = []
    for index in (1, 2):
        (tmp_path / f"db{index}").mkdir()
        plan = RunPlan(
            targets=(resolve("sqlite", tmp_path / f"db{index}"),),
            scenarios=("load.users_with_posts", "crud.get", "baseline.driver_get"),
            strategies=("lazy", "selectin"), datasets=(DatasetSize(users=30),),
            policy=Policy(2, 1, 0.0),
        )  # fmt: skip
        results, failures = run_to_file(plan, tmp_path / f"r{index}.json", ["t"])
        assert failures == []
        runs.append({(c.case, c.params.get("strategy"), c.mode): c.calls for c in results.cells})
    first, second = runs
    assert first == second and len(first) == 8 and all(first.values()), first
    for mode in ("sync", "async"):
        if mode == "sync":  # in async the lazy load raises MissingGreenlet at its first
            lazy = first[("load.users_with_posts", "lazy", mode)]
            assert lazy > 2 * first[("load.users_with_posts", "selectin", mode)], first
        assert first[("baseline.driver_get", None, mode)] < first[("crud.get", None, mode)]


@pytest.mark.parametrize("reseeded_target", TARGETS, indirect=True)
def test_a_cell_that_raises_records_what_its_failing_call_cost(tmp_path, reseeded_target) -> None:
    """A lazy load in async code raises MissingGreenlet after the first query: the cell
    records that query's rows, the memory held and, through the proxy, its round trips
    and bytes, as a cell that works does."""
    server = reseeded_target.name != "sqlite"
    plan = RunPlan(
        targets=(reseeded_target,), modes=("async",), scenarios=("load.users_with_posts",),
        strategies=("lazy",), datasets=(DatasetSize(users=30),), policy=Policy(3, 2, 0.0),
        latencies=(0.0,) if server else None,
    )  # fmt: skip
    assert run_to_file(plan, tmp_path / "r.json", ["t"])[1] == []
    cells = read_result(tmp_path / "r.json")[1]
    assert cells
    for cell in cells:
        assert (cell.outcome, cell.error) == ("raised", "MissingGreenlet"), cell.driver
        assert cell.rows_fetched == 20 and cell.peak_memory > 0, cell.driver
        if server:
            assert cell.round_trips >= 1 and cell.bytes_down > 0 and cell.bytes_up > 0
        else:
            assert cell.bytes_down is None and cell.bytes_up is None


def test_run_on_sqlite_prints_tables_and_writes_a_valid_file(tmp_path) -> None:
    out = tmp_path / "sub" / "run.json"
    result = run(
        "sqla_bench", "run", "--scenario", "crud.get", "--scenario", "load.users_with_posts",
        "--strategy", "lazy", "--strategy", "selectin", *QUICK, "--output", str(out), "--csv",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, cells = read_result(out)
    assert header["run"]["status"] == "complete"
    assert header["run"]["command"][:2] == ["sqla-bench", "run"]
    assert {cell.params.get("strategy") for cell in cells} == {None, "lazy", "selectin"}
    lazy_async = next(c for c in cells if c.params.get("strategy") == "lazy" and c.mode == "async")
    assert lazy_async.outcome == "raised" and lazy_async.error == "MissingGreenlet"
    assert lazy_async.samples_ns == [] and lazy_async.matches_expected
    for needle in ("crud.get: Get a user", "baseline.driver_get", "selectin", "x fastest"):
        assert needle in result.stdout
    assert str(out) in result.stdout and out.with_suffix(".csv").exists()


@pytest.mark.harness
def test_run_on_the_server_targets_writes_no_password(request, tmp_path) -> None:
    urls = {
        f"SQLA_BENCH_{name.upper()}_URL": configured_target(request, name).url.render_as_string(
            hide_password=False
        )
        for name in ("postgresql", "mysql")
    }
    passwords = {url.split(":")[2].split("@")[0] for url in urls.values()}
    out = tmp_path / "servers.json"
    result = run(
        "sqla_bench", "run", "--target", "postgresql", "--target", "mysql",
        "--scenario", "crud.get", "--scenario", "tx.begin_commits", *QUICK,
        "--output", str(out), "--csv", **urls,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, cells = read_result(out)
    assert {cell.driver for cell in cells} == {
        "psycopg2", "asyncpg", "psycopg", "pymysql", "aiomysql"
    }  # fmt: skip
    assert header["targets"]["postgresql"]["url"].count("***") == 1
    written = out.read_text() + out.with_suffix(".csv").read_text()
    for password in passwords:
        assert password and password not in written + result.stdout + result.stderr


def _start_run(out) -> subprocess.Popen:
    """A run on SQLite in a process of its own, writing ``out``, for a test to stop."""
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    command = [sys.executable, "-m", "sqla_bench", "run", "--min-time", "0.3", "--output", str(out)]
    return subprocess.Popen(command, env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.harness
def test_an_interrupted_run_keeps_the_finished_cells(tmp_path) -> None:
    out = tmp_path / "interrupted.json"
    process = _start_run(out)
    try:
        _wait_for_cells(out, at_least=2, seconds=60)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr.decode()[-3000:]
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "finished cells kept in" in lines[0] and str(out) in lines[0]
    header, cells = read_result(out)
    assert header["run"]["status"] == "interrupted"
    assert len(cells) >= 2
    assert all(cell.samples_ns or cell.outcome == "raised" for cell in cells)


@pytest.mark.harness
def test_a_killed_run_is_told_from_a_running_one(tmp_path) -> None:
    """SIGKILL leaves the file marked running; its owner (host, PID, start time) says the
    process is gone, and report and compare say so."""
    out = tmp_path / "killed.json"
    process = _start_run(out)
    try:
        _wait_for_cells(out, at_least=1, seconds=60)
        report = run("sqla_bench", "report", str(out))  # while it runs: running
        assert report.returncode == 0, report.stderr
        assert f"{out}: running," in report.stdout
        assert _folders_of(process.pid)  # its own, while it runs
    finally:
        process.kill()
        process.communicate(timeout=60)
    header, _ = read_result(out)
    assert header["run"]["status"] == "running" and header["run"]["owner"].count(":") == 2
    report = run("sqla_bench", "report", str(out))
    assert report.returncode == 0, report.stderr
    assert f"{out}: interrupted (its process is gone)," in report.stdout
    compared = run("sqla_bench", "compare", str(out), str(out))
    assert "the new run started" in compared.stdout
    assert "is interrupted (its process is gone): its cells are what finished" in compared.stdout
    # Its own folder (the SQLite file's) outlived it; the next command removed it.
    assert not _folders_of(process.pid)


def _folders_of(pid: int) -> list[Path]:
    """The command folders (``sqla-bench-run-*``) that name process ``pid`` as owner."""
    return [
        folder for folder, lines in owned_folders(SQLITE_FOLDER_PREFIX)
        if lines and f":{pid}:" in lines[0]
    ]  # fmt: skip


def _wait_for_cells(path, at_least: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            try:
                if len(read_result(path)[1]) >= at_least:
                    return
            except ConfigError:  # never expected (writes are atomic); keep polling
                pass
        time.sleep(0.1)
    pytest.fail(f"no {at_least} cells in {path} after {seconds} s")


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        (("--scenario", "crud.nope"), "unknown scenario 'crud.nope'"),
        (("--strategy", "eager"), "unknown strategy 'eager'"),
        (("--scenario", "crud", "--strategy", "lazy"), "they have no strategies"),
        (("--users", "-5"), "expected whole numbers >= 1"),
        (("--posts", "1,x"), "expected whole numbers >= 1"),
        (("--min-time", "-1"), "expected a number from 0 to 3,600"),
        (("--min-time", "nan"), "expected a number from 0 to 3,600"),
        (("--min-rounds", "10", "--max-rounds", "5"), "max rounds must be at least min rounds"),
        (("--driver", "asyncpg"), "unknown driver 'asyncpg'"),
        (("--mode", "threads"), "invalid choice: 'threads'"),
        (("--target", "oracle"), "unknown target 'oracle'"),
    ],
)
@pytest.mark.harness
def test_bad_input_is_one_line(tmp_path, arguments, needle) -> None:
    out = tmp_path / "never.json"
    assert_one_line_error(run("sqla_bench", "run", *arguments, "--output", str(out)), needle)
    assert not out.exists()


@pytest.mark.harness
def test_an_unwritable_output_is_one_line(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("sqla_bench", "run", "--output", str(blocker / "run.json"))
    assert_one_line_error(result, "cannot write results to", "a parent is not a directory")
    result = run("sqla_bench", "run", "--output", "/proc/sqla-bench/run.json")
    assert_one_line_error(result, "cannot write results to /proc/sqla-bench/run.json")
    result = run("sqla_bench", "run", "--output", str(tmp_path))
    assert_one_line_error(result, "it is a directory")


@pytest.mark.harness
def test_results_json_lists_cells_one_per_line(tmp_path) -> None:
    out = tmp_path / "lines.json"
    result = run("sqla_bench", "run", "--scenario", "crud.get", *QUICK, "--output", str(out))
    assert result.returncode == 0, result.stderr
    cell_lines = [line for line in out.read_text().splitlines() if line.startswith('    {"case"')]
    assert len(cell_lines) == len(json.loads(out.read_text())["cells"]) == 4  # 2 cases x 2 modes


@pytest.mark.harness
def test_a_target_failing_part_way_keeps_the_other_targets_cells(request, tmp_path) -> None:
    target = request.getfixturevalue("servers").target("postgresql")  # skipped without one
    url = target.url.render_as_string(hide_password=False)
    out = tmp_path / "partial.json"
    result = run(
        "tests.sqla_faults", "postgresql_gone_while_seeding", "run", "--target", "sqlite",
        "--target", "postgresql", "--scenario", "crud.get", *QUICK, "--output", str(out),
        SQLA_BENCH_POSTGRESQL_URL=url,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "incomplete: postgresql at" in lines[0], result.stderr
    header, cells = read_result(out)
    assert header["run"]["status"] == "incomplete"
    assert "server closed the connection" in header["run"]["reason"]
    assert {cell.target for cell in cells} == {"sqlite"} and len(cells) == 4


@pytest.mark.harness
def test_report_reprints_a_result_file_and_refuses_a_bad_one(tmp_path) -> None:
    out = tmp_path / "again.json"
    assert (
        run("sqla_bench", "run", "--scenario", "crud.get", *QUICK, "--output", str(out)).returncode
        == 0
    )
    result = run("sqla_bench", "report", str(out), "--plot")
    assert result.returncode == 0, result.stderr
    assert "complete, 4 cells" in result.stdout and "baseline.driver_get" in result.stdout
    assert "no plot" in result.stdout  # one latency, no load: nothing to plot
    (tmp_path / "bad.json").write_text("[]")
    assert_one_line_error(run("sqla_bench", "report", str(tmp_path / "bad.json")), "schema_version")
