"""An oracle for the decision guide, sharing no code with sqla-bench: plain SQLAlchemy,
tables of its own, its own clock, its own order of calls and its own statistics.

It builds the loading workload the guide reads (users with their posts: ``users`` users,
``posts`` posts each, a text payload of ``payload`` bytes in every row, an index on the
posts' foreign key), loads ``limit`` users with their posts under two or more loader
options, each call in a fresh Session, in rotating round-robin blocks (``calls`` calls
per strategy per block), and gives each strategy's ratio to the first one: the median
over blocks of the ratio of the two blocks' medians, with a percentile bootstrap
interval over blocks. Its tables are named ``oracle_*``, created and dropped here.

    python tests/oracle.py postgresql+psycopg2://... --posts 20 --payload 1000 \\
        --strategy selectin --strategy joined

The test of the same name holds sqla-bench's verdict to it at a point where the answer
is not close; the closing note of issue 28 compares the two at four points.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import ForeignKey, String, Text, create_engine, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    deferred,
    joinedload,
    lazyload,
    mapped_column,
    relationship,
    selectinload,
    subqueryload,
)

LOADERS: dict[str, Callable] = {
    "lazy": lazyload,
    "joined": joinedload,
    "selectin": selectinload,
    "subquery": subqueryload,
}


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "oracle_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), index=True)
    email: Mapped[str] = mapped_column(String(120))
    visits: Mapped[int] = mapped_column(default=0)
    payload: Mapped[str] = mapped_column(Text)
    posts: Mapped[list[Post]] = relationship(order_by="Post.id")


class Post(Base):
    __tablename__ = "oracle_posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("oracle_users.id"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = deferred(mapped_column(Text))
    payload: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class Found:
    """A strategy's time over the first strategy's, within blocks."""

    strategy: str
    ratio: float
    low: float
    high: float
    blocks: int


def seed(url: str, users: int, posts: int, payload: int) -> None:
    """Create the oracle's tables and rows; refuse tables of that name already there (a
    killed run's, or somebody's): the oracle drops only what it created."""
    text = "".join(random.Random(payload).choices(string.ascii_letters, k=payload))
    engine = create_engine(url)
    present = set(inspect(engine).get_table_names()) & set(Base.metadata.tables)
    try:
        if present:
            raise RuntimeError(f"tables {sorted(present)} exist already; not touched")
        Base.metadata.create_all(engine)
        _fill(engine, users, posts, text)
    except BaseException:
        if not present:  # ours, half filled
            Base.metadata.drop_all(engine)
        raise
    finally:
        engine.dispose()


def _fill(engine, users: int, posts: int, text: str) -> None:
    with Session(engine) as session:
        session.add_all(
            User(id=i, name=f"u{i}", email="e", payload=text) for i in range(1, users + 1)
        )
        session.flush()
        session.add_all(
            Post(id=n, user_id=1 + (n - 1) // posts, title=f"t{n}", body="b", payload=text)
            for n in range(1, users * posts + 1)
        )
        session.commit()


def drop(url: str) -> None:
    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    engine.dispose()


def _query(strategy: str, limit: int):
    return select(User).order_by(User.id).limit(limit).options(LOADERS[strategy](User.posts))


def _read(users: list[User]) -> list:
    return [(user.name, [post.title for post in user.posts]) for user in users]


def measure(
    url: str, strategies: list[str], limit: int, blocks: int, calls: int
) -> dict[str, list[list[int]]]:
    """Nanoseconds per call, by strategy, then block; sync or async from the URL."""
    return asyncio.run(_measure(url, strategies, limit, blocks, calls))


async def _measure(
    url: str, strategies: list[str], limit: int, blocks: int, calls: int
) -> dict[str, list[list[int]]]:
    scheme = url.split("://")[0]
    if any(name in scheme for name in ("asyncpg", "aiomysql", "aiosqlite")):
        engine = create_async_engine(url)

        async def call(strategy: str) -> int:
            async with AsyncSession(engine) as session:
                started = time.perf_counter_ns()
                _read((await session.scalars(_query(strategy, limit))).unique().all())
                return time.perf_counter_ns() - started

        try:
            return await _rotate(strategies, blocks, calls, call)
        finally:
            await engine.dispose()
    sync_engine = create_engine(url)

    async def sync_call(strategy: str) -> int:  # awaited, so one rotation serves both
        with Session(sync_engine) as session:
            started = time.perf_counter_ns()
            _read(session.scalars(_query(strategy, limit)).unique().all())
            return time.perf_counter_ns() - started

    try:
        return await _rotate(strategies, blocks, calls, sync_call)
    finally:
        sync_engine.dispose()


async def _rotate(
    strategies: list[str], blocks: int, calls: int, call: Callable[[str], Awaitable[int]]
) -> dict[str, list[list[int]]]:
    """Three warm calls each, then ``blocks`` blocks of ``calls`` calls per strategy,
    the order rotating by one place each block."""
    for warm in strategies * 3:
        await call(warm)
    times: dict[str, list[list[int]]] = {name: [] for name in strategies}
    for block in range(blocks):
        turn = block % len(strategies)
        for strategy in strategies[turn:] + strategies[:turn]:
            times[strategy].append([await call(strategy) for _ in range(calls)])
    return times


def ratios(times: dict[str, list[list[int]]], resamples: int = 2_000) -> list[Found]:
    """Each strategy over the first: the median of per-block ratios of block medians,
    with a 95 % percentile bootstrap interval over blocks."""
    first, *others = times
    reference = [statistics.median(block) for block in times[first]]
    found = []
    rng = random.Random(28)
    for strategy in others:
        mine = [statistics.median(block) for block in times[strategy]]
        logs = [math.log(a / b) for a, b in zip(mine, reference, strict=True)]
        boot = sorted(statistics.median(rng.choices(logs, k=len(logs))) for _ in range(resamples))
        low, high = boot[int(0.025 * resamples)], boot[int(0.975 * resamples) - 1]
        found.append(
            Found(
                strategy,
                math.exp(statistics.median(logs)),
                math.exp(low),
                math.exp(high),
                len(logs),
            )
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="a SQLAlchemy URL (its driver decides sync or async)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--payload", type=int, default=0)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--strategy", action="append", choices=LOADERS, required=True)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    sync_url = args.url.replace("+asyncpg", "+psycopg2")
    try:
        seed(sync_url, args.users, args.posts, args.payload)
    except RuntimeError as error:
        raise SystemExit(f"oracle: {error}") from None
    try:
        times = measure(args.url, args.strategy, args.limit, args.blocks, args.calls)
    finally:
        drop(sync_url)
    for found in ratios(times):
        print(
            f"{found.strategy}/{args.strategy[0]}: x{found.ratio:.3f} "
            f"[{found.low:.3f}, {found.high:.3f}] over {found.blocks} blocks"
        )


if __name__ == "__main__":
    main()
