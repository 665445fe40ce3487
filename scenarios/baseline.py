"""Baselines: what SQLAlchemy's figures are measured against.

- ``baseline.empty`` does nothing: its time is the measuring loop's own cost per sample.
- ``baseline.driver_get`` reads the row ``crud.get`` reads, through the DBAPI driver's own
  connection with no SQLAlchemy in the way, and sits in ``crud.get``'s table, so ORM
  overhead is a measured ratio. Each driver is called the way its documentation shows;
  the statement counter sees none of these statements, as SQLAlchemy never runs them.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqla_bench.scenarios.dataset import user_name
from sqla_bench.scenarios.models import User
from sqla_bench.scenarios.registry import scenario

USER_IDS = {"user_id": (1,)}
# The columns crud.get returns, so both produce the same tuple.
PK_SELECT = f"SELECT id, name FROM {User.__tablename__} WHERE id = "


@scenario("baseline.empty", statements=0, baseline="harness", returns=None)
def empty(session: Any) -> None:
    """An operation that does nothing: the harness's own cost per sample."""


@empty.twin
async def empty_async(session: Any) -> None:
    return None


def _driver_module(connection: Any) -> str:
    return type(connection).__module__.partition(".")[0]


def _placeholder(connection: Any) -> str:
    # PEP 249 drivers declare their parameter style; these use qmark or (py)format.
    style = sys.modules[_driver_module(connection)].paramstyle
    return "?" if style == "qmark" else "%s"


@scenario(
    "baseline.driver_get",
    statements=0,
    params=USER_IDS,
    receives="driver_connection",
    group="crud.get",
    baseline="driver",
    returns=lambda setting, size, user_id: (user_id, user_name(user_id)),
)
def driver_get(connection: Any, user_id: int) -> tuple | None:
    """The same primary-key SELECT through the DBAPI driver alone."""
    cursor = connection.cursor()
    try:
        cursor.execute(PK_SELECT + _placeholder(connection), (user_id,))
        row = cursor.fetchone()
    finally:
        cursor.close()
    return None if row is None else tuple(row)


async def _asyncpg_get(connection: Any, user_id: int) -> Any:
    return await connection.fetchrow(PK_SELECT + "$1", user_id)


async def _aiosqlite_get(connection: Any, user_id: int) -> Any:
    async with connection.execute(PK_SELECT + "?", (user_id,)) as cursor:
        return await cursor.fetchone()


async def _async_cursor_get(connection: Any, user_id: int) -> Any:
    # aiomysql and psycopg both give a cursor usable as an async context manager.
    async with connection.cursor() as cursor:
        await cursor.execute(PK_SELECT + "%s", (user_id,))
        return await cursor.fetchone()


ASYNC_DRIVER_GETS: dict[str, Callable[[Any, int], Awaitable[Any]]] = {
    "asyncpg": _asyncpg_get,
    "aiosqlite": _aiosqlite_get,
    "aiomysql": _async_cursor_get,
    "psycopg": _async_cursor_get,
}


@driver_get.twin
async def driver_get_async(connection: Any, user_id: int) -> tuple | None:
    row = await ASYNC_DRIVER_GETS[_driver_module(connection)](connection, user_id)
    return None if row is None else tuple(row)
