"""Deterministic seed data, sized by parameters.

``rebuild(connection, size)`` takes a *sync* ``Connection``: the sync harness calls it
directly and the async harness through ``AsyncConnection.run_sync``, so schema creation
and seeding are one piece of code in both modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select

from scenarios.models import Base, Comment, Post, Profile, Tag, User, post_tags

FIRST_NAMES = ("grace", "alan", "ada", "linus", "barbara", "edsger", "donald", "frances")


@dataclass(frozen=True)
class DatasetSize:
    """How many rows the seed writes; every expected statement count derives from it."""

    users: int = 1200
    posts_per_user: int = 2
    comments_per_post: int = 2
    tags: int = 8
    tags_per_post: int = 2

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"dataset {name} must be a positive integer, got {value!r}")
        if self.tags_per_post > self.tags:
            raise ValueError("dataset tags_per_post cannot exceed tags")

    @property
    def posts(self) -> int:
        return self.users * self.posts_per_user

    def authors_of_first_posts(self, count: int) -> int:
        """Distinct authors among the first ``count`` posts (posts are seeded user by user)."""
        return math.ceil(min(count, self.posts) / self.posts_per_user)


def user_name(user_id: int) -> str:
    # The first name cycles, so ordering by name is not the same as ordering by id.
    return f"{FIRST_NAMES[user_id % len(FIRST_NAMES)]}-{user_id:05d}"


def _user_rows(size: DatasetSize) -> list[dict]:
    return [
        {"name": user_name(i), "email": f"user{i}@example.test", "visits": 0}
        for i in range(1, size.users + 1)
    ]


def _profile_rows(size: DatasetSize) -> list[dict]:
    return [{"user_id": i, "bio": f"bio of user {i}"} for i in range(1, size.users + 1)]


def _post_rows(size: DatasetSize) -> list[dict]:
    return [
        {
            "user_id": (post_id - 1) // size.posts_per_user + 1,
            "title": f"post {post_id}",
            "body": f"body of post {post_id}",
        }
        for post_id in range(1, size.posts + 1)
    ]


def _comment_rows(size: DatasetSize) -> list[dict]:
    return [
        {"post_id": post_id, "body": f"comment {n} on post {post_id}"}
        for post_id in range(1, size.posts + 1)
        for n in range(1, size.comments_per_post + 1)
    ]


def _post_tag_rows(size: DatasetSize) -> list[dict]:
    return [
        {"post_id": post_id, "tag_id": (post_id + n) % size.tags + 1}
        for post_id in range(1, size.posts + 1)
        for n in range(size.tags_per_post)
    ]


def rebuild(connection: Connection, size: DatasetSize) -> None:
    """Drop and create the schema, then seed it. Ids are assigned by the database.

    Rows go in parent before child, in id order, into freshly created tables, so the
    database numbers them 1..N; child rows refer to those numbers. ``_check_ids`` proves
    the assumption held instead of trusting it.
    """
    Base.metadata.drop_all(connection)
    Base.metadata.create_all(connection)
    connection.execute(insert(User), _user_rows(size))
    connection.execute(insert(Profile), _profile_rows(size))
    connection.execute(insert(Tag), [{"name": f"tag{i}"} for i in range(1, size.tags + 1)])
    connection.execute(insert(Post), _post_rows(size))
    connection.execute(insert(Comment), _comment_rows(size))
    connection.execute(insert(post_tags), _post_tag_rows(size))
    _check_ids(connection, size)


def _check_ids(connection: Connection, size: DatasetSize) -> None:
    for model, expected in ((User, size.users), (Post, size.posts), (Tag, size.tags)):
        low, high, count = connection.execute(
            select(func.min(model.id), func.max(model.id), func.count())
        ).one()
        if (low, high, count) != (1, expected, expected):
            raise RuntimeError(
                f"seeding {model.__tablename__} gave ids {low}..{high} ({count} rows), "
                f"expected 1..{expected}: the tables were not freshly created"
            )


def fingerprint(connection: Connection) -> dict[str, tuple[int, int]]:
    """Row count and sum of the first key column per table: equal seeds, equal prints."""
    return {
        table.name: tuple(
            connection.execute(select(func.count(), func.sum(next(iter(table.primary_key))))).one()
        )
        for table in Base.metadata.sorted_tables
    }
