"""Run a declared case once and compare what happened with what it declares.

Used by the tests (one assertion per case, cell and driver), by ``sqla-bench verify``
(the same checks, printed as a matrix) and by ``sqla-bench run`` (each cell's verdict), so
they can never disagree. ``differences`` is the checker: every field it compares is one
named difference when it does not match, in words a person can act on.

What it compares, for a call that raised: the exception's class, the exception it came
wrapped in, the statements completed and started before it. For a call that worked: the
statements completed, the value returned (against the one computed from the dataset's
definition), the SQL sent (against the declared rule), and for a write the COMMITs and
ROLLBACKs and the committed state, read back on another connection. A call that worked
and returned what the data does not hold "returned wrong results", the worst outcome:
where that is declared (``WrongResults``), where the first wrong value is must match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqla_bench.base.errors import first_line
from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.measure import Observation, measure, subject_for
from sqla_bench.measuring.policy import ONCE
from sqla_bench.results.files import case_text
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import (
    UNDECLARED,
    Committed,
    NotApplicable,
    Outcome,
    Raises,
    Setting,
    Works,
    WrongResults,
    wrong_text,
)
from sqla_bench.scenarios.registry import Case

MAX_SHOWN = 160  # characters of a value shown in a difference


def _signature(outcome: Works | Raises | WrongResults) -> tuple:
    if isinstance(outcome, Works | WrongResults):  # a value tells the two apart
        return ("works", outcome.statements)
    return ("raises", outcome.error, outcome.wrapped_in, outcome.statements, outcome.started)


def matches(expected: Outcome, observed: Works | Raises | None) -> bool:
    """Whether an observed outcome is the declared one, by kind and counts only (a served
    app's request, whose value and SQL are checked elsewhere); anything matches
    not-applicable."""
    if isinstance(expected, NotApplicable):
        return True
    return observed is not None and _signature(observed) == _signature(expected)


def differences(
    expected: Outcome, observed: Works | Raises | None, checked: Observation | None = None
) -> list[str]:
    """Every way ``observed`` (and the ``checked`` call's detail) differs from ``expected``."""
    if isinstance(expected, NotApplicable):
        return []
    if observed is None:
        return ["it did not run"]
    if isinstance(expected, WrongResults) and isinstance(observed, Works):
        return _wrong_differences(expected, observed, checked)
    if type(observed) is not type(expected):
        return [f"expected it to {_verb(expected)}, it {_verb(observed, past=True)}"]
    if isinstance(expected, Raises):
        return _raised_differences(expected, observed)
    found = _count("statements completed", expected.statements, observed.statements)
    if checked is not None:
        found += _value_differences(expected, checked)
        found += expected.sql.problems(_statements(checked)) if expected.sql else []
        found += _committed_differences(expected.committed, checked)
    return found


def _verb(outcome: Works | Raises | WrongResults, past: bool = False) -> str:
    if isinstance(outcome, WrongResults):
        return "return wrong results"
    if isinstance(outcome, Works):
        return "worked" if past else "work"
    return f"{'raised' if past else 'raise'} {_error_name(outcome)}"


def _error_name(outcome: Raises) -> str:
    name = outcome.error.__name__
    return name if outcome.wrapped_in is None else f"{outcome.wrapped_in.__name__}({name})"


def _count(what: str, expected: int, observed: int) -> list[str]:
    return [] if expected == observed else [f"{what}: expected {expected}, observed {observed}"]


def _raised_differences(expected: Raises, observed: Raises) -> list[str]:
    found = []
    if observed.error is not expected.error:
        found.append(
            f"exception: expected {_name(expected.error)}, observed {_name(observed.error)}"
        )
    if observed.wrapped_in is not expected.wrapped_in:
        wanted, got = _name(expected.wrapped_in), _name(observed.wrapped_in)
        found.append(f"wrapped in: expected {wanted}, observed {got}")
    found += _count("statements completed", expected.statements, observed.statements)
    return found + _count("statements started", expected.started, observed.started)


def _name(error: type[BaseException] | None) -> str:
    return "nothing" if error is None else error.__name__


def _wrong_differences(
    expected: WrongResults, observed: Works, checked: Observation | None
) -> list[str]:
    found = _count("statements completed", expected.statements, observed.statements)
    if checked is None or checked.error is not None:
        return found
    where = wrong_value(expected.value, checked.value)
    declared = f"[{expected.first_wrong}]"
    if where is None:
        return [*found, f"expected wrong results from value{declared}, every value was right"]
    if where[0] != declared:
        found.append(f"first wrong value: expected at value{declared}, observed at value{where[0]}")
    return found


def _value_differences(expected: Works, checked: Observation) -> list[str]:
    if checked.error is not None:
        return []  # a warm-up that failed, before samples that worked: nothing to compare
    if expected.value is UNDECLARED:
        return [f"returned {_shown(checked.value)}; the catalogue declares no value to check it"]
    where = wrong_value(expected.value, checked.value)
    if where is None:
        return []
    path, wanted, got = where
    return [f"value{path}: expected {_shown(wanted)}, observed {_shown(got)}"]


def wrong_from(
    expected: Outcome, observed: Works | Raises | None, checked: Observation | None
) -> str | None:
    """Where a call that worked first returned what the data does not hold (``[12]``
    into the value it returned), or None: it raised, or every value is right."""
    if not isinstance(observed, Works) or checked is None or checked.error is not None:
        return None
    right = expected.value if isinstance(expected, Works | WrongResults) else UNDECLARED
    where = wrong_value(right, checked.value)
    return None if where is None else where[0]


def observed_text(observed: Works | Raises, wrong: str | None) -> str:
    """What a call did, in the catalogue's words, wrong results included."""
    return observed.describe() if wrong is None else wrong_text(observed.statements, wrong)


def wrong_value(right: Any, returned: Any) -> tuple[str, Any, Any] | None:
    """Where a call that worked first returned what the data does not hold (None where
    every value is right, or no right value is declared)."""
    if right is UNDECLARED:
        return None
    return first_difference(right, returned)


def first_difference(expected: Any, observed: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """Where two values first differ (``[3][1]`` into nested sequences), or None when
    equal; a difference in length is reported after the common part."""
    if expected == observed and type(expected) is type(observed):
        return None
    sequences = (list, tuple)
    if isinstance(expected, sequences) and isinstance(observed, sequences):
        for index, (left, right) in enumerate(zip(expected, observed, strict=False)):
            inner = first_difference(left, right, f"{path}[{index}]")
            if inner is not None:
                return inner
        if len(expected) != len(observed):
            return f"{path} length", len(expected), len(observed)
    return path, expected, observed


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _statements(checked: Observation) -> list:
    return [executed.statement() for executed in checked.executed or ()]


def _committed_differences(declared: Committed | None, checked: Observation) -> list[str]:
    if declared is None:
        return []
    found = _count("COMMITs", declared.commits, checked.commits)
    found += _count("ROLLBACKs", declared.rollbacks, checked.rollbacks)
    if checked.committed is None:
        return [*found, f"committed state ({declared.what}) was not read"]
    before, after = checked.committed
    wanted = declared.change(before)
    if after != wanted:
        found.append(
            f"committed {declared.what}: expected {_shown(wanted)} after the session closed "
            f"(it was {_shown(before)} before), read {_shown(after)}"
        )
    return found


@dataclass
class Check:
    """One case, one parameter cell, one driver: expected against observed."""

    case: Case
    params: dict[str, Any]
    driver: str  # the DriverEnv id, e.g. postgresql-asyncpg-async
    expected: Outcome
    observation: Observation | None = field(default=None)

    @property
    def observed(self) -> Works | Raises | None:
        return None if self.observation is None else self.observation.outcome()

    @property
    def differences(self) -> list[str]:
        return differences(self.expected, self.observed, self.observation)

    @property
    def passed(self) -> bool:
        return not self.differences

    def explain(self) -> str:
        observed = self.observed
        said = "-"
        if observed is not None:
            said = observed_text(observed, wrong_from(self.expected, observed, self.observation))
        text = f"{case_text(self.case.id, self.params)} on {self.driver}: expected "
        text += f"{self.expected.describe()}, observed {said}"
        if self.observation is not None and self.observation.error is not None:
            text += f" ({first_line(self.observation.error, named=True)})"
        found = self.differences
        return text + (": " + "; ".join(found) if found else "")


def applicable_cells(
    cases: Sequence[Case], setting: Setting, size: DatasetSize
) -> list[tuple[Case, dict[str, Any]]]:
    """Every (case, parameter cell) that applies to this driver and mode."""
    return [
        (case, params)
        for case in cases
        for params in case.cells()
        if not isinstance(case.expected(setting, size, **params), NotApplicable)
    ]


def plan(case: Case, params: dict[str, Any], env: DriverEnv) -> Check:
    return Check(case, params, env.id, case.expected(env.setting, env.size, **params))


async def check(case: Case, params: dict[str, Any], env: DriverEnv) -> Check:
    """Run a case's twin for ``env``'s mode once (unless not applicable) and record it."""
    check = plan(case, params, env)
    if not isinstance(check.expected, NotApplicable):
        check.observation = (await measure(subject_for(case, params, env), ONCE)).first
    return check
