"""An application's relationships as loading cases, verified like the built-in shapes.

``relationship_cases`` builds one case per relationship of an application's models, id
``models.Class.attr``, with the parameters of ``scenarios.loading``'s cases (``strategy``
and ``limit``, the parents a load samples), sync and async twins, and the same
expectation (``expected_load``): the statements and SQL each strategy's declaration
implies, MissingGreenlet where async code would lazy-load, raiseload's error.

What a load must return and how many keys its relationship goes over come from a
``Sample``: the parents' primary keys (a tuple each, when composite), sampled evenly
over the parent class's rows, and the rows one query of plain columns finds for them
over the relationship's join (the related class aliased, so a self-referential or
same-hierarchy join reads its table twice), a path that uses none of the loader
strategies it checks. Plain data is each row's mapped columns, an inherited table's
included (deferred ones left out: reading them is a load of its own), a collection's
rows in primary-key order.

Any relationship kind is measured: inheritance (joined and single-table, the
discriminator tested as SQLAlchemy does), composite primary and foreign keys (an IN list
of tuples), association objects, self-referential adjacency lists, custom join
conditions and many-to-ones onto columns other than the key. What the session already
holds changes a self-referential many-to-one's statements: a lazy load sends none for a
related row that is one of the loaded parents, so the count comes from the sample.

Beyond one relationship: the two hops through an association object (``Chain``), a
self-referential collection read as a tree to a depth (``Tree``), and a collection of a
polymorphic class read whole, once per way of loading its subclass rows
(``Polymorphic``). Where SQLAlchemy does what no strategy's declaration implies, the
case declares it with its evidence (``quirk``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Protocol

from sqlalchemy import BindParameter, Column, Connection, Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncSession
from sqlalchemy.orm import (
    Mapper,
    RelationshipDirection,
    RelationshipProperty,
    Session,
    aliased,
    defaultload,
    with_polymorphic,
)
from sqlalchemy.sql import visitors

from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import UNDECLARED, Outcome, Setting, Works, missing_greenlet
from sqla_bench.scenarios.loading import expected_load, not_applicable
from sqla_bench.scenarios.registry import STRATEGY, Case
from sqla_bench.scenarios.sql import IN, JOINED, NONE, PER_KEY, SUBQUERY, Edge, LoadSql
from sqla_bench.scenarios.strategies import SELECTIN_CHUNK, STRATEGIES, Strategy

CASE_PREFIX = "models"
DEFAULT_LIMIT = 20
# Keys read, in order, to sample parents from: enough for an even spread over the tables
# an application measures, few enough to read in a moment.
SCANNED_KEYS = 1_000_000
KINDS = {
    RelationshipDirection.ONETOMANY: "one-to-many",
    RelationshipDirection.MANYTOONE: "many-to-one",
    RelationshipDirection.MANYTOMANY: "many-to-many",
}
UNLOADABLE = ("dynamic", "write_only", "noload")  # not an attribute a loader option fills


@dataclass(frozen=True)
class Sample:
    """The sampled parents of one relationship on one database, and what a load of them
    must return and go over."""

    keys: tuple[Any, ...]  # parent primary keys (a tuple each, when composite), in order
    # Per relationship loaded (one, or two for a chain through an association object):
    # (keys an IN list goes over, SELECTs loading one parent's at a time send); see
    # ``Relationship.key_counts``.
    hops: tuple[tuple[int, int], ...]
    value: list[tuple]  # (parent row, related rows), per parent
    # A polymorphic class's related rows per subclass with a table of its own: (class
    # name, rows of that class under each parent, in ``keys`` order).
    subclass_rows: tuple[tuple[str, tuple[int, ...]], ...] = ()
    subclassed_parents: int = 0  # parents of a subclass with a table of its own


NO_SAMPLE = Sample((), ((0, 0),), [])  # before a target is seeded: enough to say what applies


class Loaded:
    """What every case built from an application's relationships shares: its id, named
    after its title, and no surprise unless it declares one."""

    @property
    def title(self) -> str:
        raise NotImplementedError

    @property
    def case_id(self) -> str:
        return f"{CASE_PREFIX}.{self.title}"

    def quirk(self, setting: Setting, strategy: Strategy, sample: Sample) -> Outcome | None:
        """What SQLAlchemy does here that the strategies' declarations do not imply."""
        return None


