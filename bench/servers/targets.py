"""Where a database comes from, and which drivers reach it.

A target is a database plus its drivers: ``sqlite`` (a file in a temporary directory,
always available), ``postgresql`` and ``mysql``: from a URL in the environment if one is
set, otherwise from a container that ``Servers`` starts when a Docker engine answers
(see ``sqla_bench.servers.containers``). From one plain URL the suite derives every
driver's URL. Configuration problems raise ``ConfigError`` with a one-line message that
never contains a password."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from sqla_bench.base.errors import ConfigError, first_line, redact, shown
from sqla_bench.servers.containers import (
    ContainerError,
    ServerContainer,
    ServerSettings,
    docker_problem,
    server_settings,
)

TARGETS = ("sqlite", "postgresql", "mysql")
URL_VARIABLES = {"postgresql": "SQLA_BENCH_POSTGRESQL_URL", "mysql": "SQLA_BENCH_MYSQL_URL"}
REQUIRE_VARIABLE = "SQLA_BENCH_REQUIRE"
CONTAINERS = "containers"  # SQLA_BENCH_REQUIRE's name for the tests that need Docker
VALGRIND = "valgrind"  # ... and for those that count instructions (run --instructions)
# Which targets may get a container: unset for all, "off" (or any name) for a chosen few.
CONTAINERS_VARIABLE = "SQLA_BENCH_CONTAINERS"
CONNECT_TIMEOUT_SECONDS = 5
SQLITE_FILE = "sqla_bench.db"


@dataclass(frozen=True)
class DriverSpec:
    name: str
    target: str
    mode: str
    drivername: str  # SQLAlchemy's dialect+driver
    module: str  # what must be importable
    sync_name: str  # the sync driver of the same family (itself for a sync driver)
    timeout_arg: str | None  # the DBAPI's connect-timeout keyword


DRIVER_SPECS = (
    DriverSpec("pysqlite", "sqlite", "sync", "sqlite+pysqlite", "sqlite3", "pysqlite", None),
    DriverSpec("aiosqlite", "sqlite", "async", "sqlite+aiosqlite", "aiosqlite", "pysqlite", None),
    DriverSpec(
        "psycopg2",
        "postgresql",
        "sync",
        "postgresql+psycopg2",
        "psycopg2",
        "psycopg2",
        "connect_timeout",
    ),
    DriverSpec(
        "asyncpg", "postgresql", "async", "postgresql+asyncpg", "asyncpg", "psycopg2", "timeout"
    ),
    DriverSpec(
        "psycopg",
        "postgresql",
        "sync",
        "postgresql+psycopg",
        "psycopg",
        "psycopg",
        "connect_timeout",
    ),
    DriverSpec(
        "psycopg",
        "postgresql",
        "async",
        "postgresql+psycopg",
        "psycopg",
        "psycopg",
        "connect_timeout",
    ),
    DriverSpec(
        "pymysql", "mysql", "sync", "mysql+pymysql", "pymysql", "pymysql", "connect_timeout"
    ),
    DriverSpec(
        "aiomysql", "mysql", "async", "mysql+aiomysql", "aiomysql", "pymysql", "connect_timeout"
    ),
)


@dataclass(frozen=True)
class Driver:
    """One driver in one mode, with its concrete URL."""

    spec: DriverSpec
    url: URL

    @property
    def id(self) -> str:
        return f"{self.spec.target}-{self.spec.name}-{self.spec.mode}"

    def connect_args(self) -> dict:
        if self.spec.timeout_arg is None:
            return {}
        return {self.spec.timeout_arg: CONNECT_TIMEOUT_SECONDS}

    def sync_url(self) -> URL:
        """This URL with the family's sync driver, e.g. psycopg2 for asyncpg."""
        return self.url.set(drivername=self._sync_spec().drivername)

    def sync_connect_args(self) -> dict:
        """``connect_args`` for the family's sync driver (``sync_url``)."""
        return Driver(self._sync_spec(), self.sync_url()).connect_args()

    def _sync_spec(self) -> DriverSpec:
        return _spec(self.spec.target, self.spec.sync_name, "sync")


@dataclass(frozen=True)
class Target:
    name: str
    url: URL
    drivers: tuple[Driver, ...]
    source: str  # where the database came from, for people and result files
    container: Mapping | None = None  # image and server options, when a container runs it

    @property
    def safe_url(self) -> str:
        return safe_url(self.url)


@dataclass(frozen=True)
class Pending:
    """A server target that gets a container the first time it is needed."""

    name: str
    settings: ServerSettings
    drivers: tuple[Driver, ...]  # their URL names no server until the container runs

    @property
    def source(self) -> str:
        return f"container ({self.settings.image})"


