"""Target resolution: URLs become drivers; bad configuration is one clear line."""

from __future__ import annotations

import pytest

from sqla_bench.servers.targets import (
    ConfigError,
    Target,
    Unavailable,
    check_reachable,
    required_targets,
    resolve,
    safe_url,
)
from tests.helpers import PASSWORD, closed_port


def test_sqlite_is_always_available(tmp_path) -> None:
    target = resolve("sqlite", tmp_path)
    assert isinstance(target, Target)
    assert [d.id for d in target.drivers] == ["sqlite-pysqlite-sync", "sqlite-aiosqlite-async"]
    assert str(tmp_path) in target.url.database


def test_a_plain_url_gives_every_driver(tmp_path) -> None:
    env = {"SQLA_BENCH_POSTGRESQL_URL": f"postgresql://u:{PASSWORD}@db.example:5432/bench"}
    target = resolve("postgresql", tmp_path, env)
    assert [d.id for d in target.drivers] == [
        "postgresql-psycopg2-sync",
        "postgresql-asyncpg-async",
        "postgresql-psycopg-sync",
        "postgresql-psycopg-async",
    ]
    assert {d.url.password for d in target.drivers} == {PASSWORD}
    assert target.drivers[1].sync_url().drivername == "postgresql+psycopg2"
    assert PASSWORD not in target.safe_url


def test_a_url_naming_a_driver_keeps_only_that_driver(tmp_path) -> None:
    env = {"SQLA_BENCH_MYSQL_URL": "mysql+aiomysql://u:p@db.example/bench"}
    assert [d.id for d in resolve("mysql", tmp_path, env).drivers] == ["mysql-aiomysql-async"]


def test_mariadb_urls_are_mysql_targets(tmp_path) -> None:
    env = {"SQLA_BENCH_MYSQL_URL": "mariadb://u:p@db.example/bench"}
    assert len(resolve("mysql", tmp_path, env).drivers) == 2


def test_no_url_is_unavailable_with_the_variable_named(tmp_path) -> None:
    target = resolve("mysql", tmp_path, {})
    assert isinstance(target, Unavailable)
    assert "SQLA_BENCH_MYSQL_URL" in target.reason


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not a url", "is not a database URL"),
        ("mysql://u:p@h/db", "points to a 'mysql' database, not postgresql"),
        ("postgresql+pg8000://u:p@h/db", "names driver 'pg8000'"),
        ("postgresql://u:p@h", "needs a host and a database name"),
    ],
)
def test_bad_urls_are_one_line_errors(tmp_path, raw, message) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        resolve("postgresql", tmp_path, {"SQLA_BENCH_POSTGRESQL_URL": raw})
    assert "\n" not in str(error.value)


def test_unknown_target_names_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown target 'oracle'"):
        resolve("oracle", tmp_path)
    refused = r"SQLA_BENCH_REQUIRE \(targets, containers or valgrind\): unk"
    with pytest.raises(ConfigError, match=refused):
        required_targets({"SQLA_BENCH_REQUIRE": "pg"})
    assert required_targets({"SQLA_BENCH_REQUIRE": " postgresql, mysql,containers,valgrind "}) == (
        "postgresql",
        "mysql",
        "containers",
        "valgrind",
    )


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_an_unreachable_server_is_one_line_without_password(tmp_path, scheme) -> None:
    url = f"{scheme}://bench:{PASSWORD}@127.0.0.1:{closed_port()}/bench"
    target = resolve(scheme, tmp_path, {f"SQLA_BENCH_{scheme.upper()}_URL": url})
    with pytest.raises(ConfigError, match=f"cannot connect to {scheme} at") as error:
        check_reachable(target)
    assert PASSWORD not in str(error.value)
    assert "\n" not in str(error.value)


def test_safe_url_hides_passwords() -> None:
    assert safe_url(f"postgresql://u:{PASSWORD}@h/db") == "postgresql://u:***@h/db"
    assert safe_url("::garbage::") == "<unparseable URL>"