class OnOneRelationship(Loaded):
    """A case built on one relationship (``self.relationship``): its parent class, its
    tables, what it lacks for a strategy and its quirks are the relationship's."""

    relationship: Relationship  # a field of each dataclass that derives from this

    @property
    def parent(self) -> Mapper:
        return self.relationship.parent

    @property
    def tables(self) -> tuple[Any, ...]:
        return self.relationship.tables

    def lacks(self, strategy: Strategy) -> str | None:
        return self.relationship.lacks(strategy)

    def quirk(self, setting: Setting, strategy: Strategy, sample: Sample) -> Outcome | None:
        return self.relationship.quirk(setting, strategy, sample)


@dataclass(frozen=True)
class Relationship(Loaded):
    """One relationship of an application's mapped class."""

    parent: Mapper
    name: str

    @property
    def prop(self) -> RelationshipProperty:
        return self.parent.relationships[self.name]

    @property
    def child(self) -> Mapper:
        return self.prop.mapper

    @property
    def title(self) -> str:
        return f"{self.parent.class_.__name__}.{self.name}"

    @property
    def doc(self) -> str:
        return f"{self.kind} from {self.parent.class_.__name__} to {self.child.class_.__name__}"

    @property
    def kind(self) -> str:
        if self.prop.direction is RelationshipDirection.ONETOMANY and not self.prop.uselist:
            return "one-to-one"
        return KINDS[self.prop.direction]

    @property
    def tables(self) -> tuple[Any, ...]:
        """The tables a load reads: the parent's, the child's (and its subclasses' own,
        a related row may be of one), a many-to-many's link."""
        link = (self.prop.secondary,) if self.prop.secondary is not None else ()
        subclasses = tuple(m.local_table for m in joined_subclasses(self.child))
        return (self.parent.local_table, self.child.local_table, *subclasses, *link)

    def unhandled(self) -> tuple[str, ...]:
        """Every reason this relationship cannot be measured here (none: it can)."""
        prop, found = self.prop, []
        if prop.lazy in UNLOADABLE:
            found.append(f"lazy={prop.lazy!r}: not an attribute a loader option fills")
        for mapper, role in ((self.parent, "its class"), (self.child, "the related class")):
            if mapper.concrete:
                found.append(
                    f"{role} {mapper.class_.__name__} uses concrete-table inheritance, whose "
                    "rows are in several unrelated tables"
                )
        if prop.secondary is not None and self.shares_tables:
            found.append("a self-referential many-to-many: its link table is read twice")
        return tuple(found)

    @property
    def shares_tables(self) -> bool:
        """Whether parent and child rows come from a table in common (self-referential,
        or both classes of one hierarchy): the sample's join aliases the child."""
        return bool(set(self.parent.tables) & set(self.child.tables))

    @property
    def uses_get(self) -> bool:
        """A many-to-one onto the related class's primary key: a lazy load looks in the
        session's identity map before it sends a SELECT, and selectin queries the keys."""
        if self.prop.direction is not RelationshipDirection.MANYTOONE:
            return False
        remote = {self.child.get_property_by_column(r).key for _, r in self.prop.local_remote_pairs}
        primary = {self.child.get_property_by_column(c).key for c in self.child.primary_key}
        return remote == primary

    def lacks(self, strategy: Strategy) -> str | None:
        """What a strategy needs that this relationship has not."""
        lazy = self.prop.lazy
        if strategy.needs == "model_mapping" and lazy != "selectin":
            return f"{strategy.name} needs the relationship declared lazy='selectin'"
        if strategy.needs == "write_only_collection":
            return f"{strategy.name} needs a WriteOnlyMapped collection"
        if strategy.reader == "awaitable_attrs" and not issubclass(self.parent.class_, AsyncAttrs):
            return f"{strategy.name} needs the AsyncAttrs mixin on {self.parent.class_.__name__}"
        if strategy.option is None and not strategy.model_level and lazy != "select":
            return f"{strategy.name} reads the relationship's own loader, lazy={lazy!r}"
        return None

    # --- the load -----------------------------------------------------------------------

    def query(self, strategy: Strategy, keys: Sequence[Any]) -> Select:
        cls = self.parent.class_
        key = _key(self.parent, cls)
        query = select(cls).where(key.in_(keys)).order_by(*_key_columns(self.parent, cls))
        if strategy.option is None:
            return query
        return query.options(strategy.option(getattr(cls, self.name)))

    def sql(self, strategy: Strategy, sample: Sample) -> LoadSql:
        link = (self.prop.secondary.name,) if self.prop.secondary is not None else ()
        return LoadSql(
            _names(self.parent.tables),
            (self.edge(strategy, sample, 0, len(sample.keys)),),
            link,
            discriminators=self.discriminators,
        )

    def edge(
        self, strategy: Strategy, sample: Sample, hop: int, parents: int, name: str = ""
    ) -> Edge:
        """What loading this relationship sends, as the ``hop``-th of a load over
        ``parents`` parents: an IN list over the sample's related keys, loads one at a
        time the SELECTs the sample needs, a refusal each parent."""
        in_keys, lazy = sample.hops[hop]
        keys = {PER_KEY: lazy, IN: in_keys}.get(strategy.sql, parents)
        return Edge(
            name or self.name,
            _names(self.child.tables),
            strategy.sql,
            keys,
            strategy.chunk,
            parameters=self._lazy_parameters,
        )

    @cached_property
    def _lazy_parameters(self) -> int:
        """Values bound to a SELECT that loads one parent's: its key columns, the
        literals of a custom join condition, a single-table subclass's discriminators."""
        prop = self.prop
        tables = set(self.parent.tables)
        local = {column for column, _ in prop.local_remote_pairs if column.table in tables}
        literals = [
            node
            for condition in (prop.primaryjoin, prop.secondaryjoin)
            if condition is not None
            for node in visitors.iterate(condition)
            if isinstance(node, BindParameter)
        ]
        return len(local) + len(literals) + len(_identities(self.child))

    @cached_property
    def discriminators(self) -> tuple[str, ...]:
        """``table.column`` of each single-table discriminator a statement may test with
        an IN list of its own: no list of keys."""
        return tuple(
            f"{m.polymorphic_on.table.name}.{m.polymorphic_on.name}"
            for m in (self.parent, self.child)
            if _identities(m)
        )

    @cached_property
    def parent_columns(self) -> tuple[Column, ...]:
        return plain_columns(self.parent)

    @cached_property
    def child_columns(self) -> tuple[Column, ...]:
        return plain_columns(self.child)

    def plain(self, parent: Any, related: Any) -> tuple:
        """``(parent row, related)`` as plain data, from loaded objects."""
        row = _row(self.parent, self.parent_columns, parent)
        if related is None:
            return (row, None)
        if isinstance(related, list | tuple | set):
            rows = sorted(related, key=lambda child: self.child.primary_key_from_instance(child))
            return (row, tuple(_row(self.child, self.child_columns, child) for child in rows))
        return (row, _row(self.child, self.child_columns, related))

    def read(self, parent: Any) -> tuple:
        """What a load gave for one parent, as plain data (attributes read in sync code)."""
        return self.plain(parent, getattr(parent, self.name))

    async def read_awaiting(self, parent: Any) -> tuple:
        """``read`` with every relationship awaited (``obj.awaitable_attrs``)."""
        return self.plain(parent, await getattr(parent.awaitable_attrs, self.name))

    # --- what it must return, read with Core ----------------------------------------------

    def sample(self, connection: Connection, limit: int) -> Sample:
        """``limit`` parents spread evenly over the parent class's keys, and the rows the
        relationship's join condition relates to them."""
        keys, parents = self.parents(connection, limit)
        related = self.related(connection, keys)
        value = [(row, self.related_value(related.get(k, []))) for k, row in parents]
        found = {child_key for rows in related.values() for child_key, _ in rows}
        hops = (self.key_counts(keys, found),)
        return Sample(keys, hops, value, subclassed_parents=self.subclassed(connection, keys))

    def subclassed(self, connection: Connection, keys: Sequence[Any]) -> int:
        """How many of the parents ``keys`` are of a subclass with a table of its own."""
        return len({
            key
            for mapper in joined_subclasses(self.parent)
            for key, _ in subclass_rows(connection, self.parent, mapper, (), keys)
        })  # fmt: skip

    def quirk(self, setting: Setting, strategy: Strategy, sample: Sample) -> Outcome | None:
        """What SQLAlchemy does here that the strategies' declarations do not imply.

        ``immediateload`` of a relationship of a class whose subclasses have tables of
        their own loads nothing while the query runs once a parent row is of such a
        subclass: each parent's relationship loads when it is read instead (SQLAlchemy
        issue #13204; a fix is proposed in pull request #13348). Seen on 2.0.58 and 2.1.9
        with every driver here: sync code sends the same statements, later; async code
        raises MissingGreenlet at the first read, after the root query."""
        if strategy.name != "immediate" or setting.mode != "async":
            return None
        if sample.subclassed_parents and sample.hops[0][1]:
            return missing_greenlet(setting, completed=1)
        return None

    def parents(self, connection: Connection, limit: int) -> tuple[tuple, list[tuple]]:
        """The sampled parents' keys, and (key, plain row) of each, in key order."""
        cls = self.parent.class_
        key_columns = _key_columns(self.parent, cls)
        # In key order as Python sorts them: the order the load's ORDER BY must give,
        # whatever order a result comes back in.
        scanned = sorted(
            map(_plain_key, connection.execute(
                select(*key_columns).order_by(*key_columns).limit(SCANNED_KEYS)
            ))
        )  # fmt: skip
        keys = tuple(_evenly(scanned, limit))
        parent_columns = _attributes(self.parent, cls, self.parent_columns)
        parents = sorted(
            (
                (_plain_key(row[: len(key_columns)]), tuple(row[len(key_columns) :]))
                for row in connection.execute(
                    select(*key_columns, *parent_columns).where(_key(self.parent, cls).in_(keys))
                )
            ),
            key=lambda pair: pair[0],
        )
        return keys, parents

    def related(self, connection: Connection, keys: Sequence[Any]) -> dict[Any, list[tuple]]:
        """Per parent key: (related key, plain related row) of each related row."""
        related: dict[Any, list[tuple]] = defaultdict(list)
        for parent_key, child_key, row in self._related_rows(connection, keys):
            related[parent_key].append((child_key, row))
        return related

    def key_counts(self, keys: tuple, found: set) -> tuple[int, int]:
        """(keys an IN list goes over, SELECTs a load one parent at a time sends).

        A many-to-one onto the key queries each distinct related key once, and a lazy
        load sends no SELECT for a key the session holds already: in a self-referential
        one, a related row that is also one of the loaded parents. Any other relationship
        goes over the parents, a SELECT each."""
        if not self.uses_get:
            return len(keys), len(keys)
        same_identities = self.parent.base_mapper is self.child.base_mapper
        held = set(keys) if same_identities else set()
        return len(found), len(found - held)

    def _related_rows(self, connection: Connection, keys: Sequence[Any]) -> list[tuple]:
        """(parent key, related key, related row) over the relationship's join, the
        related class aliased so that a table it shares with the parent is read twice."""
        cls = self.parent.class_
        child = aliased(self.child.class_, flat=True)
        parent_key = _key_columns(self.parent, cls)
        child_key = _key_columns(self.child, child)
        columns = _attributes(self.child, child, self.child_columns)
        query = (
            select(*parent_key, *child_key, *columns)
            .join_from(cls, child, getattr(cls, self.name))
            .where(_key(self.parent, cls).in_(keys))
        )
        split = (len(parent_key), len(parent_key) + len(child_key))
        return [
            (
                _plain_key(row[: split[0]]),
                _plain_key(row[split[0] : split[1]]),
                tuple(row[split[1] :]),
            )
            for row in connection.execute(query)
        ]

    def related_value(self, rows: list[tuple[Any, tuple]]) -> Any:
        """What the relationship holds, as plain data, from (related key, row) pairs."""
        if self.prop.uselist:
            return tuple(row for _, row in sorted(rows, key=lambda pair: pair[0]))
        return rows[0][1] if rows else None


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
            _names(self.parent.tables), edges, tuple(links), discriminators=discriminators
        )

    def read(self, parent: Any) -> tuple:
        children = getattr(parent, self.first.name)
        read = [self.second.read(child) for child in _by_key(self.first.child, children)]
        return self._plain(parent, read)

    async def read_awaiting(self, parent: Any) -> tuple:
        children = await getattr(parent.awaitable_attrs, self.first.name)
        ordered = _by_key(self.first.child, children)
        read = [await self.second.read_awaiting(child) for child in ordered]
        return self._plain(parent, read)

    def _plain(self, parent: Any, children: list[tuple]) -> tuple:
        first = self.first
        return (_row(first.parent, first.parent_columns, parent), tuple(children))

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
        return LoadSql(_names(self.parent.tables), (edge,))

    def read(self, parent: Any) -> tuple:
        return self._read(parent, 1, lambda node: getattr(node, self.relationship.name))

    async def read_awaiting(self, parent: Any) -> tuple:
        name = self.relationship.name
        row = self._row(parent)
        if self.depth < 1:
            return (row,)
        children = await getattr(parent.awaitable_attrs, name)
        nested = [await self._read_awaiting(child, 2) for child in _by_key(self.parent, children)]
        return (row, tuple(nested))

    async def _read_awaiting(self, node: Any, level: int) -> tuple:
        if level > self.depth:
            return (self._row(node),)
        children = await getattr(node.awaitable_attrs, self.relationship.name)
        ordered = _by_key(self.parent, children)
        nested = [await self._read_awaiting(child, level + 1) for child in ordered]
        return (self._row(node), tuple(nested))

    def _read(self, node: Any, level: int, children_of: Any) -> tuple:
        if level > self.depth:
            return (self._row(node),)
        ordered = _by_key(self.parent, children_of(node))
        nested = [self._read(child, level + 1, children_of) for child in ordered]
        return (self._row(node), tuple(nested))

    def _row(self, node: Any) -> tuple:
        return _row(self.parent, self.relationship.parent_columns, node)

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
            tables = _names([mapper.local_table for mapper in self.subclasses])
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
        ordered = _by_key(self.child, related)
        rows = [self._row(child, self._columns_read(child)) for child in ordered]
        return (self._parent_row(parent), tuple(rows))

    async def read_awaiting(self, parent: Any) -> tuple:
        related = await getattr(parent.awaitable_attrs, self.relationship.name)
        rows = []
        for child in _by_key(self.child, related):
            values = [await getattr(child.awaitable_attrs, key) for key in self._keys_of(child)]
            rows.append(self._row(child, values))
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

    def _row(self, child: Any, values: list[Any]) -> tuple:
        """The base row, then each subclass column: its value, or None where ``child``
        is not of that subclass."""
        given = iter(values)
        own = tuple(
            next(given) if isinstance(child, mapper.class_) else None
            for mapper, _ in self.subclass_columns
        )
        return _row(self.child, self.relationship.child_columns, child) + own

    def _parent_row(self, parent: Any) -> tuple:
        return _row(self.parent, self.relationship.parent_columns, parent)

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


