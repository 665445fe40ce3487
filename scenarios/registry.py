"""Declaring scenarios and patterns, and finding them.

A scenario is an operation worth measuring: ``fn(session, **params)`` returning plain
data. A pattern is a case of the verification catalogue: ``fn(env, **params)``, where
``env`` (see ``PatternEnv``) can open sessions and engines, because several patterns are
about how engines and sessions are configured. Both are declared the same way::

    @scenario("crud.get", statements=1, params={"user_id": (1,)})
    def get_user(session, user_id): ...

    @get_user.twin
    async def get_user_async(session, user_id): ...

Discovery imports every module of this package and collects the declared objects, so
adding a scenario touches one place and there is no list to keep.

What the first argument is, is declared too (``receives``): a pattern gets the ``env``,
a scenario a fresh ``session`` per call, and a driver baseline the ``driver_connection``
(the DBAPI driver's own connection, with SQLAlchemy out of the way). The harness
provides each of ``RECEIVES``; it never needs to know which scenario asked."""

from __future__ import annotations

import importlib
import inspect
import itertools
import pkgutil
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqla_bench.scenarios.dataset import MAXIMUM, DatasetSize
from sqla_bench.scenarios.expect import (
    UNDECLARED,
    Committed,
    NotApplicable,
    Outcome,
    Setting,
    Works,
    WrongResults,
)
from sqla_bench.scenarios.sql import LoadSql, Writes
from sqla_bench.scenarios.strategies import STRATEGIES

MODES = ("sync", "async")
RECEIVES = ("env", "session", "driver_connection", "http")
# Kinds measured inside the measuring process, through a session, an engine or the driver;
# a web scenario is served by an app in a process of its own and reached over HTTP.
IN_PROCESS = ("scenario", "pattern")
# A baseline measures something other than SQLAlchemy, to compare SQLAlchemy against:
# "harness" is an operation that does nothing (the measuring loop's own cost per sample),
# "driver" is the same query through the driver alone.
BASELINES = ("harness", "driver")
# The parameter that names a loading strategy: ``run --strategy`` selects on it, and
# tables show its value alone ("selectin" rather than "strategy=selectin").
STRATEGY = "strategy"


@dataclass(frozen=True)
class Parameter:
    """The values a case parameter may take, declared once per name: every declared
    grid is held to it (``problems``), and so is ``run --param NAME=V``."""

    doc: str
    whole: tuple[int, int] | None = None  # a whole number in this range (inclusive)
    names: tuple[str, ...] | None = None  # one of these
    flag: bool = False  # true or false

    def takes(self) -> str:
        """What values it takes, in words."""
        if self.whole is not None:
            return f"a whole number from {self.whole[0]:,} to {self.whole[1]:,}"
        if self.flag:
            return "true or false"
        return f"one of {', '.join(self.names or ())}"

    def parse(self, text: str) -> Any:
        """``text`` as a value of this parameter, or ValueError saying what it takes."""
        if self.whole is not None:
            low, high = self.whole
            # ASCII digits only ("²" is a digit to str.isdigit), and few enough that int()
            # neither refuses the text nor spends time on it.
            digits = text.isascii() and text.isdigit() and len(text) <= 20
            if digits and low <= int(text) <= high:
                return int(text)
        elif self.flag and text.lower() in FLAGS:
            return FLAGS[text.lower()]
        elif not self.flag and text in (self.names or ()):
            return text
        raise ValueError(f"expected {self.takes()}, got {text!r}")


FLAGS = {"true": True, "false": False}
PARAMETERS = {
    "user_id": Parameter(
        "the user a call works on (an id the dataset lacks, such as 0, is a cell too)",
        whole=(0, 2**31 - 1),  # the id column is a 32-bit INTEGER on every database
    ),
    "limit": Parameter("parents per load", whole=(0, MAXIMUM["users"])),
    STRATEGY: Parameter("the loading strategy", names=tuple(STRATEGIES)),
    "pre_ping": Parameter("the engine's pool_pre_ping", flag=True),
    "prepared": Parameter(
        "the driver's prepared statements: as it comes; off (asyncpg statement_cache_size=0, "
        "psycopg prepare_threshold=None); SQLAlchemy's asyncpg cache off "
        "(prepared_statement_cache_size=0); uniquely named (asyncpg "
        "prepared_statement_name_func), with a pool or a NullPool; or under a NullPool",
        names=(
            "default",
            "off",
            "cache_off",
            "unique_names",
            "unique_names_null_pool",
            "null_pool",
        ),
    ),
    "processes": Parameter(
        "where the second client runs: in a second process beside the first, or in a new "
        "process after the first ended (a restart), first on the server connection the "
        "first used or first on another",
        names=("two", "restart", "restart_elsewhere"),
    ),
    "scope": Parameter(
        "how long a SET holds: the session, or the transaction (SET LOCAL)",
        names=("session", "local"),
    ),
}


Expectation = Callable[..., Outcome]
# ``returns=`` and ``committed=`` are given as a constant, or as a function called like an
# expectation, ``fn(setting, size, **params)``, when they depend on the cell.
Declared = Any


