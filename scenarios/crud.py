"""CRUD on ``User``, sync and async twins side by side.

Writes are flushed, not committed: the harness closes each session, which rolls them
back, so the seed stays as it was for every other scenario.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from scenarios.dataset import DatasetSize
from scenarios.expect import Outcome, Setting, Works
from scenarios.models import User
from scenarios.registry import scenario

NEW_USER = {"name": "zed-new", "email": "zed@example.test"}


@scenario("crud.create", statements=1)
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


@scenario("crud.get", statements=1, params={"user_id": (1,)})
def get_user(session: Session, user_id: int) -> tuple | None:
    """Get a user by primary key with session.get."""
    user = session.get(User, user_id)
    return None if user is None else (user.id, user.name)


@get_user.twin
async def get_user_async(session: AsyncSession, user_id: int) -> tuple | None:
    user = await session.get(User, user_id)
    return None if user is None else (user.id, user.name)


@scenario("crud.list", statements=1, params={"limit": (20,)})
def list_users(session: Session, limit: int) -> list[str]:
    """List users ordered by name."""
    return list(session.scalars(select(User.name).order_by(User.name).limit(limit)))


@list_users.twin
async def list_users_async(session: AsyncSession, limit: int) -> list[str]:
    return list(await session.scalars(select(User.name).order_by(User.name).limit(limit)))


@scenario("crud.update", statements=3, params={"user_id": (1,)})
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
    # get + cascade loads (profile, posts, then comments and tags per post) + DELETEs of
    # post_tags, comments, profile, posts and the user, each one executemany.
    posts = size.posts_per_user if 1 <= user_id <= size.users else 0
    if not posts:
        return Works(1)
    return Works(1 + 2 + 2 * posts + 5)


@scenario("crud.delete", expect=_delete_statements, params={"user_id": (1, 0)})
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
