"""Transactions, sync and async twins side by side.

Each twin bumps ``User.visits`` and returns how much the committed value moved (1 when
the transaction committed, 0 when it rolled back), so the result is the same however
often the scenario has run. The value is read back with a fresh SELECT: after a commit
the ``User`` object is expired, and touching it in async code would raise.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from scenarios.models import User
from scenarios.registry import scenario

USER_IDS = {"user_id": (2,)}


class Abort(Exception):
    """Raised inside a transaction block to make it roll back."""


def _visits(user_id: int):
    return select(User.visits).where(User.id == user_id)


@scenario("tx.begin_commits", statements=3, params=USER_IDS)
def begin_commits(session: Session, user_id: int) -> int:
    """session.begin() commits when the block succeeds."""
    with session.begin():
        user = session.get(User, user_id)
        before = user.visits
        user.visits = before + 1
    return session.scalar(_visits(user_id)) - before


@begin_commits.twin
async def begin_commits_async(session: AsyncSession, user_id: int) -> int:
    async with session.begin():
        user = await session.get(User, user_id)
        before = user.visits
        user.visits = before + 1
    return await session.scalar(_visits(user_id)) - before


@scenario("tx.begin_rolls_back", statements=3, params=USER_IDS)
def begin_rolls_back(session: Session, user_id: int) -> int:
    """session.begin() rolls back when the block raises: the flushed UPDATE is undone."""
    try:
        with session.begin():
            user = session.get(User, user_id)
            before = user.visits
            user.visits = before + 1
            session.flush()
            raise Abort
    except Abort:
        pass
    return session.scalar(_visits(user_id)) - before


@begin_rolls_back.twin
async def begin_rolls_back_async(session: AsyncSession, user_id: int) -> int:
    try:
        async with session.begin():
            user = await session.get(User, user_id)
            before = user.visits
            user.visits = before + 1
            await session.flush()
            raise Abort
    except Abort:
        pass
    return await session.scalar(_visits(user_id)) - before


@scenario("tx.manual_commit", statements=3, params=USER_IDS)
def manual_commit(session: Session, user_id: int) -> int:
    """Change inside the autobegun transaction, then session.commit()."""
    user = session.get(User, user_id)
    before = user.visits
    user.visits = before + 1
    session.commit()
    return session.scalar(_visits(user_id)) - before


@manual_commit.twin
async def manual_commit_async(session: AsyncSession, user_id: int) -> int:
    user = await session.get(User, user_id)
    before = user.visits
    user.visits = before + 1
    await session.commit()
    return await session.scalar(_visits(user_id)) - before
