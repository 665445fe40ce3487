"""An application's relationships as loading cases, verified like the built-in shapes.

``relationship_cases`` builds one case per relationship of an application's models, id
``models.Class.attr``, with the parameters of ``scenarios.loading``'s cases (``strategy``
and ``limit``, the parents a load samples), sync and async twins, and the same
expectation (``expected_load``): the statements and SQL each strategy's declaration
implies, MissingGreenlet where async code would lazy-load, raiseload's error.

What a load must return and how many keys its relationship goes over come from a
``Sample``: the parents' primary keys, sampled evenly over the table, and the rows a
Core query over the relationship's own join condition finds for them, a path that
shares nothing with the ORM loading it checks. Plain data is each row's mapped columns
(deferred ones left out: reading them is a load of its own), a collection's rows in
primary-key order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from sqlalchemy import Column, Connection, Select, select
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncSession
from sqlalchemy.orm import Mapper, RelationshipDirection, RelationshipProperty, Session
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList

from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import UNDECLARED, Outcome, Setting, Works
from sqla_bench.scenarios.loading import expected_load, not_applicable
from sqla_bench.scenarios.registry import STRATEGY, Case
from sqla_bench.scenarios.sql import Edge, LoadSql
from sqla_bench.scenarios.strategies import STRATEGIES, Strategy

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

    keys: tuple[Any, ...]  # parent primary keys, in key order
    related_keys: int  # keys a load goes over: distinct related keys for a many-to-one
    value: list[tuple]  # (parent row, related rows), per parent


@dataclass(frozen=True)
class Relationship:
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
    def case_id(self) -> str:
        return f"{CASE_PREFIX}.{self.title}"

    @property
    def kind(self) -> str:
        if self.prop.direction is RelationshipDirection.ONETOMANY and not self.prop.uselist:
            return "one-to-one"
        return KINDS[self.prop.direction]

    @property
    def tables(self) -> tuple[Any, ...]:
        """The tables a load reads: the parent's, the child's, a many-to-many's link."""
        link = (self.prop.secondary,) if self.prop.secondary is not None else ()
        return (self.parent.local_table, self.child.local_table, *link)

    def unhandled(self) -> str | None:
        """Why this relationship cannot be measured here, if it cannot."""
        prop = self.prop
        if prop.lazy in UNLOADABLE:
            return f"lazy={prop.lazy!r}: not an attribute a loader option fills"
        for mapper, role in ((self.parent, "its class"), (self.child, "the related class")):
            if mapper.inherits is not None or mapper.polymorphic_on is not None:
                name = mapper.class_.__name__
                return f"{role} {name} uses inheritance, which loads from several tables"
            if len(mapper.primary_key) != 1:
                return f"{role} {mapper.class_.__name__} has a composite primary key"
        if self.parent.local_table is self.child.local_table:
            return "self-referential: which rows the session holds already changes the statements"
        if len(prop.local_remote_pairs or ()) != (2 if prop.secondary is not None else 1):
            return "a composite foreign key"
        custom = _custom_condition(prop)
        if custom is not None:
            return (
                f"a custom join condition ({custom}): only equality along a foreign key is "
                "seeded and sampled"
            )
        if prop.direction is RelationshipDirection.MANYTOONE:
            remote = [r for _, r in prop.local_remote_pairs]
            if remote != list(self.child.primary_key):
                return "a many-to-one onto columns other than the primary key"
        return None

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
        key = self.parent.primary_key[0]
        query = select(cls).where(key.in_(keys)).order_by(key)
        if strategy.option is None:
            return query
        return query.options(strategy.option(getattr(cls, self.name)))

    def sql(self, strategy: Strategy, related_keys: int) -> LoadSql:
        edge = Edge(
            self.name, self.child.local_table.name, strategy.sql, related_keys, strategy.chunk
        )
        link = (self.prop.secondary.name,) if self.prop.secondary is not None else ()
        return LoadSql(self.parent.local_table.name, (edge,), link)

    @cached_property
    def _parent_columns(self) -> tuple[Column, ...]:
        return plain_columns(self.parent)

    @cached_property
    def _child_columns(self) -> tuple[Column, ...]:
        return plain_columns(self.child)

    def plain(self, parent: Any, related: Any) -> tuple:
        """``(parent row, related)`` as plain data, from loaded objects."""
        row = _row(self.parent, self._parent_columns, parent)
        if related is None:
            return (row, None)
        if isinstance(related, list | tuple | set):
            rows = sorted(related, key=lambda child: self.child.primary_key_from_instance(child))
            return (row, tuple(_row(self.child, self._child_columns, child) for child in rows))
        return (row, _row(self.child, self._child_columns, related))

    # --- what it must return, read with Core ----------------------------------------------

    def sample(self, connection: Connection, limit: int) -> Sample:
        """``limit`` parents spread evenly over the parent table's keys, and the rows the
        relationship's join condition relates to them."""
        key = self.parent.primary_key[0]
        # In key order as Python sorts them: the order the load's ORDER BY must give,
        # whatever order a result comes back in.
        scanned = sorted(connection.scalars(select(key).order_by(key).limit(SCANNED_KEYS)))
        keys = tuple(_evenly(scanned, limit))
        parents = sorted(
            connection.execute(select(key, *self._parent_columns).where(key.in_(keys))),
            key=lambda row: row[0],
        )
        related: dict[Any, list[tuple]] = defaultdict(list)
        for parent_key, child_id, *row in connection.execute(self._related_query(keys)):
            related[parent_key].append((child_id, tuple(row)))
        value = [(tuple(row), self._related_value(related.get(k, []))) for k, *row in parents]
        found = {child_id for rows in related.values() for child_id, _ in rows}
        many_to_one = self.prop.direction is RelationshipDirection.MANYTOONE
        return Sample(keys, len(found) if many_to_one else len(keys), value)

    def _related_query(self, keys: Sequence[Any]) -> Select:
        prop, key = self.prop, self.parent.primary_key[0]
        child_table = self.child.local_table
        if prop.secondary is not None:
            joined = self.parent.local_table.join(prop.secondary, prop.primaryjoin).join(
                child_table, prop.secondaryjoin
            )
        else:
            joined = self.parent.local_table.join(child_table, prop.primaryjoin)
        columns = (key, self.child.primary_key[0], *self._child_columns)
        return select(*columns).select_from(joined).where(key.in_(keys))

    def _related_value(self, rows: list[tuple[Any, tuple]]) -> Any:
        if self.prop.uselist:
            return tuple(row for _, row in sorted(rows, key=lambda pair: pair[0]))
        return rows[0][1] if rows else None


