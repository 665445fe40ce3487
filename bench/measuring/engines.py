"""Engines and sessions for one driver in one mode, with a statement counter on each.

``DriverEnv`` is what a pattern receives (see ``scenarios.registry.PatternEnv``); the
harness also opens scenario sessions from it. Sync and async differ only in which
SQLAlchemy factory builds the engine and the session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from sqla_bench.base.errors import ConfigError
from sqla_bench.measuring.client_process import ClientProcess
from sqla_bench.measuring.probes import RoundTripCounter, StatementCounter
from sqla_bench.scenarios.dataset import TABLES, DatasetSize, rebuild
from sqla_bench.scenarios.expect import Setting
from sqla_bench.scenarios.pooler import pooled_connect_args
from sqla_bench.servers import owned
from sqla_bench.servers.targets import Driver, safe_url


def sqlalchemy_version() -> tuple[int, int]:
    major, minor = sqlalchemy.__version__.split(".")[:2]
    return int(major), int(minor)


def setting_for(driver: Driver, pgbouncer: str | None = None) -> Setting:
    spec = driver.spec
    return Setting(spec.target, spec.name, spec.mode, sqlalchemy_version(), pgbouncer)


class DriverEnv:
    """A driver's default engine, its counter, and factories for sessions and engines."""

    def __init__(
        self,
        driver: Driver,
        size: DatasetSize,
        round_trips: RoundTripCounter | None = None,
        pool: dict[str, Any] | None = None,
        pgbouncer: str | None = None,
        server: Driver | None = None,
        fresh_servers: Callable[[], None] | None = None,
        counting: DriverEnv | None = None,
    ) -> None:
        self.driver = driver.spec.name
        self.mode = driver.spec.mode
        # Whether its calls return awaitables; the measuring kernel awaits them.
        self.awaits = self.mode == "async"
        self.size = size
        self.setting = setting_for(driver, pgbouncer)
        self.counter = StatementCounter()
        self.round_trips = round_trips  # when the driver's URL leads through the proxy
        # Where a cell's round trips and bytes are counted, in a call of their own: this
        # environment when its URL leads through the proxy; else the same driver through
        # the proxy, when the run has one (at 0 ms, timed direct, counted through it).
        self.counting = self if round_trips is not None else counting
        self._driver = driver
        self._server = server or driver  # the same driver straight to the server
        self._fresh_servers = fresh_servers  # PgBouncer's RECONNECT, on a route through it
        self.pool = pool or {}  # pool_size, max_overflow, pool_timeout for the default engine
        # Through PgBouncer's transaction pooling, the engine the scenarios use turns the
        # driver's prepared statements off, as the drivers document it; the patterns
        # that show why build engines of their own (new_engine) without that.
        self._pooled_args = pooled_connect_args(self.driver, pgbouncer)
        self.default_engine = self.new_engine(connect_args=self.connect_args, **self.pool)
        self._observer: Engine | None = None

    @property
    def id(self) -> str:
        return self._driver.id

    @property
    def routed(self) -> Driver:
        """The driver as this environment reaches its server (through a proxy or
        PgBouncer, when the run routes it so)."""
        return self._driver

    @property
    def url(self) -> URL:
        """The URL this driver's engines use (through the latency proxy, when routed so)."""
        return self._driver.url

    @property
    def connect_args(self) -> dict[str, Any]:
        """The default engine's: the driver's, and what the route needs of it."""
        return {**self._driver.connect_args(), **self._pooled_args}

    def driver_connect_args(self) -> dict[str, Any]:
        """The driver's own ``connect_args`` (its connect timeout), without the route's."""
        return self._driver.connect_args()

    def new_engine(self, **options: Any) -> Engine | AsyncEngine:
        """A new engine on this driver's URL, counted; the caller disposes it."""
        factory = create_async_engine if self.awaits else create_engine
        options.setdefault("connect_args", self._driver.connect_args())
        engine = factory(self._driver.url, **options)
        self.counter.attach(engine)
        return engine

    def client_process(self, **options: Any) -> ClientProcess:
        """A client on this driver's URL in a process of its own, with engine
        ``options``; its statements count as this environment's. The caller closes it
        (``with``); closing it ends that process, as a restart of it would."""
        options.setdefault("connect_args", self._driver.connect_args())
        return ClientProcess(self._driver.url, self.awaits, options, self.counter)

    def session(self, **options: Any) -> Session | AsyncSession:
        """A new session, on the default engine unless ``bind=`` says otherwise.

        Of the Session class itself, as an application's one sessionmaker gives all its
        sessions one class. A sessionmaker per call made a new Session subclass per
        session (async_sessionmaker makes none), and SQLAlchemy set up each new class's
        event dispatch inside the timed call: about 350 more function calls per sync
        operation, 425 once the process had run async cells (counted here, 2026-12-01)."""
        options.setdefault("bind", self.default_engine)
        return (AsyncSession if self.awaits else Session)(**options)

    def sync_driver_url(self) -> URL:
        """This target's URL with the sync driver of the same family (psycopg2 for asyncpg)."""
        return self._driver.sync_url()

    def fresh_server_connections(self) -> None:
        """Through PgBouncer: the next transactions start on new server connections,
        clear of what earlier cells left there. Without PgBouncer: nothing to do."""
        if self._fresh_servers is not None:
            self._fresh_servers()

    def server_url(self) -> URL:
        """The server's own URL on the family's sync driver, around any latency proxy or
        PgBouncer: for what an administrator does to the server itself."""
        return self._server.sync_url()

    def observer(self) -> AbstractContextManager[Connection]:
        """A connection of the harness's own to the same database, on the sync driver and
        counted by nothing: what a second client would see. A fresh connection each time
        (no pool), so each read starts a transaction of its own and sees what is committed."""
        if self._observer is None:
            url = self.sync_driver_url()
            connect_args = {} if url.get_backend_name() == "sqlite" else self.sync_connect_args()
            self._observer = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        return self._observer.connect()

    def sync_connect_args(self) -> dict[str, Any]:
        return self._driver.sync_connect_args()

    async def dispose(self) -> None:
        """Close pooled connections (on the loop that opened them, in async mode)."""
        if isinstance(self.default_engine, AsyncEngine):
            await self.default_engine.dispose()
        else:
            self.default_engine.dispose()
        if self._observer is not None:
            self._observer.dispose()
        if self.counting is not None and self.counting is not self:
            await self.counting.dispose()


