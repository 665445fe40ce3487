"""``sqla-bench verify`` fails when SQLAlchemy does something else than what a pattern
claims, even where every statement count stays as it was.

Each test runs verify in a process of its own with one fault planted in SQLAlchemy
(``tests/sqla_faults.py``): it must exit 1 and name the pattern and what differs. The
same run without the fault passes (``test_catalogue`` runs it case by case).
"""

from __future__ import annotations

import pytest

from sqla_bench.servers.targets import URL_VARIABLES
from tests.helpers import run

# Verdicts are SQLAlchemy's to change: CI runs these on 2.0 and 2.1.


def _verify_with(fault: str, *options: str, **env: str) -> tuple[int, list[str]]:
    result = run("tests.sqla_faults", fault, "verify", *options, **env)
    assert "Traceback" not in result.stderr, result.stderr
    mismatches = [line for line in result.stdout.splitlines() if line.startswith("MISMATCH")]
    return result.returncode, mismatches


def _named(mismatches: list[str], case: str, driver: str) -> str:
    found = [line for line in mismatches if line.startswith(f"MISMATCH {case}") and driver in line]
    assert found, f"{case} on {driver} not named among:\n" + "\n".join(mismatches)
    return found[0]


def test_subqueryload_where_selectinload_was_asked() -> None:
    status, mismatches = _verify_with("selectin_as_subquery", "--target", "sqlite")
    assert status == 1
    line = _named(mismatches, "load.users_with_posts[strategy=selectin", "pysqlite")
    # The count is what selectinload would have sent: only the SQL tells them apart.
    assert "expected works, 2 statements, observed works, 2 statements" in line
    assert "posts (in, 20 keys): each should have one IN (...) over the keys" in line
    _named(mismatches, "model_selectin_get", "aiosqlite")


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_a_rollback_where_a_session_commit_was_asked(servers, target) -> None:
    env = {}
    if target != "sqlite":  # skipped (or failed, when required) without the server
        url = servers.target(target).url.render_as_string(hide_password=False)
        env = {URL_VARIABLES[target]: url}
    options = ("--target", target, "--only", "scenarios")
    status, mismatches = _verify_with("commit_rolls_back", *options, **env)
    assert status == 1
    for case in ("tx.manual_commit", "tx.begin_commits"):
        line = _named(mismatches, case, f"{target}-")
        # The counts are as declared; what the session read back is not the data's.
        assert "observed returns wrong results from value, 3 statements" in line
        # What the session saw, and what the database holds on another connection.
        assert "value: expected 1, observed 0" in line
        assert "committed users.visits of user 2: expected" in line
    assert not any("tx.begin_rolls_back" in line for line in mismatches)


# The SQL and the committed-state faults above stay in the quick suite; these two run in CI.
@pytest.mark.slow  # a process with a fault planted in SQLAlchemy: 4 s on a slow machine
def test_rows_in_another_order_than_the_query_asked() -> None:
    status, mismatches = _verify_with("rows_reversed", "--target", "sqlite", "--only", "scenarios")
    assert status == 1
    line = _named(mismatches, "crud.list", "pysqlite")
    assert "observed returns wrong results from value[0], 1 statement: value[0]: " in line
    assert "value[0]: expected 'ada-00002'" in line
    line = _named(mismatches, "load.users_with_posts[strategy=joined", "aiosqlite")
    assert "value[0][0]: expected 'alan-00001'" in line


@pytest.mark.slow  # a process with a fault planted in SQLAlchemy: 4 s on a slow machine
def test_an_async_loaded_collection_in_another_order() -> None:
    status, mismatches = _verify_with(
        "awaitable_attrs_reversed", "--target", "sqlite", "--only", "scenarios"
    )
    assert status == 1
    line = _named(mismatches, "load.users_with_posts[strategy=awaitable_attrs", "aiosqlite")
    assert "observed returns wrong results from value[0][1][0][0], 21 statements" in line
    assert "value[0][1][0][0]: expected 'post 1'" in line
    # Only the loader that was altered: the same load through run_sync is right.
    assert not any("strategy=run_sync" in line for line in mismatches)
