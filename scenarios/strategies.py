"""Loading strategies, each declared once: what it is, where it works, what SQL it sends.

A ``Strategy`` holds every fact about one way of loading a relationship:

- ``option``: the loader option put on each relationship of the query (``joinedload`` …),
  or None when the strategy is not a query option;
- ``model_level``: declared on the mapping instead (``lazy="selectin"``);
- ``reader``: how the loaded objects are read (plain attributes, ``awaitable_attrs``,
  inside ``run_sync``, or a write-only collection's ``.select()``);
- ``only``: the one mode it exists in; ``implicit_io``: it loads on attribute access,
  which async code cannot do (MissingGreenlet); ``refuses``: what reading raises;
- ``needs``: what a shape must offer for it (a model-level mapping, a write-only
  collection);
- ``sql``: the SQL it sends per relationship (``scenarios.sql``: joined into the root
  query, a SELECT with ``IN`` per chunk of keys, the root query re-stated as a subquery,
  one SELECT per key, or nothing), from which its statement count follows.

The loading scenarios, the verification catalogue and the web app all read these
objects; adding a strategy is adding one declaration here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import (
    immediateload,
    joinedload,
    lazyload,
    raiseload,
    selectinload,
    subqueryload,
)

from sqla_bench.scenarios.sql import (
    IN,
    JOINED,
    NONE,
    PER_KEY,
    SQL_KINDS,
    SUBQUERY,
    Edge,
    count_statements,
)

# selectinload puts at most this many parent keys in one IN (...) (SQLAlchemy's default).
SELECTIN_CHUNK = 500
READERS = ("attribute", "awaitable_attrs", "run_sync", "write_only")
NEEDS = ("model_mapping", "write_only_collection")


@dataclass(frozen=True)
class Strategy:
    name: str
    doc: str
    sql: str  # one of scenarios.sql.SQL_KINDS
    option: Callable[..., Any] | None = None
    model_level: bool = False
    reader: str = "attribute"
    only: str | None = None
    implicit_io: bool = False
    refuses: type[Exception] | None = None
    needs: str | None = None
    chunk: int = 0  # IN: keys per statement

    def __post_init__(self) -> None:
        if self.sql not in SQL_KINDS or self.reader not in READERS:
            raise TypeError(f"strategy {self.name}: sql in {SQL_KINDS}, reader in {READERS}")
        if self.needs not in (None, *NEEDS):
            raise TypeError(f"strategy {self.name}: needs= one of {NEEDS}")
        if (self.sql == IN) != (self.chunk > 0):
            raise TypeError(f"strategy {self.name}: a chunk size goes with sql=IN, and only there")

    def edge(self, name: str, table: str, keys: int) -> Edge:
        """The SQL this strategy must send to load relationship ``name`` over ``keys``."""
        return Edge(name, table, self.sql, keys, self.chunk)

    def statements(self, keys: int) -> int:
        return count_statements(self.sql, keys, self.chunk)


STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy
    for strategy in (
        Strategy(
            "lazy",
            "the default lazy='select': one SELECT per parent when the attribute is read",
            PER_KEY,
            option=lazyload,
            implicit_io=True,
        ),
        Strategy("joined", "joinedload(): LEFT OUTER JOIN in the same query", JOINED, joinedload),
        Strategy(
            "selectin",
            "selectinload(): a second SELECT with IN over the parents' keys",
            IN,
            selectinload,
            chunk=SELECTIN_CHUNK,
        ),
        Strategy(
            "subquery",
            "subqueryload(): a second SELECT joined to the first query as a subquery",
            SUBQUERY,
            subqueryload,
        ),
        Strategy(
            "immediate",
            "immediateload(): one SELECT per parent, as the parents load",
            PER_KEY,
            immediateload,
        ),
        Strategy(
            "raise",
            "raiseload(): reading the relationship raises instead of loading",
            NONE,
            raiseload,
            refuses=InvalidRequestError,
        ),
        Strategy(
            "model_selectin",
            "lazy='selectin' declared on the model: selectin for every query",
            IN,
            model_level=True,
            needs="model_mapping",
            chunk=SELECTIN_CHUNK,
        ),
        Strategy(
            "awaitable_attrs",
            "await obj.awaitable_attrs.rel: a lazy load, awaited",
            PER_KEY,
            reader="awaitable_attrs",
            only="async",
        ),
        Strategy(
            "run_sync",
            "await session.run_sync(fn): lazy loads inside fn, as in sync code",
            PER_KEY,
            reader="run_sync",
            only="async",
        ),
        Strategy(
            "write_only",
            "a WriteOnlyMapped collection read with .select(): one SELECT per parent",
            PER_KEY,
            reader="write_only",
            needs="write_only_collection",
        ),
    )
}


def query_options() -> tuple[str, ...]:
    """Strategies that are a loader option on the query: what an application can choose
    per request (the web app offers these)."""
    return tuple(name for name, strategy in STRATEGIES.items() if strategy.option is not None)


def compared_strategies() -> tuple[str, ...]:
    """The strategies a verdict compares: the query options that load (the model-level,
    awaitable_attrs, run_sync and write_only variants send the SQL of one of them)."""
    return tuple(name for name in query_options() if STRATEGIES[name].refuses is None)
