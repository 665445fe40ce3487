"""Declarations are complete: twins, docstrings, grids, unique ids."""

from __future__ import annotations

import pytest

from scenarios.expect import Works
from scenarios.registry import Case, discover, problems, scenario


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


def test_an_unknown_argument_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="receives= must be one of"):
        scenario("example.bad", statements=0, receives="cursor")


def test_a_second_function_for_one_mode_is_refused() -> None:
    @scenario("example.twice", statements=1)
    def first(session):
        """Doc."""

    with pytest.raises(TypeError, match="already declared"):
        first.twin(lambda session: None)


def test_statements_shorthand_means_works() -> None:
    @scenario("example.shorthand", statements=3)
    def shorthand(session):
        """Doc."""

    assert shorthand.expect(None, None) == Works(3)