Shape = Relationship | Chain | Tree | Polymorphic  # what a relationship case loads


def polymorphic_loads(relationships: Sequence[Relationship]) -> list[Polymorphic]:
    """Each one-to-many collection of a class with subclasses in tables of their own,
    once per way of loading the subclass rows; none where the mapping itself already
    says how they load (``with_polymorphic`` or ``polymorphic_load`` declared)."""
    return [
        Polymorphic(r, loading)
        for r in relationships
        if r.prop.direction is RelationshipDirection.ONETOMANY
        and r.prop.uselist and joined_subclasses(r.child)
        and r.child.with_polymorphic is None
        and not any(m.polymorphic_load for m in r.child.self_and_descendants)
        for loading in SUBCLASS_LOADINGS
    ]  # fmt: skip


def subclass_rows(
    connection: Connection,
    base: Mapper,
    subclass: Mapper,
    columns: Sequence[Column],
    keys: Sequence[Any],
) -> list[tuple[Any, tuple]]:
    """(key, values of ``columns``) for each of ``keys`` (``base``'s) that has a row in
    ``subclass``'s own table."""
    by_name = {subclass.get_property_by_column(c).key: c for c in subclass.local_table.primary_key}
    key_columns = [by_name[base.get_property_by_column(c).key] for c in base.primary_key]
    key = key_columns[0] if len(key_columns) == 1 else tuple_(*key_columns)
    found = []
    for start in range(0, len(keys), SELECTIN_CHUNK):
        chunk = keys[start : start + SELECTIN_CHUNK]
        for row in connection.execute(select(*key_columns, *columns).where(key.in_(chunk))):
            found.append((_plain_key(row[: len(key_columns)]), tuple(row[len(key_columns) :])))
    return found


