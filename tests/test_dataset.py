"""The seed is deterministic and identical whichever mode writes it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.ext.asyncio import create_async_engine

from sqla_bench.scenarios.dataset import (
    MAX_PAYLOAD_BYTES,
    MAX_ROWS,
    DatasetSize,
    bio,
    fingerprint,
    post_body,
    rebuild,
    title,
    user_email,
    user_name,
)
from sqla_bench.scenarios.models import COMMENTS, POST_TAGS, POSTS, PROFILES, TAGS, USERS, User

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
    assert sync_fingerprint[USERS] == (7, 28)
    assert sync_fingerprint[POSTS] == (21, sum(range(1, 22)))
    assert sync_fingerprint[COMMENTS][0] == 42
    assert sync_fingerprint[POST_TAGS][0] == 42


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


def test_every_row_carries_the_payload_asked_for(tmp_path) -> None:
    size = DatasetSize(users=3, posts_per_user=2, comments_per_post=1, tags=4, payload=700)
    engine = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.begin() as connection:
        rebuild(connection, size)
        widths = {
            table: connection.exec_driver_sql(f"SELECT DISTINCT length(payload) FROM {table}").all()
            for table in (USERS, PROFILES, POSTS, COMMENTS, TAGS)
        }
    engine.dispose()
    assert all(width == [(700,)] for width in widths.values()), widths


def test_the_definition_says_what_the_seed_holds(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.begin() as connection:
        rebuild(connection, SMALL)
        for post_id in range(1, SMALL.posts + 1):
            comments = connection.exec_driver_sql(
                f"SELECT id, body FROM {COMMENTS} WHERE post_id = {post_id} ORDER BY id"
            ).all()
            assert [c.id for c in comments] == list(SMALL.comments_of(post_id))
            assert [c.body for c in comments] == [SMALL.comment_body(c.id) for c in comments]
            tags = connection.exec_driver_sql(
                f"SELECT tag_id FROM {POST_TAGS} WHERE post_id = {post_id} ORDER BY tag_id"
            ).scalars()
            assert list(tags) == SMALL.tags_of(post_id)
            author = connection.exec_driver_sql(f"SELECT user_id FROM {POSTS} WHERE id = {post_id}")
            assert author.scalar() == SMALL.author_of(post_id)
    engine.dispose()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"payload": -1}, "payload must be a whole number >= 0"),
        ({"payload": 70_000}, "payload is at most 65,535"),
        ({"comments_per_post": 1_001}, "comments_per_post is at most 1,000"),
        ({"users": 1_000_000, "posts_per_user": 10}, "sqla-bench seeds at most 2,000,000"),
        ({"users": 10_000, "posts_per_user": 20, "payload": 60_000}, "payload bytes"),
        ({"posts_per_user": True}, "whole number"),
    ],
)
def test_sizes_beyond_the_bounds_are_refused(fields, needle) -> None:
    with pytest.raises(ValueError, match=needle):
        DatasetSize(**fields)


def test_tags_per_post_bring_enough_tags() -> None:
    size = DatasetSize.of(users=10, posts=3, comments=1, tags=12, payload=0)
    assert (size.tags, size.tags_per_post) == (12, 12)
    assert DatasetSize.of(10, 3, 1, 2, 0).tags == DatasetSize().tags


def test_the_definition_by_example() -> None:
    """Each relation and label, written out by hand for a small dataset: the definition
    is the specification the seed and every expected value are made from."""
    size = DatasetSize(users=3, posts_per_user=2, comments_per_post=2, tags=4, tags_per_post=2)
    assert list(size.posts_of(2)) == [3, 4] and size.author_of(4) == 2 and size.author_of(5) == 3
    assert list(size.comments_of(3)) == [5, 6] and size.profile_of(3) == 3
    assert size.comment_body(6) == "comment 2 on post 3"
    assert size.tags_of(1) == [2, 3] and size.tags_of(4) == [1, 2]
    assert (size.posts, size.comments, size.rows()) == (6, 12, 36)
    assert replace(size, payload=10).payload_bytes() == 10 * (2 * 3 + 6 + 12 + 4)
    assert size.authors_of_first_posts(3) == 2
    assert DatasetSize.of(10, 3, 1, 2, payload=5).payload == 5


def test_the_seed_writes_what_the_definition_says(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 's.db'}")
    with engine.begin() as connection:
        rebuild(connection, SMALL)
        users = connection.exec_driver_sql(f"SELECT id, name, email, visits FROM {USERS}").all()
        profiles = connection.exec_driver_sql(f"SELECT id, user_id, bio FROM {PROFILES}").all()
        posts = connection.exec_driver_sql(f"SELECT id, title, body FROM {POSTS}").all()
    engine.dispose()
    assert users == [(i, user_name(i), user_email(i), 0) for i in range(1, SMALL.users + 1)]
    assert profiles == [(i, i, bio(i)) for i in range(1, SMALL.users + 1)]
    assert posts == [(i, title(i), post_body(i)) for i in range(1, SMALL.posts + 1)]


def test_the_row_bound_is_inclusive() -> None:
    at_the_bound = {"users": 100_000, "posts_per_user": 6, "comments_per_post": 1}
    assert DatasetSize(**at_the_bound, tags_per_post=1).rows() == MAX_ROWS
    with pytest.raises(ValueError, match="seeds at most"):
        DatasetSize(**at_the_bound | {"users": 100_001}, tags_per_post=1)


def test_the_payload_bound_is_inclusive() -> None:
    at_the_bound = {"users": 8191, "posts_per_user": 3, "comments_per_post": 1, "tags_per_post": 1}
    assert DatasetSize(**at_the_bound, payload=16384).payload_bytes() == MAX_PAYLOAD_BYTES
    with pytest.raises(ValueError, match="payload bytes; sqla-bench seeds at most"):
        DatasetSize(**at_the_bound, payload=16385)
