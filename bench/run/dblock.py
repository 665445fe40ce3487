"""One run at a time on a database: a lock each run takes on every server database it
creates tables in, before any work, and holds until it is done.

Two runs on one database would drop and re-create each other's tables under each
other's cells: a deadlock at best, at worst cells timed on the other run's data under
this run's header. So a run takes, on a connection of its own kept open meanwhile:

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``), the connection named
  after the run (``application_name``: ``sqla-bench host:pid:start``);
- MariaDB and MySQL: a named lock (``GET_LOCK``), one per database.

A second run is refused, one line naming the holder (its ``host:pid:start``: on
PostgreSQL the holding session's name, on MariaDB the process on this host that has the
holding connection's port; otherwise that connection's address), exit status 2, or
waits for it with ``--wait-for-lock SECONDS``. A lock goes with its connection, so a
run killed with SIGKILL holds nothing once the server sees its connection close (a
holder whose process has ended here is waited for that long). The embedded SQLite
target is a file of the run's own: no lock. A run on an application's own data
(``--use-existing-data``) creates nothing and takes none.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from sqla_bench.base.errors import ConfigError
from sqla_bench.base.owner import owner_alive, owner_label, owner_of_port
from sqla_bench.measuring.engines import sync_engine, where_is
from sqla_bench.servers.grants import check_privileges

# The advisory lock's key on PostgreSQL: "sqlA" in ASCII, one 32-bit number, so that
# pg_locks shows it as objid with classid 0.
ADVISORY_KEY = 0x73716C41
POLL_SECONDS = 0.5
# How long a lock whose holder has ended on this host is waited for, whatever
# --wait-for-lock says: the server frees it once it sees the connection close.
ENDED_GRACE_SECONDS = 10.0
MAX_WAIT_SECONDS = 86_400  # --wait-for-lock's bound: a day


class DatabaseBusy(ConfigError):
    """Another run holds the database: one line, exit status 2."""


@contextmanager
def run_lock(
    driver: Any, wait_seconds: float = 0.0, say: Callable[[str], None] = lambda _: None
) -> Iterator[None]:
    """Hold the run's lock on ``driver``'s database while the block runs (none for
    SQLite); DatabaseBusy when another run holds it longer than ``wait_seconds``."""
    dialect = driver.spec.target
    if dialect == "sqlite":
        yield
        return
    engine = sync_engine(driver, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _acquire(connection, dialect, wait_seconds, say, where_is(driver))
            # Before any work, as the lock: what a run does, the user may do here.
            check_privileges(connection, dialect, where_is(driver))
            try:
                yield
            finally:
                _release(connection, dialect)
    finally:
        engine.dispose()


def _acquire(
    connection: Connection,
    dialect: str,
    wait_seconds: float,
    say: Callable[[str], None],
    where: str,
) -> None:
    if dialect == "postgresql":  # the run's name, for the next run to read
        named = f"sqla-bench {owner_label()}"[:63]  # the longest name PostgreSQL keeps
        connection.execute(NAME_SESSION, {"name": named})
    started = time.monotonic()
    deadline = started + wait_seconds
    said = False
    while not _try(connection, dialect):
        holder, ended = _holder(connection, dialect)
        if ended:  # the server has yet to see its connection close: a moment
            deadline = max(deadline, started + ENDED_GRACE_SECONDS)
        if time.monotonic() >= deadline:
            raise DatabaseBusy(
                f"{where}: another sqla-bench run is using this database ({holder}); wait "
                "for it to end, or give --wait-for-lock SECONDS"
            )
        if not said:
            say(f"waiting for {where}: another sqla-bench run holds it ({holder})")
            said = True
        time.sleep(POLL_SECONDS)
    connection.commit()  # a session lock outlives the transaction that took it


def _try(connection: Connection, dialect: str) -> bool:
    if dialect == "postgresql":
        taken = connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY})
    else:
        name = _lock_name(connection)
        taken = connection.scalar(text("SELECT GET_LOCK(:name, 0)"), {"name": name})
    return bool(taken)


def _release(connection: Connection, dialect: str) -> None:
    """Give the lock back (closing the connection would too: this says so at once)."""
    try:
        if dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
        else:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _lock_name(connection)})
        connection.commit()
    except SQLAlchemyError:
        pass  # the server went away: the lock went with the connection


def _lock_name(connection: Connection) -> str:
    """A named lock is the server's, not the database's: the database's name is in it
    (hashed, where it would not fit in the 64 characters a lock name may have)."""
    database = connection.scalar(text("SELECT DATABASE()")) or ""
    name = f"sqla-bench:{database}"
    if len(name) > 64:
        name = f"sqla-bench:{hashlib.sha256(database.encode()).hexdigest()}"
    return name


def _holder(connection: Connection, dialect: str) -> tuple[str, bool]:
    """Who holds the lock, as well as this connection can tell (the run's ``host:pid:
    start`` by its session's name on PostgreSQL, by the process on this host that has
    the holding connection's port on MariaDB; else the connection itself), and whether
    that holder has ended on this host (its process gone) though its session remains."""
    query, parameters = (
        (HOLDER_POSTGRESQL, {"key": ADVISORY_KEY})
        if dialect == "postgresql"
        else (HOLDER_MYSQL, {"name": _lock_name(connection)})
    )
    try:
        found = connection.execute(text(query), parameters).first()
    except SQLAlchemyError:
        found = None
    finally:
        connection.rollback()
    if found is None:
        return "a session this database user cannot see", False
    name, client, since = found
    if name.startswith("sqla-bench "):
        label = name.removeprefix("sqla-bench ")
        return f"run {label}", owner_alive(label) is False
    host, _, port = str(client).rpartition(":")
    if host not in LOOPBACK or not port.isdigit():
        return f"a session from {client}, connected for {since}", False
    owner = owner_of_port(int(port))
    if owner is None:  # a client on this host that no process here has any more
        return f"a session from {client} whose process has ended", True
    return f"run {owner}", False


NAME_SESSION = text("SELECT set_config('application_name', :name, false)")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
HOLDER_POSTGRESQL = """
SELECT a.application_name, host(a.client_addr) || ':' || a.client_port,
       date_trunc('second', now() - a.backend_start)
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = :key
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
HOLDER_MYSQL = """
SELECT '', p.HOST, CONCAT(p.TIME, ' s') FROM information_schema.PROCESSLIST AS p
WHERE p.ID = IS_USED_LOCK(:name)
"""
