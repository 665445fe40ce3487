"""SQL shape: statements as each dialect sends them, read the same way; rules that hold
each strategy to the SQL it declares, and name what breaks them."""

from __future__ import annotations

import pytest

from sqla_bench.scenarios.sql import (
    IN,
    JOINED,
    NONE,
    PER_KEY,
    SUBQUERY,
    Edge,
    LoadSql,
    Statement,
    Writes,
    count_statements,
    normalise,
    summarize,
)
from sqla_bench.scenarios.strategies import STRATEGIES

pytestmark = pytest.mark.harness

# What selectinload of posts sends, as four drivers send it (captured from the engine).
SELECTIN_POSTS = {
    "psycopg2": "SELECT posts.user_id, posts.id, posts.title FROM posts WHERE posts.user_id "
    "IN (%(primary_keys_1)s, %(primary_keys_2)s) ORDER BY posts.id",
    "asyncpg": "SELECT posts.user_id, posts.id, posts.title FROM posts WHERE posts.user_id "
    "IN ($1::INTEGER, $2::INTEGER) ORDER BY posts.id",
    "aiomysql": "SELECT posts.user_id, posts.id, posts.`title` FROM posts WHERE posts.user_id "
    "IN (%s, %s) ORDER BY posts.id",
    "pysqlite": "SELECT posts.user_id, posts.id, posts.title FROM posts WHERE posts.user_id "
    "IN (?, ?) ORDER BY posts.id",
}
ROOT = Statement("SELECT users.id, users.name FROM users ORDER BY users.id LIMIT ? OFFSET ?", 2)
JOINED_ROOT = Statement(
    "SELECT anon_1.id, anon_1.name, posts_1.id AS id_1, posts_1.title FROM (SELECT users.id AS "
    "id, users.name AS name FROM users ORDER BY users.id LIMIT ?) AS anon_1 LEFT OUTER JOIN "
    "posts AS posts_1 ON anon_1.id = posts_1.user_id ORDER BY anon_1.id, posts_1.id",
    1,
)
SUBQUERY_POSTS = Statement(
    "SELECT posts.id AS posts_id, posts.title AS posts_title, anon_1.users_id AS anon_1_users_id "
    "FROM (SELECT users.id AS users_id FROM users ORDER BY users.id LIMIT ?) AS anon_1 JOIN "
    "posts ON anon_1.users_id = posts.user_id ORDER BY posts.id",
    1,
)


def _by_key(user_id: int) -> Statement:
    return Statement(
        "SELECT posts.id, posts.title FROM posts WHERE ? = posts.user_id ORDER BY posts.id", 1
    )


def _in(keys: int) -> Statement:
    marks = ", ".join("?" * keys)
    return Statement(
        f"SELECT posts.user_id, posts.id FROM posts WHERE posts.user_id IN ({marks})", keys
    )


@pytest.mark.parametrize("driver", sorted(SELECTIN_POSTS))
def test_every_dialect_reads_the_same(driver) -> None:
    summary = summarize(Statement(SELECTIN_POSTS[driver], 2))
    assert (summary.verb, summary.table, summary.in_lists) == ("SELECT", "posts", (2,))
    assert summary.loads == {"posts"} and not summary.outer_join and summary.subquery_of is None


def test_normalise_removes_casts_quotes_and_placeholders() -> None:
    text = 'SELECT "users".id FROM users WHERE users.id = $1::INTEGER AND `x` = %(p)s'
    assert normalise(text) == "SELECT users.id FROM users WHERE users.id = ? AND x = ?"


def test_a_joined_root_loads_the_related_table_through_an_outer_join() -> None:
    summary = summarize(JOINED_ROOT)
    assert summary.table == "anon" and summary.loads == {"anon", "posts"} and summary.outer_join


def test_a_subquery_load_names_the_table_its_subquery_reads() -> None:
    summary = summarize(SUBQUERY_POSTS)
    assert (summary.table, summary.subquery_of) == ("posts", "users")


def test_a_link_table_is_not_what_a_statement_loads() -> None:
    text = (
        "SELECT post_tags.post_id, tags.id, tags.name FROM post_tags JOIN tags ON tags.id = "
        "post_tags.tag_id WHERE post_tags.post_id IN (?, ?, ?)"
    )
    assert summarize(Statement(text, 3), link_tables=("post_tags",)).table == "tags"


def test_a_parent_key_selected_from_an_alias_is_not_what_a_statement_loads() -> None:
    # A many-to-many selectin as SQLAlchemy 2.0 sends it: the parent's key first.
    text = (
        "SELECT posts_1.id AS posts_1_id, tags.id AS tags_id, tags.name FROM posts AS posts_1 "
        "JOIN post_tags AS post_tags_1 ON posts_1.id = post_tags_1.post_id JOIN tags ON tags.id "
        "= post_tags_1.tag_id WHERE posts_1.id IN (?, ?)"
    )
    summary = summarize(Statement(text, 2), link_tables=("post_tags",))
    assert (summary.table, summary.in_lists) == ("tags", (2,))


