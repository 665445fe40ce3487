"""The verification catalogue: which patterns work, in which mode, at what cost.

Each pattern is a pair of twins taking a ``PatternEnv`` (or one function with
``only="async"`` when the pattern exists only in async code) and declares its expected
outcome: ``Works(N statements)`` or ``Raises(X)``, in the form each driver and
SQLAlchemy version actually gives. The tests assert every pattern on every configured
driver, and ``sqla-bench verify`` prints the same catalogue as a matrix."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import (
    InvalidRequestError,
)
from sqlalchemy.orm import lazyload, raiseload
from sqlalchemy.orm.exc import DetachedInstanceError

from sqla_bench.scenarios.dataset import DatasetSize, post_body, user_name
from sqla_bench.scenarios.expect import (
    Outcome,
    Raises,
    Setting,
    Works,
    sync_or_greenlet,
)
from sqla_bench.scenarios.models import POSTS, USERS, EagerUser, Post, User
from sqla_bench.scenarios.registry import PatternEnv, pattern
from sqla_bench.scenarios.sql import LoadSql
from sqla_bench.scenarios.strategies import STRATEGIES

USER_ID = 1
# What the patterns that work return, from the dataset's definition.
NAME_OF_USER = user_name(USER_ID)


def posts_of_user(setting: Setting, size: DatasetSize) -> int:
    return len(size.posts_of(USER_ID))


def new_user(**extra: object) -> User:
    return User(name="fresh", email="fresh@example.test", **extra)


# --- implicit IO: works in sync, MissingGreenlet in async -----------------------------


@pattern(
    "lazy_load",
    expect=lambda s, d: sync_or_greenlet(s, 2, completed_before_io=1),
    returns=posts_of_user,
)
def lazy_load(env: PatternEnv) -> int:
    """Touch a lazy collection of an object loaded by a plain query."""
    with env.session() as session:
        return len(session.get(User, USER_ID).posts)


@lazy_load.twin
async def lazy_load_async(env: PatternEnv) -> int:
    async with env.session() as session:
        return len((await session.get(User, USER_ID)).posts)


@pattern(
    "expired_after_commit",
    expect=lambda s, d: sync_or_greenlet(s, 2, 1),
    returns=NAME_OF_USER,
)
def expired_after_commit(env: PatternEnv) -> str:
    """Read an attribute after commit() with the default expire_on_commit=True."""
    with env.session() as session:
        user = session.get(User, USER_ID)
        session.commit()
        return user.name


@expired_after_commit.twin
async def expired_after_commit_async(env: PatternEnv) -> str:
    async with env.session() as session:
        user = await session.get(User, USER_ID)
        await session.commit()
        return user.name


@pattern("kept_after_commit", statements=1, returns=NAME_OF_USER)
def kept_after_commit(env: PatternEnv) -> str:
    """Read an attribute after commit() with expire_on_commit=False: no reload."""
    with env.session(expire_on_commit=False) as session:
        user = session.get(User, USER_ID)
        session.commit()
        return user.name


@kept_after_commit.twin
async def kept_after_commit_async(env: PatternEnv) -> str:
    async with env.session(expire_on_commit=False) as session:
        user = await session.get(User, USER_ID)
        await session.commit()
        return user.name


@pattern("session_expire", expect=lambda s, d: sync_or_greenlet(s, 2, 1), returns=NAME_OF_USER)
def session_expire(env: PatternEnv) -> str:
    """Read an attribute after session.expire(obj)."""
    with env.session() as session:
        user = session.get(User, USER_ID)
        session.expire(user)
        return user.name


@session_expire.twin
async def session_expire_async(env: PatternEnv) -> str:
    async with env.session() as session:
        user = await session.get(User, USER_ID)
        session.expire(user)
        return user.name


@pattern("deferred_column", expect=lambda s, d: sync_or_greenlet(s, 2, 1), returns=post_body(1))
def deferred_column(env: PatternEnv) -> str:
    """Read a deferred() column that the query did not load."""
    with env.session() as session:
        return session.get(Post, 1).body


@deferred_column.twin
async def deferred_column_async(env: PatternEnv) -> str:
    async with env.session() as session:
        return (await session.get(Post, 1)).body


@pattern(
    "dynamic_relationship",
    expect=lambda s, d: sync_or_greenlet(s, 2, 1),
    returns=posts_of_user,
)
def dynamic_relationship(env: PatternEnv) -> int:
    """Iterate a lazy="dynamic" relationship."""
    with env.session() as session:
        return len(list(session.get(User, USER_ID).posts_dynamic))


@dynamic_relationship.twin
async def dynamic_relationship_async(env: PatternEnv) -> int:
    async with env.session() as session:
        return len(list((await session.get(User, USER_ID)).posts_dynamic))


@pattern("fresh_object_collection", expect=lambda s, d: sync_or_greenlet(s, 2, 1), returns=0)
def fresh_object_collection(env: PatternEnv) -> int:
    """Read a collection of an object just flushed without setting it (User() then
    .posts)."""
    with env.session() as session:
        user = new_user()
        session.add(user)
        session.flush()
        return len(user.posts)


@fresh_object_collection.twin
async def fresh_object_collection_async(env: PatternEnv) -> int:
    async with env.session() as session:
        user = new_user()
        session.add(user)
        await session.flush()
        return len(user.posts)


@pattern("fresh_object_collection_set", statements=1, returns=0)
def fresh_object_collection_set(env: PatternEnv) -> int:
    """The same with the collection given at construction (User(posts=[])): no load."""
    with env.session() as session:
        user = new_user(posts=[])
        session.add(user)
        session.flush()
        return len(user.posts)


@fresh_object_collection_set.twin
async def fresh_object_collection_set_async(env: PatternEnv) -> int:
    async with env.session() as session:
        user = new_user(posts=[])
        session.add(user)
        await session.flush()
        return len(user.posts)


# --- the safe ways to load in async ------------------------------------------------------


@pattern("awaitable_attrs", statements=2, only="async", returns=posts_of_user)
async def awaitable_attrs(env: PatternEnv) -> int:
    """await obj.awaitable_attrs.posts (AsyncAttrs mixin) loads the collection."""
    async with env.session() as session:
        user = await session.get(User, USER_ID)
        return len(await user.awaitable_attrs.posts)


@pattern("run_sync", statements=2, only="async", returns=posts_of_user)
async def run_sync(env: PatternEnv) -> int:
    """await session.run_sync(fn): fn may lazy-load as in sync code."""
    async with env.session() as session:
        return await session.run_sync(lambda sync: len(sync.get(User, USER_ID).posts))


@pattern("refresh_relationship", statements=3, returns=posts_of_user)
def refresh_relationship(env: PatternEnv) -> int:
    """session.refresh(obj, ["posts"]) reloads the row and loads the collection."""
    with env.session() as session:
        user = session.get(User, USER_ID)
        session.refresh(user, ["posts"])
        return len(user.posts)


@refresh_relationship.twin
async def refresh_relationship_async(env: PatternEnv) -> int:
    async with env.session() as session:
        user = await session.get(User, USER_ID)
        await session.refresh(user, ["posts"])
        return len(user.posts)


@pattern("write_only_append", statements=2, returns=NAME_OF_USER)
def write_only_append(env: PatternEnv) -> str:
    """Add to a WriteOnlyMapped collection and flush: the collection is never loaded."""
    with env.session() as session:
        user = session.get(User, USER_ID)
        user.post_stream.add(Post(title="appended", body="appended"))
        session.flush()
        return user.name


@write_only_append.twin
async def write_only_append_async(env: PatternEnv) -> str:
    async with env.session() as session:
        user = await session.get(User, USER_ID)
        user.post_stream.add(Post(title="appended", body="appended"))
        await session.flush()
        return user.name


# --- loading strategies that refuse ------------------------------------------------------


@pattern("raiseload_option", expect=lambda s, d: Raises(InvalidRequestError, 1))
def raiseload_option(env: PatternEnv) -> int:
    """Touch a relationship that the query marked raiseload()."""
    with env.session() as session:
        query = select(User).where(User.id == USER_ID).options(raiseload(User.posts))
        return len(session.scalars(query).one().posts)


@raiseload_option.twin
async def raiseload_option_async(env: PatternEnv) -> int:
    async with env.session() as session:
        query = select(User).where(User.id == USER_ID).options(raiseload(User.posts))
        return len((await session.scalars(query)).one().posts)


@pattern("lazy_raise_model", expect=lambda s, d: Raises(InvalidRequestError, 1))
def lazy_raise_model(env: PatternEnv) -> int:
    """Touch a relationship declared lazy="raise" on the model."""
    with env.session() as session:
        return len(session.get(User, USER_ID).posts_raise)


@lazy_raise_model.twin
async def lazy_raise_model_async(env: PatternEnv) -> int:
    async with env.session() as session:
        return len((await session.get(User, USER_ID)).posts_raise)


def _first_post_raise_on_sql():
    return (
        select(Post)
        .where(Post.user_id == USER_ID)
        .order_by(Post.id)
        .limit(1)
        .options(raiseload(Post.author, sql_only=True))
    )


@pattern("raise_on_sql_in_identity_map", statements=2, returns=NAME_OF_USER)
def raise_on_sql_in_identity_map(env: PatternEnv) -> str:
    """raiseload(sql_only=True) on a many-to-one already in the identity map: no raise."""
    with env.session() as session:
        author = session.get(User, USER_ID)  # held: the identity map keeps weak references
        post = session.scalars(_first_post_raise_on_sql()).one()
        return post.author.name if post.author is author else "another object"


@raise_on_sql_in_identity_map.twin
async def raise_on_sql_in_identity_map_async(env: PatternEnv) -> str:
    async with env.session() as session:
        author = await session.get(User, USER_ID)
        post = (await session.scalars(_first_post_raise_on_sql())).one()
        return post.author.name if post.author is author else "another object"


@pattern("raise_on_sql_reference_dropped", expect=lambda s, d: Raises(InvalidRequestError, 2))
def raise_on_sql_reference_dropped(env: PatternEnv) -> str:
    """The same, but the loaded author was not kept: garbage-collected, so SQL is needed."""
    with env.session() as session:
        session.get(User, USER_ID)  # result dropped at once; the identity map forgets it
        return session.scalars(_first_post_raise_on_sql()).one().author.name


@raise_on_sql_reference_dropped.twin
async def raise_on_sql_reference_dropped_async(env: PatternEnv) -> str:
    async with env.session() as session:
        await session.get(User, USER_ID)
        return (await session.scalars(_first_post_raise_on_sql())).one().author.name


@pattern("raise_on_sql_needs_sql", expect=lambda s, d: Raises(InvalidRequestError, 1))
def raise_on_sql_needs_sql(env: PatternEnv) -> str:
    """raiseload(sql_only=True) on a many-to-one that would need a SELECT: raises."""
    with env.session() as session:
        return session.scalars(_first_post_raise_on_sql()).one().author.name


@raise_on_sql_needs_sql.twin
async def raise_on_sql_needs_sql_async(env: PatternEnv) -> str:
    async with env.session() as session:
        return (await session.scalars(_first_post_raise_on_sql())).one().author.name


@pattern("detached_instance", expect=lambda s, d: Raises(DetachedInstanceError, 1))
def detached_instance(env: PatternEnv) -> int:
    """Touch an unloaded relationship after the session closed."""
    with env.session() as session:
        user = session.get(User, USER_ID)
    return len(user.posts)


@detached_instance.twin
async def detached_instance_async(env: PatternEnv) -> int:
    async with env.session() as session:
        user = await session.get(User, USER_ID)
    return len(user.posts)


# --- lazy="selectin" on the model: where "always loaded" holds, and where it does not ---
#
# EagerUser maps users with posts declared lazy="selectin". A query or session.get loads
# the posts with the row, so reading them is safe in async code; refresh() reloads them
# (by key, not with IN). But once the object is expired (commit with expire_on_commit,
# session.expire) reading posts is a lazy load again, and a query option overrides the
# model's choice: both are implicit IO in async code.


def _model_posts_sql(setting: Setting, size: DatasetSize) -> Outcome:
    edge = STRATEGIES["model_selectin"].edge("posts", POSTS, 1)
    return Works(2, sql=LoadSql(USERS, (edge,)))


@pattern("model_selectin_get", expect=_model_posts_sql, returns=posts_of_user)
def model_selectin_get(env: PatternEnv) -> int:
    """session.get() of a model with lazy="selectin" posts: loaded with it, IN by key."""
    with env.session() as session:
        return len(session.get(EagerUser, USER_ID).posts)


@model_selectin_get.twin
async def model_selectin_get_async(env: PatternEnv) -> int:
    async with env.session() as session:
        return len((await session.get(EagerUser, USER_ID)).posts)


@pattern("model_selectin_refresh", statements=4, returns=posts_of_user)
def model_selectin_refresh(env: PatternEnv) -> int:
    """session.refresh() of it: the row and the posts again, both awaited in async."""
    with env.session() as session:
        user = session.get(EagerUser, USER_ID)
        session.refresh(user)
        return len(user.posts)


@model_selectin_refresh.twin
async def model_selectin_refresh_async(env: PatternEnv) -> int:
    async with env.session() as session:
        user = await session.get(EagerUser, USER_ID)
        await session.refresh(user)
        return len(user.posts)


@pattern(
    "model_selectin_after_commit",
    expect=lambda s, d: sync_or_greenlet(s, 4, completed_before_io=2),
    returns=posts_of_user,
)
def model_selectin_after_commit(env: PatternEnv) -> int:
    """Its posts read after commit() expired the object: a lazy load, not selectin."""
    with env.session() as session:
        user = session.get(EagerUser, USER_ID)
        session.commit()
        return len(user.posts)


@model_selectin_after_commit.twin
async def model_selectin_after_commit_async(env: PatternEnv) -> int:
    async with env.session() as session:
        user = await session.get(EagerUser, USER_ID)
        await session.commit()
        return len(user.posts)


@pattern(
    "model_selectin_after_expire",
    expect=lambda s, d: sync_or_greenlet(s, 4, completed_before_io=2),
    returns=posts_of_user,
)
def model_selectin_after_expire(env: PatternEnv) -> int:
    """Its posts read after session.expire(obj): the same lazy load."""
    with env.session() as session:
        user = session.get(EagerUser, USER_ID)
        session.expire(user)
        return len(user.posts)


@model_selectin_after_expire.twin
async def model_selectin_after_expire_async(env: PatternEnv) -> int:
    async with env.session() as session:
        user = await session.get(EagerUser, USER_ID)
        session.expire(user)
        return len(user.posts)


def _overridden():
    return select(EagerUser).where(EagerUser.id == USER_ID).options(lazyload(EagerUser.posts))


@pattern(
    "model_selectin_overridden",
    expect=lambda s, d: sync_or_greenlet(s, 2, completed_before_io=1),
    returns=posts_of_user,
)
def model_selectin_overridden(env: PatternEnv) -> int:
    """A query option (lazyload) overrides the model's lazy="selectin": posts load lazily."""
    with env.session() as session:
        return len(session.scalars(_overridden()).one().posts)


@model_selectin_overridden.twin
async def model_selectin_overridden_async(env: PatternEnv) -> int:
    async with env.session() as session:
        return len((await session.scalars(_overridden())).one().posts)