def prepare_database(
    driver: Driver, size: DatasetSize, say: Callable[[str], None] = lambda _: None
) -> str:
    """Record the dataset's tables as sqla-bench's (``owned.claim``: refused, with
    ``ConfigError``, when one exists that it did not create), then create them and seed
    them through ``driver``'s sync twin (one code path); return the server's version,
    e.g. ``postgresql 15.19``. ``release_database`` removes them."""
    engine = sync_engine(driver)
    try:
        claim(engine, driver, TABLES, say)
        with engine.begin() as connection:
            rebuild(connection, size)
        return server_version(engine)
    finally:
        engine.dispose()


def release_database(driver: Driver, names: Sequence[str] = TABLES) -> None:
    """Drop the tables a run created on ``driver``'s database, and their records."""
    engine = sync_engine(driver)
    try:
        owned.release_on(engine, names)
    finally:
        engine.dispose()


def claim(engine: Engine, driver: Driver, names: Sequence[str], say: Callable[[str], None]) -> None:
    """``owned.claim_on``, its refusal as one line naming the database."""
    try:
        owned.claim_on(engine, names, say)
    except owned.NotOurs as refused:
        raise ConfigError(owned.refusal(where_is(driver), refused.found)) from None


def check_owned(driver: Driver, names: Sequence[str]) -> None:
    """Before any work: ConfigError, naming it, when a table among ``names`` exists in
    ``driver``'s database and sqla-bench did not create it. Reads only; a server that
    does not answer is the runner's to report."""
    engine = sync_engine(driver, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            found = owned.problems(connection, names)
    except SQLAlchemyError:
        return
    finally:
        engine.dispose()
    if found:
        raise ConfigError(owned.refusal(where_is(driver), found))


def where_is(driver: Driver) -> str:
    """The target and its URL, password masked: where a message says it happened."""
    return f"{driver.spec.target} at {safe_url(driver.url.set(drivername=driver.spec.target))}"


def sync_engine(driver: Driver, **options: Any) -> Engine:
    """An engine of the target's sync driver for set-up: seeding, records, checks."""
    return create_engine(driver.sync_url(), connect_args=driver.sync_connect_args(), **options)


def server_version(engine: Engine) -> str:
    dialect = engine.dialect
    name = "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name
    numbers = [str(part) for part in dialect.server_version_info or () if isinstance(part, int)]
    return f"{name} {'.'.join(numbers)}".strip()
