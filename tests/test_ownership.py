"""sqla-bench never touches a table it did not create (``sqla_bench.servers.owned``).

An application's tables are planted in the database a user points sqla-bench at: named
as sqla-bench's own tables were named before they took the ``sqla_bench_`` prefix
(``users``, ``posts``...), and named as they are now, each with a row and with a
foreign key from another application table. Every command that creates tables is run
against them, as a user runs it (a subprocess, the URL in the environment): with the old
names it works and leaves them as they were; with its own names it refuses, one line,
exit status 2, before any work. A run stopped by SIGTERM removes its tables, and one
killed by SIGKILL leaves them to the next run, which removes them.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, ForeignKey, Integer, MetaData, String, Table, create_engine
from sqlalchemy import inspect as inspect_database

from sqla_bench.base.errors import ConfigError
from sqla_bench.scenarios.dataset import TABLES
from sqla_bench.scenarios.models import OWNER_TABLE, PREFIX
from sqla_bench.servers.owned import leftovers
from sqla_bench.servers.pgbouncer import binary as pgbouncer_binary
from sqla_bench.servers.targets import SQLITE_FILE
from tests.helpers import TWINS, application, assert_one_line_error, run_as_user, user_env

pytestmark = pytest.mark.harness

APPLICATION = Path(__file__).parent / "applications"
QUICK = ("--min-time", "0", "--min-rounds", "1", "--warmup", "1", "--users", "20")
OLD_NAMES = tuple(name.removeprefix(PREFIX) for name in TABLES)  # users, posts, ...
# What run --models generates for the shop (tests/applications/shop_models.py).
SHOP_TABLES = ("shop_addresses", "shop_customers", "shop_labels", "shop_orders")


def application_tables(names: Sequence[str]) -> MetaData:
    """For each name, the application's table of that name and one that refers to it."""
    metadata = MetaData()
    for name in names:
        Table(name, metadata, Column("id", Integer, primary_key=True), Column("note", String(40)))
        Table(
            f"app_refs_{name}",
            metadata,
            Column("id", Integer, primary_key=True),
            Column("ref", ForeignKey(f"{name}.id")),
        )
    return metadata


def plant(engine: Engine, names: Sequence[str]) -> MetaData:
    metadata = application_tables(names)
    with engine.begin() as connection:
        metadata.create_all(connection)
        for table in metadata.sorted_tables:
            row = (
                {"id": 1, "note": "the application's"} if "note" in table.c else {"id": 1, "ref": 1}
            )
            connection.execute(table.insert(), row)
    return metadata


def snapshot(engine: Engine, metadata: MetaData) -> dict:
    """Every planted table's columns, foreign keys and rows."""
    with engine.connect() as connection:
        found = inspect_database(connection)
        return {
            table.name: (
                [column["name"] for column in found.get_columns(table.name)],
                [fk["referred_table"] for fk in found.get_foreign_keys(table.name)],
                connection.execute(table.select().order_by(table.c.id)).all(),
            )
            for table in metadata.sorted_tables
        }


def sqla_bench_tables(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        names = inspect_database(connection).get_table_names()
    return sorted(n for n in names if n.startswith(PREFIX) or n in SHOP_TABLES)


@pytest.fixture
def planted(request, servers) -> Iterator[tuple[str, str, Engine, MetaData]]:
    """(target, URL, engine, planted tables) on a server given by URL; removed after."""
    target, names = request.param
    url = servers.target(target).url
    sync = next(d for d in servers.target(target).drivers if d.spec.mode == "sync")
    engine = create_engine(sync.url)
    metadata = plant(engine, names)
    try:
        yield target, url.render_as_string(hide_password=False), engine, metadata
    finally:
        with engine.begin() as connection:
            metadata.drop_all(connection)
        engine.dispose()


def commands(target: str, folder: Path) -> dict[str, tuple[str, ...]]:
    """Every command that creates tables, each as narrow as it can be made."""
    shutil.copy(APPLICATION / "shop_models.py", folder / "shop_models.py")
    application(folder, f"OFF_BY = 0\n{TWINS}")
    chosen = ("--target", target)
    sync_driver = {"postgresql": "psycopg2", "mysql": "pymysql", "sqlite": "pysqlite"}[target]
    models_options = ("--driver", sync_driver, "--relationship", "Customer.orders", *QUICK)
    found = {
        "run": ("run", *chosen, "--scenario", "crud.get", *QUICK),
        "verify": ("verify", *chosen, "--only", "scenarios"),
        # Written to a folder of the test's own: what is held here is the database, not
        # the counts (the gate's own stage and tests hold those).
        "baseline": ("baseline", *chosen, "--update", "--folder", str(folder / "baselines")),
        "run --scenarios": ("run", *chosen, "--scenarios", "scenarios.shop", *QUICK),
        "run --models": ("run", *chosen, "--models", "shop_models", *models_options),
    }
    if target == "postgresql" and _has_pgbouncer():
        found["run --pgbouncer transaction"] = (
            "run", *chosen, "--pgbouncer", "transaction", "--scenario", "crud.get", *QUICK
        )  # fmt: skip
    return found


SERVERS = ("postgresql", "mysql")
# Each server, holding an application's tables named as sqla-bench's were before.
BESIDE_THE_APPLICATIONS_TABLES = pytest.mark.parametrize(
    "planted", [(t, OLD_NAMES) for t in SERVERS], ids=SERVERS, indirect=True
)


@pytest.mark.slow
@BESIDE_THE_APPLICATIONS_TABLES
def test_every_command_leaves_an_applications_tables_as_they_were(planted, tmp_path) -> None:
    target, url, engine, metadata = planted
    before = snapshot(engine, metadata)
    for name, args in commands(target, tmp_path).items():
        result = run_as_user(target, url, *args, cwd=tmp_path, PYTHONPATH=str(tmp_path))
        assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}{result.stderr}"
        assert snapshot(engine, metadata) == before, name
        assert sqla_bench_tables(engine) == [], f"{name} left its tables behind"