class PatternEnv(Protocol):
    """What a pattern may use; the harness provides it
    (``sqla_bench.measuring.engines.DriverEnv``)."""

    mode: str
    driver: str
    size: DatasetSize

    def session(self, **options: Any) -> Any: ...
    def new_engine(self, **options: Any) -> Any: ...
    def sync_driver_url(self) -> Any: ...
    def driver_connect_args(self) -> dict[str, Any]: ...
    def server_url(self) -> Any: ...
    def fresh_server_connections(self) -> None: ...
    def observer(self) -> Any: ...
    def client_process(self, **options: Any) -> Any: ...


@dataclass
class Case:
    """A declared scenario or pattern: its twins, parameters and expected outcome."""

    kind: str  # "scenario" or "pattern"
    id: str
    doc: str
    expect: Expectation
    params: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    only: str | None = None  # the one mode a single-mode case applies to
    receives: str = "session"  # one of RECEIVES
    group: str | None = None  # the id of the case whose table this one joins
    baseline: str | None = None  # one of BASELINES
    sync: Callable[..., Any] | None = None
    async_: Callable[..., Any] | None = None
    app: str | None = None  # web scenarios: "module:factory" of the app that serves them
    returns: Declared = UNDECLARED  # what a call that works returns
    committed: Declared = None  # Committed: what the database holds after the call
    sql: Declared = None  # scenarios.sql rule: what a call that works sends

    @property
    def table(self) -> str:
        """The report table this case appears in: its own, or the one it joins."""
        return self.group or self.id

    def twin(self, fn: Callable[..., Any]) -> Case:
        """Attach the other mode's function (decorator)."""
        self._attach(fn)
        return self

    def _attach(self, fn: Callable[..., Any]) -> None:
        slot = "async_" if inspect.iscoroutinefunction(fn) else "sync"
        if getattr(self, slot) is not None:
            raise TypeError(f"{self.id}: a {slot.rstrip('_')} function is already declared")
        setattr(self, slot, fn)

    def function(self, mode: str) -> Callable[..., Any] | None:
        return self.sync if mode == "sync" else self.async_

    def cells(self) -> Iterator[dict[str, Any]]:
        """Every combination of the parameter grid."""
        names = list(self.params)
        for values in itertools.product(*(self.params[name] for name in names)):
            yield dict(zip(names, values, strict=True))

    def expected(self, setting: Setting, size: DatasetSize, **params: Any) -> Outcome:
        """The declared outcome; a working one carries the value and committed state."""
        if self.only is not None and setting.mode != self.only:
            return NotApplicable(f"{self.only} only")
        outcome = self.expect(setting, size, **params)
        if isinstance(outcome, WrongResults):  # the right values, to tell the wrong ones
            return replace(outcome, value=_resolve(self.returns, setting, size, params))
        if not isinstance(outcome, Works):
            return outcome
        value = _resolve(self.returns, setting, size, params)
        committed = _resolve(self.committed, setting, size, params)
        sql = _resolve(self.sql, setting, size, params) or outcome.sql
        return replace(outcome, value=value, committed=committed, sql=sql)


@dataclass(frozen=True)
class FromDatabase:
    """What a call must return, read from the data being measured by a query of the
    declaration's own (a function of a read-only SQLAlchemy ``Connection``, that shares
    nothing with the twins): for twins on an application's existing data, which no
    dataset definition describes (``run --models MODULE --use-existing-data --scenarios
    TWINS``). Where no data is at hand to read (``verify``), the value is undeclared."""

    query: Callable[[Any], Any]


def _resolve(declared: Declared, setting: Setting, size: DatasetSize, params: dict) -> Any:
    if isinstance(declared, FromDatabase):
        return UNDECLARED if setting.read is None else setting.read(declared.query)
    if callable(declared) and not isinstance(declared, Committed | LoadSql | Writes):
        return declared(setting, size, **params)
    return declared


def _declare(
    kind: str,
    case_id: str,
    statements: int | None,
    expect: Expectation | None,
    params: Mapping[str, Sequence[Any]] | None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Case]:
    if (statements is None) == (expect is None):
        raise TypeError(f"{case_id}: declare exactly one of statements= or expect=")
    if options.get("committed") is not None and not (
        isinstance(options["committed"], Committed) or callable(options["committed"])
    ):
        raise TypeError(f"{case_id}: committed= takes a Committed, or a function giving one")
    for name, allowed in (("only", MODES), ("receives", RECEIVES), ("baseline", BASELINES)):
        if options.get(name) not in (None, *allowed):
            raise TypeError(f"{case_id}: {name}= must be one of {allowed}")
    if expect is None:

        def expect(setting: Setting, size: DatasetSize, **params: Any) -> Outcome:
            return Works(statements)

    def decorate(fn: Callable[..., Any]) -> Case:
        doc = (inspect.getdoc(fn) or "").strip()
        label = doc.splitlines()[0] if doc else ""
        case = Case(kind, case_id, label, expect, params or {}, **options)
        case._attach(fn)
        return case

    return decorate


