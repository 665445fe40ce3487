"""One relationship of an application's models as a loading case's subject
(``Relationship``): the parents' keys sampled evenly, the rows a query of plain columns
finds for them over the relationship's join, and what each strategy must return and
send. The module ``sqla_bench.scenarios.relationships`` says how the cases are built and
verified."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import BindParameter, Column, Connection, Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import (
    Mapper,
    RelationshipDirection,
    RelationshipProperty,
    aliased,
)
from sqlalchemy.sql import visitors

from sqla_bench.scenarios.expect import Outcome, Setting, missing_greenlet
from sqla_bench.scenarios.sql import IN, PER_KEY, Edge, LoadSql
from sqla_bench.scenarios.strategies import SELECTIN_CHUNK, Strategy


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
        session's identity map before it sends a SELECT, and selectin queries the
        keys."""
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
            names_of(self.parent.tables),
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
            names_of(self.child.tables),
            strategy.sql,
            keys,
            strategy.chunk,
            parameters=self._lazy_parameters,
        )

    @cached_property
    def _lazy_parameters(self) -> int:
        """Values bound to a SELECT that loads one parent's: its key columns, the
        literals of a custom join condition, a single-table subclass's
        discriminators."""
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
        row = plain_row(self.parent, self.parent_columns, parent)
        if related is None:
            return (row, None)
        if isinstance(related, list | tuple | set):
            rows = sorted(related, key=lambda child: self.child.primary_key_from_instance(child))
            return (row, tuple(plain_row(self.child, self.child_columns, child) for child in rows))
        return (row, plain_row(self.child, self.child_columns, related))

    def read(self, parent: Any) -> tuple:
        """What a load gave for one parent, as plain data (attributes read in sync
        code)."""
        return self.plain(parent, getattr(parent, self.name))

    async def read_awaiting(self, parent: Any) -> tuple:
        """``read`` with every relationship awaited (``obj.awaitable_attrs``)."""
        return self.plain(parent, await getattr(parent.awaitable_attrs, self.name))

    # --- what it must return, read with Core ----------------------------------------------

    def sample(self, connection: Connection, limit: int) -> Sample:
        """``limit`` parents spread evenly over the parent class's keys, and the rows
        the relationship's join condition relates to them."""
        keys, parents = self.parents(connection, limit)
        related = self.related(connection, keys)
        value = [(row, self.related_value(related.get(k, []))) for k, row in parents]
        found = {child_key for rows in related.values() for child_key, _ in rows}
        hops = (self.key_counts(keys, found),)
        return Sample(keys, hops, value, subclassed_parents=self.subclassed(connection, keys))

    def subclassed(self, connection: Connection, keys: Sequence[Any]) -> int:
        """How many of the parents ``keys`` are of a subclass with a table of its
        own."""
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
        issue #13204; a fix is proposed in pull request #13348). Seen on 2.0.58 and
        2.1.9 with every driver here: sync code sends the same statements, later; async
        code raises MissingGreenlet at the first read, after the root query."""
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
        one, a related row that is also one of the loaded parents. Any other
        relationship goes over the parents, a SELECT each."""
        if not self.uses_get:
            return len(keys), len(keys)
        same_identities = self.parent.base_mapper is self.child.base_mapper
        held = set(keys) if same_identities else set()
        return len(found), len(found - held)

    def _related_rows(self, connection: Connection, keys: Sequence[Any]) -> list[tuple]:
        """(parent key, related key, related row) over the relationship's join, the
        related class aliased so that a table it shares with the parent is read
        twice."""
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


def names_of(tables: Sequence[Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(table.name for table in tables))


def rows_by_key(mapper: Mapper, objects: Any) -> list[Any]:
    """``objects`` of ``mapper`` in the order of their primary keys, as the values read
    with Core are (a collection's own order is the load's, which strategies differ
    on)."""
    return sorted(objects, key=mapper.primary_key_from_instance)


def plain_row(mapper: Mapper, columns: tuple[Column, ...], obj: Any) -> tuple:
    return tuple(getattr(obj, mapper.get_property_by_column(column).key) for column in columns)


def _evenly(keys: Sequence[Any], count: int) -> list[Any]:
    """``count`` of ``keys`` spread evenly from the first, in order."""
    if count >= len(keys):
        return list(keys)
    step = len(keys) / count
    return [keys[int(i * step)] for i in range(count)]


CASE_PREFIX = "models"


# Keys read, in order, to sample parents from: enough for an even spread over the tables
# an application measures, few enough to read in a moment.
SCANNED_KEYS = 1_000_000


KINDS = {
    RelationshipDirection.ONETOMANY: "one-to-many",
    RelationshipDirection.MANYTOONE: "many-to-one",
    RelationshipDirection.MANYTOMANY: "many-to-many",
}


UNLOADABLE = ("dynamic", "write_only", "noload")  # not an attribute a loader option fills


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