def joined_subclasses(mapper: Mapper) -> tuple[Mapper, ...]:
    """The subclasses of ``mapper`` with a table of their own joined to its, each after
    the class it derives from."""
    return tuple(
        m
        for m in mapper.self_and_descendants
        if m is not mapper and not m.single and not m.concrete
    )


def trees(relationships: Sequence[Relationship]) -> list[Tree]:
    """Each self-referential collection (children of a row of the same class), read as
    a tree."""
    return [
        Tree(r)
        for r in relationships
        if r.prop.uselist and r.prop.secondary is None
        and r.parent.base_mapper is r.child.base_mapper
    ]  # fmt: skip


def association_chains(relationships: Sequence[Relationship]) -> list[Chain]:
    """Each collection of association objects followed by the many-to-one they hold to
    the other side: the two hops of a many-to-many with columns of its own."""
    found = []
    for first in relationships:
        association = first.child
        keys = list(association.primary_key)
        if not first.prop.uselist or first.prop.viewonly or len(keys) < 2:
            continue
        if not all(column.foreign_keys for column in keys):
            continue
        for second in relationships:
            if (
                second.parent is association
                and second.prop.direction is RelationshipDirection.MANYTOONE
                and second.child is not first.parent
            ):
                found.append(Chain(first, second))
    return found


