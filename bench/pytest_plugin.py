"""sqla-bench's pytest plugin, active wherever sqla-bench is installed (``pytest11``).

- ``sqla_queries``: a fixture that counts what runs on an engine, a connection or a
  session, sync or async, inside a ``with`` block: statements started and completed, and
  the SQL of each.
- ``@pytest.mark.sqla_max_statements(n)``: fails a test that completes more than ``n``
  statements on any engine.
- ``--sqla-nplusone``: fails a test in which the same lazy load (relationship and call
  site) fires more than ``--sqla-nplusone-threshold`` times, naming a loader option that
  avoids it; in async code, any implicit load (which raises MissingGreenlet) fails it.
- ``--sqla-counts PATH``: holds each test's statements and Python function calls to a
  committed file (``--sqla-counts-update`` writes it), with the tolerances it declares.

Nothing is listened to unless a test asks for one of these: SQLAlchemy is imported only
then, so a suite that uses none of them runs as it did.
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import platform
import pstats
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MARKER = "sqla_max_statements"
NPLUSONE_THRESHOLD = 1  # a lazy load that fires twice from one line is a loop's
# What a counts file holds a test to unless it declares otherwise: statements exactly,
# function calls within 5 % (SQLAlchemy's own profiles.txt allows as much).
DEFAULT_TOLERANCE = {"statements": 0.0, "calls": 0.05}
COUNTS_VERSION = 1
# Frames that are not the application's: a call site is the first frame outside them.
NOT_THE_CALL_SITE = ("sqlalchemy", "greenlet", "asyncio", "_pytest", "pluggy", "pytest_asyncio")


@dataclass
class Queries:
    """What ran inside one ``sqla_queries(...)`` block."""

    started: int = 0
    completed: int = 0
    commits: int = 0
    rollbacks: int = 0
    statements: list[str] = field(default_factory=list)  # SQL of each completed one

    def __len__(self) -> int:
        return self.completed


@contextmanager
def counting(target: Any) -> Iterator[Queries]:
    """Count on ``target`` (an Engine, a Connection or a Session, sync or async; the
    ``Engine`` class counts on every engine) until the block ends."""
    from sqla_bench.probes import StatementCounter

    counter, queries = StatementCounter(), Queries()
    counter.detail = True
    for place in _event_targets(target):
        counter.attach(place)
    try:
        yield queries
    finally:
        counter.detach()
        queries.started, queries.completed = counter.started, counter.completed
        queries.commits, queries.rollbacks = counter.commits, counter.rollbacks
        queries.statements = [executed.text for executed in counter.executed]


def _event_targets(target: Any) -> list[Any]:
    """Where statements of ``target`` can be listened to: engines and connections carry
    events; a session's statements run on the engine or connection it is bound to."""
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    if isinstance(target, AsyncSession):
        target = target.sync_session
    return [target.get_bind() if isinstance(target, Session) else target]


@pytest.fixture
def sqla_queries() -> Callable[[Any], Any]:
    """``with sqla_queries(engine_or_connection_or_session) as queries:`` counts what runs
    there; afterwards ``queries.completed``, ``.started`` and ``.statements`` (the SQL)."""
    return counting


# --- options and markers -----------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqla-bench", "SQLAlchemy statements, lazy loads and counts")
    group.addoption(
        "--sqla-nplusone",
        action="store_true",
        help="fail a test in which one lazy load (relationship and line) fires more than "
        "--sqla-nplusone-threshold times, or any implicit load in async code",
    )
    group.addoption(
        "--sqla-nplusone-threshold",
        type=int,
        default=NPLUSONE_THRESHOLD,
        metavar="N",
        help=f"lazy loads allowed from one line per test (default {NPLUSONE_THRESHOLD})",
    )
    group.addoption(
        "--sqla-counts",
        metavar="PATH",
        help="hold each test's statements and function calls to this file's counts",
    )
    group.addoption(
        "--sqla-counts-update",
        action="store_true",
        help="write the counts of the tests that passed into --sqla-counts PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(n): fail the test if it completes more than n SQL statements"
    )
    path = config.getoption("sqla_counts")
    if config.getoption("sqla_counts_update") and not path:
        raise pytest.UsageError("--sqla-counts-update needs --sqla-counts PATH")
    if config.getoption("sqla_nplusone_threshold") < 1:
        raise pytest.UsageError("--sqla-nplusone-threshold must be 1 or more")
    if path:
        config.stash[COUNTS] = CountsFile.open(Path(path), config.getoption("sqla_counts_update"))


