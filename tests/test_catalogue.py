"""Every pattern and scenario cell, on every configured driver: outcome and statements.

The expectation comes from the declaration (scenarios/patterns.py and the scenario
modules); the observation from running the twin once against the real database.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sqla_bench.measuring.verify import applicable_cells, check, differences
from sqla_bench.scenarios.registry import discover


@pytest.mark.asyncio
async def test_sync_outcome(sync_env, cell) -> None:
    case, params = cell
    result = await check(case, params, sync_env)
    assert result.passed, result.explain()


@pytest.mark.asyncio
async def test_async_outcome(async_env, cell) -> None:
    case, params = cell
    result = await check(case, params, async_env)
    assert result.passed, result.explain()


def _writes(env) -> list:
    """Every scenario cell that declares what the database holds afterwards."""
    cells = applicable_cells(discover("scenario"), env.setting, env.size)
    return [
        (case, params)
        for case, params in cells
        if getattr(case.expected(env.setting, env.size, **params), "committed", None)
    ]


async def _held_to_what_was_committed(env) -> int:
    writes = _writes(env)
    for case, params in writes:
        result = await check(case, params, env)
        assert result.passed, result.explain()
        declared = result.expected.committed
        observation = result.observation
        assert observation.committed is not None, f"{case.id}: committed state not read"
        assert (observation.commits, observation.rollbacks) == (
            declared.commits,
            declared.rollbacks,
        )
        # Declared otherwise, the same observation is a mismatch naming the state.
        wrong = replace(result.expected, committed=replace(declared, change=lambda before: -1))
        found = differences(wrong, result.observed, observation)
        assert len(found) == 1 and found[0].startswith(f"committed {declared.what}"), found
    return len(writes)


@pytest.mark.asyncio
async def test_writes_leave_what_they_declare_sync(sync_env) -> None:
    assert await _held_to_what_was_committed(sync_env) >= 6  # create, update, delete x2, tx x3


@pytest.mark.asyncio
async def test_writes_leave_what_they_declare_async(async_env) -> None:
    assert await _held_to_what_was_committed(async_env) >= 6


def _edges_of_the_dataset(users: int) -> list[tuple[str, dict]]:
    return [
        ("crud.get", {"user_id": users}),  # the last user
        ("crud.get", {"user_id": users + 1}),  # one past it: none
        ("crud.get", {"user_id": 0}),  # ids start at 1: none
        ("crud.list", {"limit": users + 5}),  # more than there are: every name
    ]


@pytest.mark.asyncio
async def test_reads_hold_at_the_edges_of_the_dataset(sync_env) -> None:
    """Where an off-by-one in a declaration would show: the first and last rows."""
    cases = {case.id: case for case in discover("scenario")}
    for case_id, params in _edges_of_the_dataset(sync_env.size.users):
        result = await check(cases[case_id], params, sync_env)
        assert result.passed, result.explain()


async def _no_parents_as_declared(env) -> None:
    """--param limit=0: no parent, so no key and no second statement, for every strategy."""
    for case in discover("scenario"):
        if "limit" not in case.params or "strategy" not in case.params:
            continue
        for strategy in case.params["strategy"]:
            result = await check(case, {"strategy": strategy, "limit": 0}, env)
            assert result.passed, result.explain()


@pytest.mark.asyncio
async def test_a_load_of_no_parents_is_what_the_catalogue_declares_sync(sync_env) -> None:
    await _no_parents_as_declared(sync_env)


@pytest.mark.asyncio
async def test_a_load_of_no_parents_is_what_the_catalogue_declares_async(async_env) -> None:
    await _no_parents_as_declared(async_env)
