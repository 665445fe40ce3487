"""Patterns about PgBouncer between the application and PostgreSQL (``--pgbouncer``).

In transaction pooling PgBouncer lends a client a server connection for one transaction
at a time; the next transaction may run on another, and another client's on this one.
What a driver keeps on its server connection beyond a transaction then goes wrong:

- prepared statements. asyncpg prepares every statement, named from one counter per
  process, so a statement prepared on one server connection is missing on the next
  (two processes' clients would also collide on a name). psycopg 3 prepares a query
  once it ran ``prepare_threshold`` (5) times, as ``_pg3_0`` on every client
  connection, so two clients on one server connection collide.
  The drivers document turning them off (asyncpg's ``statement_cache_size=0``, in
  its FAQ for PgBouncer; psycopg's ``prepare_threshold=None``); SQLAlchemy's asyncpg
  documentation gives uniquely named statements under a NullPool instead
  (``prepared_statement_name_func``, its issue 6467);
- session state: a plain ``SET`` stays on the server connection, where the next client
  finds it; ``SET LOCAL`` ends with the transaction.

Each pattern runs a fixed choreography of two clients (and, to move a client to another
server connection, a third connection that holds one), so what it observes does not
depend on timing: PgBouncer hands out the server connection released last first (its
default, ``server_round_robin = 0``), and nothing else uses it while a pattern runs. In
session pooling everything works; without PgBouncer they do not apply.

``pgbouncer.prepared_statements`` runs both clients in this process, on one engine,
each holding its connection over several transactions. ``pgbouncer.client_processes``
runs each client in a process of its own (one transaction per checkout), as two worker
processes of one application do, or one process and its restart while PgBouncer keeps
the server connections: names a driver counts per process or per connection are then
used twice for different statements. Where a client runs a statement prepared under a
name that, on the server connection it now has, is another client's statement, the
driver gets that statement's rows with no error: the pattern returns **wrong results**,
the worst outcome, checked against the data (each client asks a different count).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.pool import NullPool

from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import (
    NotApplicable,
    Outcome,
    Raises,
    Setting,
    Works,
    WrongResults,
)
from sqla_bench.scenarios.models import POSTS, USERS
from sqla_bench.scenarios.registry import PARAMETERS, PatternEnv, pattern

# The driver settings that turn prepared statements off, as the drivers document them
# (asyncpg's FAQ, for PgBouncer; psycopg's prepared-statements page): what works through
# transaction pooling in every sequence the patterns run. psycopg2 prepares nothing.
PREPARED_STATEMENTS_OFF: dict[str, dict[str, Any]] = {
    "asyncpg": {"statement_cache_size": 0},
    "psycopg": {"prepare_threshold": None},
}
# The settings of the "prepared" parameter that are SQLAlchemy's asyncpg dialect's own:
# its cache of prepared statements (prepared_statement_cache_size, 100 by default) and
# the names it gives them (prepared_statement_name_func, SQLAlchemy's issue 6467).
ASYNCPG_ONLY = ("cache_off", "unique_names", "unique_names_null_pool")
# A query each client runs often enough that psycopg prepares it (its threshold is 5).
REPEATS = 6
COUNT_USERS_SQL = f"SELECT count(*) FROM {USERS}"
COUNT_USERS = text(COUNT_USERS_SQL)
# The second process's query: another count, so that the first's rows in its place are
# told from its own (a bigint either way, which every driver decodes without a doubt).
COUNT_POSTS_SQL = f"SELECT count(*) FROM {POSTS}"
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
    if prepared == "cache_off":
        connect_args["prepared_statement_cache_size"] = 0
    if prepared.startswith("unique_names"):
        connect_args["prepared_statement_name_func"] = _unique_name
    pool = {"poolclass": NullPool} if prepared.endswith("null_pool") else {"pool_size": 2}
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
# psycopg 3.2 and PgBouncer 1.18, and on 2026-12-04 with asyncpg 0.32 and psycopg 3.3.9
# (the verification tests fail if one changes):
# - asyncpg names statements from one counter per process, so the two clients do not
#   collide; the first client's 13th SELECT, on another server connection, runs a
#   statement prepared on the old one: "prepared statement ... does not exist"
#   (asyncpg's InvalidSQLStatementNameError, which maps to no DBAPIError subclass).
#   Unique names alone do not help: SQLAlchemy's own cache of prepared statements
#   (prepared_statement_cache_size) still reuses them across server connections, with
#   a NullPool too (SQLAlchemy's recipe), as each client holds its connection over
#   several transactions. That cache off (cache_off), the two clients work here (not
#   across processes: pgbouncer.client_processes);
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
    ("asyncpg", "unique_names_null_pool"): (DBAPIError, _MOVED),
}


def _prepared_applies(setting: Setting, prepared: str) -> NotApplicable | None:
    missing = _needs_pgbouncer(setting)
    if missing is None and prepared in ASYNCPG_ONLY and setting.driver != "asyncpg":
        return NotApplicable(f"{prepared} is SQLAlchemy's asyncpg dialect's")
    return missing


def prepared_outcome(setting: Setting, size: DatasetSize, prepared: str) -> Outcome:
    """Works, 2 x REPEATS + 1 SELECTs, unless this driver's prepared statements break
    under transaction pooling with this setting."""
    missing = _prepared_applies(setting, prepared)
    if missing is not None:
        return missing
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


# What each driver and setting does across client processes, in transaction pooling.
# Observed on 2026-12-04 with SQLAlchemy 2.1.9 and 2.0.58, asyncpg 0.32, psycopg 3.3.9,
# psycopg2 2.9.13 and PgBouncer 1.18 (the verification tests fail if one changes). The
# first process runs its count REPEATS times on one server connection; then:
# - "two": the second process runs its count REPEATS times on another (the first's is
#   held), then once on the first's, where the first then runs its count once more;
# - "restart": the first process ends, and a new one runs its count REPEATS + 1 times on
#   the server connection the first used, which PgBouncer kept;
# - "restart_elsewhere": the new process runs its count REPEATS times on another server
#   connection (the first's is held), then once on the first's.
# asyncpg numbers its statements per process (__asyncpg_stmt_N__, SQLAlchemy's set-up
# queries first), psycopg per connection (_pg3_N, from a query's 6th run): a name the
# second process prepared elsewhere is, on the first's server connection, the first's
# count. Its statement cache off, asyncpg prepares nothing it reuses; unique names with
# one transaction per checkout under a NullPool (SQLAlchemy's documented recipe) find
# no name taken and none missing. (driver, prepared, processes) -> outcome.
_STEPS = {"two": 2 * REPEATS + 2, "restart": 2 * REPEATS + 1, "restart_elsewhere": 2 * REPEATS + 1}
_SECOND_ON_THE_FIRSTS = 2 * REPEATS  # the value of the second's first count there
_ACROSS_PROCESSES: dict[tuple[str, str, str], Outcome] = {
    ("asyncpg", "default", "two"): WrongResults(_STEPS["two"], _SECOND_ON_THE_FIRSTS),
    ("asyncpg", "default", "restart"): Raises(ProgrammingError, REPEATS),
    ("asyncpg", "default", "restart_elsewhere"): WrongResults(
        _STEPS["restart_elsewhere"], _SECOND_ON_THE_FIRSTS
    ),
    ("asyncpg", "cache_off", "two"): Raises(ProgrammingError, _STEPS["two"] - 1, _STEPS["two"]),
    ("asyncpg", "cache_off", "restart"): Raises(ProgrammingError, 2 * REPEATS - 1, 2 * REPEATS),
    ("asyncpg", "unique_names", "two"): Raises(DBAPIError, 2 * REPEATS, 2 * REPEATS + 1),
    ("asyncpg", "unique_names", "restart_elsewhere"): Raises(
        DBAPIError, 2 * REPEATS, 2 * REPEATS + 1
    ),
    ("psycopg", "default", "two"): WrongResults(_STEPS["two"], _SECOND_ON_THE_FIRSTS),
    ("psycopg", "default", "restart"): Raises(ProgrammingError, 2 * REPEATS - 1, 2 * REPEATS),
    ("psycopg", "default", "restart_elsewhere"): WrongResults(
        _STEPS["restart_elsewhere"], _SECOND_ON_THE_FIRSTS
    ),
}


def processes_outcome(
    setting: Setting, size: DatasetSize, prepared: str, processes: str
) -> Outcome:
    """Works, one statement per count, unless the two processes' prepared statements
    meet on a server connection in transaction pooling."""
    missing = _prepared_applies(setting, prepared)
    if missing is not None:
        return missing
    if prepared == "null_pool":
        return NotApplicable("one transaction per checkout: the same as default here")
    if size.posts == size.users:
        return NotApplicable("as many posts as users: one count is not told from the other")
    declared = _ACROSS_PROCESSES.get((setting.driver, prepared, processes))
    if setting.pgbouncer == "transaction" and declared is not None:
        return declared
    return Works(_STEPS[processes])


def counts_in_order(
    setting: Setting, size: DatasetSize, prepared: str, processes: str
) -> list[int]:
    """What the data holds, for each count in the order the pattern runs them."""
    first, second = [size.users] * REPEATS, [size.posts] * (REPEATS + 1)
    return first + second + ([size.users] if processes == "two" else [])


@pattern(
    "pgbouncer.client_processes",
    expect=processes_outcome,
    params={"prepared": PARAMETERS["prepared"].names, "processes": PARAMETERS["processes"].names},
    returns=counts_in_order,
)
def client_processes(env: PatternEnv, prepared: str, processes: str) -> list[int]:
    """Two client processes (or one and its restart) on PgBouncer's server connections,
    each asking its own count: prepared statements across processes, checked by value."""
    return _across_processes(env, prepared, processes, _counts_each_checked_out)


@client_processes.twin
async def client_processes_async(env: PatternEnv, prepared: str, processes: str) -> list[int]:
    # The clients are other processes, each awaiting its own driver: this one only
    # directs them, and waits for each step.
    return _across_processes(env, prepared, processes, _counts_each_checked_out_async)


def _across_processes(env: PatternEnv, prepared: str, processes: str, counts: Any) -> list[int]:
    env.fresh_server_connections()  # no prepared statement of an earlier cell's
    options = _prepared_options(env, prepared)
    with env.client_process(**options) as first, env.client_process(**options) as second:
        values = first.call(counts, COUNT_USERS_SQL, REPEATS)
        if processes != "two":
            first.close()  # its process ends; PgBouncer keeps its server connection
        if processes == "restart":
            return values + second.call(counts, COUNT_POSTS_SQL, REPEATS + 1)
        with _holding_a_server_connection(env):  # the first's: the second runs elsewhere
            values += second.call(counts, COUNT_POSTS_SQL, REPEATS)
        values += second.call(counts, COUNT_POSTS_SQL, 1)  # on the first's server connection
        if processes == "two":
            values += first.call(counts, COUNT_USERS_SQL, 1)
        return values


def _counts_each_checked_out(engine: Any, sql: str, times: int) -> list[int]:
    """``times`` runs of a count, each on a connection checked out for one transaction
    (in a client process)."""
    values = []
    for _ in range(times):
        with engine.connect() as connection:
            values.append(connection.scalar(text(sql)))
            connection.commit()
    return values


async def _counts_each_checked_out_async(engine: Any, sql: str, times: int) -> list[int]:
    values = []
    for _ in range(times):
        async with engine.connect() as connection:
            values.append(await connection.scalar(text(sql)))
            await connection.commit()
    return values


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