def plain_columns(mapper: Mapper) -> tuple[Column, ...]:
    """The columns a load fills: the mapped table's own, but for deferred ones."""
    return tuple(
        column
        for attribute in mapper.column_attrs
        if not attribute.deferred
        for column in attribute.columns[:1]
        if isinstance(column, Column) and column.table is mapper.local_table
    )


def _row(mapper: Mapper, columns: tuple[Column, ...], obj: Any) -> tuple:
    return tuple(getattr(obj, mapper.get_property_by_column(column).key) for column in columns)


def _evenly(keys: Sequence[Any], count: int) -> list[Any]:
    """``count`` of ``keys`` spread evenly from the first, in order."""
    if count >= len(keys):
        return list(keys)
    step = len(keys) / count
    return [keys[int(i * step)] for i in range(count)]


def _custom_condition(prop: RelationshipProperty) -> str | None:
    """The part of a join condition that is not equality along a foreign key, if any."""
    for condition in (prop.primaryjoin, prop.secondaryjoin):
        if condition is None:
            continue
        for node in visitors.iterate(condition):
            if isinstance(node, BooleanClauseList) and node.operator is not operators.and_:
                return str(node)
            if isinstance(node, BinaryExpression) and not _foreign_key_equality(node):
                return str(node)
    return None


def _foreign_key_equality(node: BinaryExpression) -> bool:
    left, right = node.left, node.right
    if node.operator is not operators.eq:
        return False
    if not (isinstance(left, Column) and isinstance(right, Column)):
        return False
    return left.references(right) or right.references(left)


# --- the cases --------------------------------------------------------------------------


class Samples(Protocol):
    """Where the cases find their samples: the harness prepares each target, then
    measures it (``bench.application.Workload``)."""

    def sample(self, relationship: Relationship, target: str | None, limit: int) -> Sample | None:
        """The sample on ``target`` (None: the target being measured), or None before that
        target is prepared."""


def relationship_cases(relationships: Sequence[Relationship], samples: Samples) -> list[Case]:
    return [_case(relationship, samples) for relationship in relationships]


def _case(relationship: Relationship, samples: Samples) -> Case:
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
        inapplicable = not_applicable(_Bound(relationship, 0), setting, strategy)
        if inapplicable is not None:
            return inapplicable
        sample = samples.sample(relationship, setting.target, limit)
        if sample is None:  # it applies; what it must do is known once the target is seeded
            return Works(None)
        return expected_load(
            _Bound(relationship, sample.related_keys), setting, size, strategy, limit
        )

    def returns(setting: Setting, size: DatasetSize, strategy: str, limit: int) -> Any:
        sample = samples.sample(relationship, setting.target, limit)
        return UNDECLARED if sample is None else sample.value

    parent, child = relationship.parent.class_.__name__, relationship.child.class_.__name__
    doc = f"{relationship.kind} from {parent} to {child}"
    params = {STRATEGY: tuple(STRATEGIES), "limit": (DEFAULT_LIMIT,)}
    return Case(
        "scenario", relationship.case_id, doc, expect, params,
        sync=load, async_=load_async, returns=returns,
    )  # fmt: skip


@dataclass(frozen=True)
class _Bound:
    """A relationship with the keys its sample goes over, as ``expected_load`` asks."""

    relationship: Relationship
    related_keys: int

    def lacks(self, strategy: Strategy) -> str | None:
        return self.relationship.lacks(strategy)

    def sql(self, strategy: Strategy, size: DatasetSize, limit: int) -> LoadSql:
        return self.relationship.sql(strategy, self.related_keys)


def _load(session: Session, relationship: Relationship, strategy: Strategy, keys: tuple) -> list:
    if strategy.only == "async":
        raise ValueError(f"strategy {strategy.name!r} exists only in async code")
    parents = session.scalars(relationship.query(strategy, keys)).unique().all()
    return [relationship.plain(parent, getattr(parent, relationship.name)) for parent in parents]


async def _load_async(
    session: AsyncSession, relationship: Relationship, strategy: Strategy, keys: tuple
) -> list:
    parents = (await session.scalars(relationship.query(strategy, keys))).unique().all()
    name = relationship.name
    if strategy.reader == "run_sync":

        def read(_: Session) -> list:
            return [relationship.plain(p, getattr(p, name)) for p in parents]

        return await session.run_sync(read)
    if strategy.reader == "awaitable_attrs":
        return [relationship.plain(p, await getattr(p.awaitable_attrs, name)) for p in parents]
    return [relationship.plain(parent, getattr(parent, name)) for parent in parents]
