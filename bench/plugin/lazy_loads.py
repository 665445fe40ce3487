"""Lazy loads as the plugin sees them (``--sqla-nplusone``): each with its relationship,
its path from the query's root entity and its call site in the application, the loader
option that avoids it, and the implicit I/O that raises MissingGreenlet in async
code."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

NPLUSONE_THRESHOLD = 1  # a lazy load that fires twice from one line is a loop's
# Frames that are not the application's: a call site is the first frame outside them.
NOT_THE_CALL_SITE = ("sqlalchemy", "greenlet", "asyncio", "_pytest", "pluggy", "pytest_asyncio")


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
    root: Any = field(default=None, compare=False)  # Root: the parents' query

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
def watching_lazy_loads(active: bool, roots: bool = False) -> Iterator[list[LazyLoad]]:
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
    name = relationship_name(prop)
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


def relationship_name(prop: Any) -> str:
    return f"{prop.parent.class_.__name__}.{prop.key}"


def _path_to(parent: Any) -> tuple[Hop, ...]:
    """The relationships a lazily loaded parent was reached by from its query's root
    entity (its state's load path: mapper, relationship, mapper, ...)."""
    load_path = getattr(parent, "load_path", None)
    steps = getattr(load_path, "path", ()) or ()
    return tuple(
        Hop(relationship_name(prop), bool(prop.uselist), prop.class_attribute)
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


# The plugin's own frames (its listeners, in any of its modules) are never a call site.
PLUGIN_FOLDER = Path(__file__).parent


def _application_frame(frame: Any) -> str | None:
    while frame is not None:
        filename = frame.f_code.co_filename
        parts = set(Path(filename).parts)
        if not (parts & set(NOT_THE_CALL_SITE)) and Path(filename).parent != PLUGIN_FOLDER:
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


def implicit_io(loads: list[LazyLoad]) -> list[str]:
    return [
        f"{load.relationship} loaded lazily at {load.call_site} in async code: implicit IO, "
        f"which raises MissingGreenlet; {load.advice()}, or await "
        f"obj.awaitable_attrs.{load.relationship.split('.')[1]}"
        for load in dict.fromkeys(load for load in loads if load.implicit_io_in_async)
    ]


def explain_implicit_io(loads: list[LazyLoad], error: Exception) -> None:
    """A test that failed on an implicit load fails naming the attribute and the
    line."""
    found = implicit_io(loads)
    if found:
        raised = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        pytest.fail("\n".join([*found, f"(the test raised {raised[:300]})"]), pytrace=False)


def repeated_loads(loads: list[LazyLoad], threshold: int) -> list[tuple[LazyLoad, int, int]]:
    """Each N+1: a lazy load, how many times it fired and the deepest level it
    reached."""
    fired = Counter(loads)
    deepest: dict[LazyLoad, int] = {}
    for load in loads:
        deepest[load] = max(deepest.get(load, 0), load.depth)
    return [
        (load, times, deepest[load])
        for load, times in fired.items()
        if times > threshold and not load.implicit_io_in_async
    ]


def check_lazy_loads(loads: list[LazyLoad], threshold: int) -> None:
    problems = implicit_io(loads)
    problems += [
        f"{load.relationship} loaded lazily {times} times at {load.call_site} (N+1; "
        f"{threshold} allowed): {load.advice(depth)}"
        for load, times, depth in repeated_loads(loads, threshold)
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@dataclass(frozen=True)
class Root:
    """The query that loaded a test's parents, and where it ran."""

    statement: Any  # the ORM Select, as the test executed it
    bind: Any  # the sync Engine (an async engine's sync engine) it ran on
    is_async: bool