def test_writes_name_their_table() -> None:
    assert summarize(Statement("UPDATE users SET name=? WHERE users.id = ?", 2)).table == "users"
    assert summarize(Statement("DELETE FROM post_tags WHERE post_id = ?", 1)).verb == "DELETE"


@pytest.mark.parametrize(
    ("kind", "keys", "chunk", "statements"),
    [(JOINED, 20, 0, 0), (IN, 1200, 500, 3), (IN, 0, 500, 0), (SUBQUERY, 20, 0, 1),
     (PER_KEY, 20, 0, 20), (NONE, 20, 0, 0)],
)  # fmt: skip
def test_each_kind_of_sql_implies_its_statement_count(kind, keys, chunk, statements) -> None:
    assert count_statements(kind, keys, chunk) == statements


# Each strategy's declared SQL, and what each other strategy sends for the same load.
SENT = {
    JOINED: [JOINED_ROOT],
    IN: [ROOT, _in(2)],
    SUBQUERY: [ROOT, SUBQUERY_POSTS],
    PER_KEY: [ROOT, _by_key(1), _by_key(2)],
}


def _rule(kind: str) -> LoadSql:
    return LoadSql("users", (Edge("posts", "posts", kind, 2, 500 if kind == IN else 0),))


@pytest.mark.parametrize("declared", sorted(SENT))
@pytest.mark.parametrize("sent", sorted(SENT))
def test_a_strategy_that_sends_another_strategys_sql_is_a_mismatch(declared, sent) -> None:
    problems = _rule(declared).problems(SENT[sent])
    assert (problems == []) == (declared == sent), problems


def test_in_lists_must_cover_every_key_in_chunks() -> None:
    rule = LoadSql("users", (Edge("posts", "posts", IN, 1200, 500),))
    assert rule.problems([ROOT, _in(500), _in(500), _in(200)]) == []
    (problem,) = rule.problems([ROOT, _in(600), _in(400), _in(200)])
    assert "IN lists of [600, 400, 200] keys, expected 1200 in chunks of 500" in problem
    (problem,) = rule.problems([ROOT, _in(500), _in(500), _in(199)])
    assert "expected 1200" in problem


def test_a_statement_no_relationship_explains_is_a_mismatch() -> None:
    (problem,) = _rule(IN).problems([ROOT, _in(2), Statement("SELECT tags.id FROM tags", 0)])
    assert problem.startswith("a statement no relationship explains: SELECT tags.id")


def test_a_root_query_of_another_table_is_a_mismatch() -> None:
    (problem,) = LoadSql("users", ()).problems([_in(2)])
    assert problem.startswith("the first statement should select users")


def test_no_statement_at_all_is_a_mismatch() -> None:
    assert _rule(IN).problems([]) == ["no statement ran; expected SELECT users (posts: in)"]


def test_a_relationship_that_must_not_load_is_held_to_it() -> None:
    rule = LoadSql("users", (Edge("posts", "posts", NONE, 2),))
    assert rule.problems([ROOT]) == []
    assert rule.problems([JOINED_ROOT])


def test_writes_are_compared_as_a_multiset() -> None:
    rule = Writes((("SELECT", "users"), ("UPDATE", "users")))
    update = Statement("UPDATE users SET name=? WHERE users.id = ?", 2)
    select = Statement("SELECT users.id FROM users WHERE users.id = ?", 1)
    assert rule.problems([update, select]) == []
    assert rule.problems([select]) == [
        "sent 1 SELECT users; expected 1 SELECT users, 1 UPDATE users"
    ]


def test_every_strategy_declares_a_kind_of_sql_and_its_count_follows() -> None:
    for strategy in STRATEGIES.values():
        assert strategy.statements(20) == count_statements(strategy.sql, 20, strategy.chunk)


def test_a_scalar_subquery_in_the_select_list_is_part_of_it() -> None:
    text = "SELECT (SELECT max(tags.id) FROM tags) AS t, users.id FROM users WHERE users.id = ?"
    summary = summarize(Statement(text, 1))
    assert (summary.table, summary.loads) == ("tags", {"tags", "users"})


def test_a_statement_that_is_neither_a_select_nor_a_write_names_no_table() -> None:
    summary = summarize(Statement("SAVEPOINT sa_savepoint_1", 0))
    assert (summary.verb, summary.table, summary.loads) == ("SAVEPOINT", "", frozenset())


def test_joined_needs_an_outer_join_not_only_the_columns() -> None:
    inner = Statement(JOINED_ROOT.text.replace("LEFT OUTER JOIN", "JOIN"), 1)
    (problem,) = _rule(JOINED).problems([inner])
    assert problem == "posts (joined, 2 keys): the first statement should LEFT OUTER JOIN posts"


def test_per_key_loads_take_one_parameter_each() -> None:
    two = Statement("SELECT posts.id FROM posts WHERE ? = posts.user_id AND posts.id > ?", 2)
    (problem,) = _rule(PER_KEY).problems([ROOT, two, two])
    assert problem.startswith("posts (per_key, 2 keys): each should load by one key (1 value")


