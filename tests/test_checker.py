"""The checker itself: for every field it compares, a wrong observation is a mismatch.

``sqla_bench.measuring.verify.differences`` draws every verdict (tests, ``verify``,
``run``). Each test here builds what a case declares and what a call did, right but for
one field, and requires that field, and only it, to be named; the right observation must
pass."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import InvalidRequestError, MissingGreenlet, StatementError

from sqla_bench.measuring.measure import Observation
from sqla_bench.measuring.probes import Executed
from sqla_bench.measuring.verify import differences, first_difference, observed_text, wrong_from
from sqla_bench.scenarios.expect import (
    UNDECLARED,
    Committed,
    NotApplicable,
    Raises,
    Works,
    WrongResults,
    unchanged,
)
from sqla_bench.scenarios.sql import IN, PER_KEY, Edge, LoadSql, Writes

pytestmark = pytest.mark.harness

VALUE = [("alan-00001", (("post 1",), ("post 2",))), ("ada-00002", (("post 3",),))]
SELECTIN_SQL = (
    Executed("SELECT users.id, users.name FROM users ORDER BY users.id LIMIT ?", (20,), False, 2),
    Executed(
        "SELECT posts.user_id, posts.id, posts.title FROM posts WHERE posts.user_id IN (?, ?)",
        (1, 2),
        False,
        3,
    ),
)
SELECTIN = LoadSql("users", (Edge("posts", "posts", IN, 2, 500),))
KEPT = Committed("users.visits of user 2", lambda c: None, lambda n: n + 1, 1, 1)


def _worked(**changes) -> Observation:
    fields = {
        "value": VALUE,
        "completed": 2,
        "started": 2,
        "executed": list(SELECTIN_SQL),
        "commits": 1,
        "rollbacks": 1,
        "committed": (4, 5),
    }
    return Observation(**(fields | changes))


def _works(**changes) -> Works:
    return Works(
        **({"statements": 2, "value": VALUE, "sql": SELECTIN, "committed": KEPT} | changes)
    )


def _check(expected, observation: Observation) -> list[str]:
    return differences(expected, observation.outcome(), observation)


def test_a_right_observation_passes() -> None:
    assert _check(_works(), _worked()) == []


def test_not_applicable_matches_anything() -> None:
    assert differences(NotApplicable("async only"), None) == []


def test_a_call_that_did_not_run_is_a_mismatch() -> None:
    assert differences(_works(), None) == ["it did not run"]


def test_works_where_it_should_raise() -> None:
    expected = Raises(InvalidRequestError, 1)
    (found,) = _check(expected, _worked())
    assert found == "expected it to raise InvalidRequestError, it worked"


def test_raises_where_it_should_work() -> None:
    raised = _worked(error=InvalidRequestError("no"), value=None, completed=1, started=1)
    (found,) = _check(_works(), raised)
    assert found == "expected it to work, it raised InvalidRequestError"


def _raised(error: Exception, completed: int = 1, started: int = 2) -> Observation:
    return Observation(error=error, completed=completed, started=started)


def _greenlet(wrapped: bool = False) -> Exception:
    error = MissingGreenlet("greenlet_spawn has not been called")
    if not wrapped:
        return error
    return StatementError("wrapped", "SELECT 1", {}, error)


def test_the_exception_class_is_compared() -> None:
    expected = Raises(MissingGreenlet, 1, attempted=2)
    assert _check(expected, _raised(_greenlet())) == []
    (found,) = _check(expected, _raised(InvalidRequestError("no")))
    assert found == "exception: expected MissingGreenlet, observed InvalidRequestError"


def test_the_wrapper_is_compared() -> None:
    plain = Raises(MissingGreenlet, 1, attempted=2)
    wrapped = Raises(MissingGreenlet, 1, attempted=2, wrapped_in=StatementError)
    assert _check(wrapped, _raised(_greenlet(wrapped=True))) == []
    (found,) = _check(plain, _raised(_greenlet(wrapped=True)))
    assert found == "wrapped in: expected nothing, observed StatementError"
    (found,) = _check(wrapped, _raised(_greenlet()))
    assert found == "wrapped in: expected StatementError, observed nothing"


def test_statements_completed_before_a_raise_are_compared() -> None:
    expected = Raises(MissingGreenlet, 1, attempted=2)
    (found,) = _check(expected, _raised(_greenlet(), completed=0, started=2))
    assert found == "statements completed: expected 1, observed 0"


def test_statements_started_before_a_raise_are_compared() -> None:
    expected = Raises(MissingGreenlet, 1, attempted=2)
    (found,) = _check(expected, _raised(_greenlet(), completed=1, started=1))
    assert found == "statements started: expected 2, observed 1"


def test_statements_of_a_call_that_works_are_compared() -> None:
    (found,) = _check(_works(sql=None), _worked(completed=3))
    assert found == "statements completed: expected 2, observed 3"


def test_the_value_is_compared_and_the_place_it_differs_is_named() -> None:
    reordered = [("alan-00001", (("post 2",), ("post 1",))), VALUE[1]]
    (found,) = _check(_works(), _worked(value=reordered))
    assert found == "value[0][1][0][0]: expected 'post 1', observed 'post 2'"


def test_a_working_call_that_returned_what_the_data_does_not_hold_returned_wrong_results() -> None:
    declared = _works(sql=None, committed=None, value=[40, 40, 45])
    observation = _worked(value=[40, 40, 40], completed=2)
    (found,) = _check(declared, observation)
    assert found == "value[2]: expected 45, observed 40"
    wrong = wrong_from(declared, observation.outcome(), observation)
    assert observed_text(observation.outcome(), wrong) == (
        "returns wrong results from value[2], 2 statements"
    )
    right = _worked(value=[40, 40, 45], completed=2)
    assert wrong_from(declared, right.outcome(), right) is None


def test_declared_wrong_results_hold_where_the_first_wrong_value_is() -> None:
    declared = WrongResults(2, first_wrong=2, value=[40, 40, 45])
    assert _check(declared, _worked(value=[40, 40, 40], completed=2)) == []
    (found,) = _check(declared, _worked(value=[40, 45, 45], completed=2))
    assert found == "first wrong value: expected at value[2], observed at value[1]"
    (found,) = _check(declared, _worked(value=[40, 40, 45], completed=2))
    assert found == "expected wrong results from value[2], every value was right"
    (found,) = _check(declared, _raised(_greenlet(), completed=2, started=3))
    assert found == "expected it to return wrong results, it raised MissingGreenlet"
    (found,) = _check(declared, _worked(value=[40, 40, 40], completed=3))
    assert found == "statements completed: expected 2, observed 3"


def test_a_missing_row_is_a_difference_in_length() -> None:
    (found,) = _check(_works(), _worked(value=VALUE[:1]))
    assert found == "value length: expected 2, observed 1"


def test_a_value_of_another_type_differs() -> None:
    expected = _works(value=(1, "alan-00001"), sql=None, committed=None)
    (found,) = _check(expected, _worked(value=[1, "alan-00001"]))
    assert found.startswith("value: expected (1, 'alan-00001'), observed [1, 'alan-00001']")


def test_a_working_call_without_a_declared_value_is_a_mismatch() -> None:
    (found,) = _check(_works(value=UNDECLARED), _worked())
    assert "declares no value" in found


def test_the_sql_shape_is_compared() -> None:
    per_key = LoadSql("users", (Edge("posts", "posts", PER_KEY, 2),))
    (found,) = _check(_works(sql=per_key), _worked())
    assert found.startswith("posts (per_key, 2 keys): 1 statements load posts, expected 2")


def test_the_sql_of_a_write_is_compared() -> None:
    writes = Writes((("SELECT", "users"), ("UPDATE", "users")))
    (found,) = _check(_works(sql=writes), _worked())
    assert found == "sent 1 SELECT users, 1 SELECT posts; expected 1 SELECT users, 1 UPDATE users"


def test_the_committed_state_is_compared() -> None:
    (found,) = _check(_works(), _worked(committed=(4, 4)))
    assert found.startswith("committed users.visits of user 2: expected 5 after the session")


def test_commits_are_counted() -> None:
    (found,) = _check(_works(), _worked(commits=0))
    assert found == "COMMITs: expected 1, observed 0"


def test_rollbacks_are_counted() -> None:
    (found,) = _check(_works(), _worked(rollbacks=2))
    assert found == "ROLLBACKs: expected 1, observed 2"


def test_a_committed_state_that_could_not_be_read_is_a_mismatch() -> None:
    (found,) = _check(_works(), _worked(committed=None))
    assert found == "committed state (users.visits of user 2) was not read"


def test_a_rolled_back_write_is_held_to_what_was_there() -> None:
    lost = Committed("users.name of user 1", lambda c: None, unchanged, 0, 1)
    expected = _works(committed=lost)
    assert _check(expected, _worked(commits=0, committed=("a", "a"))) == []
    (found,) = _check(expected, _worked(commits=0, committed=("a", "a-renamed")))
    assert "expected 'a' after the session closed" in found


def test_several_differences_are_all_named() -> None:
    found = _check(_works(), _worked(value=[], commits=0, committed=(4, 4)))
    assert len(found) == 3


@pytest.mark.parametrize(
    ("expected", "observed", "where"),
    [
        ([1, 2], [1, 2], None),
        ([1, 2], [2, 1], ("[0]", 1, 2)),
        ((1, (2, 3)), (1, (2, 4)), ("[1][1]", 3, 4)),
        ([1], [1, 2], (" length", 1, 2)),
        ({"a": 1}, {"a": 2}, ("", {"a": 1}, {"a": 2})),
        (True, 1, ("", True, 1)),
    ],
)
def test_first_difference(expected, observed, where) -> None:
    assert first_difference(expected, observed) == where


def test_a_wrapped_error_is_named_with_its_wrapper() -> None:
    expected = Raises(MissingGreenlet, 1, wrapped_in=StatementError)
    (found,) = _check(expected, _worked())
    assert found == "expected it to raise StatementError(MissingGreenlet), it worked"


def test_an_undeclared_value_is_shown() -> None:
    (found,) = _check(_works(value=UNDECLARED), _worked(value=[1, 2]))
    assert found == "returned [1, 2]; the catalogue declares no value to check it"


def test_a_sequence_against_something_else_differs_at_the_top() -> None:
    assert first_difference([1], None) == ("", [1], None)
    assert first_difference(None, (1,)) == ("", None, (1,))


def test_the_committed_difference_says_before_after_and_expected() -> None:
    (found,) = _check(_works(), _worked(committed=(4, 7)))
    assert found == (
        "committed users.visits of user 2: expected 5 after the session closed "
        "(it was 4 before), read 7"
    )


def test_a_long_value_is_shown_shortened() -> None:
    (found,) = _check(_works(value=list(range(100)), sql=None), _worked(value=list(range(99))))
    assert found == "value length: expected 100, observed 99"
    (found,) = _check(_works(value="x" * 300, sql=None), _worked(value="y" * 300))
    shown = found.split("expected ")[1].split(", observed")[0]
    assert len(shown) == 160 and shown.endswith("...")
