"""The record of what sqla-bench created (``sqla_bench.servers.owned``), on SQLite files
of the test's own: what it refuses, what it drops, and what it leaves alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Connection, ForeignKey, Integer, MetaData, Table, create_engine
from sqlalchemy import inspect as inspect_database

from sqla_bench.base.owner import owner_label
from sqla_bench.scenarios.models import OWNER_TABLE
from sqla_bench.servers import owned

pytestmark = pytest.mark.harness

ENDED = "nowhere-else:1:1"  # a process on another host: nobody can tell it has ended


@pytest.fixture
def connection(tmp_path) -> Iterator[Connection]:
    engine = create_engine(f"sqlite:///{tmp_path / 'owned.db'}")
    with engine.begin() as connection:
        yield connection
    engine.dispose()


def tables(connection: Connection) -> set[str]:
    return set(inspect_database(connection).get_table_names())


def create(connection: Connection, *names: str, refers_to: str | None = None) -> None:
    metadata = MetaData()
    if refers_to:
        Table(refers_to, metadata, Column("id", Integer, primary_key=True))
    refs = [Column("ref", ForeignKey(f"{refers_to}.id"))] if refers_to else []
    made = [Table(n, metadata, Column("id", Integer, primary_key=True), *refs) for n in names]
    metadata.create_all(connection, tables=made)


def test_a_table_that_exists_unrecorded_is_refused_and_nothing_is_written(connection) -> None:
    create(connection, "sqla_bench_users")
    with pytest.raises(owned.NotOurs) as refused:
        owned.claim(connection, ["sqla_bench_users", "sqla_bench_posts"])
    assert refused.value.found == ["table sqla_bench_users exists and sqla-bench did not create it"]
    assert tables(connection) == {"sqla_bench_users"}  # no record table either


def test_a_record_table_that_is_not_ours_is_refused(connection) -> None:
    Table(OWNER_TABLE, MetaData(), Column("other", Integer)).create(connection)
    assert owned.problems(connection, ["sqla_bench_users"]) == [
        f"table {OWNER_TABLE} exists and sqla-bench did not create it"
    ]
    assert owned.leftovers(connection) == []


def test_release_drops_what_this_run_recorded_and_nothing_it_refers_to(connection) -> None:
    create(connection, "applications_own")
    owned.claim(connection, ["mine"])
    create(connection, "mine", refers_to="applications_own")
    owned.release(connection, ["mine", "applications_own"])
    assert tables(connection) == {"applications_own"}  # and no record table: it was empty


def test_release_leaves_another_runs_tables(connection) -> None:
    owned.claim(connection, ["theirs"])
    create(connection, "theirs")
    connection.execute(owned.RECORDS.update().values(owner=ENDED))
    owned.claim(connection, ["mine"])
    create(connection, "mine")
    owned.release(connection, ["mine", "theirs"])
    assert tables(connection) == {"theirs", OWNER_TABLE}
    assert [(r.name, r.owner, r.owner_alive) for r in owned.leftovers(connection)] == [
        ("theirs", ENDED, None)
    ]


def test_a_claim_removes_what_an_ended_run_on_this_host_left(connection) -> None:
    ended = owner_label().rsplit(":", 1)[0] + ":1"  # this PID, another start time
    owned.claim(connection, ["left"])
    create(connection, "left")
    connection.execute(owned.RECORDS.update().values(owner=ended))
    said: list[str] = []
    owned.claim(connection, ["mine"], said.append)
    assert tables(connection) == {OWNER_TABLE}
    assert said == [f"removed 1 table(s) a run that ended left behind ({ended})"]
    assert [r.name for r in owned.leftovers(connection)] == ["mine"]
