"""The command line, run as a user runs it: a subprocess, its exit status and output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import PASSWORD, assert_one_line_error, closed_port, run

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness


def test_verify_on_sqlite_prints_the_matrix_and_writes_json(tmp_path) -> None:
    out = tmp_path / "matrix.json"
    result = run(
        "sqla_bench", "verify", "--target", "sqlite", "--only", "patterns", "--json", str(out)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lazy_load" in result.stdout and "0 failed" in result.stdout
    checks = json.loads(out.read_text())["checks"]
    assert len(checks) > 40 and all(check["passed"] for check in checks)
    lazy = {c["driver"]: c["observed"] for c in checks if c["case"] == "lazy_load"}
    assert lazy["sqlite-pysqlite-sync"] == "works, 2 statements"
    assert "MissingGreenlet" in lazy["sqlite-aiosqlite-async"]


def test_list_names_scenarios_and_unavailable_targets() -> None:
    result = run("sqla_bench", "list")
    assert result.returncode == 0, result.stderr
    assert "load.users_with_posts" in result.stdout
    assert "SQLA_BENCH_MYSQL_URL" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("list",),
        ("verify",),
        ("run",),
        ("selfcheck",),
        ("report",),
        ("compare",),
        ("calibrate",),
        ("containers",),
    ],
)
def test_help_explains_every_command(command) -> None:
    result = run("sqla_bench", *command, "--help")
    assert result.returncode == 0 and "usage: sqla-bench" in result.stdout


def test_unknown_target_is_one_line() -> None:
    assert_one_line_error(
        run("sqla_bench", "verify", "--target", "oracle"), "unknown target 'oracle'"
    )


def test_unknown_option_is_one_line() -> None:
    assert_one_line_error(run("sqla_bench", "verify", "--bogus"), "unrecognized arguments: --bogus")


def test_unconfigured_target_named_explicitly_is_one_line() -> None:
    assert_one_line_error(run("sqla_bench", "verify", "--target", "mysql"), "SQLA_BENCH_MYSQL_URL")


def test_unreachable_url_is_one_line_without_password() -> None:
    url = f"postgresql://bench:{PASSWORD}@127.0.0.1:{closed_port()}/bench"
    result = run("sqla_bench", "verify", "--target", "postgresql", SQLA_BENCH_POSTGRESQL_URL=url)
    assert_one_line_error(result, "cannot connect to postgresql at", "***")


def test_url_with_a_driver_the_suite_lacks_is_one_line() -> None:
    url = f"postgresql+pg8000://bench:{PASSWORD}@127.0.0.1/bench"
    result = run("sqla_bench", "verify", SQLA_BENCH_POSTGRESQL_URL=url)
    assert_one_line_error(result, "names driver 'pg8000'")


def test_pytest_fails_when_a_required_target_is_not_configured() -> None:
    result = run(
        "pytest",
        "tests/test_registry.py",
        "-q",
        "-p",
        "no:cacheprovider",
        SQLA_BENCH_REQUIRE="mysql",
    )
    assert result.returncode != 0
    assert "SQLA_BENCH_REQUIRE names mysql" in result.stderr + result.stdout
    assert "SQLA_BENCH_MYSQL_URL" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def database_where_tables_cannot_be_created(request: pytest.FixtureRequest) -> str:
    """A URL for the PostgreSQL target's ``postgres`` database as a user who may connect
    but (PostgreSQL 15+) not create tables in schema public. In a container this session
    started, where the configured user is a superuser, such a role is made for the test."""
    import secrets

    from sqlalchemy import create_engine, text

    target = request.getfixturevalue("servers").target("postgresql")
    url = target.url.set(drivername="postgresql+psycopg2", database="postgres")
    engine = create_engine(url)
    with engine.begin() as connection:
        may_create = connection.scalar(
            text("SELECT has_schema_privilege(current_user, 'public', 'CREATE')")
        )
        if may_create and target.container is not None:
            url = _restricted_role(connection, url, secrets.token_hex(8))
            may_create = False
    engine.dispose()
    if may_create:  # never let the suite drop and create tables in someone's database
        pytest.skip("the configured PostgreSQL user may create tables in database postgres")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _restricted_role(connection, url, password: str):
    """A login role with no privileges beyond PUBLIC's, in a container of our own."""
    from sqlalchemy import text

    exists = connection.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = 'sqla_restricted'"))
    verb = "ALTER" if exists else "CREATE"
    connection.execute(text(f"{verb} ROLE sqla_restricted LOGIN PASSWORD '{password}'"))
    return url.set(username="sqla_restricted", password=password)


def test_a_user_who_may_not_create_tables_is_told_the_grant_before_any_work(
    request, tmp_path
) -> None:
    url = database_where_tables_cannot_be_created(request)
    out = tmp_path / "matrix.json"
    result = run(
        "sqla_bench", "verify", "--target", "sqlite", "--target", "postgresql",
        "--only", "patterns", "--json", str(out),
        SQLA_BENCH_POSTGRESQL_URL=url,
    )  # fmt: skip
    assert_one_line_error(result, "may not create tables in schema public of database postgres")
    assert "GRANT CREATE ON SCHEMA public TO " in result.stderr
    assert not out.exists()  # refused before any target ran, SQLite's too


def test_a_target_failing_part_way_keeps_what_finished(request, tmp_path) -> None:
    target = request.getfixturevalue("servers").target("postgresql")  # skipped without one
    url = target.url.render_as_string(hide_password=False)
    out = tmp_path / "matrix.json"
    result = run(
        "tests.sqla_faults", "postgresql_gone_while_seeding", "verify", "--target", "sqlite",
        "--target", "postgresql", "--only", "patterns", "--json", str(out),
        SQLA_BENCH_POSTGRESQL_URL=url,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "incomplete: postgresql at" in lines[0]
    assert "server closed the connection" in lines[0]
    checks = json.loads(out.read_text())["checks"]
    assert {check["driver"].split("-")[0] for check in checks} == {"sqlite"}
    assert len(checks) > 40 and "0 failed" in result.stdout


def test_the_cli_imports_neither_scipy_nor_matplotlib_before_a_command_needs_them() -> None:
    """Together a second of every start (and of every test that runs the CLI): scipy is
    imported for a statistical test, matplotlib for a plot, when one is due."""
    code = (
        "import sys, sqla_bench.cli\n"
        "print(sorted(m for m in ('scipy', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
