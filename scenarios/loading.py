"""Relationship loading: four shapes of object graph, each under every strategy.

Every strategy of one shape returns the same plain tuples, in both modes, so a test can
assert that they agree and a benchmark compares like with like.

Strategies (``nested selectinload`` is ``selectin`` on ``users_with_posts_comments``):

- lazy: the default ``lazy="select"``; one SELECT per parent and relationship
- joined / selectin / subquery / immediate / raise: the matching loader option
- model_selectin: a mapping that declares ``lazy="selectin"`` on the model itself
- awaitable_attrs, run_sync: the two safe ways to load lazily in async code (async only)
- write_only: a ``WriteOnlyMapped`` collection read with its ``.select()``
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    Session,
    immediateload,
    joinedload,
    raiseload,
    selectinload,
    subqueryload,
)

from scenarios.dataset import DatasetSize
from scenarios.expect import NotApplicable, Outcome, Raises, Setting, Works, missing_greenlet
from scenarios.models import Base, EagerPost, EagerUser, Post, User, label
from scenarios.registry import scenario

Tree = Mapping[str, "Tree"]

LOADER_OPTIONS: dict[str, Callable[..., Any]] = {
    "joined": joinedload,
    "selectin": selectinload,
    "subquery": subqueryload,
    "immediate": immediateload,
    "raise": raiseload,
}
STRATEGIES = (
    "lazy",
    *LOADER_OPTIONS,
    "model_selectin",
    "awaitable_attrs",
    "run_sync",
    "write_only",
)
ASYNC_ONLY = ("awaitable_attrs", "run_sync")
# selectinload puts at most this many parent keys in one IN (...) (SQLAlchemy's default).
SELECTIN_CHUNK = 500


@dataclass(frozen=True)
class Shape:
    """A root entity and the relationships to load under it, as a nested tree."""

    root: type[Base]
    tree: Tree
    eager_root: type[Base] | None = None  # mapping with lazy="selectin" on the model
    write_only: Mapping[str, str] = field(default_factory=dict)  # collection -> WriteOnly

    def query(self, strategy: str, limit: int) -> Select:
        root = self.eager_root if strategy == "model_selectin" else self.root
        options = _loader_options(root, self.tree, LOADER_OPTIONS.get(strategy))
        return select(root).order_by(root.id).limit(limit).options(*options)

    def supports(self, strategy: str) -> bool:
        if strategy == "model_selectin":
            return self.eager_root is not None
        if strategy == "write_only":
            return bool(self.write_only)
        return True


def _loader_options(cls: type[Base], tree: Tree, loader: Callable | None) -> list:
    if loader is None:
        return []
    options = []
    for name, subtree in tree.items():
        attribute = getattr(cls, name)
        nested = _loader_options(attribute.property.mapper.class_, subtree, loader)
        options.append(loader(attribute).options(*nested) if nested else loader(attribute))
    return options


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


def load(session: Session, shape: Shape, strategy: str, limit: int) -> list[tuple]:
    if strategy in ASYNC_ONLY:
        raise ValueError(f"strategy {strategy!r} exists only in async code")
    roots = session.scalars(shape.query(strategy, limit)).unique().all()
    read: Callable[[Base, str], Any] = getattr
    if strategy == "write_only":

        def read(obj: Base, name: str) -> list:
            return session.scalars(getattr(obj, shape.write_only[name]).select()).all()

    return [walk(root, shape.tree, read) for root in roots]


async def load_async(session: AsyncSession, shape: Shape, strategy: str, limit: int) -> list:
    roots = (await session.scalars(shape.query(strategy, limit))).unique().all()
    if strategy == "run_sync":
        return await session.run_sync(lambda _: [walk(r, shape.tree, getattr) for r in roots])
    if strategy == "awaitable_attrs":
        return [await walk_async(root, shape.tree, _read_awaitable) for root in roots]
    if strategy == "write_only":

        async def read(obj: Base, name: str) -> list:
            return (await session.scalars(getattr(obj, shape.write_only[name]).select())).all()

        return [await walk_async(root, shape.tree, read) for root in roots]
    return [walk(root, shape.tree, getattr) for root in roots]


# --- expected statements ---------------------------------------------------------------


def _chunks(keys: int) -> int:
    return math.ceil(keys / SELECTIN_CHUNK)


def _statements(shape: Shape, strategy: str, size: DatasetSize, limit: int) -> int:
    """Statements one load emits: the root SELECT plus what each strategy adds."""
    if strategy == "joined":
        return 1
    if shape is POSTS_WITH_AUTHOR_COMMENTS_TAGS:
        posts = min(limit, size.posts)
        authors = size.authors_of_first_posts(posts)
        if strategy in ("selectin", "model_selectin"):
            return 1 + _chunks(authors) + 2 * _chunks(posts)
        if strategy == "subquery":
            return 4
        return 1 + authors + 2 * posts  # one per distinct author, comments and tags per post
    users = min(limit, size.users)
    if shape is USERS_WITH_POSTS_COMMENTS:
        posts = users * size.posts_per_user
        if strategy == "selectin":
            return 1 + _chunks(users) + _chunks(posts)
        if strategy == "subquery":
            return 3
        return 1 + users + posts
    if strategy in ("selectin", "model_selectin"):
        return 1 + _chunks(users)
    if strategy == "subquery":
        return 2
    return 1 + users  # lazy, immediate, awaitable_attrs, run_sync, write_only


def expectation(shape: Shape) -> Callable[..., Outcome]:
    def expected(setting: Setting, size: DatasetSize, strategy: str, limit: int) -> Outcome:
        if not shape.supports(strategy):
            return NotApplicable(f"{strategy} is not declared for this shape")
        if strategy in ASYNC_ONLY and setting.mode == "sync":
            return NotApplicable("async only")
        if strategy == "raise":
            return Raises(InvalidRequestError, 1)
        if strategy == "lazy" and setting.mode == "async":
            return missing_greenlet(setting, completed=1)
        return Works(_statements(shape, strategy, size, limit))

    return expected


def _grid() -> dict[str, tuple]:
    return {"strategy": STRATEGIES, "limit": (20,)}


@scenario("load.users_with_profile", expect=expectation(USERS_WITH_PROFILE), params=_grid())
def users_with_profile(session: Session, strategy: str, limit: int) -> list[tuple]:
    """Users with their profile (one-to-one)."""
    return load(session, USERS_WITH_PROFILE, strategy, limit)


@users_with_profile.twin
async def users_with_profile_async(session: AsyncSession, strategy: str, limit: int) -> list:
    return await load_async(session, USERS_WITH_PROFILE, strategy, limit)


@scenario("load.users_with_posts", expect=expectation(USERS_WITH_POSTS), params=_grid())
def users_with_posts(session: Session, strategy: str, limit: int) -> list[tuple]:
    """Users with their posts (one-to-many)."""
    return load(session, USERS_WITH_POSTS, strategy, limit)


@users_with_posts.twin
async def users_with_posts_async(session: AsyncSession, strategy: str, limit: int) -> list:
    return await load_async(session, USERS_WITH_POSTS, strategy, limit)


@scenario(
    "load.users_with_posts_comments",
    expect=expectation(USERS_WITH_POSTS_COMMENTS),
    params=_grid(),
)
def users_with_posts_comments(session: Session, strategy: str, limit: int) -> list[tuple]:
    """Users with their posts and each post's comments (nested one-to-many)."""
    return load(session, USERS_WITH_POSTS_COMMENTS, strategy, limit)


@users_with_posts_comments.twin
async def users_with_posts_comments_async(session: AsyncSession, strategy: str, limit: int) -> list:
    return await load_async(session, USERS_WITH_POSTS_COMMENTS, strategy, limit)


@scenario(
    "load.posts_with_author_comments_tags",
    expect=expectation(POSTS_WITH_AUTHOR_COMMENTS_TAGS),
    params=_grid(),
)
def posts_with_author_comments_tags(session: Session, strategy: str, limit: int) -> list:
    """Posts with their author, comments and tags (many-to-one, one-to-many, many-to-many)."""
    return load(session, POSTS_WITH_AUTHOR_COMMENTS_TAGS, strategy, limit)


@posts_with_author_comments_tags.twin
async def posts_with_author_comments_tags_async(
    session: AsyncSession, strategy: str, limit: int
) -> list:
    return await load_async(session, POSTS_WITH_AUTHOR_COMMENTS_TAGS, strategy, limit)
