"""PgBouncer as a part of the path (``--pgbouncer``): the catalogue's verdicts through it,
planted faults that those verdicts catch, a load that stays within PgBouncer's server
connections, bad input, and nothing left running after a run, signalled or not.

PgBouncer is Debian's package, started by the suite on 127.0.0.1 in front of the
session's PostgreSQL (a URL, or a container the session started).
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from pathlib import Path

import psutil
import pytest

from sqla_bench.results.files import read_result
from sqla_bench.servers.targets import URL_VARIABLES
from tests.helpers import (
    assert_one_line_error,
    run,
    signal_after_cells,
    start_run_process,
    still_running,
)

pytestmark = pytest.mark.skipif(
    shutil.which("pgbouncer") is None and not Path("/usr/sbin/pgbouncer").exists(),
    reason="PgBouncer is not installed (apt-get install pgbouncer; CI installs it)",
)


def _postgresql_env(servers) -> tuple[dict[str, str], str]:
    target = servers.target("postgresql")
    password = target.url.password
    return {URL_VARIABLES["postgresql"]: target.url.render_as_string(hide_password=False)}, (
        str(password) if password else ""
    )


def _pgbouncers_left() -> list[str]:
    """PgBouncer processes running on a configuration of ours, and their folders."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(process.info["cmdline"] or ())
        if process.info["name"] == "pgbouncer" and "sqla-bench-pgbouncer-" in command:
            found.append(command)
    folders = Path(tempfile.gettempdir()).glob("sqla-bench-pgbouncer-*")
    return found + [str(folder) for folder in folders]


def _verify(*options: str, env: dict[str, str], fault: str | None = None):
    module = ("tests.sqla_faults", fault) if fault else ("sqla_bench",)
    result = run(*module, "verify", "--target", "postgresql", *options, **env)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def _check(document: dict, case: str, params: dict, driver: str, pgbouncer: str | None) -> dict:
    found = [
        check
        for check in document["checks"]
        if check["case"] == case
        and check["params"] == params
        and check["driver"] == driver
        and check["pgbouncer"] == pgbouncer
    ]
    assert len(found) == 1, (case, params, driver, pgbouncer)
    return found[0]