@dataclass(frozen=True)
class Unavailable:
    """A target that is not configured here, and how to configure it."""

    name: str
    reason: str


def safe_url(url: URL | str) -> str:
    """The URL as text with any password replaced by ``***``."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


def _spec(target: str, name: str, mode: str) -> DriverSpec:
    return next(s for s in DRIVER_SPECS if (s.target, s.name, s.mode) == (target, name, mode))


def required_targets(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """What ``SQLA_BENCH_REQUIRE`` says must not be skipped: targets, ``containers``
    for the tests that need a Docker engine, ``valgrind`` for those that need valgrind."""
    names = tuple(n.strip() for n in environ.get(REQUIRE_VARIABLE, "").split(",") if n.strip())
    for name in names:
        if name not in (CONTAINERS, VALGRIND):
            where = f"{REQUIRE_VARIABLE} (targets, {CONTAINERS} or {VALGRIND})"
            check_target_name(name, where=where)
    return names


def check_target_name(name: str, where: str = "target") -> None:
    if name not in TARGETS:
        raise ConfigError(f"{where}: unknown target {name!r}; choose from {', '.join(TARGETS)}")


def resolve(
    name: str, sqlite_dir: Path, environ: Mapping[str, str] = os.environ
) -> Target | Unavailable:
    """The target called ``name``, or why it is not available here."""
    check_target_name(name)
    if name == "sqlite":
        url = make_url(f"sqlite:///{sqlite_dir / SQLITE_FILE}")
        return Target(name, url, _drivers(name, url, None), "embedded")
    variable = URL_VARIABLES[name]
    raw = environ.get(variable, "").strip()
    if not raw:
        return Unavailable(name, f"{name} is not configured: set {variable} to a URL")
    url = _parse_server_url(name, variable, raw)
    chosen = url.drivername.partition("+")[2] or None
    return Target(name, url, _drivers(name, url, chosen, variable), f"url ({variable})")


def _parse_server_url(name: str, variable: str, raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"{variable} is not a database URL (expected {name}://user:password@host:port/db)"
        ) from None
    backend = url.get_backend_name()
    if backend != name and not (name == "mysql" and backend == "mariadb"):
        raise ConfigError(
            f"{variable} points to a {backend!r} database, not {name}: {safe_url(url)}"
        )
    if not url.host or not url.database:
        raise ConfigError(f"{variable} needs a host and a database name: {safe_url(url)}")
    return url


def _drivers(name: str, url: URL, chosen: str | None, variable: str = "") -> tuple[Driver, ...]:
    """Every supported driver of the target, or only ``chosen`` when the URL names one."""
    specs = [s for s in DRIVER_SPECS if s.target == name]
    known = sorted({s.name for s in specs})
    if chosen is not None:
        specs = [s for s in specs if s.name == chosen]
        if not specs:
            raise ConfigError(
                f"{variable} names driver {chosen!r}, which sqla-bench does not measure for "
                f"{name}; use one of {', '.join(known)}, or none to measure them all"
            )
    for spec in specs:
        if importlib.util.find_spec(spec.module) is None:
            raise ConfigError(
                f"driver {spec.name} for {name} is not installed (pip install {spec.module})"
            )
    return tuple(Driver(s, url.set(drivername=s.drivername)) for s in specs)


def check_reachable(target: Target) -> None:
    """Connect once with the target's first driver, or raise a one-line ConfigError."""
    driver = next((d for d in target.drivers if d.spec.mode == "sync"), None)
    if driver is None:  # a URL that names only an async driver: check through its sync twin
        base = target.drivers[0]
        driver = Driver(_spec(target.name, base.spec.sync_name, "sync"), base.sync_url())
    engine = create_engine(driver.url, poolclass=NullPool, connect_args=driver.connect_args())
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        detail = redact(reason[0] if reason else type(exc).__name__, target.url)
        raise ConfigError(
            f"cannot connect to {target.name} at {target.safe_url}: {detail}"
        ) from None
    finally:
        engine.dispose()


def said_by(error: BaseException, target: Target) -> str:
    """An error's first line with the target's password removed, for people and files."""
    return redact(first_line(error), target.url)


def failure(target: Target, error: BaseException | str) -> str:
    """Why a target stopped part-way, in one line."""
    said = redact(error, target.url) if isinstance(error, str) else said_by(error, target)
    return f"{target.name} at {target.safe_url} failed: {said}"


