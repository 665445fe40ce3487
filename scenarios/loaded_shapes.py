"""Loads beyond one relationship (``sqla_bench.scenarios.relationships`` builds their
cases): the two hops through an association object (``Chain``), a self-referential
collection read as a tree to a depth (``Tree``), and a collection of a polymorphic class
read whole, once per way of loading its subclass rows (``Polymorphic``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from sqlalchemy import Column, Connection, Select
from sqlalchemy.orm import (
    Mapper,
    defaultload,
    with_polymorphic,
)

from sqla_bench.scenarios.expect import Outcome, Setting, missing_greenlet
from sqla_bench.scenarios.loaded import (
    Loaded,
    OnOneRelationship,
    Relationship,
    Sample,
    joined_subclasses,
    names_of,
    plain_columns,
    plain_row,
    rows_by_key,
    subclass_rows,
)
from sqla_bench.scenarios.sql import IN, JOINED, NONE, PER_KEY, SUBQUERY, Edge, LoadSql
from sqla_bench.scenarios.strategies import SELECTIN_CHUNK, STRATEGIES, Strategy


@dataclass(frozen=True)
class Chain(Loaded):
    """Two relationships loaded in one query through an association object: a collection
    of the association's rows, then the many-to-one each of them holds to the other
    side (``Course.enrollments`` then ``Enrollment.student``), one loader option for
    both (``selectinload(Course.enrollments).selectinload(Enrollment.student)``)."""

    first: Relationship
    second: Relationship

    @property
    def parent(self) -> Mapper:
        return self.first.parent

    @property
    def title(self) -> str:
        return f"{self.first.title}.{self.second.name}"

    @property
    def kind(self) -> str:
        return "association object"

    @property
    def doc(self) -> str:
        through = self.first.child.class_.__name__
        return (
            f"association object from {self.parent.class_.__name__} to "
            f"{self.second.child.class_.__name__} through {through}"
        )

    @property
    def tables(self) -> tuple[Any, ...]:
        return tuple(dict.fromkeys((*self.first.tables, *self.second.tables)))

    def lacks(self, strategy: Strategy) -> str | None:
        return self.first.lacks(strategy) or self.second.lacks(strategy)

    def quirk(self, setting: Setting, strategy: Strategy, sample: Sample) -> Outcome | None:
        """What SQLAlchemy does here that the strategies' declarations do not imply.

        A nested ``immediateload(...).options(immediateload(...))`` in async code raises
        MissingGreenlet once the query returns two parents or more, after the root query
        and the first hop's loads, when the second hop must load: seen on SQLAlchemy
        2.1.9 with aiosqlite, asyncpg, psycopg and aiomysql, and with plain SQLAlchemy
        (no sqla-bench) on the school's data: one course works, two raise. The same
        options work in sync code, and ``selectinload`` works in both. SQLAlchemy issue
        #13204 names immediateload as a chained sub-option among its cases: the second
        hop's eager load falls back to a lazy one when read (``Relationship.quirk``)."""
        first = self.first.quirk(setting, strategy, sample)
        nested_immediate = strategy.name == "immediate" and setting.mode == "async"
        if first is None and nested_immediate and len(sample.keys) > 1 and sample.hops[1][1] > 0:
            return missing_greenlet(setting, completed=1 + sample.hops[0][1])
        return first

    def query(self, strategy: Strategy, keys: Sequence[Any]) -> Select:
        query = self.first.query(_NO_OPTION, keys)
        if strategy.option is None:
            return query
        first = getattr(self.parent.class_, self.first.name)
        second = getattr(self.second.parent.class_, self.second.name)
        return query.options(strategy.option(first).options(strategy.option(second)))

    def sql(self, strategy: Strategy, sample: Sample) -> LoadSql:
        links = [
            r.prop.secondary.name for r in (self.first, self.second) if r.prop.secondary is not None
        ]
        edges = (
            self.first.edge(strategy, sample, 0, len(sample.keys)),
            self.second.edge(
                strategy, sample, 1, sample.hops[1][0], f"{self.first.name}.{self.second.name}"
            ),
        )
        discriminators = self.first.discriminators + self.second.discriminators
        return LoadSql(
            names_of(self.parent.tables), edges, tuple(links), discriminators=discriminators
        )

    def read(self, parent: Any) -> tuple:
        children = getattr(parent, self.first.name)
        read = [self.second.read(child) for child in rows_by_key(self.first.child, children)]
        return self._plain(parent, read)

    async def read_awaiting(self, parent: Any) -> tuple:
        children = await getattr(parent.awaitable_attrs, self.first.name)
        ordered = rows_by_key(self.first.child, children)
        read = [await self.second.read_awaiting(child) for child in ordered]
        return self._plain(parent, read)

    def _plain(self, parent: Any, children: list[tuple]) -> tuple:
        first = self.first
        return (plain_row(first.parent, first.parent_columns, parent), tuple(children))

    def sample(self, connection: Connection, limit: int) -> Sample:
        """The first relationship's sample, and for each related row what the second
        relates to it: (parent row, ((association row, other side's row), ...))."""
        keys, parents = self.first.parents(connection, limit)
        children = self.first.related(connection, keys)
        child_keys = sorted({key for rows in children.values() for key, _ in rows})
        grand = self.second.related(connection, child_keys) if child_keys else {}
        value = [
            (row, tuple(
                (child_row, self.second.related_value(grand.get(child_key, [])))
                for child_key, child_row in sorted(children.get(key, []), key=lambda p: p[0])
            ))
            for key, row in parents
        ]  # fmt: skip
        found = {key for rows in grand.values() for key, _ in rows}
        hops = (
            self.first.key_counts(keys, {k for rows in children.values() for k, _ in rows}),
            self.second.key_counts(tuple(child_keys), found),
        )
        return Sample(keys, hops, value, subclassed_parents=self.first.subclassed(connection, keys))