def pytest_unconfigure(config: pytest.Config) -> None:
    counts = config.stash.get(COUNTS, None)
    if counts is not None and counts.updating:
        counts.write()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    counts = config.stash.get(COUNTS, None)
    if counts is not None and counts.note:
        terminalreporter.write_line(f"sqla-bench counts: {counts.note}")


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """The test's own call, observed as it asked: statements on every engine, lazy loads,
    and (for a counts file) Python function calls; its fixtures' set-up is not in it."""
    config = pyfuncitem.config
    limit = _statement_limit(pyfuncitem.get_closest_marker(MARKER))
    counts = config.stash.get(COUNTS, None)
    nplusone = config.getoption("sqla_nplusone")
    if limit is None and counts is None and not nplusone:
        return (yield)
    from sqlalchemy import Engine

    with counting(Engine) as queries, _lazy_loads(nplusone) as loads, _calls(counts) as calls:
        try:
            result = yield
        except Exception as error:
            _explain_implicit_io(loads, error)
            raise
    _check_limit(limit, queries)
    if nplusone:
        _check_lazy_loads(loads, config.getoption("sqla_nplusone_threshold"))
    if counts is not None:
        counts.hold(pyfuncitem.nodeid, {"statements": queries.completed, "calls": calls.total})
    return result


# --- the statement limit -------------------------------------------------------------------


def _statement_limit(marker: pytest.Mark | None) -> int | None:
    """The marker's limit, checked before the test runs."""
    if marker is None:
        return None
    limit = marker.args[0] if marker.args else marker.kwargs.get("n")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        pytest.fail(f"{MARKER} takes a whole number of statements, not {limit!r}", pytrace=False)
    return limit


def _check_limit(limit: int | None, queries: Queries) -> None:
    if limit is not None and queries.completed > limit:
        shown = "\n".join(
            f"  {i}. {' '.join(sql.split())}" for i, sql in enumerate(queries.statements, 1)
        )
        pytest.fail(
            f"{queries.completed} SQL statements, over the {limit} allowed by {MARKER}:\n{shown}",
            pytrace=False,
        )


# --- lazy loads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LazyLoad:
    """One relationship loaded on access, where the application's code touched it."""

    relationship: str  # "User.posts"
    call_site: str  # "app/views.py:42"
    collection: bool
    implicit_io_in_async: bool  # an AsyncSession's, outside a greenlet: MissingGreenlet

    def advice(self) -> str:
        loader = "selectinload" if self.collection else "joinedload"
        return f"load it with the query: .options({loader}({self.relationship}))"


@contextmanager
def _lazy_loads(active: bool) -> Iterator[list[LazyLoad]]:
    """Every lazy load while the block runs (when ``active``), from ``do_orm_execute``:
    the ORM runs a lazy load as a statement of the parent's session."""
    loads: list[LazyLoad] = []
    if not active:
        yield loads
        return
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    def record(state: Any) -> None:
        if state.is_relationship_load and state.lazy_loaded_from is not None:
            loads.append(_lazy_load(state))

    event.listen(Session, "do_orm_execute", record)
    try:
        yield loads
    finally:
        event.remove(Session, "do_orm_execute", record)


def _lazy_load(state: Any) -> LazyLoad:
    from sqlalchemy.ext.asyncio import async_session
    from sqlalchemy.util.concurrency import in_greenlet

    prop = state.loader_strategy_path[-1]
    in_async = async_session(state.session) is not None
    return LazyLoad(
        relationship=f"{prop.parent.class_.__name__}.{prop.key}",
        call_site=_call_site(),
        collection=bool(prop.uselist),
        implicit_io_in_async=in_async and not in_greenlet(),
    )