def test_verify_through_pgbouncer_shows_each_drivers_prepared_statements(servers, tmp_path):
    env, password = _postgresql_env(servers)
    out = tmp_path / "matrix.json"
    options = ("--pgbouncer", "transaction,session,direct", "--only", "patterns")
    result = _verify(*options, "--json", str(out), env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    document = json.loads(out.read_text())
    prepared = "pgbouncer.prepared_statements"
    # Transaction pooling breaks the drivers that prepare statements, each its own way;
    # psycopg2 prepares nothing.
    default = {"prepared": "default"}
    transaction = "transaction"
    asyncpg = _check(document, prepared, default, "postgresql-asyncpg-async", transaction)
    assert asyncpg["observed"] == "raises DBAPIError after 12 (started 13)"
    for mode in ("sync", "async"):
        psycopg = _check(document, prepared, default, f"postgresql-psycopg-{mode}", transaction)
        assert psycopg["observed"] == "raises ProgrammingError after 11 (started 12)"
    psycopg2 = _check(document, prepared, default, "postgresql-psycopg2-sync", transaction)
    assert psycopg2["observed"] == "works, 13 statements"
    # In two client processes, or across a client restart, a name prepared by one is
    # another's statement on the server connection they meet on: the rows of the other
    # process's count, with no error. Turned off, or with SQLAlchemy's recipe for asyncpg
    # (unique names, a NullPool, a transaction per checkout), each count is right.
    processes = "pgbouncer.client_processes"
    for driver in ("asyncpg-async", "psycopg-sync", "psycopg-async"):
        for where in ("two", "restart_elsewhere"):
            cell = {"prepared": "default", "processes": where}
            wrong = _check(document, processes, cell, f"postgresql-{driver}", transaction)
            assert wrong["observed"].startswith("returns wrong results from value[12], ")
        off = {"prepared": "off", "processes": "two"}
        assert (
            _check(document, processes, off, f"postgresql-{driver}", transaction)["observed"]
            == "works, 14 statements"
        )
    restarted = {"prepared": "default", "processes": "restart"}
    asyncpg = _check(document, processes, restarted, "postgresql-asyncpg-async", transaction)
    assert asyncpg["observed"] == "raises ProgrammingError after 6 (started 6)"
    for where in ("two", "restart", "restart_elsewhere"):
        recipe = {"prepared": "unique_names_null_pool", "processes": where}
        cell = _check(document, processes, recipe, "postgresql-asyncpg-async", transaction)
        assert cell["observed"].startswith("works, ")
        cell = _check(document, processes, {"prepared": "default", "processes": where},
                      "postgresql-psycopg2-sync", transaction)  # fmt: skip
        assert cell["observed"].startswith("works, ")
        session = {"prepared": "default", "processes": where}
        cell = _check(document, processes, session, "postgresql-asyncpg-async", "session")
        assert cell["observed"].startswith("works, ")
    # Turned off, as SQLAlchemy documents, they work; so does everything in session
    # pooling. Without PgBouncer the patterns do not apply.
    assert not any(
        c["case"].startswith("pgbouncer.") and not c["pgbouncer"] for c in document["checks"]
    )
    for pgbouncer in ("transaction", "session"):
        off = _check(document, prepared, {"prepared": "off"}, "postgresql-asyncpg-async", pgbouncer)
        assert off["observed"] == "works, 13 statements" and off["passed"]
        kept = _check(document, prepared, default, "postgresql-asyncpg-async", "session")
        assert kept["observed"] == "works, 13 statements"
    assert all(check["passed"] for check in document["checks"])
    assert password not in result.stdout + result.stderr + out.read_text()
    assert not _pgbouncers_left()


def test_turning_prepared_statements_off_is_checked_not_assumed(servers):
    env, _ = _postgresql_env(servers)
    result = _verify(
        "--pgbouncer", "transaction", "--only", "patterns", env=env,
        fault="prepared_statements_kept",
    )  # fmt: skip
    assert result.returncode == 1
    mismatches = [line for line in result.stdout.splitlines() if line.startswith("MISMATCH")]
    for driver in ("asyncpg-async", "psycopg-sync", "psycopg-async"):
        assert any(
            line.startswith("MISMATCH pgbouncer.prepared_statements[prepared=off]")
            and driver in line
            and "expected works, 13 statements" in line
            for line in mismatches
        ), (driver, mismatches)
        # In two processes the same planted setting returns another count's rows, with no
        # error: told as wrong results, from the values, not as an error.
        two = "MISMATCH pgbouncer.client_processes[prepared=off, processes=two]"
        two += f" on postgresql-{driver}"
        (line,) = [line for line in mismatches if line.startswith(two)]
        assert (
            "expected works, 14 statements, observed returns wrong results from value[12]" in line
        )
        assert "raise" not in line


def test_a_leaked_setting_is_told_by_its_value(servers):
    env, _ = _postgresql_env(servers)
    result = _verify(
        "--pgbouncer", "transaction", "--only", "patterns", env=env, fault="set_local_as_set"
    )
    assert result.returncode == 1
    mismatches = [line for line in result.stdout.splitlines() if line.startswith("MISMATCH")]
    local = [line for line in mismatches if "pgbouncer.session_state[scope=local]" in line]
    assert len(local) == 4, mismatches  # every driver and mode
    # The statements are as declared: only the value the second client read tells, as
    # wrong results (a setting the data does not hold).
    assert all("observed returns wrong results from value, 3 statements" in line for line in local)
    assert all("value: expected None, observed 'set by the first client'" in line for line in local)


@pytest.mark.harness
@pytest.mark.slow
def test_a_load_through_pgbouncer_stays_within_its_server_connections(servers, tmp_path):
    env, password = _postgresql_env(servers)
    out = tmp_path / "load.json"
    result = run(
        "sqla_bench", "run", "--target", "postgresql", "--driver", "asyncpg",
        "--scenario", "load.users_with_posts", "--param", "limit=1", "--strategy", "selectin",
        "--pgbouncer", "direct,transaction", "--pgbouncer-pool-size", "3",
        "--concurrency", "8", "--pool-size", "10", "--max-overflow", "0",
        "--load-seconds", "1", "--output", str(out), **env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    header, cells = read_result(out)
    assert header["targets"]["postgresql"]["pgbouncer"]["modes"]["transaction"] == {
        "pool_mode": "transaction",
        "default_pool_size": 3,
        "max_client_conn": 2000,
        "server_round_robin": 0,
    }
    peaks = {cell.pgbouncer: cell.load["peak_connections"] for cell in cells}
    assert set(peaks) == {None, "transaction"}
    assert 1 <= peaks["transaction"] <= 3  # PgBouncer's pool, whatever the engine's
    assert peaks[None] > 3  # eight workers straight to the server hold more
    assert all(cell.matches_expected for cell in cells)
    assert "through PgBouncer (transaction pooling, 3 server connections)" in result.stdout
    assert password not in result.stdout + result.stderr + out.read_text()
    assert not _pgbouncers_left()


@pytest.mark.harness
@pytest.mark.slow
def test_a_terminated_run_stops_its_pgbouncer(servers, tmp_path):
    env, _ = _postgresql_env(servers)
    process, path = start_run_process(tmp_path, "postgresql", env, "--pgbouncer", "transaction")
    children = signal_after_cells(process, path, signal.SIGTERM)
    stderr = process.stderr.read()
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    header, _ = read_result(path)
    assert header["targets"]["postgresql"]["pgbouncer"]["modes"]  # it ran
    assert not still_running(children)
    assert not _pgbouncers_left()


@pytest.mark.harness
@pytest.mark.slow
def test_a_killed_runs_pgbouncer_is_stopped_by_the_next_run_and_no_file_holds_the_password(
    servers, tmp_path
):
    env, password = _postgresql_env(servers)
    process, path = start_run_process(tmp_path, "postgresql", env, "--pgbouncer", "transaction")
    children = signal_after_cells(process, path, signal.SIGKILL)
    # PgBouncer, a session of its own, outlives the run; the latency proxy does not.
    assert _pgbouncers_left()
    assert not password or not _files_holding(password)
    following = run(
        "sqla_bench", "run", "--target", "postgresql", "--pgbouncer", "transaction",
        "--scenario", "crud.get", "--min-time", "0", "--min-rounds", "1",
        "--output", str(tmp_path / "next.json"), **env,
    )  # fmt: skip
    assert following.returncode == 0, following.stderr
    assert "left by ended run" in following.stdout + following.stderr
    assert not still_running(children)
    assert not _pgbouncers_left()


def _files_holding(text: str) -> list[str]:
    """The files under the temporary folder that hold ``text`` (as grep would find it)."""
    needle = text.encode()
    found = []
    for path in Path(tempfile.gettempdir()).rglob("*"):
        try:
            small = path.is_file() and not path.is_symlink() and path.stat().st_size < 2**20
            if small and needle in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue
    return found


@pytest.mark.harness
@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--target", "sqlite", "--pgbouncer", "transaction"), "--pgbouncer pools PostgreSQL"),
        (("--target", "postgresql", "--pgbouncer", "statement"), "expected direct, session"),
        (("--pgbouncer", "transaction", "--pgbouncer-pool-size", "0"), "from 1 to 1,000"),
    ],
)
def test_bad_pgbouncer_options_are_one_line(options, words):
    assert_one_line_error(run("sqla_bench", "run", *options), words)