def scenario(
    case_id: str,
    *,
    statements: int | None = None,
    expect: Expectation | None = None,
    returns: Declared = UNDECLARED,
    committed: Declared = None,
    sql: Declared = None,
    params: Mapping[str, Sequence[Any]] | None = None,
    receives: str = "session",
    group: str | None = None,
    baseline: str | None = None,
) -> Callable[[Callable[..., Any]], Case]:
    """Declare a scenario: ``statements=N`` when it always works, else ``expect=``;
    ``returns=`` what a working call returns (from the dataset's definition); for a
    write, ``sql=`` what it sends and ``committed=`` what the database holds afterwards.

    ``group="crud.get"`` puts it in that scenario's table, so the two are compared
    directly; ``baseline=`` marks what it measures when that is not SQLAlchemy.
    """
    options = {"receives": receives, "group": group, "baseline": baseline}
    options |= {"returns": returns, "committed": committed, "sql": sql}
    return _declare("scenario", case_id, statements, expect, params, **options)


def pattern(
    case_id: str,
    *,
    statements: int | None = None,
    expect: Expectation | None = None,
    returns: Declared = UNDECLARED,
    committed: Declared = None,
    sql: Declared = None,
    params: Mapping[str, Sequence[Any]] | None = None,
    only: str | None = None,
) -> Callable[[Callable[..., Any]], Case]:
    """Declare a verification pattern; ``only="async"`` when the other mode has no twin."""
    options = {"only": only, "receives": "env", "returns": returns, "committed": committed}
    options["sql"] = sql
    return _declare("pattern", case_id, statements, expect, params, **options)


@dataclass(frozen=True)
class Request:
    """What a web scenario asks of its app: a request, the status that means it worked,
    and options for the app instance that serves it (a loading strategy, say)."""

    method: str
    path: str
    json: Any = None
    status: int = 200
    app_options: Mapping[str, Any] = field(default_factory=dict)


def web(
    case_id: str,
    *,
    app: str,
    statements: int | None = None,
    expect: Expectation | None = None,
    returns: Declared = UNDECLARED,
    params: Mapping[str, Sequence[Any]] | None = None,
) -> Callable[[Callable[..., Request]], Case]:
    """Declare a web scenario: ``fn(**params)`` returns the ``Request`` to make of the app
    that ``app`` ("module:factory") builds. The factory is called as ``factory(mode, url,
    engine_options=..., **request.app_options)``; its sync and async apps are the twins,
    so one request function serves both modes."""
    declare = _declare("web", case_id, statements, expect, params, receives="http", returns=returns)

    def decorate(fn: Callable[..., Request]) -> Case:
        case = declare(fn)
        case.async_, case.app = fn, app
        return case

    return decorate


def discover(kind: str | tuple[str, ...] | None = None, modules: Sequence[str] = ()) -> list[Case]:
    """Every case declared in this package, in module then declaration order; ``kind``
    narrows to one kind or several (``IN_PROCESS``). Given ``modules`` (an application's
    own twins, declared with this module's decorators), the cases declared in those
    modules instead."""
    found: dict[str, Case] = {}
    for module in map(importlib.import_module, modules or _package_modules()):
        for value in vars(module).values():
            if isinstance(value, Case) and found.setdefault(value.id, value) is not value:
                raise RuntimeError(f"case id {value.id!r} is declared twice")
    kinds = (kind,) if isinstance(kind, str) else kind
    return [case for case in found.values() if kinds is None or case.kind in kinds]


def _package_modules() -> list[str]:
    package = importlib.import_module(__package__)
    return [f"{__package__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)]


def problems(case: Case, known_ids: Collection[str] = ()) -> list[str]:
    """What a declared case lacks: a twin, a docstring, a non-empty parameter grid, or
    (given the ids of every declared case) the scenario whose table it joins."""
    found = []
    if not case.doc:
        found.append(f"{case.id}: no docstring (its first line is the report label)")
    modes = MODES if case.only is None else (case.only,)
    found += [f"{case.id}: no {mode} twin" for mode in modes if case.function(mode) is None]
    if case.kind != "pattern" and case.only is not None:
        found.append(f"{case.id}: a scenario needs both twins, not only={case.only}")
    if not any(True for _ in case.cells()):
        found.append(f"{case.id}: its parameter grid is empty")
    if known_ids and case.group is not None and case.group not in known_ids:
        found.append(f"{case.id}: joins the table of {case.group!r}, which is not declared")
    return found + _parameter_problems(case)


def _parameter_problems(case: Case) -> list[str]:
    """Each parameter is declared in PARAMETERS, and each value in its grid is one it
    takes (read back from its text, as ``run --param`` would)."""
    found = []
    for name, values in case.params.items():
        parameter = PARAMETERS.get(name)
        if parameter is None:
            found.append(f"{case.id}: parameter {name!r} is not declared in PARAMETERS")
            continue
        for value in values:
            try:
                parsed = parameter.parse(str(value))
            except ValueError as error:
                parsed = error
            if parsed != value:
                found.append(f"{case.id}: {name}={value!r} is not a value it takes: {parsed}")
    return found