@pytest.mark.parametrize(
    "planted",
    [(t, (*TABLES, *SHOP_TABLES)) for t in SERVERS],
    ids=SERVERS,
    indirect=True,
)
def test_a_table_named_as_sqla_benchs_own_is_refused_before_any_work(planted, tmp_path) -> None:
    target, url, engine, metadata = planted
    before = snapshot(engine, metadata)
    for name, args in commands(target, tmp_path).items():
        result = run_as_user(target, url, *args, cwd=tmp_path, PYTHONPATH=str(tmp_path))
        assert_one_line_error(result, "exists and sqla-bench did not create it", "nothing was")
        assert snapshot(engine, metadata) == before, name
        assert not list(tmp_path.glob("results/local/*")), f"{name} wrote a result file"
    with engine.connect() as connection:
        assert OWNER_TABLE not in inspect_database(connection).get_table_names()


@pytest.mark.slow
@BESIDE_THE_APPLICATIONS_TABLES
def test_sigterm_mid_run_removes_the_runs_tables_and_nothing_else(planted, tmp_path) -> None:
    target, url, engine, metadata = planted
    before = snapshot(engine, metadata)
    run = start_recorded_run(target, url, engine, tmp_path)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=120) == 143, run.stderr.read() if run.stderr else ""
    assert snapshot(engine, metadata) == before
    assert sqla_bench_tables(engine) == []


@pytest.mark.slow
@BESIDE_THE_APPLICATIONS_TABLES
def test_what_a_killed_run_left_the_next_run_removes(planted, tmp_path) -> None:
    target, url, engine, metadata = planted
    before = snapshot(engine, metadata)
    killed = start_recorded_run(target, url, engine, tmp_path)
    killed.kill()
    killed.wait(timeout=60)
    # Left behind, with their records: nobody removed them.
    assert sqla_bench_tables(engine) == sorted([*TABLES, OWNER_TABLE])
    listed = run_as_user(target, url, "tables", cwd=tmp_path)
    assert listed.returncode == 0 and "ended: --prune removes it" in listed.stdout
    args = ("run", "--target", target, "--scenario", "crud.get", *QUICK)
    result = run_as_user(target, url, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert f"removed {len(TABLES)} table(s) a run that ended left behind" in result.stdout
    assert sqla_bench_tables(engine) == []
    # Nothing recorded any more (the record table went with the last record): nothing
    # to prune, said as such.
    pruned = run_as_user(target, url, "tables", "--prune", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert "no sqla-bench tables" in pruned.stdout
    assert snapshot(engine, metadata) == before


@pytest.mark.slow  # every command in a process of its own: 33 s on a slow machine
def test_the_sqlite_target_never_opens_a_database_of_the_folder(tmp_path) -> None:
    """The SQLite file is in a temporary folder of the run's own: an application's file
    of the same name, in the folder every command starts in, stays as it was."""
    theirs = tmp_path / SQLITE_FILE
    engine = create_engine(f"sqlite:///{theirs}")
    plant(engine, (*OLD_NAMES, *TABLES, *SHOP_TABLES))
    engine.dispose()
    digest = hashlib.sha256(theirs.read_bytes()).hexdigest()
    for name, args in commands("sqlite", tmp_path).items():
        result = run_as_user("sqlite", "", *args, cwd=tmp_path, PYTHONPATH=str(tmp_path))
        assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}{result.stderr}"
        assert hashlib.sha256(theirs.read_bytes()).hexdigest() == digest, name
    with sqlite3.connect(theirs) as connection:
        assert connection.execute("SELECT note FROM users").fetchall() == [("the application's",)]


def start_recorded_run(target: str, url: str, engine: Engine, folder: Path) -> subprocess.Popen:
    """A run that seeds, then measures for a minute unless stopped, once it has recorded
    and created its tables."""
    args = ("run", "--target", target, "--scenario", "crud", "--min-time", "60", "--max-time", "60")
    args += ("--users", "50")
    run = subprocess.Popen(
        [sys.executable, "-m", "sqla_bench", *args],
        cwd=folder,
        env=user_env(target, url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_records(engine, run)
    return run


def wait_for_records(engine: Engine, run: subprocess.Popen, seconds: float = 60) -> None:
    """Until ``run`` has recorded and created its tables."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert run.poll() is None, run.stderr.read() if run.stderr else ""
        with engine.connect() as connection:
            mine = [r for r in leftovers(connection) if f":{run.pid}:" in r.owner]
        if len(mine) == len(TABLES) and set(TABLES) <= set(sqla_bench_tables(engine)):
            time.sleep(1)  # seeded by now: the first cell has started
            return
        time.sleep(0.2)
    run.kill()
    pytest.fail("the run did not create its tables in time")


def _has_pgbouncer() -> bool:
    try:
        pgbouncer_binary()
    except ConfigError:
        return False
    return True