class Servers:
    """The targets of one run or test session, and the containers started for them.

    A server target comes from its URL variable if set; otherwise from a container, if a
    Docker engine answers; otherwise it is ``Unavailable`` with both ways to get one.
    Containers start on first use (``target``) and stop on ``close``, which a ``with``
    block calls however it ends.
    """

    def __init__(
        self,
        sqlite_dir: Path,
        environ: Mapping[str, str] = os.environ,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.sqlite_dir, self.environ, self.say = sqlite_dir, environ, say
        self._planned: dict[str, Target | Pending | Unavailable] = {}
        self._running: dict[str, Target] = {}
        self._containers: list[ServerContainer] = []
        self._locks: dict[str, threading.Lock] = {}
        self._history: list[str] = []  # one line per container started

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def plan(self, name: str) -> Target | Pending | Unavailable:
        """Where ``name`` would come from, without starting anything."""
        if name not in self._planned:
            self._planned[name] = self._plan(name)
        return self._planned[name]

    def urls(self) -> list[URL]:
        """The URL of every target planned or started so far, for redacting passwords."""
        known = [*self._planned.values(), *self._running.values()]
        return [target.url for target in known if isinstance(target, Target)]

    def target(self, name: str) -> Target | Unavailable:
        """The target called ``name``, starting its container if it needs one."""
        planned = self.plan(name)
        if isinstance(planned, Pending):
            return self._start(planned)
        return planned

    def targets(self, names: Iterable[str]) -> list[Target | Unavailable]:
        """Several targets; their containers start side by side."""
        names = list(names)
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            return list(pool.map(self.target, names))

    def started(self) -> list[str]:
        """What was started, each with its start-to-ready time."""
        return list(self._history)

    def close(self) -> None:
        """Stop every container this object started."""
        containers, self._containers = self._containers, []
        self._running.clear()
        for container in containers:
            container.stop()

    def _plan(self, name: str) -> Target | Pending | Unavailable:
        resolved = resolve(name, self.sqlite_dir, self.environ)
        if not isinstance(resolved, Unavailable):
            return resolved
        try:
            settings = server_settings(name, self.environ)
        except ContainerError as error:
            raise ConfigError(str(error)) from None
        allowed = self.environ.get(CONTAINERS_VARIABLE, "").strip()
        if allowed and name not in allowed.replace(",", " ").split():
            problem = f"containers are off for it: {CONTAINERS_VARIABLE}={shown(allowed)}"
        else:
            problem = docker_problem()
        if problem is not None:
            return Unavailable(
                name,
                f"{name} is not configured: set {URL_VARIABLES[name]} to a URL, or start a "
                f"Docker engine so that sqla-bench can run a container ({problem})",
            )
        return Pending(name, settings, _drivers(name, make_url(f"{name}://"), None))

    def _start(self, pending: Pending) -> Target:
        # One container per target, however many threads ask for it.
        with self._locks.setdefault(pending.name, threading.Lock()):
            if pending.name in self._running:
                return self._running[pending.name]
            container = ServerContainer(pending.settings)
            self._containers.append(container)
            self.say(f"starting a {pending.name} container from {pending.settings.image}")
            try:
                url = container.start()
            except ContainerError as error:
                raise ConfigError(str(error)) from None
            ready = f"{pending.name} container ready in {container.ready_seconds:.1f} s"
            self._history.append(f"{ready} ({pending.settings.image})")
            self.say(ready)
            target = Target(
                pending.name,
                url,
                _drivers(pending.name, url, None),
                pending.source,
                container=pending.settings.describe(),
            )
            self._running[pending.name] = target
            return target


def selected_targets(
    names: list[str] | None, servers: Servers
) -> tuple[list[Target], list[Unavailable]]:
    """The named targets (each must be available), or every available one and the rest.

    Containers are started here, side by side, for targets that have no URL. Each
    server target is then checked to answer, so a bad URL is one line before any work.
    """
    if not names:
        resolved = servers.targets(TARGETS)
        available = [target for target in resolved if isinstance(target, Target)]
        unavailable = [target for target in resolved if isinstance(target, Unavailable)]
    else:
        planned_targets(names, servers)  # an unavailable one stops us before a container starts
        resolved = servers.targets(dict.fromkeys(names))
        available, unavailable = [t for t in resolved if isinstance(t, Target)], []
    for target in available:
        if target.name != "sqlite":  # a file of our own: nothing to reach
            check_reachable(target)
    return available, unavailable


def planned_targets(names: list[str], servers: Servers) -> list[Target | Pending]:
    """Where each named target will come from, without starting anything; one line and
    exit status 2 for an unknown or unavailable one."""
    for name in names:
        check_target_name(name)
    planned = [servers.plan(name) for name in dict.fromkeys(names)]
    for target in planned:
        if isinstance(target, Unavailable):
            raise ConfigError(target.reason)
    return planned
