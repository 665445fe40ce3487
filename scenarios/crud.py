"""CRUD on ``User`` as the seed writes it, sync and async twins side by side.

Writes are flushed, never committed, as in the seed's functions: the caller owns the
transaction. The harness closes each session without committing, so what a write sent
is rolled back, and the catalogue says so: each write declares the statements it sends
and that the database, read on a connection of its own once the session has closed,
still holds what it held before (one ROLLBACK, no COMMIT). The seed stays as it was for
every other scenario.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from sqla_bench.scenarios.dataset import DatasetSize, user_name
from sqla_bench.scenarios.expect import Committed, Outcome, Setting, Works
from sqla_bench.scenarios.models import (
    COMMENTS,
    POST_TAGS,
    POSTS,
    PROFILES,
    TAGS,
    USERS,
    Post,
    User,
)
from sqla_bench.scenarios.registry import scenario
from sqla_bench.scenarios.sql import Writes

NEW_USER = {"name": "zed-new", "email": "zed@example.test"}


def _exists(user_id: int, size: DatasetSize) -> bool:
    return 1 <= user_id <= size.users


def _seeded(value: Any, before: Any) -> Any:
    """``Committed.change`` of a write that must leave what the seed wrote: ``value``,
    from the dataset's definition (so a read of the wrong rows cannot pass by being
    unchanged too)."""
    return value


def _rolled_back(what: str, read: Any, seeded: Any) -> Committed:
    """Nothing the call sent is kept: the session closes with one ROLLBACK, and the
    database holds what the seed wrote."""
    return Committed(what, read, partial(_seeded, seeded), commits=0, rollbacks=1)


def _new_users(connection: Connection) -> int:
    return connection.scalar(select(func.count()).where(User.name == NEW_USER["name"]))


# A read sends one SELECT of users; a write declares the statements it sends.
READS_USERS = Writes((("SELECT", USERS),))


@scenario(
    "crud.create",
    statements=1,
    returns={"name": NEW_USER["name"], "has_id": True},
    sql=Writes((("INSERT", USERS),)),
    committed=_rolled_back(f"users named {NEW_USER['name']}", _new_users, seeded=0),
)
def create_user(session: Session) -> dict:
    """Create a user: add and flush (one INSERT, the id comes back with it)."""
    user = User(**NEW_USER)
    session.add(user)
    session.flush()
    return {"name": user.name, "has_id": user.id is not None}


@create_user.twin
async def create_user_async(session: AsyncSession) -> dict:
    user = User(**NEW_USER)
    session.add(user)
    await session.flush()
    return {"name": user.name, "has_id": user.id is not None}


@scenario(
    "crud.get",
    statements=1,
    params={"user_id": (1,)},
    returns=lambda s, size, user_id: (
        (user_id, user_name(user_id)) if _exists(user_id, size) else None
    ),
    sql=READS_USERS,
)
def get_user(session: Session, user_id: int) -> tuple | None:
    """Get a user by primary key with session.get."""
    user = session.get(User, user_id)
    return None if user is None else (user.id, user.name)


@get_user.twin
async def get_user_async(session: AsyncSession, user_id: int) -> tuple | None:
    user = await session.get(User, user_id)
    return None if user is None else (user.id, user.name)


def _first_names(setting: Setting, size: DatasetSize, limit: int) -> list[str]:
    # Names hold lowercase letters, one hyphen and digits, and no first name is a prefix
    # of another, so every database's collation orders them as Python does.
    return sorted(user_name(i) for i in range(1, size.users + 1))[:limit]


@scenario("crud.list", statements=1, params={"limit": (20,)}, returns=_first_names, sql=READS_USERS)
def list_users(session: Session, limit: int) -> list[str]:
    """List users ordered by name."""
    return list(session.scalars(select(User.name).order_by(User.name).limit(limit)))


@list_users.twin
async def list_users_async(session: AsyncSession, limit: int) -> list[str]:
    return list(await session.scalars(select(User.name).order_by(User.name).limit(limit)))


def _name_of(user_id: int, connection: Connection) -> str:
    return connection.scalar(select(User.name).where(User.id == user_id))


def _name_kept(setting: Setting, size: DatasetSize, user_id: int) -> Committed:
    # Declared for users that exist: renaming no one raises before anything is sent.
    name = user_name(user_id)
    return _rolled_back(f"users.name of user {user_id}", partial(_name_of, user_id), name)


@scenario(
    "crud.update",
    statements=3,
    params={"user_id": (1,)},
    returns=lambda s, size, user_id: f"{user_name(user_id)}-renamed",
    sql=Writes((("SELECT", USERS), ("UPDATE", USERS), ("SELECT", USERS))),
    committed=_name_kept,
)
def rename_user(session: Session, user_id: int) -> str:
    """Update a user's name, flush, and read it back from the database."""
    user = session.get(User, user_id)
    user.name = f"{user.name}-renamed"
    session.flush()
    return session.scalar(select(User.name).where(User.id == user_id))


@rename_user.twin
async def rename_user_async(session: AsyncSession, user_id: int) -> str:
    user = await session.get(User, user_id)
    user.name = f"{user.name}-renamed"
    await session.flush()
    return await session.scalar(select(User.name).where(User.id == user_id))


def _delete_statements(setting: Setting, size: DatasetSize, user_id: int) -> Outcome:
    sql = _delete_sql(setting, size, user_id)
    return Works(sum(sql.counted.values()), sql=sql)


def _delete_sql(setting: Setting, size: DatasetSize, user_id: int) -> Writes:
    """The get, then the cascade's loads (profile, posts, and per post its comments and
    tags) and one DELETE each of post_tags, comments, profile, posts and the user (each
    an executemany)."""
    if not _exists(user_id, size):
        return READS_USERS
    per_post = (("SELECT", COMMENTS), ("SELECT", TAGS)) * size.posts_per_user
    loads = (("SELECT", USERS), ("SELECT", PROFILES), ("SELECT", POSTS), *per_post)
    tables = (POST_TAGS, COMMENTS, PROFILES, POSTS, USERS)
    return Writes((*loads, *(("DELETE", table) for table in tables)))


def _user_and_posts(user_id: int, connection: Connection) -> tuple[int, int]:
    users = connection.scalar(select(func.count()).where(User.id == user_id))
    return users, connection.scalar(select(func.count()).where(Post.user_id == user_id))


def _user_kept(setting: Setting, size: DatasetSize, user_id: int) -> Committed:
    what = f"user {user_id} and its posts (counted)"
    seeded = (1, size.posts_per_user) if _exists(user_id, size) else (0, 0)
    return _rolled_back(what, partial(_user_and_posts, user_id), seeded)


@scenario(
    "crud.delete",
    expect=_delete_statements,
    params={"user_id": (1, 0)},
    returns=lambda s, size, user_id: _exists(user_id, size),
    committed=_user_kept,
)
def delete_user(session: Session, user_id: int) -> bool:
    """Delete a user with its profile, posts and comments; False when there is none."""
    user = session.get(User, user_id)
    if user is None:
        return False
    session.delete(user)
    session.flush()
    return True


@delete_user.twin
async def delete_user_async(session: AsyncSession, user_id: int) -> bool:
    user = await session.get(User, user_id)
    if user is None:
        return False
    await session.delete(user)
    await session.flush()
    return True