_NO_OPTION = STRATEGIES["model_selectin"]  # a strategy with no loader option: the bare query


TREE_DEPTH = 3  # levels of a tree a tree case reads below its roots


DEPTH_OPTIONS = ("selectin", "immediate")  # the loader options that take recursion_depth


@dataclass(frozen=True)
class Tree(OnOneRelationship):
    """A self-referential collection read ``TREE_DEPTH`` levels down from each root
    (each topic's children, their children, and theirs), one loader option on the root
    query: ``selectinload(Topic.children, recursion_depth=2)`` loads a level per
    statement (the first, and two more), ``immediateload`` the same depth a node at a
    time, a lazy load sends a SELECT per node read. Roots are sampled as for the
    relationship, less any that lies within the depth below another (the session would
    hold it already). joinedload and subqueryload have no depth of their own."""

    relationship: Relationship
    depth: int = TREE_DEPTH

    @property
    def title(self) -> str:
        return f"{self.relationship.title}.depth{self.depth}"

    @property
    def kind(self) -> str:
        return "tree"

    @property
    def doc(self) -> str:
        name = self.parent.class_.__name__
        return f"tree from {name}, {self.depth} levels of {self.relationship.name}"

    def lacks(self, strategy: Strategy) -> str | None:
        if strategy.option is not None and strategy.sql in (JOINED, SUBQUERY):
            return (
                f"{strategy.name} has no depth of its own (join_depth={self.depth} on the "
                "relationship gives joined loading one)"
            )
        return self.relationship.lacks(strategy)

    def query(self, strategy: Strategy, keys: Sequence[Any]) -> Select:
        query = self.relationship.query(_NO_OPTION, keys)
        if strategy.option is None:
            return query
        attribute = getattr(self.parent.class_, self.relationship.name)
        if strategy.name in DEPTH_OPTIONS:  # recursion_depth=N loads N levels beyond one
            return query.options(strategy.option(attribute, recursion_depth=self.depth - 1))
        return query.options(strategy.option(attribute))

    def sql(self, strategy: Strategy, sample: Sample) -> LoadSql:
        levels = tuple(in_keys for in_keys, _ in sample.hops)
        edge = replace(
            self.relationship.edge(strategy, sample, 0, len(sample.keys)),
            keys=sum(levels) if strategy.sql in (IN, PER_KEY) else len(sample.keys),
            levels=levels if strategy.sql == IN else (),
        )
        return LoadSql(names_of(self.parent.tables), (edge,))

    def read(self, parent: Any) -> tuple:
        return self._read(parent, 1, lambda node: getattr(node, self.relationship.name))

    async def read_awaiting(self, parent: Any) -> tuple:
        name = self.relationship.name
        row = self.plain_row(parent)
        if self.depth < 1:
            return (row,)
        children = await getattr(parent.awaitable_attrs, name)
        nested = [
            await self._read_awaiting(child, 2) for child in rows_by_key(self.parent, children)
        ]
        return (row, tuple(nested))

    async def _read_awaiting(self, node: Any, level: int) -> tuple:
        if level > self.depth:
            return (self.plain_row(node),)
        children = await getattr(node.awaitable_attrs, self.relationship.name)
        ordered = rows_by_key(self.parent, children)
        nested = [await self._read_awaiting(child, level + 1) for child in ordered]
        return (self.plain_row(node), tuple(nested))

    def _read(self, node: Any, level: int, children_of: Any) -> tuple:
        if level > self.depth:
            return (self.plain_row(node),)
        ordered = rows_by_key(self.parent, children_of(node))
        nested = [self._read(child, level + 1, children_of) for child in ordered]
        return (self.plain_row(node), tuple(nested))

    def plain_row(self, node: Any) -> tuple:
        return plain_row(self.parent, self.relationship.parent_columns, node)

    def sample(self, connection: Connection, limit: int) -> Sample:
        """The roots and their tree, read level by level with the relationship's own
        join; per level, the nodes whose children the load reads."""
        sampled, rows = self.relationship.parents(connection, limit)
        below: set[Any] = set()
        frontier = list(sampled)
        for _ in range(self.depth):  # what lies within the depth below any sampled root
            related = self.relationship.related(connection, frontier) if frontier else {}
            frontier = [key for found in related.values() for key, _ in found]
            below.update(frontier)
        keys = tuple(key for key in sampled if key not in below)
        row_of = dict(rows)
        children: dict[Any, list[tuple]] = {}
        levels, frontier = [], list(keys)
        for _ in range(self.depth):
            levels.append(len(frontier))
            related = self.relationship.related(connection, frontier) if frontier else {}
            children.update(related)
            for found in related.values():
                row_of.update(found)
            frontier = [key for found in related.values() for key, _ in found]

        def value(key: Any, level: int) -> tuple:
            if level > self.depth:
                return (row_of[key],)
            ordered = sorted(children.get(key, []), key=lambda pair: pair[0])
            return (row_of[key], tuple(value(child, level + 1) for child, _ in ordered))

        # A level with no node sends no statement: recursion stops where the tree does.
        hops = tuple((n, n) for n in levels)
        subclassed = self.relationship.subclassed(connection, keys)
        return Sample(keys, hops, [value(key, 1) for key in keys], subclassed_parents=subclassed)


