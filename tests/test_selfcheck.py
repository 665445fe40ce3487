"""selfcheck's arithmetic and its refusals; its figures come from running it, not tests."""

from __future__ import annotations

import pytest

from sqla_bench.run.selfcheck import Figure, ProxyRound, _proxy_figures, _variation_figures
from tests.helpers import assert_one_line_error, run

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
     ("driver ratio", 0.95, True), ("driver ratio", 0.9, False), ("pgbench -S -c 1", 1.0, None),
     ("proxy added per round trip", 24_999.0, True),
     ("proxy added per round trip", 25_000.0, False),
     ("0 ms over no --latency", 1.1, True), ("0 ms over no --latency", 1.11, False)],
)  # fmt: skip
def test_goals(name, value, met) -> None:
    assert Figure(name, value, "", "").met is met


def test_the_driver_check_without_postgresql_is_one_line() -> None:
    result = run("sqla_bench", "selfcheck", "--only", "driver")
    assert_one_line_error(result, "SQLA_BENCH_POSTGRESQL_URL")


def test_the_proxy_figures_take_the_delay_and_the_direct_time_out() -> None:
    """Per round: (delayed - timed at 0 ms - round trips x delay) / round trips."""
    rounds = [  # ns: without --latency, at 0 ms, at +2 ms; 2 round trips per call
        ProxyRound(100_000.0, 101_000.0, 4_141_000.0, 2),  # 40 us beyond 4 ms over 2: 20
        ProxyRound(100_000.0, 99_000.0, 4_159_000.0, 2),  # 30
        ProxyRound(100_000.0, 100_000.0, 4_120_000.0, 2),  # 10
    ]
    added, share, zero = _proxy_figures(rounds, round_trip_ms=2.0)
    assert added.value == pytest.approx(20_000.0) and "10.0 to 30.0 µs" in added.how
    assert share.value == pytest.approx(2 * 20_000.0 / 4_141_000.0)
    assert zero.value == pytest.approx(1.0) and zero.met is True
