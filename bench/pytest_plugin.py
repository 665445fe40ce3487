"""sqla-bench's pytest plugin, active wherever sqla-bench is installed (``pytest11``).

- ``sqla_queries``: a fixture that counts what runs on an engine, a connection or a
  session, sync or async, inside a ``with`` block: statements started and completed, and
  the SQL of each.
- ``@pytest.mark.sqla_max_statements(n)``: fails a test that completes more than ``n``
  statements on any engine, its SQL grouped, a repeated statement named by its lazy load.
- ``--sqla-nplusone``: fails a test in which the same lazy load (relationship and call
  site) fires more than ``--sqla-nplusone-threshold`` times, naming the loader option
  that avoids it from the query's root entity (a chain for a nested load, a depth for a
  tree); in async code, any implicit load (which raises MissingGreenlet) fails it.
- ``--sqla-advise``: replays the query under each N+1 with each loader option that
  avoids it (``bench.advise``) and prints what each costs, with a recommendation.
- ``--sqla-unused-eager``: fails a test in which a relationship loaded eagerly is never
  read (nplusone's other half).
- ``--sqla-counts PATH``: holds each test's statements (exactly, both ways) and Python
  function calls (first-use work left out, so that they do not depend on the tests run
  before) to a committed file (``--sqla-counts-update`` writes it), with the tolerances
  it declares.

Nothing is listened to unless a test asks for one of these: SQLAlchemy is imported only
then, so a suite that uses none of them runs as it did.
"""

from __future__ import annotations

