"""Run a declared case once and compare what happened with what it declares.

Used by the tests (one assertion per case, cell and driver) and by ``sqla-bench verify``
(the same checks, printed as a matrix), so the two can never disagree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.engines import DriverEnv
from bench.measure import ONCE, Cell, Measurement, Observation, measure, measure_driver, subject_for
from scenarios.dataset import DatasetSize
from scenarios.expect import NotApplicable, Outcome, Raises, Setting, Works
from scenarios.registry import Case


def _signature(outcome: Works | Raises) -> tuple:
    if isinstance(outcome, Works):
        return ("works", outcome.statements)
    return ("raises", outcome.error, outcome.wrapped_in, outcome.statements, outcome.started)


def matches(expected: Outcome, observed: Works | Raises | None) -> bool:
    """Whether an observed outcome is the declared one (anything matches not-applicable)."""
    if isinstance(expected, NotApplicable):
        return True
    return observed is not None and _signature(observed) == _signature(expected)


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
    def passed(self) -> bool:
        return matches(self.expected, self.observed)

    def explain(self) -> str:
        observed = self.observed
        text = f"{self.case.id}{_format_params(self.params)} on {self.driver}: expected "
        text += f"{self.expected.describe()}, observed {observed.describe() if observed else '-'}"
        if self.observation is not None and self.observation.error is not None:
            text += f" ({_first_line(self.observation.error)})"
        return text


def _format_params(params: dict[str, Any]) -> str:
    return f"[{', '.join(f'{k}={v}' for k, v in params.items())}]" if params else ""


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:160] if lines else ''}"


def applicable_cells(
    cases: list[Case], setting: Setting, size: DatasetSize
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


def check_driver(
    env: DriverEnv,
    cells: list[Cell],
    loop: asyncio.AbstractEventLoop,
    on_check: Callable[[Check], None] = lambda check: None,
) -> list[Check]:
    """Every cell once on ``env``, then dispose of it; runs on ``loop``, which the caller
    keeps for the whole run (async pooled connections belong to the loop that opened them).
    This is the measurement path with a policy of one call, so verify and run agree."""
    checks: list[Check] = []

    def record(case: Case, params: dict[str, Any], measurement: Measurement) -> None:
        checks.append(plan(case, params, env))
        checks[-1].observation = measurement.first
        on_check(checks[-1])

    measure_driver(env, cells, ONCE, loop, record)
    return checks
