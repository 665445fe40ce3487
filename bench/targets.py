"""Where a database comes from, and which drivers reach it.

A target is a database plus its drivers: ``sqlite`` (a file in a temporary directory,
always available), ``postgresql`` and ``mysql`` (from a URL in the environment). From one
plain URL the suite derives every driver's URL. Configuration problems raise
``ConfigError`` with a one-line message that never contains a password.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

TARGETS = ("sqlite", "postgresql", "mysql")
URL_VARIABLES = {"postgresql": "SQLA_BENCH_POSTGRESQL_URL", "mysql": "SQLA_BENCH_MYSQL_URL"}
REQUIRE_VARIABLE = "SQLA_BENCH_REQUIRE"
CONNECT_TIMEOUT_SECONDS = 5
SQLITE_FILE = "sqla_bench.db"


class ConfigError(Exception):
    """Bad configuration: shown to the user as one line, exit status 2."""


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
        sync_spec = _spec(self.spec.target, self.spec.sync_name, "sync")
        return self.url.set(drivername=sync_spec.drivername)


@dataclass(frozen=True)
class Target:
    name: str
    url: URL
    drivers: tuple[Driver, ...]
    source: str  # where the database came from, for people and result files

    @property
    def safe_url(self) -> str:
        return safe_url(self.url)


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


def redact(text: str, *urls: URL) -> str:
    """``text`` with every password of ``urls`` replaced by ``***``."""
    for url in urls:
        if url.password:
            text = text.replace(str(url.password), "***")
    return text


def _spec(target: str, name: str, mode: str) -> DriverSpec:
    return next(s for s in DRIVER_SPECS if (s.target, s.name, s.mode) == (target, name, mode))


def required_targets(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The targets that ``SQLA_BENCH_REQUIRE`` says must not be skipped."""
    names = tuple(n.strip() for n in environ.get(REQUIRE_VARIABLE, "").split(",") if n.strip())
    for name in names:
        check_target_name(name, where=REQUIRE_VARIABLE)
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


def first_line(error: BaseException, target: Target) -> str:
    """An error's first line with the target's password removed, for people and files."""
    lines = str(error).strip().splitlines()
    return redact(lines[0] if lines else type(error).__name__, target.url)


def failure(target: Target, error: BaseException) -> str:
    """Why a target stopped part-way, in one line."""
    return f"{target.name} at {target.safe_url} failed: {first_line(error, target)}"
