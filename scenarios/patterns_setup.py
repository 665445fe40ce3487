"""Patterns of the verification catalogue (``sqla_bench.scenarios.patterns``) about how
engines and sessions are set up: a sync URL in an async engine, listening on an async
engine, a session shared between tasks, an exhausted pool."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, select
from sqlalchemy.exc import (
    ArgumentError,
    InvalidRequestError,
    TimeoutError,
)
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import QueuePool

from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import (
    Outcome,
    Raises,
    Setting,
    Works,
)
from sqla_bench.scenarios.models import User
from sqla_bench.scenarios.registry import PatternEnv, pattern


def _sync_url_in_async_engine(setting: Setting, size: DatasetSize) -> Outcome:
    # psycopg (v3) is one driver with both modes: its URL is already an async URL.
    if setting.driver == "psycopg":
        return Works(0)
    return Raises(InvalidRequestError, 0)


@pattern("sync_url_in_async_engine", expect=_sync_url_in_async_engine, only="async", returns=None)
async def sync_url_in_async_engine(env: PatternEnv) -> None:
    """create_async_engine() given the URL of the target's sync driver."""
    await create_async_engine(env.sync_driver_url()).dispose()


@pattern("queuepool_in_async_engine", expect=lambda s, d: Raises(ArgumentError, 0), only="async")
async def queuepool_in_async_engine(env: PatternEnv) -> None:
    """create_async_engine(poolclass=QueuePool): async engines need an async pool."""
    await env.new_engine(poolclass=QueuePool).dispose()


def _on_statement(*_: object) -> None:
    """A listener that does nothing: the patterns only check where it may be
    attached."""


def _listen_on_engine(setting: Setting, size: DatasetSize) -> Outcome:
    return Works(0) if setting.mode == "sync" else Raises(NotImplementedError, 0)


@pattern("listen_on_engine", expect=_listen_on_engine, returns=None)
def listen_on_engine(env: PatternEnv) -> None:
    """event.listen() on the engine object the code holds (an AsyncEngine in async)."""
    engine = env.new_engine()
    try:
        event.listen(engine, "before_cursor_execute", _on_statement)
    finally:
        engine.dispose()


@listen_on_engine.twin
async def listen_on_engine_async(env: PatternEnv) -> None:
    engine = env.new_engine()
    try:
        event.listen(engine, "before_cursor_execute", _on_statement)
    finally:
        await engine.dispose()


@pattern("listen_on_sync_engine", statements=0, only="async", returns=None)
async def listen_on_sync_engine(env: PatternEnv) -> None:
    """event.listen() on async_engine.sync_engine, where SQLAlchemy expects
    listeners."""
    engine = env.new_engine()
    try:
        event.listen(engine.sync_engine, "before_cursor_execute", _on_statement)
    finally:
        await engine.dispose()


SHARED_SESSION_TIMEOUT_SECONDS = 30


@pattern(
    "shared_async_session",
    # The first task's SELECT completes; the second is refused (error code isce).
    expect=lambda s, d: Raises(InvalidRequestError, 1),
    only="async",
)
async def shared_async_session(env: PatternEnv) -> None:
    """One AsyncSession used by two concurrent tasks while it opens its connection."""
    # A fresh engine: the session must open a new connection, which awaits, and the
    # second task arrives while the first is still provisioning it.
    engine = env.new_engine()

    async def two_tasks_one_session() -> list:
        async with env.session(bind=engine) as session:
            return await asyncio.gather(
                session.execute(select(User.id).limit(1)),
                session.execute(select(User.id).limit(1)),
                return_exceptions=True,  # let both tasks finish before the session closes
            )

    try:
        results = await asyncio.wait_for(two_tasks_one_session(), SHARED_SESSION_TIMEOUT_SECONDS)
    finally:
        await engine.dispose()
    errors = [result for result in results if isinstance(result, BaseException)]
    if errors:
        raise errors[0]


POOL_TIMEOUT_SECONDS = 0.2


@pattern("pool_exhausted", expect=lambda s, d: Raises(TimeoutError, 0))
def pool_exhausted(env: PatternEnv) -> None:
    """Check out more connections than pool_size + max_overflow within pool_timeout."""
    engine = env.new_engine(pool_size=1, max_overflow=0, pool_timeout=POOL_TIMEOUT_SECONDS)
    try:
        with engine.connect(), engine.connect():
            pass
    finally:
        engine.dispose()


@pool_exhausted.twin
async def pool_exhausted_async(env: PatternEnv) -> None:
    engine = env.new_engine(pool_size=1, max_overflow=0, pool_timeout=POOL_TIMEOUT_SECONDS)
    try:
        async with engine.connect(), engine.connect():
            pass
    finally:
        await engine.dispose()
