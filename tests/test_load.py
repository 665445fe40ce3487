"""Load: C workers sharing one engine, checked against Little's law on the real servers.

Latency is injected so that an operation is dominated by waiting on the network, not by
these 2 cores: then throughput is set by the pool, and Little's law predicts it."""

from __future__ import annotations

import pytest

from sqla_bench.measuring.measure import Policy
from sqla_bench.reporting.plots import write_plots
from sqla_bench.results.files import read_result
from sqla_bench.run.pipeline import run_to_file
from sqla_bench.run.plan import RunPlan
from tests.helpers import assert_one_line_error, configured_target, run

ROUND_TRIP_MS = 20.0


def _load(request, tmp_path, name: str, **options) -> list:
    plan = RunPlan(
        targets=(configured_target(request, name),),
        scenarios=("crud.get",),
        latencies=(ROUND_TRIP_MS,),
        policy=Policy(warmup=0, min_rounds=1, min_time=0.0),
        **options,
    )
    path = tmp_path / "load.json"
    assert run_to_file(plan, path, ["t"])[1] == []
    return read_result(path)[1]  # and the file validates


@pytest.mark.harness
@pytest.mark.slow
@pytest.mark.parametrize("name", ["postgresql", "mysql"])
def test_throughput_follows_littles_law_and_the_pool_bounds_connections(
    request, tmp_path, name
) -> None:
    cells = _load(
        request, tmp_path, name,
        concurrency=(1, 6), pool_sizes=(2,), max_overflow=0, load_seconds=2.0,
    )  # fmt: skip
    by_driver: dict[tuple, dict[int, object]] = {}
    for cell in cells:
        by_driver.setdefault((cell.driver, cell.mode), {})[cell.concurrency] = cell
    assert len(by_driver) >= 2
    for (driver, mode), levels in by_driver.items():
        alone, crowded = levels[1], levels[6]
        # One worker holds a connection for 1 / its throughput; six share two connections.
        predicted = 2 * alone.load["throughput"]
        measured = crowded.load["throughput"]
        where = f"{driver}-{mode}: {measured:.1f} ops/s, predicted {predicted:.1f}"
        assert abs(measured - predicted) <= 0.15 * predicted, where
        assert crowded.load["peak_connections"] == 2, where
        assert alone.load["peak_connections"] == 1, where
        assert crowded.load["errors"] == {} and crowded.outcome == "ok"
        assert alone.statements == 1 and alone.round_trips >= 1
    assert [path.name for path in write_plots(cells, tmp_path, "r")] == ["r-load-crud.get.png"]


@pytest.mark.slow
def test_pool_timeouts_are_counted_not_raised(request, tmp_path) -> None:
    cells = _load(
        request, tmp_path, "postgresql",
        drivers=("psycopg2", "asyncpg"), concurrency=(4,), pool_sizes=(1,), max_overflow=0,
        pool_timeout=0.01, load_seconds=1.0,
    )  # fmt: skip
    assert {cell.mode for cell in cells} == {"sync", "async"}
    for cell in cells:
        assert cell.outcome == "ok", cell.message
        assert cell.load["errors"].get("TimeoutError", 0) > 0, cell.load
        assert "TimeoutError" in cell.load["first_error"]
        assert cell.load["peak_connections"] == 1


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        (("--pool-size", "0"), "expected whole numbers from 1 to 1,000"),
        (("--concurrency", "0,8"), "expected whole numbers from 1 to 1,000"),
        (("--max-overflow", "-1"), "expected a number from 0 to 1,000"),
        (("--pool-timeout", "0"), "expected a number from 0.001 to 3,600"),
        (("--load-seconds", "x"), "expected a number from 0.1 to 3,600"),
        (("--load-seconds", "inf"), "expected a number from 0.1 to 3,600"),
        (("--concurrency", "1e9"), "expected whole numbers from 1 to 1,000"),
    ],
)
@pytest.mark.harness
def test_bad_pool_and_load_options_are_one_line(tmp_path, arguments, needle) -> None:
    out = tmp_path / "never.json"
    assert_one_line_error(run("sqla_bench", "run", *arguments, "--output", str(out)), needle)
    assert not out.exists()
