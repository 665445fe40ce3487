"""The statement counter tells started from completed statements."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from sqla_bench.measuring.probes import (
    MAX_SQL_CHARS,
    MAX_SQL_TEXTS,
    Executed,
    StatementCounter,
    sql_of,
)


def test_a_statement_failing_in_execute_is_started_not_completed(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    counter = StatementCounter()
    counter.attach(engine)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        with pytest.raises(OperationalError):
            connection.execute(text("SELECT * FROM no_such_table"))
    engine.dispose()
    assert (counter.started, counter.completed) == (2, 1)
    counter.reset()
    assert (counter.started, counter.completed) == (0, 0)


@pytest.mark.asyncio
async def test_an_async_engine_is_counted_through_its_sync_engine(tmp_path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    counter = StatementCounter()
    counter.attach(engine)
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        await connection.exec_driver_sql("SELECT 2")
    await engine.dispose()
    assert (counter.started, counter.completed) == (2, 2)


def test_a_cell_keeps_each_statement_once_with_its_count_in_the_order_it_first_ran() -> None:
    def ran(text: str) -> Executed:
        return Executed(text, (), False, None)

    executed = [ran("SELECT  users\n  WHERE id = ?"), *[ran("SELECT posts WHERE user_id = ?")] * 20]
    executed.append(ran("SELECT users WHERE id = ?"))  # the first, once its spaces collapse
    assert sql_of(executed) == [
        {"text": "SELECT users WHERE id = ?", "count": 2},
        {"text": "SELECT posts WHERE user_id = ?", "count": 20},
    ]
    long = sql_of([ran("SELECT " + "x, " * MAX_SQL_CHARS)])
    assert len(long[0]["text"]) == MAX_SQL_CHARS and long[0]["text"].endswith("...")
    many = sql_of([ran(f"SELECT {i}") for i in range(MAX_SQL_TEXTS + 5)] + [ran("SELECT 0")])
    assert len(many) == MAX_SQL_TEXTS and many[0] == {"text": "SELECT 0", "count": 2}
