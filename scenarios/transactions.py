"""Transactions, sync and async twins side by side.

Each twin bumps ``User.visits`` and returns how much the committed value moved (1 when
the transaction committed, 0 when it rolled back), so the result is the same however
often the scenario has run. The value is read back with a fresh SELECT: after a commit
the ``User`` object is expired, and touching it in async code would raise.

What a twin returns is what its own session sees; what it declares under ``committed``
is what the database holds, read on another connection after the session closed, with
the COMMITs and ROLLBACKs the engine sent: that is what tells ``begin()`` committing,
``begin()`` rolling back and a manual commit apart.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from sqla_bench.scenarios.expect import Committed, unchanged
from sqla_bench.scenarios.models import USERS, User
from sqla_bench.scenarios.registry import scenario
from sqla_bench.scenarios.sql import Writes

USER_IDS = {"user_id": (2,)}
# Each twin: the get, the UPDATE of visits, and the SELECT that reads it back.
SENDS = Writes((("SELECT", USERS), ("UPDATE", USERS), ("SELECT", USERS)))


class Abort(Exception):
    """Raised inside a transaction block to make it roll back."""


def _visits(user_id: int):
    return select(User.visits).where(User.id == user_id)


def _read_visits(user_id: int, connection: Connection) -> Any:
    return connection.scalar(_visits(user_id))


def _one_more(visits: int) -> int:
    return visits + 1


def _visits_committed(
    change: Callable[[Any], Any],
    commits: int,
    rollbacks: int,
    setting: Any,
    size: Any,
    user_id: int,
) -> Committed:
    """What the database holds of the user's visits once the session closed."""
    what = f"users.visits of user {user_id}"
    return Committed(what, partial(_read_visits, user_id), change, commits, rollbacks)


def _kept(commits: int, rollbacks: int) -> Callable[..., Committed]:
    """The UPDATE is in the database afterwards: visits one higher."""
    return partial(_visits_committed, _one_more, commits, rollbacks)


def _lost(rollbacks: int) -> Callable[..., Committed]:
    """The UPDATE is not: visits as they were."""
    return partial(_visits_committed, unchanged, 0, rollbacks)


# The block's COMMIT; then the read-back SELECT begins a transaction that the closing
# session rolls back.
@scenario(
    "tx.begin_commits",
    statements=3,
    params=USER_IDS,
    returns=1,
    sql=SENDS,
    committed=_kept(commits=1, rollbacks=1),
)
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


# The block's ROLLBACK, then the read-back's, at close.
@scenario(
    "tx.begin_rolls_back",
    statements=3,
    params=USER_IDS,
    returns=0,
    sql=SENDS,
    committed=_lost(rollbacks=2),
)
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


@scenario(
    "tx.manual_commit",
    statements=3,
    params=USER_IDS,
    returns=1,
    sql=SENDS,
    committed=_kept(commits=1, rollbacks=1),
)
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
