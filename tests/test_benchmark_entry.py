"""The pytest-benchmark entry (bench/benchmarks), run as a team would run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

ONE_CELL_EACH_MODE = "sqlite-pysqlite-sync-crud.get or sqlite-aiosqlite-async-crud.get"


def benchmarks(storage: Path, *options: str):
    return run(
        "pytest", "bench/benchmarks", "--benchmark-only", "-p", "no:cacheprovider",
        "-k", ONE_CELL_EACH_MODE, "--sqla-rounds", "7", f"--benchmark-storage=file://{storage}",
        *options, SQLA_BENCH_CONTAINERS="off",
    )  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    storage = tmp_path_factory.mktemp("storage")
    result = benchmarks(storage, "--benchmark-autosave")
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = storage.glob("*/0001_*.json")
    return path


def test_each_cell_is_timed_with_its_statements_in_extra_info(saved) -> None:
    found = {b["extra_info"]["mode"]: b for b in json.loads(saved.read_text())["benchmarks"]}
    assert set(found) == {"sync", "async"}
    for benchmark in found.values():
        assert benchmark["extra_info"]["case"] == "crud.get"
        assert benchmark["extra_info"]["statements"] == 1
        assert benchmark["stats"]["rounds"] == 7
        assert benchmark["group"] == "crud.get"
    assert found["async"]["extra_info"]["driver"] == "aiosqlite"


@pytest.mark.slow  # pytest-benchmark sessions, each a process: 11 s on a slow machine
def test_compare_fail_passes_within_its_threshold_and_fails_beyond(saved) -> None:
    storage = saved.parent.parent
    compare = ("--benchmark-compare=0001", "--benchmark-compare-fail=median:1000%")
    assert benchmarks(storage, *compare).returncode == 0
    history = json.loads(saved.read_text())
    for benchmark in history["benchmarks"]:  # as if it once ran a hundred times faster
        for name in ("min", "max", "mean", "median"):
            benchmark["stats"][name] /= 100
    saved.write_text(json.dumps(history))
    result = benchmarks(storage, "--benchmark-compare=0001", "--benchmark-compare-fail=median:50%")
    assert result.returncode != 0
    assert "Performance has regressed" in result.stdout + result.stderr
