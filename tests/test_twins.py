"""Sync and async twins return the same plain data; loading strategies agree."""

from __future__ import annotations

import pytest

from sqla_bench.measuring.verify import applicable_cells, check
from sqla_bench.scenarios.expect import Works
from sqla_bench.scenarios.registry import IN_PROCESS, discover
from sqla_bench.scenarios.strategies import STRATEGIES


def _working_in_both(sync_env, async_env):
    sync_cells = applicable_cells(discover(IN_PROCESS), sync_env.setting, sync_env.size)
    async_cells = applicable_cells(discover(IN_PROCESS), async_env.setting, async_env.size)
    return [
        (case, params)
        for case, params in sync_cells
        if (case, params) in async_cells
        and isinstance(case.expected(sync_env.setting, sync_env.size, **params), Works)
        and isinstance(case.expected(async_env.setting, async_env.size, **params), Works)
    ]


@pytest.mark.asyncio
async def test_twins_return_the_same_data(twin_envs) -> None:
    sync_env, async_env = twin_envs
    compared = 0
    for case, params in _working_in_both(sync_env, async_env):
        sync_check = await check(case, params, sync_env)
        async_check = await check(case, params, async_env)
        assert sync_check.case is case and async_check.params == params
        assert sync_check.passed, sync_check.explain()
        assert async_check.passed, async_check.explain()
        assert sync_check.observation.value == async_check.observation.value, (
            f"{case.id}{params}: sync and async twins disagree"
        )
        compared += 1
    # Guard against the comparison silently covering nothing.
    assert compared >= 30, f"only {compared} twin pairs compared"


@pytest.mark.asyncio
async def test_loading_strategies_agree(sync_env) -> None:
    """Every working strategy of one shape loads exactly the same graph."""
    shapes = [case for case in discover("scenario") if case.id.startswith("load.")]
    assert len(shapes) == 4
    for case in shapes:
        results = {}
        for strategy in STRATEGIES:
            params = {"strategy": strategy, "limit": 20}
            if not isinstance(case.expected(sync_env.setting, sync_env.size, **params), Works):
                continue
            result = await check(case, params, sync_env)
            assert result.passed, result.explain()
            results[strategy] = result.observation.value
        reference = results.pop("joined")
        assert len(reference) == 20 and all(len(row) > 1 for row in reference)
        for strategy, value in results.items():
            assert value == reference, f"{case.id}: {strategy} differs from joined"


async def _group_agrees(env) -> int:
    """Each case that joins another's table returns what that case returns."""
    cases = {case.id: case for case in discover("scenario")}
    compared = 0
    for case in (c for c in cases.values() if c.group is not None):
        for params in case.cells():
            joined = await check(case, params, env)
            owner = await check(cases[case.group], params, env)
            assert joined.passed and owner.passed, joined.explain() + owner.explain()
            assert joined.observation.value == owner.observation.value, (
                f"{case.id} and {case.group} disagree on {env.id}"
            )
            compared += 1
    return compared


@pytest.mark.asyncio
async def test_driver_baseline_reads_what_the_orm_reads_sync(sync_env) -> None:
    assert await _group_agrees(sync_env) >= 1


@pytest.mark.asyncio
async def test_driver_baseline_reads_what_the_orm_reads_async(async_env) -> None:
    assert await _group_agrees(async_env) >= 1
