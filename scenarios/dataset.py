"""Deterministic seed data, sized by parameters, and its definition.

The definition (``DatasetSize``'s methods: which rows exist, what they hold, how they
relate) is written once and used twice: to seed the database, and to compute what every
scenario must return, so an expected value never comes from another run of the code
under test.

``rebuild(connection, size)`` takes a *sync* ``Connection``: the sync harness calls it
directly and the async harness through ``AsyncConnection.run_sync``, so schema creation
and seeding are one piece of code in both modes.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cache

from sqlalchemy import Connection, func, insert, select

from sqla_bench.scenarios.models import (
    COMMENTS,
    POSTS,
    PROFILES,
    TAGS,
    USERS,
    Base,
    Comment,
    Post,
    Profile,
    Tag,
    User,
    post_tags,
)

FIRST_NAMES = ("grace", "alan", "ada", "linus", "barbara", "edsger", "donald", "frances")
DEFAULT_TAGS = 8

# Bounds: a dataset has to fit a database on a development machine and be seeded in
# minutes. Each is in the message that refuses a larger value.
MAXIMUM = {
    "users": 1_000_000,
    "posts_per_user": 10_000,
    "comments_per_post": 1_000,
    "tags": 100_000,
    "tags_per_post": 1_000,
    "payload": 65_535,  # bytes; a TEXT column holds 65,535 on MySQL
}
MAX_ROWS = 2_000_000  # rows seeded over every table
MAX_PAYLOAD_BYTES = 1 << 30  # payload bytes seeded over every table


@dataclass(frozen=True)
class DatasetSize:
    """How many rows the seed writes and how wide they are; every expected statement
    count and every expected value derives from it."""

    users: int = 1200
    posts_per_user: int = 2
    comments_per_post: int = 2
    tags: int = DEFAULT_TAGS
    tags_per_post: int = 2
    payload: int = 0  # bytes of text in every row's payload column

    def __post_init__(self) -> None:
        for item in fields(self):
            value, low = getattr(self, item.name), 0 if item.name == "payload" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(
                    f"dataset {item.name} must be a whole number >= {low}, not {value!r}"
                )
            if value > MAXIMUM[item.name]:
                raise ValueError(
                    f"dataset {item.name} is at most {MAXIMUM[item.name]:,}, not {value:,}"
                )
        if self.tags_per_post > self.tags:
            raise ValueError("dataset tags_per_post cannot exceed tags")
        if self.rows() > MAX_ROWS:
            raise ValueError(
                f"that dataset is {self.rows():,} rows; sqla-bench seeds at most {MAX_ROWS:,}: "
                "fewer users, posts, comments or tags per post"
            )
        if self.payload_bytes() > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"that dataset holds {self.payload_bytes():,} payload bytes; sqla-bench seeds at "
                f"most {MAX_PAYLOAD_BYTES:,}: a smaller payload or fewer rows"
            )

    @classmethod
    def of(cls, users: int, posts: int, comments: int, tags: int, payload: int) -> DatasetSize:
        """A dataset by its workload dimensions (``tags`` per post; at least the default
        number of distinct tags exist, more when a post needs more)."""
        return cls(users, posts, comments, max(DEFAULT_TAGS, tags), tags, payload)

    def describe(self) -> str:
        """The dimensions that decide a loading strategy, for tables and the guide."""
        text = (
            f"users={self.users}, posts/user={self.posts_per_user}, "
            f"comments/post={self.comments_per_post}, tags/post={self.tags_per_post}"
        )
        return text + f", payload={self.payload} B"

    # --- how many ----------------------------------------------------------------------

    @property
    def posts(self) -> int:
        return self.users * self.posts_per_user

    @property
    def comments(self) -> int:
        return self.posts * self.comments_per_post

    def rows(self) -> int:
        """Rows over every table (users, profiles, posts, comments, tags, post_tags)."""
        return 2 * self.users + self.posts * (1 + self.comments_per_post + self.tags_per_post)

    def payload_bytes(self) -> int:
        return self.payload * (2 * self.users + self.posts + self.comments + self.tags)

    def authors_of_first_posts(self, count: int) -> int:
        """Distinct authors among the first ``count`` posts (posts are seeded user by user)."""
        return len({self.author_of(post_id) for post_id in range(1, min(count, self.posts) + 1)})

    # --- which rows relate: ids in the order the relationships order them ---------------

    def posts_of(self, user_id: int) -> range:
        first = (user_id - 1) * self.posts_per_user + 1
        return range(first, first + self.posts_per_user)

    def author_of(self, post_id: int) -> int:
        return (post_id - 1) // self.posts_per_user + 1

    def profile_of(self, user_id: int) -> int:
        return user_id  # profiles are seeded one per user, in user order

    def comments_of(self, post_id: int) -> range:
        first = (post_id - 1) * self.comments_per_post + 1
        return range(first, first + self.comments_per_post)

    def tags_of(self, post_id: int) -> list[int]:
        return sorted((post_id + n) % self.tags + 1 for n in range(self.tags_per_post))

    # --- what each row holds ------------------------------------------------------------

    def comment_body(self, comment_id: int) -> str:
        post_id, n = divmod(comment_id - 1, self.comments_per_post)
        return f"comment {n + 1} on post {post_id + 1}"

    def payload_text(self) -> str:
        return payload_text(self.payload)


def user_name(user_id: int) -> str:
    # The first name cycles, so ordering by name is not the same as ordering by id.
    return f"{FIRST_NAMES[user_id % len(FIRST_NAMES)]}-{user_id:05d}"


def user_email(user_id: int) -> str:
    return f"user{user_id}@example.test"


def bio(profile_id: int) -> str:
    return f"bio of user {profile_id}"


def title(post_id: int) -> str:
    return f"post {post_id}"


def post_body(post_id: int) -> str:
    return f"body of post {post_id}"


def tag_name(tag_id: int) -> str:
    return f"tag{tag_id}"


@cache
def payload_text(size: int) -> str:
    # Random letters, the same in every row: a value that does not compress (TOAST would
    # shrink a repeated character), so the bytes stored and sent are the bytes asked for.
    return "".join(random.Random(size).choices(string.ascii_letters + string.digits, k=size))


# The label of a row (the one column plain data shows of it), by table, from its id.
LABELS: dict[str, Callable[[DatasetSize, int], str]] = {
    USERS: lambda size, key: user_name(key),
    PROFILES: lambda size, key: bio(key),
    POSTS: lambda size, key: title(key),
    COMMENTS: DatasetSize.comment_body,
    TAGS: lambda size, key: tag_name(key),
}
# What a relationship leads to, by (table, relationship): a list of ids, or one id.
RELATED: dict[tuple[str, str], Callable[[DatasetSize, int], range | list[int] | int]] = {
    (USERS, "posts"): DatasetSize.posts_of,
    (USERS, "profile"): DatasetSize.profile_of,
    (POSTS, "author"): DatasetSize.author_of,
    (POSTS, "comments"): DatasetSize.comments_of,
    (POSTS, "tags"): DatasetSize.tags_of,
}


# --- seeding ---------------------------------------------------------------------------

# Every table the seed creates (and drops to seed again), parents first.
TABLES = tuple(table.name for table in Base.metadata.sorted_tables)


def _user_rows(size: DatasetSize) -> list[dict]:
    payload = size.payload_text()
    return [
        {"name": user_name(i), "email": user_email(i), "visits": 0, "payload": payload}
        for i in range(1, size.users + 1)
    ]


def _profile_rows(size: DatasetSize) -> list[dict]:
    payload = size.payload_text()
    return [
        {"user_id": i, "bio": bio(size.profile_of(i)), "payload": payload}
        for i in range(1, size.users + 1)
    ]


def _tag_rows(size: DatasetSize) -> list[dict]:
    return [{"name": tag_name(i), "payload": size.payload_text()} for i in range(1, size.tags + 1)]


def _post_rows(size: DatasetSize) -> list[dict]:
    payload = size.payload_text()
    return [
        {
            "user_id": size.author_of(post_id),
            "title": title(post_id),
            "body": post_body(post_id),
            "payload": payload,
        }
        for post_id in range(1, size.posts + 1)
    ]


def _comment_rows(size: DatasetSize) -> list[dict]:
    payload = size.payload_text()
    return [
        {"post_id": post_id, "body": size.comment_body(comment_id), "payload": payload}
        for post_id in range(1, size.posts + 1)
        for comment_id in size.comments_of(post_id)
    ]


def _post_tag_rows(size: DatasetSize) -> list[dict]:
    return [
        {"post_id": post_id, "tag_id": tag_id}
        for post_id in range(1, size.posts + 1)
        for tag_id in size.tags_of(post_id)
    ]


def rebuild(connection: Connection, size: DatasetSize) -> None:
    """Drop and create the schema, then seed it. Ids are assigned by the database.

    The harness records ``TABLES`` as its own before calling this
    (``sqla_bench.servers.owned``): what it drops here, it created.

    Rows go in parent before child, in id order, into freshly created tables, so the
    database numbers them 1..N; child rows refer to those numbers. ``_check_ids`` proves
    the assumption held instead of trusting it.
    """
    Base.metadata.drop_all(connection)
    Base.metadata.create_all(connection)
    connection.execute(insert(User), _user_rows(size))
    connection.execute(insert(Profile), _profile_rows(size))
    connection.execute(insert(Tag), _tag_rows(size))
    connection.execute(insert(Post), _post_rows(size))
    connection.execute(insert(Comment), _comment_rows(size))
    connection.execute(insert(post_tags), _post_tag_rows(size))
    _check_ids(connection, size)


def _check_ids(connection: Connection, size: DatasetSize) -> None:
    counts = ((User, size.users), (Post, size.posts), (Comment, size.comments), (Tag, size.tags))
    for model, expected in counts:
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
