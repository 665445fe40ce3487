"""Relationship loading: four shapes of object graph, each under every strategy.

Every strategy of one shape returns the same plain tuples, in both modes, so a test can
assert that they agree and a benchmark compares like with like. What each strategy is,
costs and sends is declared once in ``scenarios.strategies``; what a load must return is
computed from the dataset's definition (``Shape.expected_value``), never from a run.
Nested ``selectinload(User.posts).selectinload(Post.comments)`` is the ``selectin``
strategy of the ``users_with_posts_comments`` shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from sqlalchemy import Select, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import RelationshipDirection, RelationshipProperty, Session

from sqla_bench.scenarios.dataset import LABELS, RELATED, DatasetSize
from sqla_bench.scenarios.expect import (
    NotApplicable,
    Outcome,
    Raises,
    Setting,
    Works,
    missing_greenlet,
)
from sqla_bench.scenarios.models import POSTS, USERS, Base, EagerPost, EagerUser, Post, User, label
from sqla_bench.scenarios.registry import scenario
from sqla_bench.scenarios.sql import Edge, LoadSql
from sqla_bench.scenarios.strategies import STRATEGIES, Strategy

Tree = Mapping[str, "Tree"]
# Rows each table holds, from the dataset's definition: how many parents a LIMIT finds.
ROWS: dict[str, Callable[[DatasetSize], int]] = {
    USERS: lambda size: size.users,
    POSTS: lambda size: size.posts,
}


@dataclass(frozen=True)
class Shape:
    """A root entity and the relationships to load under it, as a nested tree."""

    root: type[Base]
    tree: Tree
    eager_root: type[Base] | None = None  # mapping with lazy="selectin" on the model
    write_only: Mapping[str, str] = field(default_factory=dict)  # collection -> WriteOnly

    def query(self, strategy: Strategy, limit: int) -> Select:
        root = self.eager_root if strategy.model_level else self.root
        options = _loader_options(root, self.tree, strategy.option)
        return select(root).order_by(root.id).limit(limit).options(*options)

    def lacks(self, strategy: Strategy) -> str | None:
        """What the strategy needs that the shape has not (a mapping, a collection)."""
        offered = {
            "model_mapping": self.eager_root is not None,
            "write_only_collection": bool(self.write_only),
        }
        if strategy.needs is not None and not offered[strategy.needs]:
            return f"{strategy.name} needs a {strategy.needs.replace('_', ' ')}"
        return None

    @property
    def table(self) -> str:
        return self.root.__table__.name

    def root_keys(self, size: DatasetSize, limit: int) -> range:
        """The parents a query with this LIMIT loads: the first ids, in id order."""
        return range(1, min(limit, ROWS[self.table](size)) + 1)

    def expected_value(
        self, setting: Setting, size: DatasetSize, limit: int, **_: Any
    ) -> list[tuple]:
        """What a load returns, from the dataset's definition alone (in every mode)."""
        return [
            _expected(size, self.table, key, self.root, self.tree)
            for key in self.root_keys(size, limit)
        ]

    def sql(self, strategy: Strategy, size: DatasetSize, limit: int) -> LoadSql:
        """The SQL a load with ``strategy`` must send, relationship by relationship."""
        edges = _edges(strategy, size, self.root, self.tree, list(self.root_keys(size, limit)), "")
        return LoadSql(self.table, tuple(edges), _link_tables(self.root, self.tree))


def _loader_options(cls: type[Base], tree: Tree, loader: Callable | None) -> list:
    if loader is None:
        return []
    options = []
    for name, subtree in tree.items():
        attribute = getattr(cls, name)
        nested = _loader_options(attribute.property.mapper.class_, subtree, loader)
        options.append(loader(attribute).options(*nested) if nested else loader(attribute))
    return options


def _relationship(cls: type[Base], name: str) -> RelationshipProperty:
    return inspect(cls).relationships[name]


def _expected(size: DatasetSize, table: str, key: int, cls: type[Base], tree: Tree) -> tuple:
    parts: list[Any] = [LABELS[table](size, key)]
    for name, subtree in tree.items():
        relationship = _relationship(cls, name)
        child, child_table = relationship.mapper.class_, relationship.mapper.local_table.name
        related = RELATED[(table, name)](size, key)
        if isinstance(related, int):
            parts.append(_expected(size, child_table, related, child, subtree))
        else:
            parts.append(tuple(_expected(size, child_table, k, child, subtree) for k in related))
    return tuple(parts)


