"""Patterns about PgBouncer between the application and PostgreSQL (``--pgbouncer``).

In transaction pooling PgBouncer lends a client a server connection for one transaction
at a time; the next transaction may run on another, and another client's on this one.
What a driver keeps on its server connection beyond a transaction then goes wrong:

- prepared statements. asyncpg prepares every statement, named from one counter per
  process, so a statement prepared on one server connection is missing on the next
  (two processes' clients would also collide on a name). psycopg 3 prepares a query
  once it ran ``prepare_threshold`` (5) times, as ``_pg3_0`` on every client
  connection, so two clients on one server connection collide.
  SQLAlchemy documents turning them off for PgBouncer (asyncpg's
  ``statement_cache_size=0``, psycopg's ``prepare_threshold=None``); its issue 6467
  adds uniquely named statements (``prepared_statement_name_func``);
- session state: a plain ``SET`` stays on the server connection, where the next client
  finds it; ``SET LOCAL`` ends with the transaction.

Each pattern runs a fixed choreography of two clients of one engine (and, to move a
client to another server connection, a third connection that holds one), so what it
observes does not depend on timing: PgBouncer hands out the server connection released
last first (its default, ``server_round_robin = 0``), and nothing else uses it while a
pattern runs. In session pooling everything works; without PgBouncer they do not apply.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.pool import NullPool

from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import NotApplicable, Outcome, Raises, Setting, Works
from sqla_bench.scenarios.models import USERS
from sqla_bench.scenarios.registry import PARAMETERS, PatternEnv, pattern

# The driver settings that turn prepared statements off, as SQLAlchemy's dialect docs
# give them for PgBouncer's transaction pooling. psycopg2 prepares nothing.
PREPARED_STATEMENTS_OFF: dict[str, dict[str, Any]] = {
    "asyncpg": {"statement_cache_size": 0},
    "psycopg": {"prepare_threshold": None},
}
# A query each client runs often enough that psycopg prepares it (its threshold is 5).
REPEATS = 6
COUNT_USERS = text(f"SELECT count(*) FROM {USERS}")
MARKER = "sqla_bench.marker"  # a custom setting: no server default, no side effect
MARKED = "set by the first client"


def pooled_connect_args(driver: str, pgbouncer: str | None) -> dict[str, Any]:
    """What an engine through ``pgbouncer`` needs of ``driver`` to work in every mode."""
    return PREPARED_STATEMENTS_OFF.get(driver, {}) if pgbouncer == "transaction" else {}


def _prepared_options(env: PatternEnv, prepared: str) -> dict[str, Any]:
    """Engine options for one of the ``prepared`` settings, on top of the driver's own."""
    connect_args = dict(env.driver_connect_args())
    if prepared == "off":
        connect_args |= PREPARED_STATEMENTS_OFF.get(env.driver, {})
    if prepared == "unique_names":
        connect_args["prepared_statement_name_func"] = _unique_name
    pool = {"poolclass": NullPool} if prepared == "null_pool" else {"pool_size": 2}
    return {"connect_args": connect_args, **pool}


def _unique_name() -> str:
    return f"__asyncpg_{uuid.uuid4()}__"


def _needs_pgbouncer(setting: Setting) -> NotApplicable | None:
    if setting.target != "postgresql":
        return NotApplicable("PgBouncer pools PostgreSQL connections")
    if setting.pgbouncer is None:
        return NotApplicable("needs --pgbouncer")
    return None


# What each driver raises, and after how many SELECTs, where its prepared statements
# meet transaction pooling. Observed on 2026-12-02 with SQLAlchemy 2.1.9, asyncpg 0.31,
# psycopg 3.2 and PgBouncer 1.18 (the verification tests fail if one changes):
# - asyncpg names statements from one counter per process, so the two clients do not
#   collide; the first client's 13th SELECT, on another server connection, runs a
#   statement prepared on the old one: "prepared statement ... does not exist"
#   (asyncpg's InvalidSQLStatementNameError, which maps to no DBAPIError subclass).
#   Unique names alone do not help: SQLAlchemy's own cache of prepared statements
#   (prepared_statement_cache_size) still reuses them across server connections;
# - psycopg prepares a query on its 6th run, as "_pg3_0" on every client connection:
#   the second client's 6th SELECT, on the server connection where the first client
#   prepared its "_pg3_0", fails: "prepared statement "_pg3_0" already exists".
# A NullPool changes neither: both clients' connections are open throughout, as any
# two concurrent requests' are. (driver, prepared) -> (error, SELECTs completed)
_MOVED = 2 * REPEATS  # the first client's SELECT after it moved server connection
_BROKEN_BY_TRANSACTION_POOLING: dict[tuple[str, str], tuple[type[BaseException], int]] = {
    ("asyncpg", "default"): (DBAPIError, _MOVED),
    ("asyncpg", "null_pool"): (DBAPIError, _MOVED),
    ("asyncpg", "unique_names"): (DBAPIError, _MOVED),
    ("psycopg", "default"): (ProgrammingError, 2 * REPEATS - 1),
    ("psycopg", "null_pool"): (ProgrammingError, 2 * REPEATS - 1),
}


