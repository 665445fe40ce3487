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
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ForeignKey, String, Text, create_engine, select
from sqlalchemy.ext.asyncio import create_async_engine
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
    text = "".join(random.Random(payload).choices(string.ascii_letters, k=payload))
    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for user_id in range(1, users + 1):
            session.add(User(id=user_id, name=f"u{user_id}", email="e", payload=text))
        session.flush()
        post_id = 0
        for user_id in range(1, users + 1):
            for _ in range(posts):
                post_id += 1
                session.add(
                    Post(id=post_id, user_id=user_id, title=f"t{post_id}", body="b", payload=text)
                )
        session.commit()
    engine.dispose()


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
    if any(name in url.split("://")[0] for name in ("asyncpg", "aiomysql", "aiosqlite")):
        return asyncio.run(_measure_async(url, strategies, limit, blocks, calls))
    engine = create_engine(url)

    def call(strategy: str) -> int:
        with Session(engine) as session:
            started = time.perf_counter_ns()
            _read(session.scalars(_query(strategy, limit)).unique().all())
            return time.perf_counter_ns() - started

    try:
        return _rotate(strategies, blocks, calls, call)
    finally:
        engine.dispose()


async def _measure_async(
    url: str, strategies: list[str], limit: int, blocks: int, calls: int
) -> dict[str, list[list[int]]]:
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = create_async_engine(url)
    times: dict[str, list[list[int]]] = {name: [] for name in strategies}
    try:
        for warm in strategies * 3:
            async with AsyncSession(engine) as session:
                _read((await session.scalars(_query(warm, limit))).unique().all())
        for block in range(blocks):
            turn = block % len(strategies)
            for strategy in strategies[turn:] + strategies[:turn]:
                taken = []
                for _ in range(calls):
                    async with AsyncSession(engine) as session:
                        started = time.perf_counter_ns()
                        _read((await session.scalars(_query(strategy, limit))).unique().all())
                        taken.append(time.perf_counter_ns() - started)
                times[strategy].append(taken)
    finally:
        await engine.dispose()
    return times


def _rotate(
    strategies: list[str], blocks: int, calls: int, call: Callable[[str], int]
) -> dict[str, list[list[int]]]:
    for warm in strategies * 3:
        call(warm)
    times: dict[str, list[list[int]]] = {name: [] for name in strategies}
    for block in range(blocks):
        turn = block % len(strategies)
        for strategy in strategies[turn:] + strategies[:turn]:
            times[strategy].append([call(strategy) for _ in range(calls)])
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
    seed(sync_url, args.users, args.posts, args.payload)
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
