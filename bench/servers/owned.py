"""What sqla-bench created in a database, recorded where the next run finds it.

Every table sqla-bench creates (its own dataset's, whose names all start with
``sqla_bench_``, and ``run --models``' generated ones, which carry an application's
names) is recorded in ``sqla_bench_owner`` before it is created, with the process that
created it (``host:pid:start time``, as containers carry it). So:

- before any DDL, ``problems`` names every table a run would create or drop that exists
  and is not recorded: the run refuses it, one line, exit status 2, nothing changed;
- ``claim`` records the tables and removes what runs on this host that ended without
  cleaning up (SIGKILL) left behind; a run on another host cannot be told ended or not,
  so what it left stays until ``tables --prune --all``;
- ``release`` drops the tables this process recorded, and their records, when it is
  done with a target (also after Ctrl-C, SIGTERM or a failure), and the record table
  once it is empty;
- ``leftovers`` and ``prune`` are ``sqla-bench tables`` and ``tables --prune``.

Nothing else is ever dropped, altered or written: a table is dropped only while its
record names it, and the record table itself is only read once its columns are ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    delete,
    insert,
    inspect,
    select,
)

from sqla_bench.base.owner import owner_alive, owner_label
from sqla_bench.scenarios.models import OWNER_TABLE

PRUNE_HINT = "'sqla-bench tables --prune' removes them"
RECORDS = Table(
    OWNER_TABLE,
    MetaData(),
    Column("name", String(128), primary_key=True),  # a table sqla-bench created
    Column("owner", String(255), nullable=False),  # host:pid:start time of its creator
    Column("created", String(40), nullable=False),  # ISO 8601, UTC
)
COLUMNS = {column.name for column in RECORDS.columns}


@dataclass(frozen=True)
class Record:
    """One table sqla-bench created, and who created it."""

    name: str
    owner: str
    created: str

    @property
    def owner_alive(self) -> bool | None:
        """Whether its creator still runs; None when it ran on another host."""
        return owner_alive(self.owner)


def problems(connection: Connection, names: Iterable[str]) -> list[str]:
    """Why sqla-bench may not create or drop ``names`` here: each one that exists and
    that it did not create, in words. Reads only."""
    present = set(inspect(connection).get_table_names())
    if OWNER_TABLE in present and not _record_table_is_ours(connection):
        return [f"table {OWNER_TABLE} exists and sqla-bench did not create it"]
    recorded = _recorded(connection) if _has_records(connection) else {}
    return [
        f"table {name} exists and sqla-bench did not create it"
        for name in names
        if name in present and name not in recorded
    ]


def refusal(where: str, found: Sequence[str]) -> str:
    """The one line that refuses a target whose database holds tables not sqla-bench's."""
    return (
        f"{where}: {found[0]}{f' (and {len(found) - 1} more)' if len(found) > 1 else ''}: "
        "nothing was changed; sqla-bench never drops or writes a table it did not create: "
        "use another database, or rename that table"
    )


def claim(
    connection: Connection, names: Sequence[str], say: Callable[[str], None] = lambda _: None
) -> None:
    """Record ``names`` as this process's, before they are created. Raises ``NotOurs``
    when one exists unrecorded. Tables that runs which have ended left behind are
    removed first, and said."""
    found = problems(connection, names)
    if found:
        raise NotOurs(found)
    RECORDS.create(connection, checkfirst=True)
    for owner, tables in _ended(connection).items():
        _drop(connection, tables)
        say(f"removed {len(tables)} table(s) a run that ended left behind ({owner})")
    owner = owner_label()
    connection.execute(delete(RECORDS).where(RECORDS.c.name.in_(names)))
    created = datetime.now(timezone.utc).isoformat()
    connection.execute(
        insert(RECORDS), [{"name": n, "owner": owner, "created": created} for n in names]
    )


def release(connection: Connection, names: Sequence[str]) -> None:
    """Drop those of ``names`` this process recorded, and their records; the record
    table once empty. (A run that took them over since keeps them.)"""
    if not _has_records(connection):
        return
    mine = owner_label()
    _drop(
        connection,
        [n for n, owner in _recorded(connection).items() if n in names and owner == mine],
    )
    _drop_records_if_empty(connection)


def leftovers(connection: Connection) -> list[Record]:
    """Every table recorded as sqla-bench's in this database."""
    if not _has_records(connection):
        return []
    rows = connection.execute(select(RECORDS).order_by(RECORDS.c.name)).all()
    return [Record(row.name, row.owner, row.created) for row in rows]


def prune(connection: Connection, everything: bool = False) -> list[Record]:
    """Remove the tables whose creator has ended (or all recorded ones); what went."""
    if not _has_records(connection):  # nothing recorded: nothing of ours to remove
        return []
    gone = [r for r in leftovers(connection) if everything or r.owner_alive is False]
    _drop(connection, [record.name for record in gone])
    _drop_records_if_empty(connection)
    return gone


class NotOurs(Exception):
    """Tables a run would create or drop exist, and sqla-bench did not create them."""

    def __init__(self, found: Sequence[str]) -> None:
        super().__init__("; ".join(found))
        self.found = list(found)


def claim_on(engine: Engine, names: Sequence[str], say: Callable[[str], None]) -> None:
    """``claim`` in a transaction of its own (PostgreSQL and SQLite undo it on failure)."""
    with engine.begin() as connection:
        claim(connection, names, say)


def release_on(engine: Engine, names: Sequence[str]) -> None:
    with engine.begin() as connection:
        release(connection, names)


# --- the record table ------------------------------------------------------------------


def _has_records(connection: Connection) -> bool:
    """Whether this database holds a record table, and one of sqla-bench's making."""
    present = OWNER_TABLE in inspect(connection).get_table_names()
    return present and _record_table_is_ours(connection)


def _record_table_is_ours(connection: Connection) -> bool:
    columns = {c["name"] for c in inspect(connection).get_columns(OWNER_TABLE)}
    return columns == COLUMNS


def _recorded(connection: Connection) -> dict[str, str]:
    return dict(connection.execute(select(RECORDS.c.name, RECORDS.c.owner)).all())


def _ended(connection: Connection) -> dict[str, list[str]]:
    """Recorded tables by owner, of owners on this host that no longer run."""
    ended: dict[str, list[str]] = {}
    for name, owner in _recorded(connection).items():
        if owner_alive(owner) is False:
            ended.setdefault(owner, []).append(name)
    return ended


def _drop(connection: Connection, names: Sequence[str]) -> None:
    """Drop recorded tables, children before parents, then their records. Each by name,
    so only these: no table they refer to, and nothing cascades."""
    if not names:
        return
    in_order = inspect(connection).get_sorted_table_and_fkc_names()  # parents first
    for name in reversed([name for name, _ in in_order if name in names]):
        Table(name, MetaData()).drop(connection)
    connection.execute(delete(RECORDS).where(RECORDS.c.name.in_(list(names))))


def _drop_records_if_empty(connection: Connection) -> None:
    if connection.execute(select(RECORDS.c.name).limit(1)).first() is None:
        RECORDS.drop(connection)