def plain_columns(mapper: Mapper) -> tuple[Column, ...]:
    """The columns a load fills: the class's tables' (an inherited table's too), but
    for deferred ones."""
    tables = set(mapper.tables)
    return tuple(
        column
        for attribute in mapper.column_attrs
        if not attribute.deferred
        for column in attribute.columns[:1]
        if isinstance(column, Column) and column.table in tables
    )


def _key_columns(mapper: Mapper, entity: Any) -> tuple[Any, ...]:
    """The primary key's attributes on ``entity`` (the class, or an alias of it)."""
    return tuple(getattr(entity, mapper.get_property_by_column(c).key) for c in mapper.primary_key)


def _key(mapper: Mapper, entity: Any) -> Any:
    """The primary key as one expression: a tuple of columns when it is composite."""
    columns = _key_columns(mapper, entity)
    return columns[0] if len(columns) == 1 else tuple_(*columns)


def _plain_key(row: Sequence[Any]) -> Any:
    """A key's value as the queries bind it: the value itself, or a tuple of them."""
    return row[0] if len(row) == 1 else tuple(row)


def _attributes(mapper: Mapper, entity: Any, columns: Sequence[Column]) -> list[Any]:
    return [getattr(entity, mapper.get_property_by_column(column).key) for column in columns]