def _edges(
    strategy: Strategy,
    size: DatasetSize,
    cls: type[Base],
    tree: Tree,
    parents: list[int],
    path: str,
) -> list[Edge]:
    """One ``Edge`` per relationship in ``tree``, with the keys its load goes over: one
    per parent, or for a many-to-one the distinct related keys (an object already in the
    session's identity map is not loaded again)."""
    table = cls.__table__.name
    edges = []
    for name, subtree in tree.items():
        relationship = _relationship(cls, name)
        children = _children(size, table, name, parents)
        many_to_one = relationship.direction is RelationshipDirection.MANYTOONE
        keys = len(set(children)) if many_to_one else len(parents)
        child_table = relationship.mapper.local_table.name
        edges.append(strategy.edge(f"{path}{name}", child_table, keys))
        child = relationship.mapper.class_
        edges += _edges(
            strategy, size, child, subtree, list(dict.fromkeys(children)), f"{path}{name}."
        )
    return edges


def _children(size: DatasetSize, table: str, name: str, parents: list[int]) -> list[int]:
    found: list[int] = []
    for parent in parents:
        related = RELATED[(table, name)](size, parent)
        found += [related] if isinstance(related, int) else list(related)
    return found


def _link_tables(cls: type[Base], tree: Tree) -> tuple[str, ...]:
    """The secondary tables of the shape's many-to-many relationships."""
    tables = []
    for name, subtree in tree.items():
        relationship = _relationship(cls, name)
        if relationship.secondary is not None:
            tables.append(relationship.secondary.name)
        tables += _link_tables(relationship.mapper.class_, subtree)
    return tuple(tables)


USERS_WITH_PROFILE = Shape(User, {"profile": {}})
USERS_WITH_POSTS = Shape(
    User, {"posts": {}}, eager_root=EagerUser, write_only={"posts": "post_stream"}
)
USERS_WITH_POSTS_COMMENTS = Shape(User, {"posts": {"comments": {}}})
POSTS_WITH_AUTHOR_COMMENTS_TAGS = Shape(
    Post, {"author": {}, "comments": {}, "tags": {}}, eager_root=EagerPost
)


# --- plain data ---------------------------------------------------------------------


def walk(obj: Base, tree: Tree, read: Callable[[Base, str], Any]) -> tuple:
    """``(label, related...)`` for an object and, recursively, what ``tree`` names."""
    return (label(obj), *(_plain(read(obj, name), subtree, read) for name, subtree in tree.items()))


def _plain(value: Any, tree: Tree, read: Callable) -> Any:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return tuple(walk(item, tree, read) for item in value)
    return walk(value, tree, read)


async def walk_async(obj: Base, tree: Tree, read: Callable[[Base, str], Any]) -> tuple:
    """``walk`` for readers that must be awaited."""
    parts: list[Any] = [label(obj)]
    for name, subtree in tree.items():
        value = await read(obj, name)
        if value is None:
            parts.append(None)
        elif isinstance(value, list | tuple):
            parts.append(tuple([await walk_async(item, subtree, read) for item in value]))
        else:
            parts.append(await walk_async(value, subtree, read))
    return tuple(parts)


async def _read_awaitable(obj: Base, name: str) -> Any:
    return await getattr(obj.awaitable_attrs, name)


# --- the two loaders the twins share -------------------------------------------------


def load(session: Session, shape: Shape, name: str, limit: int) -> list[tuple]:
    strategy = STRATEGIES[name]
    if strategy.only == "async":
        raise ValueError(f"strategy {name!r} exists only in async code")
    roots = session.scalars(shape.query(strategy, limit)).unique().all()
    read: Callable[[Base, str], Any] = getattr
    if strategy.reader == "write_only":

        def read(obj: Base, relationship: str) -> list:
            return session.scalars(getattr(obj, shape.write_only[relationship]).select()).all()

    return [walk(root, shape.tree, read) for root in roots]


async def load_async(session: AsyncSession, shape: Shape, name: str, limit: int) -> list:
    strategy = STRATEGIES[name]
    roots = (await session.scalars(shape.query(strategy, limit))).unique().all()
    if strategy.reader == "run_sync":
        return await session.run_sync(lambda _: [walk(r, shape.tree, getattr) for r in roots])
    if strategy.reader == "awaitable_attrs":
        return [await walk_async(root, shape.tree, _read_awaitable) for root in roots]
    if strategy.reader == "write_only":

        async def read(obj: Base, relationship: str) -> list:
            collection = getattr(obj, shape.write_only[relationship])
            return (await session.scalars(collection.select())).all()

        return [await walk_async(root, shape.tree, read) for root in roots]
    return [walk(root, shape.tree, getattr) for root in roots]


