"""selfcheck's arithmetic and its refusals; its figures come from running it, not tests."""

from __future__ import annotations

import pytest

from sqla_bench.selfcheck import Figure, _variation_figures
from tests.test_cli import assert_one_line_error, run

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

KEY_SLOW = ("load.x", (("strategy", "lazy"),), (), "sqlite", "pysqlite", "sync")
KEY_FAST = ("crud.get", (), (), "sqlite", "pysqlite", "sync")


def test_cv_covers_cells_slower_than_a_millisecond_and_names_the_worst() -> None:
    medians = {
        KEY_SLOW: [2.0e6, 2.2e6, 1.8e6],  # stdev 0.2 ms over a mean of 2 ms: 10 %
        KEY_FAST: [100.0, 300.0, 200.0],  # 50 %, but faster than 1 ms
    }
    worst, slow_median, every = _variation_figures(medians, repeats=3)
    assert worst.value == pytest.approx(0.10) and worst.met is False
    assert "load.x" in worst.how and "crud.get" not in worst.how
    assert slow_median.value == pytest.approx(0.10)
    assert every.value == pytest.approx(0.30)  # median of 10 % and 50 %


def test_a_cell_missing_from_a_run_is_left_out() -> None:
    (figure,) = _variation_figures({KEY_SLOW: [2.0e6, 2.1e6]}, repeats=3)
    assert figure.value is None and figure.met is None


@pytest.mark.parametrize(
    ("name", "value", "met"),
    [("overhead sync", 999.0, True), ("overhead sync", 1000.0, False),
     ("driver ratio", 0.95, True), ("driver ratio", 0.9, False), ("pgbench -S -c 1", 1.0, None)],
)  # fmt: skip
def test_goals(name, value, met) -> None:
    assert Figure(name, value, "", "").met is met


def test_the_driver_check_without_postgresql_is_one_line() -> None:
    result = run("sqla_bench", "selfcheck", "--only", "driver")
    assert_one_line_error(result, "SQLA_BENCH_POSTGRESQL_URL")
