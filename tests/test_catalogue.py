"""Every pattern and scenario cell, on every configured driver: outcome and statements.

The expectation comes from the declaration (scenarios/patterns.py and the scenario
modules); the observation from running the twin once against the real database.
"""

from __future__ import annotations

import pytest

from bench.verify import check_async, check_sync


def test_sync_outcome(sync_env, cell) -> None:
    case, params = cell
    check = check_sync(case, params, sync_env)
    assert check.passed, check.explain()


@pytest.mark.asyncio
async def test_async_outcome(async_env, cell) -> None:
    case, params = cell
    check = await check_async(case, params, async_env)
    assert check.passed, check.explain()