# How a polymorphic class's subclass rows load, in the words a case's title gives.
LOADING_WORDS = {
    "subclasses": "each object's own, when read",
    "selectin_polymorphic": "selectin_polymorphic()",
    "with_polymorphic": "with_polymorphic(), joined to the relationship's statement",
}


SUBCLASS_LOADINGS = tuple(LOADING_WORDS)


@dataclass(frozen=True)
class Polymorphic(OnOneRelationship):
    """A one-to-many collection of a class whose subclasses have tables of their own,
    each related row read whole, its subclass's columns too (a teacher's office, a
    student's year), the subclass rows loaded as ``loading`` says:

    - ``subclasses``: no option for them. Each object loads its own subclass row when a
      column of it is read, a SELECT each, which async code cannot do (MissingGreenlet);
    - ``selectin_polymorphic``: ``.selectin_polymorphic([Teacher, Student])`` chained to
      the loader option, a SELECT with IN over the rows of each subclass once the
      relationship's rows are in (a lazy load's for each parent's rows on their own);
    - ``with_polymorphic``: the relationship loaded ``of_type(with_polymorphic(Person,
      "*", flat=True))``, a LEFT OUTER JOIN to each subclass table in the statement that
      loads it. A load one parent at a time ignores it and loads as with none.

    Each related row's class is the most derived whose table holds its key; a subclass's
    own rows are loaded in one statement (an object of a subclass two levels down reads
    both tables at once)."""

    relationship: Relationship
    loading: str  # one of SUBCLASS_LOADINGS

    @property
    def child(self) -> Mapper:
        return self.relationship.child

    @property
    def title(self) -> str:
        return f"{self.relationship.title}.{self.loading}"

    @property
    def kind(self) -> str:
        return "polymorphic"

    @property
    def doc(self) -> str:
        return (
            f"polymorphic {self.relationship.kind} from {self.parent.class_.__name__} to "
            f"{self.child.class_.__name__} and its subclasses, each row read whole, "
            f"subclass rows: {LOADING_WORDS[self.loading]}"
        )

    @cached_property
    def subclasses(self) -> tuple[Mapper, ...]:
        return joined_subclasses(self.child)

    @cached_property
    def subclass_columns(self) -> tuple[tuple[Mapper, Column], ...]:
        """Each subclass's columns of its own table that the related class lacks."""
        inherited = {attribute.key for attribute in self.child.column_attrs}
        return tuple(
            (mapper, column)
            for mapper in self.subclasses
            for column in plain_columns(mapper)
            if column.table is mapper.local_table
            and mapper.get_property_by_column(column).key not in inherited
        )

    def query(self, strategy: Strategy, keys: Sequence[Any]) -> Select:
        query = self.relationship.query(_NO_OPTION, keys)
        attribute = getattr(self.parent.class_, self.relationship.name)
        loader = strategy.option or defaultload  # default: the relationship's own loader
        if self.loading == "with_polymorphic":
            every = with_polymorphic(self.child.class_, "*", flat=True)
            return query.options(loader(attribute.of_type(every)))
        if self.loading == "selectin_polymorphic":
            classes = [mapper.class_ for mapper in self.subclasses]
            return query.options(loader(attribute).selectin_polymorphic(classes))
        return query if strategy.option is None else query.options(loader(attribute))

    def quirk(self, setting: Setting, strategy: Strategy, sample: Sample) -> Outcome | None:
        """Async code reading a subclass column that each object would load on its own:
        MissingGreenlet, once the relationship's rows are in."""
        inherited = super().quirk(setting, strategy, sample)
        if inherited is not None:
            return inherited
        reads_plainly = strategy.reader == "attribute" and not strategy.implicit_io
        if setting.mode != "async" or not reads_plainly or strategy.refuses is not None:
            return None
        if not self._own_row_loads(strategy, sample):
            return None
        loaded = self.relationship.edge(strategy, sample, 0, len(sample.keys)).statements()
        return missing_greenlet(setting, completed=1 + loaded)

    def sql(self, strategy: Strategy, sample: Sample) -> LoadSql:
        load = self.relationship.sql(strategy, sample)
        return replace(load, edges=(*load.edges, *self._subclass_edges(strategy, sample)))

    def _loads_each_own_row(self, strategy: Strategy) -> bool:
        return self.loading == "subclasses" or (
            self.loading == "with_polymorphic" and strategy.sql == PER_KEY
        )

    def _own_row_loads(self, strategy: Strategy, sample: Sample) -> int:
        """SELECTs of one object's subclass row each, when its columns are read."""
        if strategy.sql == NONE or not self._loads_each_own_row(strategy):
            return 0
        return sum(sum(per_parent) for _, per_parent in sample.subclass_rows)

    def _subclass_edges(self, strategy: Strategy, sample: Sample) -> tuple[Edge, ...]:
        name = f"{self.relationship.name} (subclass rows)"
        own = self._own_row_loads(strategy, sample)
        if own:
            tables = names_of([mapper.local_table for mapper in self.subclasses])
            keys = len(self.subclasses[0].local_table.primary_key)
            return (Edge(name, tables, PER_KEY, own, parameters=keys),)
        if self.loading != "selectin_polymorphic" or strategy.sql == NONE:
            return ()
        # A lazy load is a query of its own, each parent's rows loaded on their own;
        # immediateload's loads are part of the root query's, done for all rows at once.
        apart = strategy.sql == PER_KEY and strategy.name != "immediate"
        mappers = {mapper.class_.__name__: mapper for mapper in self.subclasses}
        return tuple(
            Edge(
                name, mappers[class_name].local_table.name, IN, sum(per_parent),
                SELECTIN_CHUNK, levels=tuple(n for n in per_parent if n) if apart else (),
            )
            for class_name, per_parent in sample.subclass_rows
            if sum(per_parent)
        )  # fmt: skip

    def read(self, parent: Any) -> tuple:
        related = getattr(parent, self.relationship.name)
        ordered = rows_by_key(self.child, related)
        rows = [self.plain_row(child, self._columns_read(child)) for child in ordered]
        return (self._parent_row(parent), tuple(rows))

    async def read_awaiting(self, parent: Any) -> tuple:
        related = await getattr(parent.awaitable_attrs, self.relationship.name)
        rows = []
        for child in rows_by_key(self.child, related):
            values = [await getattr(child.awaitable_attrs, key) for key in self._keys_of(child)]
            rows.append(self.plain_row(child, values))
        return (self._parent_row(parent), tuple(rows))

    def _keys_of(self, child: Any) -> list[str]:
        """The subclass attributes ``child`` has, in ``subclass_columns`` order."""
        return [
            mapper.get_property_by_column(column).key
            for mapper, column in self.subclass_columns
            if isinstance(child, mapper.class_)
        ]

    def _columns_read(self, child: Any) -> list[Any]:
        return [getattr(child, key) for key in self._keys_of(child)]

    def plain_row(self, child: Any, values: list[Any]) -> tuple:
        """The base row, then each subclass column: its value, or None where ``child``
        is not of that subclass."""
        given = iter(values)
        own = tuple(
            next(given) if isinstance(child, mapper.class_) else None
            for mapper, _ in self.subclass_columns
        )
        return plain_row(self.child, self.relationship.child_columns, child) + own

    def _parent_row(self, parent: Any) -> tuple:
        return plain_row(self.parent, self.relationship.parent_columns, parent)

    def sample(self, connection: Connection, limit: int) -> Sample:
        """The relationship's sample with each related row's subclass columns, and the
        rows of each subclass under each parent."""
        relationship = self.relationship
        keys, parents = relationship.parents(connection, limit)
        related = relationship.related(connection, keys)
        child_keys = sorted({key for rows in related.values() for key, _ in rows})
        own = self._subclass_values(connection, child_keys)
        nothing = (None,) * len(self.subclass_columns)
        value = [
            (row, relationship.related_value(
                [(key, base + own.get(key, (None, nothing))[1]) for key, base in related.get(k, [])]
            ))
            for k, row in parents
        ]  # fmt: skip
        counts = tuple(
            (mapper.class_.__name__, tuple(
                sum(own.get(key, (None,))[0] is mapper for key, _ in related.get(k, []))
                for k in keys
            ))
            for mapper in self.subclasses
        )  # fmt: skip
        hops = (relationship.key_counts(keys, set(child_keys)),)
        subclassed = relationship.subclassed(connection, keys)
        return Sample(keys, hops, value, counts, subclassed_parents=subclassed)

    def _subclass_values(self, connection: Connection, keys: list[Any]) -> dict[Any, tuple]:
        """Per related key found in a subclass table: (its most derived such class, the
        subclass columns' values, None where the row is not of that subclass)."""
        found: dict[Any, tuple[Mapper, dict[Column, Any]]] = {}
        for mapper in self.subclasses:  # a subclass after the class it derives from
            columns = [column for m, column in self.subclass_columns if m is mapper]
            for key, values in subclass_rows(connection, self.child, mapper, columns, keys):
                known = found.get(key, (None, {}))[1]
                known.update(zip(columns, values, strict=True))
                found[key] = (mapper, known)
        return {
            key: (mapper, tuple(values.get(c) for _, c in self.subclass_columns))
            for key, (mapper, values) in found.items()
        }
