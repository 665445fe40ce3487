"""The statement counter tells started from completed statements."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from sqla_bench.probes import StatementCounter


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
