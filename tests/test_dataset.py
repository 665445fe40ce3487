"""The seed is deterministic and identical whichever mode writes it."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.ext.asyncio import create_async_engine

from scenarios.dataset import DatasetSize, fingerprint, rebuild, user_name
from scenarios.models import User

SMALL = DatasetSize(users=7, posts_per_user=3, comments_per_post=2, tags=4, tags_per_post=2)


def _sync_fingerprint(path) -> dict:
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        rebuild(connection, SMALL)
        result = fingerprint(connection)
    engine.dispose()
    return result


@pytest.mark.asyncio
async def test_async_seed_equals_sync_seed(tmp_path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(rebuild, SMALL)
        async_fingerprint = await connection.run_sync(fingerprint)
    await engine.dispose()
    sync_fingerprint = _sync_fingerprint(tmp_path / "sync.db")
    assert async_fingerprint == sync_fingerprint
    assert sync_fingerprint["users"] == (7, 28)
    assert sync_fingerprint["posts"] == (21, sum(range(1, 22)))
    assert sync_fingerprint["comments"][0] == 42
    assert sync_fingerprint["post_tags"][0] == 42


def test_rebuild_twice_gives_the_same_seed(tmp_path) -> None:
    assert _sync_fingerprint(tmp_path / "a.db") == _sync_fingerprint(tmp_path / "a.db")


def test_names_do_not_sort_in_id_order(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'n.db'}")
    with engine.begin() as connection:
        rebuild(connection, SMALL)
        by_name = connection.scalars(select(User.id).order_by(User.name)).all()
    engine.dispose()
    assert sorted(by_name) == list(range(1, 8)) and by_name != sorted(by_name)
    assert user_name(3) == "linus-00003"


@pytest.mark.parametrize(
    "fields", [{"users": 0}, {"posts_per_user": -1}, {"tags": 1, "tags_per_post": 2}]
)
def test_bad_sizes_are_refused(fields) -> None:
    with pytest.raises(ValueError, match="dataset"):
        DatasetSize(**fields)