def test_no_parent_means_no_in_statement() -> None:
    rule = LoadSql("users", (Edge("posts", "posts", IN, 0, 500),))
    assert rule.problems([ROOT]) == []


def test_every_problem_is_named_not_only_the_last() -> None:
    problems = _rule(IN).problems([_in(2), _in(3)])  # no root query, and the IN is wrong
    assert len(problems) == 2 and problems[0].startswith("the first statement should select")


def test_a_long_statement_is_shown_shortened() -> None:
    text = "SELECT users.id FROM users WHERE " + " AND ".join(["users.id = ?"] * 20)
    shown = summarize(Statement(text, 20)).describe()
    assert len(shown) == 120 and shown.endswith("...") and shown.startswith("SELECT users.id")
    assert LoadSql("users", ()).describe() == "SELECT users"


def test_a_select_list_ends_at_its_own_from() -> None:
    text = (
        "SELECT (SELECT max(tags.id) FROM tags) AS t, users.id FROM users "
        "JOIN posts ON posts.user_id = users.id"
    )
    assert summarize(Statement(text, 0)).loads == {"tags", "users"}  # not posts


@pytest.mark.parametrize(("length", "shortened"), [(120, False), (121, True)])
def test_a_statement_is_shown_whole_up_to_120_characters(length, shortened) -> None:
    base = "SELECT users.id FROM users WHERE users.name = '"
    text = base + "x" * (length - len(base) - 1) + "'"
    shown = summarize(Statement(text, 0)).describe()
    assert len(text) == length and (shown != text) == shortened and len(shown) <= 120


def test_in_problems_name_the_relationship() -> None:
    rule = LoadSql("users", (Edge("posts", "posts", IN, 1200, 500),))
    (problem,) = rule.problems([ROOT, _in(600), _in(400), _in(200)])
    assert problem == (
        "posts (in, 1200 keys): IN lists of [600, 400, 200] keys, expected 1200 in chunks of 500"
    )


def test_the_first_statement_that_breaks_a_per_key_rule_is_shown() -> None:
    fine = _by_key(1)
    wrong = Statement("SELECT posts.id FROM posts WHERE posts.user_id IN (?)", 1)
    (problem,) = _rule(PER_KEY).problems([ROOT, fine, wrong])
    assert problem.endswith("SELECT posts.id FROM posts WHERE posts.user_id IN (?)")


def test_a_write_that_sent_nothing_says_so() -> None:
    rule = Writes((("UPDATE", "users"),))
    assert rule.problems([]) == ["sent nothing; expected 1 UPDATE users"]


@pytest.mark.parametrize(
    ("text", "lists"),
    [
        # A composite key: one key per tuple, in each dialect's spelling.
        ("SELECT a.x FROM a WHERE (a.x, a.y) IN ((%s, %s), (%s, %s), (%s, %s))", (3,)),
        ("SELECT a.x FROM a WHERE (a.x, a.y) IN (VALUES (?, ?), (?, ?))", (2,)),
        # A single-table subclass's discriminator is no list of keys.
        ("SELECT r.id FROM r WHERE r.id IN (?, ?) AND r.kind IN (?)", (2,)),
        ("SELECT r_1.id FROM r AS r_1 WHERE r_1.id = ? AND r_1.kind IN (?, ?)", ()),
        # A subquery and a list of literals neither.
        ("SELECT a.x FROM a WHERE a.x IN (SELECT b.x FROM b WHERE b.y IN (?))", (1,)),
        ("SELECT a.x FROM a WHERE a.x IN ('p', 'q')", ()),
    ],
)
def test_in_lists_count_keys_whatever_their_shape(text, lists) -> None:
    summary = summarize(Statement(text, text.count("?") + text.count("%s")), (), ("r.kind",))
    assert summary.in_lists == lists


def test_a_load_by_one_key_binds_the_values_its_relationship_declares() -> None:
    edge = Edge("enrollment", "e", PER_KEY, 1, parameters=2)  # a composite key
    sql = LoadSql("s", (edge,))
    root = Statement("SELECT s.id FROM s", 0)
    two = Statement("SELECT e.a FROM e WHERE e.a = ? AND e.b = ?", 2)
    one = Statement("SELECT e.a FROM e WHERE e.a = ?", 1)
    assert sql.problems([root, two]) == []
    assert "2 values bound" in sql.problems([root, one])[0]


def test_a_self_referential_load_is_told_by_the_outer_join_alone() -> None:
    root = Statement("SELECT t.id FROM t WHERE t.id IN (?, ?)", 2)
    joined = Statement("SELECT t.id, t_1.id FROM t LEFT OUTER JOIN t AS t_1 ON t_1.id = t.p", 0)
    upwards = Statement("SELECT t.id FROM t WHERE t.id = ?", 1)
    lazy = LoadSql("t", (Edge("parent", "t", PER_KEY, 1),))
    assert lazy.problems([root, upwards]) == []
    assert "should not load t" in lazy.problems([joined, upwards])[0]
    assert LoadSql("t", (Edge("parent", "t", JOINED, 2),)).problems([joined]) == []
