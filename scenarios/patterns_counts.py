"""Patterns of the verification catalogue (``sqla_bench.scenarios.patterns``) whose
statement counts surprise: selectin's chunks, joinedload without unique, autoflush
before a text query."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select, text
from sqlalchemy.exc import (
    InvalidRequestError,
)
from sqlalchemy.orm import joinedload, selectinload

from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import (
    NotApplicable,
    Outcome,
    Raises,
    Setting,
    Works,
)
from sqla_bench.scenarios.models import POSTS, USERS, User
from sqla_bench.scenarios.patterns import new_user
from sqla_bench.scenarios.registry import PatternEnv, pattern
from sqla_bench.scenarios.sql import LoadSql
from sqla_bench.scenarios.strategies import SELECTIN_CHUNK, STRATEGIES


def _every_user_selectin(size: DatasetSize, chunk: int) -> Works:
    """Every user with selectinload(User.posts): the root SELECT, then one IN (...) of
    at most ``chunk`` user ids per statement."""
    edge = replace(STRATEGIES["selectin"].edge("posts", POSTS, size.users), chunk=chunk)
    return Works(1 + edge.statements(), sql=LoadSql(USERS, (edge,)))


@pattern(
    "selectin_chunking",
    expect=lambda s, size: _every_user_selectin(size, SELECTIN_CHUNK),
    returns=lambda s, size: size.posts,
)
def selectin_chunking(env: PatternEnv) -> int:
    """selectinload over every user: one SELECT per 500 parents (4 for 1,200 users)."""
    with env.session() as session:
        users = session.scalars(select(User).options(selectinload(User.posts))).all()
        return sum(len(user.posts) for user in users)


@selectin_chunking.twin
async def selectin_chunking_async(env: PatternEnv) -> int:
    async with env.session() as session:
        users = (await session.scalars(select(User).options(selectinload(User.posts)))).all()
        return sum(len(user.posts) for user in users)


CHUNKSIZE = 100


def _chunksize_outcome(setting: Setting, size: DatasetSize) -> Outcome:
    if setting.sqlalchemy < (2, 1):
        return NotApplicable("selectinload(chunksize=) is new in SQLAlchemy 2.1")
    return _every_user_selectin(size, CHUNKSIZE)


def _every_user_chunked():
    return select(User).options(selectinload(User.posts, chunksize=CHUNKSIZE))


@pattern("selectin_chunksize", expect=_chunksize_outcome, returns=lambda s, size: size.posts)
def selectin_chunksize(env: PatternEnv) -> int:
    """selectinload(User.posts, chunksize=100) over every user: IN lists of 100 ids."""
    with env.session() as session:
        return sum(len(user.posts) for user in session.scalars(_every_user_chunked()).all())


@selectin_chunksize.twin
async def selectin_chunksize_async(env: PatternEnv) -> int:
    async with env.session() as session:
        users = (await session.scalars(_every_user_chunked())).all()
        return sum(len(user.posts) for user in users)


@pattern("joinedload_without_unique", expect=lambda s, d: Raises(InvalidRequestError, 1))
def joinedload_without_unique(env: PatternEnv) -> int:
    """joinedload() of a collection without .unique() on the result."""
    with env.session() as session:
        return len(session.scalars(select(User).options(joinedload(User.posts))).all())


@joinedload_without_unique.twin
async def joinedload_without_unique_async(env: PatternEnv) -> int:
    async with env.session() as session:
        return len((await session.scalars(select(User).options(joinedload(User.posts)))).all())


COUNT_USERS = text(f"SELECT count(*) FROM {USERS}")


def _autoflush_before_text(setting: Setting, size: DatasetSize) -> Outcome:
    # 2.1 autoflushes before a text() statement; 2.0 did not, so the INSERT waits.
    return Works(2 if setting.sqlalchemy >= (2, 1) else 1)


@pattern(
    "autoflush_before_text",
    expect=_autoflush_before_text,
    # 2.1 counts the flushed new user; 2.0 sends the count before the INSERT.
    returns=lambda s, size: size.users + (1 if s.sqlalchemy >= (2, 1) else 0),
)
def autoflush_before_text(env: PatternEnv) -> int:
    """Add an object, then run a text() SELECT: is the pending INSERT flushed first?"""
    with env.session() as session:
        session.add(new_user())
        return session.execute(COUNT_USERS).scalar_one()


@autoflush_before_text.twin
async def autoflush_before_text_async(env: PatternEnv) -> int:
    async with env.session() as session:
        session.add(new_user())
        return (await session.execute(COUNT_USERS)).scalar_one()
