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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    RelationshipDirection,
    Session,
)

from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import UNDECLARED, Outcome, Setting, Works
from sqla_bench.scenarios.loaded import NO_SAMPLE, Relationship, Sample, joined_subclasses
from sqla_bench.scenarios.loaded_shapes import SUBCLASS_LOADINGS, Chain, Polymorphic, Tree
from sqla_bench.scenarios.loading import expected_load, not_applicable
from sqla_bench.scenarios.registry import STRATEGY, Case
from sqla_bench.scenarios.sql import LoadSql
from sqla_bench.scenarios.strategies import STRATEGIES, Strategy

DEFAULT_LIMIT = 20


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


# --- the cases --------------------------------------------------------------------------


class Samples(Protocol):
    """Where the cases find their samples: the harness prepares each target, then
    measures it (``sqla_bench.run.application.Workload``)."""

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