import gc
import json
import os
import platform
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
COUNTS_VERSION = 2  # 2: calls leave first-use work out, and each test's SQL is kept
CALLS_METHOD = "first use left out"
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
        "--sqla-advise",
        action="store_true",
        help="replay the query under each N+1 a test shows with each loader option that "
        "avoids it (read-only, rolled back), check they return the same objects, and print "
        "their statements, rows and times with a recommendation",
    )
    group.addoption(
        "--sqla-unused-eager",
        action="store_true",
        help="fail a test in which a relationship loaded eagerly (joinedload, selectinload, "
        "lazy='selectin', ...) is never read: the load was work for nothing",
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
    if config.getoption("sqla_advise"):
        config.stash[ADVICE] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    counts = config.stash.get(COUNTS, None)
    if counts is not None and counts.updating:
        counts.write()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    advice = config.stash.get(ADVICE, None)
    if advice is not None:
        terminalreporter.section("sqla-bench advise: each N+1 replayed under each loader option")
        for line in advice or ["no N+1 seen"]:
            terminalreporter.write_line(line)
    counts = config.stash.get(COUNTS, None)
    if counts is not None and counts.note:
        terminalreporter.write_line(f"sqla-bench counts: {counts.note}")
    if counts is not None and counts.missing:
        terminalreporter.write_line(
            f"sqla-bench counts: {len(counts.missing)} test(s) not in {counts.path}, their "
            f"counts not held (--sqla-counts-update records them): {', '.join(counts.missing)}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """The test's own call, observed as it asked: statements on every engine, lazy loads,
    and (for a counts file) Python function calls; its fixtures' set-up is not in it."""
    config = pyfuncitem.config
    limit = _statement_limit(pyfuncitem.get_closest_marker(MARKER))
    counts = config.stash.get(COUNTS, None)
    nplusone = config.getoption("sqla_nplusone")
    unused = config.getoption("sqla_unused_eager")
    advise = config.getoption("sqla_advise")
    if limit is None and counts is None and not (nplusone or unused or advise):
        return (yield)
    from sqlalchemy import Engine

    watch_loads = nplusone or advise or limit is not None  # a limit's failure names them
    with (
        counting(Engine) as queries,
        _lazy_loads(watch_loads, roots=advise) as loads,
        _eager_loads(unused) as eager,
        _calls(counts) as calls,
    ):
        try:
            result = yield
        except Exception as error:
            if nplusone:
                _explain_implicit_io(loads, error)
            raise
    if advise:  # before any check can fail the test: the advice is the point
        _advise(config, pyfuncitem.nodeid, loads, config.getoption("sqla_nplusone_threshold"))
    _check_limit(limit, queries, loads)
    if eager is not None:
        _check_unused(eager)
    if nplusone:
        _check_lazy_loads(loads, config.getoption("sqla_nplusone_threshold"))
    if counts is not None and calls is not None:
        counted = {"statements": queries.completed, "calls": calls.total}
        counts.hold(pyfuncitem.nodeid, counted, queries.statements)
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


def _check_limit(limit: int | None, queries: Queries, loads: list[LazyLoad]) -> None:
    if limit is not None and queries.completed > limit:
        shown = "\n".join(grouped_statements(queries.statements, loads))
        pytest.fail(
            f"{queries.completed} SQL statements, over the {limit} allowed by {MARKER}:\n{shown}",
            pytrace=False,
        )


def grouped_statements(statements: list[str], loads: list[LazyLoad] = ()) -> list[str]:
    """The statements in the order first sent, each text once with how many times it
    ran ("20 times") and, for a repeated one, the lazy load that sent it."""
    counted = Counter(" ".join(sql.split()) for sql in statements)
    lines = []
    for number, (text, times) in enumerate(counted.items(), 1):
        said = f"  {number}. {text}" + (f" ({times} times)" if times > 1 else "")
        sender = next(
            (load for load in loads if times > 1 and f" FROM {load.table} " in f"{text} "),
            None,
        )
        if sender is not None:
            said += f" <- {sender.relationship} loaded lazily at {sender.call_site}"
        lines.append(said)
    return lines


# --- lazy loads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    """One relationship on the way from a query's root entity to what it loaded."""

    name: str  # "Course.enrollments"
    collection: bool
    attribute: Any = field(default=None, compare=False)  # Course.enrollments itself

    @property
    def key(self) -> str:
        return self.name.split(".", 1)[1]

    def loader(self) -> str:
        return f"{'selectinload' if self.collection else 'joinedload'}({self.name})"


@dataclass(frozen=True)
class LazyLoad:
    """One relationship loaded on access, where the application's code touched it.
    Loads are told apart by relationship and call site; ``path`` and ``depth`` say how
    the parent came to be loaded, which differs from one load of a loop to the next."""

    relationship: str  # "User.posts"
    call_site: str  # "app/views.py:42"
    collection: bool
    implicit_io_in_async: bool  # an AsyncSession's, outside a greenlet: MissingGreenlet
    table: str = ""  # the table it loads, to name the statements it sent
    # The relationships from the query's root entity to the parent (empty: the parent
    # is a root row); for a self-referential one, the level of the tree the parent is
    # at (1: a row the query returned), which the depth to load follows.
    path: tuple[Hop, ...] = field(default=(), compare=False)
    self_referential: bool = field(default=False, compare=False)
    depth: int = field(default=1, compare=False)
    final: Hop | None = field(default=None, compare=False)
    root: Any = field(default=None, compare=False)  # advise.Root: the parents' query

    def advice(self, depth: int | None = None) -> str:
        """The loader option on the root query that loads it with the query: the chain
        from the root entity for a nested load; a depth for a tree, whose every level
        would otherwise lazy-load the next."""
        final = Hop(self.relationship, self.collection)
        above = [hop.loader() for hop in self.path if hop.name != self.relationship]
        if not self.self_referential:
            return f"load it with the query: .options({'.'.join([*above, final.loader()])})"
        levels = depth or self.depth
        tree = tree_loader(self.relationship, levels)
        return (
            f"load the {levels} level{'s' if levels != 1 else ''} read with the query: "
            f".options({'.'.join([*above, tree])}) (or join_depth on the relationship, "
            "for joined loading)"
        )


def tree_loader(relationship: str, levels: int) -> str:
    """The option that loads ``levels`` levels of a tree with its query. selectinload
    loads one level, and ``recursion_depth=N`` N more (here: 1 loads 2 levels, 2 three,
    and it stops where the tree does)."""
    if levels <= 1:
        return f"selectinload({relationship})"
    return f"selectinload({relationship}, recursion_depth={levels - 1})"


@contextmanager
def _lazy_loads(active: bool, roots: bool = False) -> Iterator[list[LazyLoad]]:
    """Every lazy load while the block runs (when ``active``), from ``do_orm_execute``:
    the ORM runs a lazy load as a statement of the parent's session. With ``roots``,
    each load also knows the query that loaded its parent (``--sqla-advise`` replays
    it): the last query of the session before the parent's ``load`` event."""
    loads: list[LazyLoad] = []
    if not active:
        yield loads
        return
    from sqlalchemy import event
    from sqlalchemy.orm import Mapper, Session

    latest: dict[int, Any] = {}  # session -> its last query of its own
    root_of: dict[int, Any] = {}  # a loaded object's state -> the query that loaded it
    # How far down from the rows a query returned an object was loaded (1: one of them),
    # to say how deep a tree was read: a relationship's load puts what it loads one level
    # below its parents (a lazy load, below the object it was loaded from).
    level_of: dict[int, int] = {}
    loading = [1]  # the level of the objects the current statement loads

    def record(state: Any) -> None:
        if state.is_relationship_load and state.lazy_loaded_from is not None:
            parent = level_of.get(id(state.lazy_loaded_from), 1)
            loading[0] = parent + 1
            root = root_of.get(id(state.lazy_loaded_from))
            loads.append(_lazy_load(state, root, parent))
        elif state.is_relationship_load:  # selectin, subquery, immediate: the next level
            loading[0] += 1
        elif state.is_select:
            loading[0] = 1
            if roots:
                latest[id(state.session)] = _root(state)

    def loaded(target: Any, context: Any) -> None:
        from sqlalchemy import inspect

        state = inspect(target)
        level_of[id(state)] = loading[0]
        root = latest.get(id(context.session))
        if root is not None:
            root_of[id(state)] = root

    event.listen(Session, "do_orm_execute", record)
    event.listen(Mapper, "load", loaded)
    try:
        yield loads
    finally:
        event.remove(Session, "do_orm_execute", record)
        event.remove(Mapper, "load", loaded)


def _root(state: Any) -> Any:
    from sqlalchemy.ext.asyncio import async_session

    from sqla_bench.advise import Root

    try:
        bind = state.session.get_bind()
    except Exception:  # a session bound per mapper: no one engine to replay on
        return None
    engine = getattr(bind, "engine", bind)
    return Root(state.statement, engine, async_session(state.session) is not None)


def _lazy_load(state: Any, root: Any = None, level: int = 1) -> LazyLoad:
    from sqlalchemy.ext.asyncio import async_session
    from sqlalchemy.util.concurrency import in_greenlet

    prop = state.loader_strategy_path[-1]
    in_async = async_session(state.session) is not None
    path = _path_to(state.lazy_loaded_from)
    name = _name(prop)
    self_referential = prop.mapper.common_parent(prop.parent)
    return LazyLoad(
        relationship=name,
        call_site=_call_site(),
        collection=bool(prop.uselist),
        implicit_io_in_async=in_async and not in_greenlet(),
        table=prop.mapper.local_table.name,
        path=path,
        self_referential=self_referential,
        depth=level,
        final=Hop(name, bool(prop.uselist), prop.class_attribute),
        root=root,
    )


def _name(prop: Any) -> str:
    return f"{prop.parent.class_.__name__}.{prop.key}"


def _path_to(parent: Any) -> tuple[Hop, ...]:
    """The relationships a lazily loaded parent was reached by from its query's root
    entity (its state's load path: mapper, relationship, mapper, ...)."""
    load_path = getattr(parent, "load_path", None)
    steps = getattr(load_path, "path", ()) or ()
    return tuple(
        Hop(_name(prop), bool(prop.uselist), prop.class_attribute)
        for prop in steps[1::2]
        if hasattr(prop, "uselist")
    )


def _call_site() -> str:
    """The first frame of the application's code above this one; inside a greenlet
    (``await obj.awaitable_attrs.x`` runs its load in one), the application's frame is
    on the stack of the greenlet that started it."""
    found = _application_frame(sys._getframe(1))
    if found is None:
        found = _application_frame(_spawning_frame())
    return found or "unknown"


def _application_frame(frame: Any) -> str | None:
    while frame is not None:
        filename = frame.f_code.co_filename
        parts = set(Path(filename).parts)
        if not (parts & set(NOT_THE_CALL_SITE)) and filename != __file__:
            return f"{_relative(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _spawning_frame() -> Any:
    """Where the greenlet this runs in was switched from (None outside one)."""
    try:
        import greenlet
    except ImportError:  # SQLAlchemy's async support needs it; without it, no greenlet
        return None
    parent = greenlet.getcurrent().parent
    return getattr(parent, "gr_frame", None)


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


def _repeated(loads: list[LazyLoad], threshold: int) -> list[tuple[LazyLoad, int, int]]:
    """Each N+1: a lazy load, how many times it fired and the deepest level it reached."""
    fired = Counter(loads)
    deepest: dict[LazyLoad, int] = {}
    for load in loads:
        deepest[load] = max(deepest.get(load, 0), load.depth)
    return [
        (load, times, deepest[load])
        for load, times in fired.items()
        if times > threshold and not load.implicit_io_in_async
    ]


def _advise(config: pytest.Config, test: str, loads: list[LazyLoad], threshold: int) -> None:
    """Replay each N+1 of the test under each loader option (``bench.advise``) and keep
    the advice for the end of the session."""
    from sqla_bench import advise

    said = config.stash[ADVICE]
    for load, _, depth in _repeated(loads, threshold):
        first = next(each for each in loads if each == load)
        if first.root is None or first.final is None:
            said.append(f"{test}: {load.relationship} at {load.call_site}: no query to replay")
            continue
        site = advise.Site(
            load.relationship, load.call_site, first.root, first.path, first.final, depth,
            first.self_referential,
        )  # fmt: skip
        try:
            said += [f"{test}:", *advise.advice(site, advise.replay(site))]
        except Exception as error:  # the test's data or connection: say so, do not fail it
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            said.append(f"{test}: {load.relationship} at {load.call_site}: not replayed ({reason})")


def _check_lazy_loads(loads: list[LazyLoad], threshold: int) -> None:
    problems = _implicit_io(loads)
    problems += [
        f"{load.relationship} loaded lazily {times} times at {load.call_site} (N+1; "
        f"{threshold} allowed): {load.advice(depth)}"
        for load, times, depth in _repeated(loads, threshold)
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# --- eager loads never read -----------------------------------------------------------------


@dataclass
class EagerLoads:
    """The objects a test's queries loaded (with where each query ran) and the
    attributes the test read on them."""

    loaded: list[tuple[Any, str]] = field(default_factory=list)  # (state, call site)
    read: set[tuple[int, str]] = field(default_factory=set)  # (id of the object, key)
    # The objects themselves, held until the check: a test's own are gone once it
    # returns, and an id is only an object's while it lives.
    objects: list[Any] = field(default_factory=list)

    def unused(self) -> Counter[tuple[str, str]]:
        """(relationship, call site of its query): objects whose relationship was loaded
        with them, eagerly, and never read. A lazy load is a read, so what an object
        holds unread was loaded by a loader option or the relationship's own lazy=."""
        found: Counter[tuple[str, str]] = Counter()
        for state, site in self.loaded:
            obj = state.obj()
            if obj is None:
                continue
            for prop in state.mapper.relationships:
                if prop.key in state.dict and (id(obj), prop.key) not in self.read:
                    found[_name(prop), site] += 1
        return found


@contextmanager
def _eager_loads(active: bool) -> Iterator[EagerLoads | None]:
    """Every object loaded while the block runs and every attribute read on one (the
    ORM has no event for a read: its attribute descriptor is wrapped for the block)."""
    if not active:
        yield None
        return
    from sqlalchemy import event
    from sqlalchemy.orm import Mapper
    from sqlalchemy.orm.attributes import InstrumentedAttribute

    seen, original = EagerLoads(), InstrumentedAttribute.__get__

    def get(attribute: Any, instance: Any, owner: Any) -> Any:
        if instance is not None:
            seen.read.add((id(instance), attribute.key))
        return original(attribute, instance, owner)

    def loaded(target: Any, _: Any) -> None:
        from sqlalchemy import inspect

        seen.objects.append(target)
        seen.loaded.append((inspect(target), _call_site()))

    InstrumentedAttribute.__get__ = get  # type: ignore[method-assign]
    event.listen(Mapper, "load", loaded)
    try:
        yield seen
    finally:
        event.remove(Mapper, "load", loaded)
        InstrumentedAttribute.__get__ = original  # type: ignore[method-assign]


def _check_unused(eager: EagerLoads) -> None:
    unused = eager.unused()
    if unused:
        pytest.fail(
            "\n".join(
                f"{relationship} loaded eagerly for {objects} object{'s' * (objects != 1)} "
                f"by the query at {site} and never read: drop its loader option there "
                "(or the relationship's lazy= setting), it is work for nothing"
                for (relationship, site), objects in unused.items()
            ),
            pytrace=False,
        )


# --- counts held to a file -----------------------------------------------------------------


class _Calls:
    """Function calls (Python and built-in, as cProfile counts them) made in this
    thread, but for work done once per process that lands in whichever test needs it
    first: a SQL statement's compilation (cached after), an import, the configuration of
    mappers, a memoized attribute's first computation, a loader strategy set up on first
    use. Without it a test's count depends on the tests that ran before it."""

    def __init__(self) -> None:
        self.total = 0
        self._first_use = _first_use_code()
        self._inside: Any = None  # the frame of first-use work being left out

    def __call__(self, frame: Any, event: str, _: Any) -> None:
        if self._inside is not None:
            if event == "return" and frame is self._inside:
                self._inside = None
            return
        if event == "call":
            if frame.f_code in self._first_use:
                self._inside = frame
            else:
                self.total += 1
        elif event == "c_call":
            self.total += 1


def _first_use_code() -> frozenset[Any]:
    """The code of the functions whose calls are first-use work (see ``_Calls``)."""
    import importlib
    import importlib._bootstrap as bootstrap

    from sqlalchemy.orm import interfaces
    from sqlalchemy.sql import cache_key, compiler, visitors
    from sqlalchemy.util import langhelpers

    mapper = importlib.import_module("sqlalchemy.orm.mapper")  # the package's is a function

    functions = [
        compiler.Compiled.__init__,
        bootstrap._find_and_load,
        mapper._configure_registries,
        langhelpers.memoized_property.__get__,
        langhelpers.HasMemoized.memoized_attribute.__get__,
        # A construct's cache-key structure and its visitors' dispatch, made per class
        cache_key.HasCacheKey._generate_cache_attrs.__func__,
        visitors.HasTraversalDispatch.generate_dispatch,
    ]
    strategies = _subclasses(interfaces.LoaderStrategy)
    functions += [cls.__dict__["__init__"] for cls in strategies if "__init__" in cls.__dict__]
    return frozenset(f.__code__ for f in functions if hasattr(f, "__code__"))


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@contextmanager
def _calls(counts: CountsFile | None) -> Iterator[_Calls | None]:
    """Function calls of the block, when counts are held. The collector is held off so
    that no finalizer of earlier work lands in it."""
    if counts is None:
        yield None
        return
    calls = _Calls()
    collecting, previous = gc.isenabled(), sys.getprofile()
    gc.disable()
    sys.setprofile(calls)
    try:
        yield calls
    finally:
        sys.setprofile(previous)
        if collecting:
            gc.enable()


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
    method: str = CALLS_METHOD  # how the file's calls were counted
    held_sql: dict[str, dict[str, int]] = field(default_factory=dict)  # the file's SQL
    measured: dict[str, dict[str, int]] = field(default_factory=dict)
    sql: dict[str, dict[str, int]] = field(default_factory=dict)  # this run's, per test
    missing: list[str] = field(default_factory=list)  # tests run that the file lacks
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
                data.get("calls_method", "cProfile, first use included"),
                data.get("sql", {}),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise pytest.UsageError(f"--sqla-counts {path}: cannot read it: {error}") from None

    def hold(self, test: str, counts: dict[str, int], statements: list[str]) -> None:
        """Fail ``test`` if its statements changed (either way: a decrease asks for the
        file to be updated, so that it is held to the new number) or its calls grew
        beyond the tolerance; a test the file does not know is recorded and reported."""
        self.measured[test] = counts
        self.sql[test] = dict(Counter(" ".join(text.split()) for text in statements))
        held = self.tests.get(test)
        if self.updating:
            return
        if held is None:
            self.missing.append(test)
            return
        names = ["statements"]
        if self.environment == _environment() and self.method == CALLS_METHOD:
            names.append("calls")
        else:
            self.note = (
                f"function calls not held: the file's were counted on {self.environment} "
                f"({self.method}), this run is on {_environment()} ({CALLS_METHOD})"
            )
        changed = [self._change(name, held[name], counts[name]) for name in names if name in held]
        changed = [text for text in changed if text]
        if changed:
            added = self._sql_added(test)
            pytest.fail(
                f"counts differ from {self.path}'s: {'; '.join(changed)} "
                f"(--sqla-counts-update records the new ones){added}",
                pytrace=False,
            )

    def _change(self, name: str, held: int, counted: int) -> str | None:
        tolerance = self.tolerance[name]
        grew = counted > held * (1 + tolerance)
        fell = name == "statements" and counted < held
        if not (grew or fell):
            return None
        allowed = "held exactly" if tolerance == 0 else f"{tolerance:.0%} allowed"
        return f"{name} {held:,} -> {counted:,} ({(counted - held) / max(held, 1):+.1%}, {allowed})"

    def _sql_added(self, test: str) -> str:
        """The statements this run sent more often than the file's run did, and those it
        sent less often, by their SQL."""
        before = self.held_sql.get(test)
        if before is None:
            return ""
        now = self.sql[test]
        more = [(text, now[text] - before.get(text, 0)) for text in now]
        fewer = [(text, before[text] - now.get(text, 0)) for text in before]
        lines = [f"\n  + {text} ({n} more)" for text, n in more if n > 0]
        lines += [f"\n  - {text} ({n} fewer)" for text, n in fewer if n > 0]
        return "".join(lines)

    def write(self) -> None:
        """The file with this run's counts beside those of the tests it did not run."""
        data = {
            "version": COUNTS_VERSION,
            "tolerance": self.tolerance,
            "environment": _environment(),
            "calls_method": CALLS_METHOD,
            "tests": dict(sorted({**self.tests, **self.measured}.items())),
            "sql": dict(sorted({**self.held_sql, **self.sql}.items())),
        }
        self.path.write_text(json.dumps(data, indent=1) + "\n")


COUNTS = pytest.StashKey[CountsFile]()
ADVICE = pytest.StashKey[list[str]]()
