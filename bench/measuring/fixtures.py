"""What a case's first argument is, made before the clock starts and cleaned up after.

A case declares what it receives (``scenarios.registry.RECEIVES``). For each kind this
module gives an async context manager, entered once per cell, that yields ``per_call``:
a factory of async context managers, entered once per call, that yield the argument.
Both levels are awaited in sync mode too, so there is one code path; none of it is timed.

- ``env``: the ``DriverEnv`` itself (patterns configure their own engines and sessions);
- ``session``: a fresh session per call on the driver's default engine, closed after,
  which rolls back whatever the call left uncommitted;
- ``driver_connection``: the DBAPI driver's own connection, checked out of the pool once
  per cell and reused by every call, as an application holding a connection would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.kernel import settled

PerCall = Callable[[], AbstractAsyncContextManager[Any]]


def arguments(receives: str, env: DriverEnv) -> AbstractAsyncContextManager[PerCall]:
    """The per-cell context for a case that receives ``receives``."""
    return PROVIDERS[receives](env)


@asynccontextmanager
async def _constant(value: Any) -> AsyncIterator[Any]:
    yield value


@asynccontextmanager
async def _env(env: DriverEnv) -> AsyncIterator[PerCall]:
    yield lambda: _constant(env)


@asynccontextmanager
async def _fresh_session(env: DriverEnv) -> AsyncIterator[Any]:
    session = env.session()
    try:
        yield session
    finally:
        await settled(session.close(), env.awaits)


@asynccontextmanager
async def _sessions(env: DriverEnv) -> AsyncIterator[PerCall]:
    yield lambda: _fresh_session(env)


@asynccontextmanager
async def _driver_connections(env: DriverEnv) -> AsyncIterator[PerCall]:
    engine = env.default_engine
    if isinstance(engine, AsyncEngine):
        async with engine.connect() as connection:
            pooled = await connection.get_raw_connection()
            yield lambda: _constant(pooled.driver_connection)
        return
    pooled = engine.raw_connection()
    try:
        yield lambda: _constant(pooled.driver_connection)
    finally:
        pooled.close()  # back to the pool, which rolls back what the calls left open


PROVIDERS: dict[str, Callable[[DriverEnv], AbstractAsyncContextManager[PerCall]]] = {
    "env": _env,
    "session": _sessions,
    "driver_connection": _driver_connections,
}