def _call_site() -> str:
    """The first frame of the application's code above this one."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        parts = set(Path(filename).parts)
        if not (parts & set(NOT_THE_CALL_SITE)) and filename != __file__:
            return f"{_relative(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return "unknown"


def _relative(filename: str) -> str:
    try:
        return os.path.relpath(filename)
    except ValueError:  # another drive
        return filename


def _implicit_io(loads: list[LazyLoad]) -> list[str]:
    return [
        f"{load.relationship} loaded lazily at {load.call_site} in async code: implicit IO, "
        f"which raises MissingGreenlet; {load.advice()}, or await "
        f"obj.awaitable_attrs.{load.relationship.split('.')[1]}"
        for load in dict.fromkeys(load for load in loads if load.implicit_io_in_async)
    ]


def _explain_implicit_io(loads: list[LazyLoad], error: Exception) -> None:
    """A test that failed on an implicit load fails naming the attribute and the line."""
    found = _implicit_io(loads)
    if found:
        raised = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        pytest.fail("\n".join([*found, f"(the test raised {raised[:300]})"]), pytrace=False)


def _check_lazy_loads(loads: list[LazyLoad], threshold: int) -> None:
    problems = _implicit_io(loads)
    fired = Counter(loads)
    problems += [
        f"{load.relationship} loaded lazily {times} times at {load.call_site} (N+1; "
        f"{threshold} allowed): {load.advice()}"
        for load, times in fired.items()
        if times > threshold and not load.implicit_io_in_async
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# --- counts held to a file -----------------------------------------------------------------


@dataclass
class _Calls:
    total: int = 0


@contextmanager
def _calls(counts: CountsFile | None) -> Iterator[_Calls]:
    """Python function calls of the block (cProfile, this thread), when counts are held.
    The collector is held off so that no finalizer of earlier work lands in it."""
    calls = _Calls()
    if counts is None:
        yield calls
        return
    profile, collecting = cProfile.Profile(), gc.isenabled()
    gc.disable()
    profile.enable()
    try:
        yield calls
    finally:
        profile.disable()
        if collecting:
            gc.enable()
        calls.total = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]


def _environment() -> dict[str, str]:
    """What function calls depend on besides the code under test."""
    import sqlalchemy

    return {"python": platform.python_version(), "sqlalchemy": sqlalchemy.__version__}


@dataclass
class CountsFile:
    """Per-test counts, committed beside the tests, and the tolerances they are held to."""

    path: Path
    updating: bool
    tolerance: dict[str, float]
    environment: dict[str, str]
    tests: dict[str, dict[str, int]]
    measured: dict[str, dict[str, int]] = field(default_factory=dict)
    note: str = ""

    @classmethod
    def open(cls, path: Path, updating: bool) -> CountsFile:
        """The file at ``path`` (none yet is an empty one when updating); one UsageError
        for a file that cannot be read or written."""
        if updating and not os.access(path.parent if path.parent.parts else ".", os.W_OK):
            raise pytest.UsageError(f"--sqla-counts {path}: cannot write in {path.parent}")
        if not path.exists():
            if not updating:
                raise pytest.UsageError(
                    f"--sqla-counts {path}: no such file (write it with --sqla-counts-update)"
                )
            return cls(path, True, dict(DEFAULT_TOLERANCE), _environment(), {})
        try:
            data = json.loads(path.read_text())
            return cls(
                path,
                updating,
                {**DEFAULT_TOLERANCE, **data.get("tolerance", {})},
                data["environment"],
                data["tests"],
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise pytest.UsageError(f"--sqla-counts {path}: cannot read it: {error}") from None

    def hold(self, test: str, counts: dict[str, int]) -> None:
        """Fail ``test`` if a count grew beyond its tolerance over the file's; a test the
        file does not know is only recorded."""
        self.measured[test] = counts
        held = self.tests.get(test)
        if held is None or self.updating:
            return
        names = ["statements"]
        if self.environment == _environment():
            names.append("calls")
        else:
            self.note = (
                f"function calls not held: the file's were counted on {self.environment}, "
                f"this run is on {_environment()}"
            )
        grown = [
            f"{name} {held[name]:,} -> {counts[name]:,} "
            f"(+{(counts[name] - held[name]) / max(held[name], 1):.1%}, "
            f"{self.tolerance[name]:.0%} allowed)"
            for name in names
            if name in held and counts[name] > held[name] * (1 + self.tolerance[name])
        ]
        if grown:
            pytest.fail(
                f"counts grew beyond {self.path}'s: {'; '.join(grown)} "
                "(--sqla-counts-update records the new ones)",
                pytrace=False,
            )

    def write(self) -> None:
        """The file with this run's counts beside those of the tests it did not run."""
        data = {
            "version": COUNTS_VERSION,
            "tolerance": self.tolerance,
            "environment": _environment(),
            "tests": dict(sorted({**self.tests, **self.measured}.items())),
        }
        self.path.write_text(json.dumps(data, indent=1) + "\n")


COUNTS = pytest.StashKey[CountsFile]()
