"""Every pattern and scenario cell, on every configured driver: outcome and statements.

The expectation comes from the declaration (scenarios/patterns.py and the scenario
modules); the observation from running the twin once against the real database.
"""

from __future__ import annotations

import pytest

from bench.verify import check


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
