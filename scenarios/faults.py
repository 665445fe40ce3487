"""Patterns about connections that fail: what an application sees, and what saves it.

A pooled connection that the server killed (an administrator's ``pg_terminate_backend``
or MySQL ``KILL``, a failover, an idle timeout) still sits in the pool. Without
``pool_pre_ping`` the next checkout hands it out and the first statement fails; with it,
the checkout tests the connection (a ping the statement counter does not see), finds it
dead and replaces it, and the statement works. Either way SQLAlchemy invalidates the
dead connection, so the request after a failure works again.
"""

from __future__ import annotations

import time

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, InternalError, OperationalError
from sqlalchemy.pool import NullPool

from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import NotApplicable, Outcome, Raises, Setting, Works
from sqla_bench.scenarios.registry import PatternEnv, pattern

BACKEND_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
KILL = {"postgresql": "SELECT pg_terminate_backend(:id)", "mysql": "KILL :id"}
STILL_THERE = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE pid = :id",
    "mysql": "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = :id",
}
GONE_WITHIN_SECONDS = 5.0

# How each driver reports a statement on a connection the server closed. Observed with
# SQLAlchemy 2.0.58 and 2.1.9 on PostgreSQL 15 and MariaDB 10.11; the verification tests
# fail if a driver changes it.
_KILLED_ERROR: dict[str, type[DBAPIError]] = {
    "psycopg2": OperationalError,
    "psycopg": OperationalError,
    "asyncpg": DBAPIError,  # asyncpg's ConnectionDoesNotExistError maps to no subclass
    "pymysql": OperationalError,
    "aiomysql": OperationalError,
}


# Through PgBouncer in session pooling, the client's connection to PgBouncer outlives
# the server connection it was tied to; psycopg 3 then reads PgBouncer's error and the
# BEGIN's answer as two results (observed with PgBouncer 1.18, psycopg 3.2).
_KILLED_BEHIND_SESSION_POOLING: dict[str, type[DBAPIError]] = {"psycopg": InternalError}


def killed_outcome(setting: Setting, size: DatasetSize, pre_ping: bool) -> Outcome:
    """Works (the backend-id query and the SELECT) with pre-ping; else the SELECT
    starts on the dead connection and fails as the driver reports it. Through
    PgBouncer's transaction pooling it works either way: PgBouncer drops the dead
    server connection and lends the next transaction another."""
    if setting.target == "sqlite":
        return NotApplicable("no server to kill a connection")
    if pre_ping or setting.pgbouncer == "transaction":
        return Works(2)
    error = _KILLED_ERROR[setting.driver]
    if setting.pgbouncer == "session":
        error = _KILLED_BEHIND_SESSION_POOLING.get(setting.driver, error)
    return Raises(error, 1, attempted=2)


def kill_backend(env: PatternEnv, backend_id: int) -> None:
    """Have the server end connection ``backend_id`` (from a connection of our own) and
    wait until it has gone, so the pool's copy is dead, not dying."""
    url = env.server_url()  # not through PgBouncer, which may lend it the doomed backend
    name = url.get_backend_name()
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text(KILL[name]), {"id": backend_id})
            deadline = time.monotonic() + GONE_WITHIN_SECONDS
            while connection.scalar(text(STILL_THERE[name]), {"id": backend_id}):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"connection {backend_id} outlived its KILL")
                connection.rollback()  # a fresh view of the server's list
                time.sleep(0.01)
    finally:
        engine.dispose()


def _backend_id_sql(env: PatternEnv) -> str:
    return BACKEND_ID[env.sync_driver_url().get_backend_name()]


@pattern(
    "killed_connection",
    expect=killed_outcome,
    params={"pre_ping": (False, True)},
    returns=1,  # SELECT 1, on the connection pre-ping gave in place of the dead one
)
def killed_connection(env: PatternEnv, pre_ping: bool) -> int:
    """A pooled connection the server killed, checked out again, with or without
    pool_pre_ping."""
    engine = env.new_engine(pool_size=1, max_overflow=0, pool_pre_ping=pre_ping)
    try:
        with engine.connect() as connection:
            backend_id = connection.scalar(text(_backend_id_sql(env)))
        kill_backend(env, backend_id)
        with engine.connect() as connection:
            return connection.scalar(text("SELECT 1"))
    finally:
        engine.dispose()


@killed_connection.twin
async def killed_connection_async(env: PatternEnv, pre_ping: bool) -> int:
    engine = env.new_engine(pool_size=1, max_overflow=0, pool_pre_ping=pre_ping)
    try:
        async with engine.connect() as connection:
            backend_id = await connection.scalar(text(_backend_id_sql(env)))
        kill_backend(env, backend_id)
        async with engine.connect() as connection:
            return await connection.scalar(text("SELECT 1"))
    finally:
        await engine.dispose()