@pytest.mark.harness
def test_pgbouncer_counts_the_clients_an_engine_left_and_cleans_up(servers):
    from sqlalchemy import create_engine, text

    from sqla_bench.servers.pgbouncer import PgBouncer

    target = servers.target("postgresql")
    with PgBouncer(target.url, "transaction", pool_size=2) as bouncer:
        folder = next(Path(tempfile.gettempdir()).glob("sqla-bench-pgbouncer-*"))
        assert {path.stat().st_mode & 0o777 for path in folder.iterdir()} == {0o600}
        url = target.url.set(drivername="postgresql+psycopg2", host="127.0.0.1", port=bouncer.port)
        engine = create_engine(url)
        connection = engine.connect()
        assert connection.scalar(text("SELECT 1")) == 1
        assert bouncer.clients_left() == 1  # a connection not given back is seen
        connection.close()
        assert bouncer.clients_left() == 1  # returned to the pool, but still open
        engine.dispose()
        assert bouncer.clients_left() == 0
    assert not _pgbouncers_left()


@pytest.mark.harness
def test_root_without_a_user_for_pgbouncer_is_told_before_any_work(servers, monkeypatch):
    import os
    import pwd

    from sqla_bench.base.errors import ConfigError
    from sqla_bench.run.plan import RunPlan

    if os.geteuid() != 0:
        pytest.skip("only root hands PgBouncer to another user")

    def no_such_user(name):
        raise KeyError(name)

    monkeypatch.setattr(pwd, "getpwnam", no_such_user)
    target = servers.target("postgresql")
    with pytest.raises(ConfigError, match="refuses to run as root"):
        RunPlan(targets=(target,), pgbouncer=("transaction",))