# --- what a load must do ------------------------------------------------------------------


class LoadShape(Protocol):
    """What ``expected_load`` asks of a shape: ours, or an application's relationship
    (``scenarios.relationships``)."""

    def lacks(self, strategy: Strategy) -> str | None: ...
    def sql(self, strategy: Strategy, size: DatasetSize, limit: int) -> LoadSql: ...


def not_applicable(shape: LoadShape, setting: Setting, strategy: str) -> NotApplicable | None:
    """Why the strategy does not apply to this shape in this mode, if it does not."""
    declared = STRATEGIES[strategy]
    lacking = shape.lacks(declared)
    if lacking is not None:
        return NotApplicable(lacking)
    if declared.only is not None and setting.mode != declared.only:
        return NotApplicable(f"{declared.only} only")
    return None


def expected_load(
    shape: LoadShape, setting: Setting, size: DatasetSize, strategy: str, limit: int
) -> Outcome:
    """Per strategy: not applicable, raises, or works with the statements and SQL its
    declaration implies for this dataset (``expectation(shape)`` binds the shape)."""
    declared = STRATEGIES[strategy]
    inapplicable = not_applicable(shape, setting, strategy)
    if inapplicable is not None:
        return inapplicable
    sql = shape.sql(declared, size, limit)
    reads_a_relationship = bool(sql.edges) and sql.edges[0].keys > 0
    if declared.refuses is not None and reads_a_relationship:
        return Raises(declared.refuses, 1)
    if declared.implicit_io and setting.mode == "async" and reads_a_relationship:
        return missing_greenlet(setting, completed=1)
    return Works(1 + sum(edge.statements() for edge in sql.edges), sql=sql)


def expectation(shape: Shape) -> Callable[..., Outcome]:
    return partial(expected_load, shape)


def _declare(case_id: str, shape: Shape) -> Callable:
    return scenario(
        case_id,
        expect=expectation(shape),
        returns=shape.expected_value,
        params={"strategy": tuple(STRATEGIES), "limit": (20,)},
    )


@_declare("load.users_with_profile", USERS_WITH_PROFILE)
def users_with_profile(session: Session, strategy: str, limit: int) -> list[tuple]:
    """Users with their profile (one-to-one)."""
    return load(session, USERS_WITH_PROFILE, strategy, limit)


@users_with_profile.twin
async def users_with_profile_async(session: AsyncSession, strategy: str, limit: int) -> list:
    return await load_async(session, USERS_WITH_PROFILE, strategy, limit)


@_declare("load.users_with_posts", USERS_WITH_POSTS)
def users_with_posts(session: Session, strategy: str, limit: int) -> list[tuple]:
    """Users with their posts (one-to-many)."""
    return load(session, USERS_WITH_POSTS, strategy, limit)


@users_with_posts.twin
async def users_with_posts_async(session: AsyncSession, strategy: str, limit: int) -> list:
    return await load_async(session, USERS_WITH_POSTS, strategy, limit)


@_declare("load.users_with_posts_comments", USERS_WITH_POSTS_COMMENTS)
def users_with_posts_comments(session: Session, strategy: str, limit: int) -> list[tuple]:
    """Users with their posts and each post's comments (nested one-to-many)."""
    return load(session, USERS_WITH_POSTS_COMMENTS, strategy, limit)


@users_with_posts_comments.twin
async def users_with_posts_comments_async(session: AsyncSession, strategy: str, limit: int) -> list:
    return await load_async(session, USERS_WITH_POSTS_COMMENTS, strategy, limit)


@_declare("load.posts_with_author_comments_tags", POSTS_WITH_AUTHOR_COMMENTS_TAGS)
def posts_with_author_comments_tags(session: Session, strategy: str, limit: int) -> list:
    """Posts with their author, comments and tags (many-to-one, one-to-many, many-to-many)."""
    return load(session, POSTS_WITH_AUTHOR_COMMENTS_TAGS, strategy, limit)


@posts_with_author_comments_tags.twin
async def posts_with_author_comments_tags_async(
    session: AsyncSession, strategy: str, limit: int
) -> list:
    return await load_async(session, POSTS_WITH_AUTHOR_COMMENTS_TAGS, strategy, limit)