def _identities(mapper: Mapper) -> tuple[Any, ...]:
    """A single-table subclass's discriminator values, which its queries test for; none
    for any other class."""
    if not mapper.single or mapper.polymorphic_on is None:
        return ()
    return tuple(m.polymorphic_identity for m in mapper.self_and_descendants)


def _names(tables: Sequence[Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(table.name for table in tables))


def _by_key(mapper: Mapper, objects: Any) -> list[Any]:
    """``objects`` of ``mapper`` in the order of their primary keys, as the values read
    with Core are (a collection's own order is the load's, which strategies differ on)."""
    return sorted(objects, key=mapper.primary_key_from_instance)


def _row(mapper: Mapper, columns: tuple[Column, ...], obj: Any) -> tuple:
    return tuple(getattr(obj, mapper.get_property_by_column(column).key) for column in columns)


def _evenly(keys: Sequence[Any], count: int) -> list[Any]:
    """``count`` of ``keys`` spread evenly from the first, in order."""
    if count >= len(keys):
        return list(keys)
    step = len(keys) / count
    return [keys[int(i * step)] for i in range(count)]


# --- the cases --------------------------------------------------------------------------


class Samples(Protocol):
    """Where the cases find their samples: the harness prepares each target, then
    measures it (``bench.application.Workload``)."""

    def sample(self, relationship: Shape, target: str | None, limit: int) -> Sample | None:
        """The sample on ``target`` (None: the target being measured), or None before that
        target is prepared."""


def relationship_cases(relationships: Sequence[Shape], samples: Samples) -> list[Case]:
    return [_case(relationship, samples) for relationship in relationships]


def _case(relationship: Shape, samples: Samples) -> Case:
    def keys(limit: int) -> tuple[Any, ...]:
        sample = samples.sample(relationship, None, limit)
        if sample is None:
            raise RuntimeError(f"{relationship.case_id}: no sample: the target is not prepared")
        return sample.keys

    def load(session: Session, strategy: str, limit: int) -> list[tuple]:
        return _load(session, relationship, STRATEGIES[strategy], keys(limit))

    async def load_async(session: AsyncSession, strategy: str, limit: int) -> list[tuple]:
        return await _load_async(session, relationship, STRATEGIES[strategy], keys(limit))

    def expect(setting: Setting, size: DatasetSize, strategy: str, limit: int) -> Outcome:
        inapplicable = not_applicable(_Bound(relationship, NO_SAMPLE), setting, strategy)
        if inapplicable is not None:
            return inapplicable
        sample = samples.sample(relationship, setting.target, limit)
        if sample is None:  # it applies; what it must do is known once the target is seeded
            return Works(None)
        quirk = relationship.quirk(setting, STRATEGIES[strategy], sample)
        if quirk is not None:
            return quirk
        return expected_load(_Bound(relationship, sample), setting, size, strategy, limit)

    def returns(setting: Setting, size: DatasetSize, strategy: str, limit: int) -> Any:
        sample = samples.sample(relationship, setting.target, limit)
        return UNDECLARED if sample is None else sample.value

    params = {STRATEGY: tuple(STRATEGIES), "limit": (DEFAULT_LIMIT,)}
    doc = relationship.doc
    return Case(
        "scenario", relationship.case_id, doc, expect, params,
        sync=load, async_=load_async, returns=returns,
    )  # fmt: skip


@dataclass(frozen=True)
class _Bound:
    """A relationship with the keys its sample goes over, as ``expected_load`` asks."""

    relationship: Shape
    sample: Sample

    def lacks(self, strategy: Strategy) -> str | None:
        return self.relationship.lacks(strategy)

    def sql(self, strategy: Strategy, size: DatasetSize, limit: int) -> LoadSql:
        return self.relationship.sql(strategy, self.sample)


def _load(session: Session, relationship: Shape, strategy: Strategy, keys: tuple) -> list:
    if strategy.only == "async":
        raise ValueError(f"strategy {strategy.name!r} exists only in async code")
    parents = session.scalars(relationship.query(strategy, keys)).unique().all()
    return [relationship.read(parent) for parent in parents]


async def _load_async(
    session: AsyncSession,
    relationship: Shape,
    strategy: Strategy,
    keys: tuple,
) -> list:
    parents = (await session.scalars(relationship.query(strategy, keys))).unique().all()
    if strategy.reader == "run_sync":

        def read(_: Session) -> list:
            return [relationship.read(p) for p in parents]

        return await session.run_sync(read)
    if strategy.reader == "awaitable_attrs":
        return [await relationship.read_awaiting(p) for p in parents]
    return [relationship.read(parent) for parent in parents]
