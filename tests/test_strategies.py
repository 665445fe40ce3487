"""A loading strategy is one declaration: what a load under it must do follows from it.

These state, per strategy and shape, the outcome, the statements and the SQL rule the
catalogue derives, on small datasets worked out by hand; the catalogue tests hold the
real databases to the same derivation."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import InvalidRequestError, MissingGreenlet

from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import NotApplicable, Raises, Setting, Works
from sqla_bench.scenarios.loading import (
    POSTS_WITH_AUTHOR_COMMENTS_TAGS,
    USERS_WITH_POSTS,
    USERS_WITH_POSTS_COMMENTS,
    USERS_WITH_PROFILE,
    expected_load,
)
from sqla_bench.scenarios.models import POST_TAGS, POSTS, TAGS
from sqla_bench.scenarios.sql import IN, JOINED, NONE, PER_KEY, SUBQUERY, Edge
from sqla_bench.scenarios.strategies import STRATEGIES, Strategy, query_options
from sqla_bench.scenarios.web.app import LOADERS

pytestmark = pytest.mark.harness

SYNC = Setting("postgresql", "psycopg2", "sync", (2, 1))
ASYNC = Setting("postgresql", "asyncpg", "async", (2, 1))
SIZE = DatasetSize(users=30, posts_per_user=3, comments_per_post=2, tags=8, tags_per_post=2)


@pytest.mark.parametrize(
    ("strategy", "statements", "kind"),
    [("joined", 1, JOINED), ("selectin", 2, IN), ("subquery", 2, SUBQUERY),
     ("immediate", 21, PER_KEY), ("lazy", 21, PER_KEY), ("write_only", 21, PER_KEY)],
)  # fmt: skip
def test_one_to_many_under_each_strategy(strategy, statements, kind) -> None:
    outcome = expected_load(USERS_WITH_POSTS, SYNC, SIZE, strategy, 20)
    assert outcome.statements == statements
    assert outcome.sql.edges == (Edge("posts", POSTS, kind, 20, 500 if kind == IN else 0),)


def test_nested_loads_one_group_per_level() -> None:
    outcome = expected_load(USERS_WITH_POSTS_COMMENTS, SYNC, SIZE, "selectin", 20)
    posts, comments = outcome.sql.edges
    assert (posts.keys, comments.keys, comments.name) == (20, 60, "posts.comments")
    assert outcome.statements == 3
    lazy = expected_load(USERS_WITH_POSTS_COMMENTS, SYNC, SIZE, "lazy", 20)
    assert lazy.statements == 1 + 20 + 60


def test_a_many_to_one_loads_each_distinct_key_once() -> None:
    outcome = expected_load(POSTS_WITH_AUTHOR_COMMENTS_TAGS, SYNC, SIZE, "immediate", 20)
    author, comments, tags = outcome.sql.edges
    assert (author.keys, comments.keys, tags.keys) == (7, 20, 20)  # posts 1-20: users 1-7
    assert tags.table == TAGS and outcome.sql.link_tables == (POST_TAGS,)
    assert outcome.statements == 1 + 7 + 20 + 20


def test_selectin_chunks_its_keys() -> None:
    big = DatasetSize(users=1200)
    assert expected_load(USERS_WITH_PROFILE, SYNC, big, "selectin", 1200).statements == 1 + 3


def test_lazy_loading_in_async_code_fails_as_the_driver_does() -> None:
    raised = expected_load(USERS_WITH_POSTS, ASYNC, SIZE, "lazy", 20)
    assert raised == Raises(MissingGreenlet, 1, attempted=2)
    assert isinstance(expected_load(USERS_WITH_POSTS, SYNC, SIZE, "lazy", 1), Works)
    assert isinstance(expected_load(USERS_WITH_POSTS, ASYNC, SIZE, "lazy", 1), Raises)


def test_no_parent_no_relationship_read_nothing_raised() -> None:
    for strategy in ("lazy", "raise", "selectin", "subquery"):
        outcome = expected_load(USERS_WITH_POSTS, ASYNC, SIZE, strategy, 0)
        assert outcome == Works(1, sql=outcome.sql), strategy
        assert outcome.sql.edges[0].keys == 0


def test_raise_refuses_after_the_first_query_and_sends_nothing_for_it() -> None:
    assert expected_load(USERS_WITH_POSTS, SYNC, SIZE, "raise", 20) == Raises(
        InvalidRequestError, 1
    )
    assert STRATEGIES["raise"].statements(20) == 0 and STRATEGIES["raise"].sql == NONE


def test_what_a_shape_does_not_offer_is_not_applicable_and_says_why() -> None:
    assert expected_load(USERS_WITH_PROFILE, SYNC, SIZE, "write_only", 20) == NotApplicable(
        "write_only needs a write only collection"
    )
    assert expected_load(USERS_WITH_PROFILE, SYNC, SIZE, "model_selectin", 20) == NotApplicable(
        "model_selectin needs a model mapping"
    )
    assert expected_load(USERS_WITH_POSTS, SYNC, SIZE, "run_sync", 20) == NotApplicable(
        "async only"
    )


def test_the_web_app_offers_exactly_the_query_options() -> None:
    assert tuple(LOADERS) == query_options() == ("lazy", "joined", "selectin", "subquery",
                                                 "immediate", "raise")  # fmt: skip
    assert all(LOADERS[name] is STRATEGIES[name].option for name in LOADERS)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [({"sql": "cartesian"}, "sql in"), ({"sql": IN}, "chunk size goes with sql=IN"),
     ({"sql": JOINED, "chunk": 10}, "chunk size"), ({"sql": JOINED, "reader": "peek"}, "reader in"),
     ({"sql": JOINED, "needs": "luck"}, "needs= one of")],
)  # fmt: skip
def test_a_strategy_declared_wrong_is_refused(fields, needle) -> None:
    with pytest.raises(TypeError, match=needle):
        Strategy("example", "doc", **fields)