def prepared_outcome(setting: Setting, size: DatasetSize, prepared: str) -> Outcome:
    """Works, 2 x REPEATS + 1 SELECTs, unless this driver's prepared statements break
    under transaction pooling with this setting."""
    missing = _needs_pgbouncer(setting)
    if missing is not None:
        return missing
    if prepared == "unique_names" and setting.driver != "asyncpg":
        return NotApplicable("prepared_statement_name_func is asyncpg's")
    broken = _BROKEN_BY_TRANSACTION_POOLING.get((setting.driver, prepared))
    if setting.pgbouncer == "transaction" and broken is not None:
        error, completed = broken
        return Raises(error, completed, attempted=completed + 1)
    return Works(2 * REPEATS + 1)


def counts_seen(setting: Setting, size: DatasetSize, prepared: str) -> list[int]:
    """Every SELECT count(*) of users returns the dataset's users."""
    return [size.users] * (2 * REPEATS + 1)


@pattern(
    "pgbouncer.prepared_statements",
    expect=prepared_outcome,
    params={"prepared": PARAMETERS["prepared"].names},
    returns=counts_seen,
)
def prepared_statements(env: PatternEnv, prepared: str) -> list[int]:
    """Two clients in turn on one server connection, then the first moved to another:
    prepared statements under PgBouncer, with the driver's settings or without them."""
    env.fresh_server_connections()  # no prepared statement of an earlier cell's
    engine = env.new_engine(**_prepared_options(env, prepared))
    try:
        with engine.connect() as first, engine.connect() as second:
            counts = [_count(first) for _ in range(REPEATS)]
            counts += [_count(second) for _ in range(REPEATS)]
            with _holding_a_server_connection(env):
                counts.append(_count(first))
            return counts
    finally:
        engine.dispose()


@prepared_statements.twin
async def prepared_statements_async(env: PatternEnv, prepared: str) -> list[int]:
    env.fresh_server_connections()  # no prepared statement of an earlier cell's
    engine = env.new_engine(**_prepared_options(env, prepared))
    try:
        async with engine.connect() as first, engine.connect() as second:
            counts = [await _count_async(first) for _ in range(REPEATS)]
            counts += [await _count_async(second) for _ in range(REPEATS)]
            with _holding_a_server_connection(env):
                counts.append(await _count_async(first))
            return counts
    finally:
        await engine.dispose()


def _count(connection: Any) -> int:
    """One SELECT in a transaction of its own: in transaction pooling, one lending."""
    value = connection.scalar(COUNT_USERS)
    connection.commit()
    return value


async def _count_async(connection: Any) -> int:
    value = await connection.scalar(COUNT_USERS)
    await connection.commit()
    return value


class _holding_a_server_connection:
    """A connection of the harness's own with a transaction open: PgBouncer lends it
    the server connection released last, so the next client's transaction runs on
    another one."""

    def __init__(self, env: PatternEnv) -> None:
        self._manager = env.observer()

    def __enter__(self) -> None:
        self._connection = self._manager.__enter__()
        self._connection.execute(text("SELECT 1"))  # begins, and takes a server connection

    def __exit__(self, *exc_info: object) -> None:
        self._connection.rollback()
        self._manager.__exit__(*exc_info)


def leaked_setting(setting: Setting, size: DatasetSize, scope: str) -> str | None:
    """The second client finds the first one's plain SET only where both share a server
    connection beyond a transaction: PgBouncer's transaction pooling."""
    leaks = setting.pgbouncer == "transaction" and scope == "session"
    return MARKED if leaks else None


def _state_outcome(setting: Setting, size: DatasetSize, scope: str) -> Outcome:
    missing = _needs_pgbouncer(setting)
    return missing if missing is not None else Works(3)


@pattern(
    "pgbouncer.session_state",
    expect=_state_outcome,
    params={"scope": PARAMETERS["scope"].names},
    returns=leaked_setting,
)
def session_state(env: PatternEnv, scope: str) -> str | None:
    """One client's SET, read by another client of the same engine: state that
    PgBouncer's transaction pooling hands on with the server connection."""
    env.fresh_server_connections()
    engine = env.new_engine(pool_size=2, connect_args=_prepared_off(env))
    try:
        with engine.connect() as first, engine.connect() as second:
            first.execute(_set_marker(scope))
            first.commit()
            try:
                return second.scalar(_read_marker())
            finally:
                second.execute(text(f"RESET {MARKER}"))  # leave no state for the next
                second.commit()
    finally:
        engine.dispose()


@session_state.twin
async def session_state_async(env: PatternEnv, scope: str) -> str | None:
    env.fresh_server_connections()
    engine = env.new_engine(pool_size=2, connect_args=_prepared_off(env))
    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.execute(_set_marker(scope))
            await first.commit()
            try:
                return await second.scalar(_read_marker())
            finally:
                await second.execute(text(f"RESET {MARKER}"))
                await second.commit()
    finally:
        await engine.dispose()


def _prepared_off(env: PatternEnv) -> dict[str, Any]:
    """So that the state pattern shows state alone, not prepared statements."""
    return {**env.driver_connect_args(), **PREPARED_STATEMENTS_OFF.get(env.driver, {})}


def _set_marker(scope: str) -> Any:
    local = " LOCAL" if scope == "local" else ""
    return text(f"SET{local} {MARKER} = '{MARKED}'")


def _read_marker() -> Any:
    # NULLIF: a setting RESET after use reads '' rather than NULL once defined.
    return text(f"SELECT NULLIF(current_setting('{MARKER}', true), '')")
