"""Declarations are complete: twins, docstrings, grids, unique ids."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import (
    UNDECLARED,
    Committed,
    NotApplicable,
    Setting,
    Works,
    unchanged,
)
from sqla_bench.scenarios.registry import (
    PARAMETERS,
    Case,
    Request,
    discover,
    pattern,
    problems,
    scenario,
    web,
)
from sqla_bench.scenarios.sql import Writes


def test_cases_are_discovered() -> None:
    kinds = {case.kind for case in discover()}
    assert kinds == {"scenario", "pattern", "web"}
    assert len(discover("pattern")) >= 25
    assert len(discover("scenario")) >= 12
    assert {case.id for case in discover("web")} >= {"web.get_user", "web.list_users"}
    assert {case.kind for case in discover(("scenario", "pattern"))} == {"scenario", "pattern"}


@pytest.mark.parametrize("case", discover(), ids=lambda case: case.id)
def test_every_case_is_complete(case: Case) -> None:
    assert problems(case, {known.id for known in discover()}) == []


def test_an_incomplete_case_is_reported() -> None:
    @scenario("example.missing_twin", statements=1)
    def undocumented(session):
        return None

    assert problems(undocumented) == [
        "example.missing_twin: no docstring (its first line is the report label)",
        "example.missing_twin: no async twin",
    ]


def test_a_group_that_names_no_case_is_reported() -> None:
    @scenario("example.orphan", statements=0, group="example.nowhere")
    def orphan(session):
        """Doc."""

    @orphan.twin
    async def orphan_async(session):
        return None

    assert problems(orphan, {"example.orphan"}) == [
        "example.orphan: joins the table of 'example.nowhere', which is not declared"
    ]


def test_a_parameter_is_declared_and_its_grid_holds_values_it_takes() -> None:
    @scenario(
        "example.params", statements=1, params={"limit": (5, -1), "size": (1,), "pre_ping": (1,)}
    )
    def with_params(session, limit, size, pre_ping):
        """Doc."""

    @with_params.twin
    async def with_params_async(session, limit, size, pre_ping):
        return None

    found = problems(with_params)
    assert len(found) == 3, found
    assert found[0].startswith("example.params: limit=-1 is not a value it takes: expected a whole")
    assert found[1] == "example.params: parameter 'size' is not declared in PARAMETERS"
    # 1 is not True: a flag is true or false, not a number that Python counts as one.
    assert found[2].startswith("example.params: pre_ping=1 is not a value it takes")


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("limit", "0", 0),
        ("limit", "1000000", 1_000_000),
        ("limit", "1000001", None),
        ("limit", "-5", None),
        ("limit", "5.0", None),
        ("limit", "\u00b2", None),  # a digit to str.isdigit, not to int()
        ("limit", "9" * 5000, None),  # int() refuses so many digits
        ("user_id", "2147483647", 2**31 - 1),
        ("user_id", "2147483648", None),
        ("strategy", "selectin", "selectin"),
        ("strategy", "Selectin", None),
        ("pre_ping", "TRUE", True),
        ("pre_ping", "false", False),
        ("pre_ping", "1", None),
    ],
)
def test_a_parameter_reads_the_values_it_takes_and_refuses_the_rest(name, text, value) -> None:
    parameter = PARAMETERS[name]
    if value is None:
        with pytest.raises(ValueError, match=f"expected {parameter.takes()}, got"):
            parameter.parse(text)
    else:
        assert parameter.parse(text) == value and type(parameter.parse(text)) is type(value)


def test_an_unknown_argument_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="receives= must be one of"):
        scenario("example.bad", statements=0, receives="cursor")


def test_a_second_function_for_one_mode_is_refused() -> None:
    @scenario("example.twice", statements=1)
    def first(session):
        """Doc."""

    with pytest.raises(TypeError, match=r"example\.twice: a sync function is already declared"):
        first.twin(lambda session: None)


def test_statements_shorthand_means_works() -> None:
    @scenario("example.shorthand", statements=3)
    def shorthand(session):
        """Doc."""

    assert shorthand.expect(None, None) == Works(3)


SETTING = Setting("sqlite", "aiosqlite", "async", (2, 1))


def test_a_pattern_declares_what_it_receives_returns_and_where_it_applies() -> None:
    @pattern("example.pattern", statements=2, returns=3, only="async")
    async def example(env):
        """Doc."""

    assert (example.kind, example.receives, example.only) == ("pattern", "env", "async")
    assert example.expected(SETTING, DatasetSize()) == Works(2, value=3)
    assert example.expected(replace(SETTING, mode="sync"), DatasetSize()) == NotApplicable(
        "async only"
    )


def test_what_a_case_returns_is_computed_per_cell() -> None:
    @scenario("example.double", statements=1, params={"n": (1, 2)}, returns=lambda s, d, n: 2 * n)
    def double(session, n):
        """Doc."""

    assert [double.expected(SETTING, DatasetSize(), **cell).value for cell in double.cells()] == [
        2,
        4,
    ]
    assert double.expected(SETTING, DatasetSize(), n=2).committed is None


def test_a_write_declares_its_sql_and_what_is_committed() -> None:
    sends = Writes((("UPDATE", "users"),))
    kept = Committed("users", lambda connection: 0, unchanged, 0, 1)

    @scenario("example.write", statements=1, returns=None, sql=sends, committed=kept)
    def write(session):
        """Doc."""

    works = write.expected(SETTING, DatasetSize())
    assert (works.value, works.sql, works.committed) == (None, sends, kept)


def test_a_web_scenario_is_one_request_for_both_apps() -> None:
    def request() -> Request:
        """Doc."""
        return Request("GET", "/users/1")

    case = web("example.web", app="module:factory", statements=1, returns={"id": 1})(request)
    assert (case.kind, case.receives, case.app) == ("web", "http", "module:factory")
    assert case.function("sync") is request and case.function("async") is request
    assert case.expected(SETTING, DatasetSize()) == Works(1, value={"id": 1})


def test_a_committed_state_must_be_declared_as_one() -> None:
    with pytest.raises(TypeError, match="committed= takes a Committed"):
        scenario("example.bad_commit", statements=1, committed="users")


def test_every_scenario_that_works_declares_what_it_sends_and_returns() -> None:
    """A verdict can only check what is declared: every working scenario cell (but the
    baselines, which SQLAlchemy does not run) declares its SQL, and every one its value."""
    checked = 0
    for mode, driver in (("sync", "pysqlite"), ("async", "aiosqlite")):
        setting = Setting("sqlite", driver, mode, (2, 1))
        for case in discover("scenario"):
            for params in case.cells():
                outcome = case.expected(setting, DatasetSize(), **params)
                if not isinstance(outcome, Works):
                    continue
                assert outcome.value is not UNDECLARED, (case.id, params)
                assert case.baseline or outcome.sql is not None, (case.id, params)
                checked += 1
    assert checked >= 60
