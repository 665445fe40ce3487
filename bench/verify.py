"""Run a declared case once and compare what happened with what it declares.

Used by the tests (one assertion per case, cell and driver) and by ``sqla-bench verify``
(the same checks, printed as a matrix), so the two can never disagree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import StatementError

from bench.engines import DriverEnv
from bench.probes import StatementCounter
from scenarios.dataset import DatasetSize
from scenarios.expect import NotApplicable, Outcome, Raises, Setting, Works
from scenarios.registry import Case


@dataclass
class Observation:
    """What one call did: its value or exception, and the statements it ran."""

    value: Any = None
    error: BaseException | None = None
    started: int = 0
    completed: int = 0

    def outcome(self) -> Works | Raises:
        if self.error is None:
            return Works(self.completed)
        error, wrapper = _unwrap(self.error)
        return Raises(error, self.completed, attempted=self.started, wrapped_in=wrapper)


def _unwrap(error: BaseException) -> tuple[type[BaseException], type[BaseException] | None]:
    # A bare StatementError carrying .orig is SQLAlchemy re-delivering another error (for
    # example MissingGreenlet); DBAPI errors subclass StatementError and stay as they are.
    orig = getattr(error, "orig", None)
    if type(error) is StatementError and isinstance(orig, BaseException):
        return type(orig), StatementError
    return type(error), None


def _signature(outcome: Works | Raises) -> tuple:
    if isinstance(outcome, Works):
        return ("works", outcome.statements, outcome.statements)
    return ("raises", outcome.error, outcome.wrapped_in, outcome.statements, outcome.started)


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
        if isinstance(self.expected, NotApplicable):
            return True
        observed = self.observed
        return observed is not None and _signature(observed) == _signature(self.expected)

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


@contextmanager
def observing(counter: StatementCounter) -> Iterator[Observation]:
    """Count statements and catch the exception of the ``with`` body into an Observation."""
    observation = Observation()
    counter.reset()
    try:
        yield observation
    except Exception as error:
        observation.error = error
    finally:
        observation.started, observation.completed = counter.started, counter.completed


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


def check_sync(case: Case, params: dict[str, Any], env: DriverEnv) -> Check:
    """Run a case's sync twin once in ``env`` (unless not applicable) and record it."""
    check = plan(case, params, env)
    if isinstance(check.expected, NotApplicable):
        return check
    if case.kind == "pattern":
        with observing(env.counter) as check.observation:
            check.observation.value = case.sync(env, **params)
        return check
    with env.session() as session, observing(env.counter) as check.observation:
        check.observation.value = case.sync(session, **params)
    return check


async def check_async(case: Case, params: dict[str, Any], env: DriverEnv) -> Check:
    """Run a case's async twin once in ``env`` (unless not applicable) and record it."""
    check = plan(case, params, env)
    if isinstance(check.expected, NotApplicable):
        return check
    if case.kind == "pattern":
        with observing(env.counter) as check.observation:
            check.observation.value = await case.async_(env, **params)
        return check
    async with env.session() as session:
        with observing(env.counter) as check.observation:
            check.observation.value = await case.async_(session, **params)
    return check


def check_driver(
    env: DriverEnv,
    cells: list[tuple[Case, dict[str, Any]]],
    loop: asyncio.AbstractEventLoop,
    on_check: Callable[[Check], None] = lambda check: None,
) -> list[Check]:
    """Every cell once on ``env``, then dispose of it; runs on ``loop``, which the caller
    keeps for the whole run (async pooled connections belong to the loop that opened them)."""
    return loop.run_until_complete(_check_driver(env, cells, on_check))


async def _check_driver(
    env: DriverEnv, cells: list[tuple[Case, dict[str, Any]]], on_check: Callable[[Check], None]
) -> list[Check]:
    checks = []
    try:
        for case, params in cells:
            if env.mode == "sync":
                checks.append(check_sync(case, params, env))
            else:
                checks.append(await check_async(case, params, env))
            on_check(checks[-1])
    finally:
        await env.dispose()
    return checks
