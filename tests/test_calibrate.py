"""``sqla-bench calibrate``: the same workload N times, each cell's spread kept in an A/A
history that grows from one call to the next."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_one_line_error, run

pytestmark = pytest.mark.harness

QUICK = ("--scenario", "crud.get", "--mode", "sync", "--min-time", "0", "--min-rounds", "3")


def test_runs_are_measured_kept_and_added_to_a_growing_history(tmp_path) -> None:
    history, folder = tmp_path / "aa.json", tmp_path / "runs"
    first = run(
        "sqla_bench", "calibrate", *QUICK, "--runs", "2", "--history", str(history),
        "--folder", str(folder),
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["run-1.json", "run-2.json"]
    cells = json.loads(history.read_text())["cells"]
    get = cells["crud.get user_id=1 sqlite+pysqlite sync users=1200 posts=2"]
    assert len(get["calls"]) == len(get["median_ns"]) == 2 and "instructions" not in get
    assert "calibration run 2 of 2" in first.stdout and "A/A history" in first.stdout
    again = run("sqla_bench", "calibrate", "--history", str(history), "--add", str(folder))
    assert again.returncode == 0, again.stderr
    grown = json.loads(history.read_text())["cells"]
    assert len(grown["crud.get user_id=1 sqlite+pysqlite sync users=1200 posts=2"]["calls"]) == 3


def test_bad_histories_and_runs_are_one_line(tmp_path) -> None:
    history = tmp_path / "aa.json"
    missing = tmp_path / "nothing.json"
    assert_one_line_error(
        run("sqla_bench", "calibrate", "--history", str(history), "--add", str(missing)),
        "does not exist",
    )
    assert not history.exists()
    history.write_text("[1, 2]")
    assert_one_line_error(
        run("sqla_bench", "calibrate", *QUICK, "--history", str(history)),
        "not an sqla-bench history",
    )
    assert_one_line_error(run("sqla_bench", "calibrate", "--runs", "0", "--history", "x"), "--runs")
    assert_one_line_error(run("sqla_bench", "calibrate", "--runs", "2"), "--history")
