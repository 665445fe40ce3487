"""A twin that takes its server away in mid-cell, for tests/test_faults.py (a module of
its own, as ``run --scenarios MODULE`` reads every case a module declares)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from sqla_bench.scenarios.registry import scenario

CUTTING: list[Any] = []  # the test's latency proxy, which the fourth call cuts
CALLS = [0]
CUT_AT = 4


@scenario("test.cut_midway", statements=1, returns=1)
def cut_midway(session: Any) -> int:
    """Cuts the test's proxy on its fourth call: the server goes away in mid-cell."""
    _count_and_cut()
    return session.scalar(text("SELECT 1"))


@cut_midway.twin
async def cut_midway_async(session: Any) -> int:
    _count_and_cut()
    return await session.scalar(text("SELECT 1"))


def _count_and_cut() -> None:
    CALLS[0] += 1
    if CALLS[0] == CUT_AT:
        CUTTING[-1].cut()
