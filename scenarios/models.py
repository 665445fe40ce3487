"""The model every scenario and pattern uses.

User 1:1 Profile, User 1:N Post, Post 1:N Comment, Post M:N Tag. Relationships keep
the default ``lazy="select"`` so that each loading strategy is chosen per query.
Model-level strategies that would change how every query loads (``lazy="selectin"``)
live on a second, read-only mapping of the same tables (``EagerUser``, ``EagerPost``),
and the relationships that never load on their own (``raise``, ``dynamic``,
``write_only``) sit beside the default ones on ``User``.

Every table, index and constraint is named with ``PREFIX``: an application's database
is the first place a user points sqla-bench at, and the names an application gives its
tables (``users``, ``posts``) are the ones these models would otherwise take. A prefix
rather than a schema of its own, because it is the same on every dialect (a MySQL
"schema" is a database, which a user with rights on one database cannot create), needs
no right beyond creating tables, holds in every process and every engine (no
``schema_translate_map`` or ``search_path`` to forget on one of them, or to lose through
PgBouncer), and reaches the raw SQL the driver baseline sends. Which of these tables a
run created is recorded in ``OWNER_TABLE`` (``sqla_bench.servers.owned``).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, Text
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import (
    DeclarativeBase,
    DynamicMapped,
    Mapped,
    WriteOnlyMapped,
    mapped_column,
    relationship,
)

PREFIX = "sqla_bench_"
USERS, PROFILES, POSTS, COMMENTS, TAGS, POST_TAGS = (
    PREFIX + name for name in ("users", "profiles", "posts", "comments", "tags", "post_tags")
)
OWNER_TABLE = PREFIX + "owner"  # which run created which of them (sqla_bench.servers.owned)
# Indexes and constraints take their table's name (PostgreSQL's share one namespace per
# schema with the application's), so every name sqla-bench gives starts with PREFIX.
NAMING = {
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


class Base(AsyncAttrs, DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def payload_column() -> Mapped[str]:
    """Text of ``DatasetSize.payload`` bytes in every row (empty by default): it makes a
    row as wide as the workload says, so a parent row repeated by a JOIN costs its width."""
    return mapped_column(Text, default="")


post_tags = Table(
    POST_TAGS,
    Base.metadata,
    Column("post_id", ForeignKey(f"{POSTS}.id"), primary_key=True),
    Column("tag_id", ForeignKey(f"{TAGS}.id"), primary_key=True),
)


class User(Base):
    __tablename__ = USERS

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), index=True)
    email: Mapped[str] = mapped_column(String(120))
    # Written by the transaction scenarios, read by nothing else, so committing
    # to it never changes what another scenario returns.
    visits: Mapped[int] = mapped_column(Integer, default=0)
    payload: Mapped[str] = payload_column()

    profile: Mapped[Profile | None] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )
    posts: Mapped[list[Post]] = relationship(
        back_populates="author", cascade="all, delete-orphan", order_by="Post.id"
    )
    posts_raise: Mapped[list[Post]] = relationship(lazy="raise", viewonly=True, order_by="Post.id")
    posts_dynamic: DynamicMapped[Post] = relationship(viewonly=True, order_by="Post.id")
    # passive_deletes: deleting a user must not try to load this collection (write-only
    # collections refuse to); ``posts`` already cascades the delete to the rows.
    post_stream: WriteOnlyMapped[Post] = relationship(
        overlaps="posts,author", passive_deletes=True, order_by="Post.id"
    )


class Profile(Base):
    __tablename__ = PROFILES

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey(f"{USERS}.id"), unique=True)
    bio: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = payload_column()

    user: Mapped[User] = relationship(back_populates="profile")


class Post(Base):
    __tablename__ = POSTS

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey(f"{USERS}.id"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    # Deferred so that the "unloaded deferred column" pattern has a real column to read.
    body: Mapped[str] = mapped_column(Text, deferred=True)
    payload: Mapped[str] = payload_column()

    author: Mapped[User] = relationship(back_populates="posts", overlaps="post_stream")
    comments: Mapped[list[Comment]] = relationship(
        back_populates="post", cascade="all, delete-orphan", order_by="Comment.id"
    )
    tags: Mapped[list[Tag]] = relationship(secondary=post_tags, order_by="Tag.id")


class Comment(Base):
    __tablename__ = COMMENTS

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey(f"{POSTS}.id"), index=True)
    body: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = payload_column()

    post: Mapped[Post] = relationship(back_populates="comments")


class Tag(Base):
    __tablename__ = TAGS

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    payload: Mapped[str] = payload_column()


class EagerUser(Base):
    """``users`` mapped again with ``posts`` declared ``lazy="selectin"`` on the model."""

    __table__ = User.__table__

    posts: Mapped[list[Post]] = relationship(lazy="selectin", viewonly=True, order_by="Post.id")


class EagerPost(Base):
    """``posts`` mapped again with every relationship declared ``lazy="selectin"``."""

    __table__ = Post.__table__

    author: Mapped[User] = relationship(lazy="selectin", viewonly=True)
    comments: Mapped[list[Comment]] = relationship(
        lazy="selectin", viewonly=True, order_by="Comment.id"
    )
    tags: Mapped[list[Tag]] = relationship(
        secondary=post_tags, lazy="selectin", viewonly=True, order_by="Tag.id"
    )


LABEL_COLUMN: dict[type[Base], str] = {
    User: "name",
    EagerUser: "name",
    Profile: "bio",
    Post: "title",
    EagerPost: "title",
    Comment: "body",
    Tag: "name",
}


def label(obj: Base) -> str:
    """The one column that names a row of any model in returned plain data."""
    return getattr(obj, LABEL_COLUMN[type(obj)])
