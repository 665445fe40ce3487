"""Cells a verdict compares are measured side by side, and the guide reads them so:
rotating blocks, ratios within blocks with an interval, no winner from too few blocks or
from passes that disagree, and no false winner on a machine that drifts.

The drift is planted in the timed call: a spin whose length grows with the time since the
test began, as a machine that steadily slows down makes every call longer. Two cells that
do the same work then differ only in when they ran."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import pytest

from sqla_bench.measuring.measure import (
    Design,
    Measurement,
    Policy,
    Subject,
    measure,
    measure_side_by_side,
)
from sqla_bench.measuring.probes import StatementCounter
from sqla_bench.reporting.verdicts import MIN_EFFECT, points, repeatability, verdict
from sqla_bench.results.files import CellRecord
from sqla_bench.results.stats import MIN_BLOCKS, block_medians, ratio

pytestmark = pytest.mark.harness

# Drift: every call 1 % longer per 10 ms of test (as when another tenant's load grows).
DRIFT_PER_SECOND = 1.0
BASE_SECONDS = 0.0002


class Drifting:
    """A call that spins for ``work`` times the base, times the machine's slowdown."""

    def __init__(self, since: float, work: float = 1.0) -> None:
        self.since, self.work = since, work

    def __call__(self, argument: object) -> None:
        slowdown = 1 + DRIFT_PER_SECOND * (time.perf_counter() - self.since)
        until = time.perf_counter() + BASE_SECONDS * self.work * slowdown
        while time.perf_counter() < until:
            pass


def _subject(call) -> Subject:
    @asynccontextmanager
    async def per_call():
        yield None

    @asynccontextmanager
    async def arguments():
        yield per_call

    return Subject(call, False, arguments, StatementCounter())


POLICY = Policy(warmup=1, min_rounds=10, min_time=0.25, max_time=1.0, block_time=0.03)


def _record(strategy: str, measurement: Measurement, run_pass: int = 1) -> CellRecord:
    design = measurement.design
    side_by_side = design is not None and design.cells > 1
    return CellRecord(
        case="load.users_with_posts", table="load.users_with_posts", label="Users.",
        baseline=None, params={"strategy": strategy, "limit": 20},
        dataset={"users": 100, "posts_per_user": 20, "comments_per_post": 2, "tags": 8,
                 "tags_per_post": 2, "payload": 0},
        target="postgresql", driver="psycopg2", mode="sync", outcome="ok", error=None,
        wrapped_in=None, message=None, expected="works", matches_expected=True, statements=1,
        statements_started=1, statements_seen=[1], rows=20, warmup=1,
        samples_ns=measurement.samples_ns,
        blocks=measurement.blocks if side_by_side else None,
        slots=measurement.slots if side_by_side else None,
        comparison=design.to_json() if side_by_side else None,
        run_pass=run_pass,
    )  # fmt: skip


def _side_by_side(*works: float) -> list[Measurement]:
    since = time.perf_counter()
    subjects = [_subject(Drifting(since, work)) for work in works]
    return asyncio.run(measure_side_by_side(subjects, POLICY))


def _one_after_another(*works: float) -> list[Measurement]:
    since = time.perf_counter()
    return [asyncio.run(measure(_subject(Drifting(since, work)), POLICY)) for work in works]


def _block_by_block_verdict(faster: Measurement, slower: Measurement) -> bool:
    """The verdict sqla-bench drew before it measured side by side (and the gate draws
    still): a winner when the medians differ by 5 % and a one-sided Mann-Whitney U test
    on the raw samples gives p < 0.05."""
    from scipy.stats import mannwhitneyu

    a, b = sorted(faster.samples_ns), sorted(slower.samples_ns)
    if b[len(b) // 2] < 1.05 * a[len(a) // 2]:
        return False
    return mannwhitneyu(b, a, alternative="greater").pvalue < 0.05


def test_blocks_rotate_and_every_cell_samples_in_every_block() -> None:
    first, second, third = _side_by_side(1.0, 1.0, 1.0)
    assert first.design is second.design is third.design
    blocks = first.design.blocks
    assert blocks >= POLICY.min_blocks
    for measurement in (first, second, third):
        assert len(measurement.blocks) == blocks and all(measurement.blocks)
        assert sum(measurement.blocks) == len(measurement.samples_ns)
    # Each block starts one place further along: the first cell is first, last, second...
    assert first.slots[:6] == [0, 2, 1, 0, 2, 1]
    assert second.slots[:3] == [1, 0, 2]


def test_drift_makes_the_block_by_block_design_name_a_false_winner() -> None:
    """The foil: the same identical cells measured one after another."""
    earlier, later = _one_after_another(1.0, 1.0)
    assert _block_by_block_verdict(earlier, later)


def test_side_by_side_names_no_false_winner_under_the_same_drift() -> None:
    measured = _side_by_side(1.0, 1.0)
    found = verdict({1: {"joined": _record("joined", measured[0]),
                         "selectin": _record("selectin", measured[1])}})  # fmt: skip
    assert not found.clear and found.why == "within noise"
    low, high = found.interval
    assert low <= 1 + MIN_EFFECT and high >= 1 / (1 + MIN_EFFECT)


def test_side_by_side_names_a_real_winner_under_drift() -> None:
    measured = _side_by_side(1.3, 1.0)  # the first does 30 % more work
    found = verdict({1: {"joined": _record("joined", measured[0]),
                         "selectin": _record("selectin", measured[1])}})  # fmt: skip
    assert found.clear and found.best == "selectin"
    assert found.interval[0] < 1.3 < found.interval[1] * 1.1  # the planted work, drift aside


def test_no_winner_from_fewer_blocks_than_stated() -> None:
    few = Policy(warmup=0, min_rounds=1, min_time=0.0, max_rounds=5, block_time=0.0,
                 min_blocks=5, max_blocks=5)  # fmt: skip
    since = time.perf_counter()
    subjects = [_subject(Drifting(since, 2.0)), _subject(Drifting(since, 1.0))]
    slow, fast = asyncio.run(measure_side_by_side(subjects, few))
    assert len(fast.blocks) == 5 < MIN_BLOCKS
    found = verdict({1: {"joined": _record("joined", slow),
                         "selectin": _record("selectin", fast)}})  # fmt: skip
    assert found.best == "selectin" and found.ratio > 1.5
    assert not found.clear and found.why == "few blocks"


def test_cells_measured_one_after_another_name_no_winner() -> None:
    earlier, later = _one_after_another(1.0, 2.0)
    found = verdict({1: {"joined": _record("joined", earlier),
                         "selectin": _record("selectin", later)}})  # fmt: skip
    assert found.best == "joined" and not found.clear and found.why == "one after another"


def test_passes_that_disagree_are_unstable_and_counted() -> None:
    one = _side_by_side(1.0, 1.4)
    other = _side_by_side(1.4, 1.0)
    cells = [
        _record("joined", one[0], 1), _record("selectin", one[1], 1),
        _record("joined", other[0], 2), _record("selectin", other[1], 2),
    ]  # fmt: skip
    (point,) = points(cells)
    (found,) = point.verdicts.values()
    assert found.passes == 2 and not found.agreed and not found.clear and found.why == "unstable"
    assert repeatability([point]) == (0, 1)
    agreeing = [_record("joined", one[0], 1), _record("selectin", one[1], 1),
                _record("joined", one[0], 2), _record("selectin", one[1], 2)]  # fmt: skip
    (point,) = points(agreeing)
    (found,) = point.verdicts.values()
    assert found.clear and found.best == "joined" and found.blocks == 2 * len(one[0].blocks)
    assert repeatability([point]) == (1, 1)


def test_the_interval_is_paired_by_block_and_shrugs_off_one_disturbed_block() -> None:
    faster = [1000.0] * 12
    slower = [1100.0 * (1 + 0.01 * (i % 3)) for i in range(12)]
    calm = ratio(slower, faster)
    slower[4] = 60_000.0  # a 60 ms stall in one block
    stalled = ratio(slower, faster)
    assert calm.low > 1.09 and calm.high < 1.13
    assert abs(stalled.estimate - calm.estimate) < 0.01 and stalled.low > 1.09
    assert ratio(slower[:4], faster[:4]) is None  # too few blocks for any interval
    assert block_medians([5, 1, 3, 7, 9], [3, 0, 2]) == [3, None, 8]


def test_the_winner_is_read_within_blocks_not_from_a_few_slow_ones() -> None:
    """selectin is 5 % faster in ten blocks of twelve and 10x slower in two (a stall):
    its geometric mean ranks it second, the blocks' ratios first."""
    design = Design(
        "g", 2, 12, 0.02, {"load_average": [0, 0], "steal": 0, "cpus": 2, "busy": False}
    )

    def measured(values: list[int]) -> Measurement:
        return Measurement(samples_ns=values, blocks=[1] * 12, slots=[0] * 12, design=design)

    joined = _record("joined", measured([100_000] * 12))
    selectin = _record("selectin", measured([95_000] * 10 + [1_000_000] * 2))
    found = verdict({1: {"joined": joined, "selectin": selectin}})
    assert found.best == "selectin" and found.ratio == pytest.approx(1 / 0.95)


def test_the_machine_state_marks_a_comparison_busier_than_the_cpus() -> None:
    from sqla_bench.measuring.machine import Snapshot, cpus, state_between

    before = Snapshot(load=0.5, busy_seconds=100.0, steal_seconds=1.0)
    quiet = state_between(before, Snapshot(load=0.7, busy_seconds=110.0, steal_seconds=1.5))
    assert quiet["steal"] == 0.05 and quiet["load_average"] == [0.5, 0.7]
    assert not quiet["busy"]
    loaded = Snapshot(load=cpus() + 0.5, busy_seconds=120.0, steal_seconds=1.0)
    assert state_between(before, loaded)["busy"]
    assert Snapshot.now().busy_seconds > 0


def test_only_the_strategies_a_verdict_compares_keep_the_sampling_going() -> None:
    """A variant beside them (model-level selectin, say, as fast as selectin) is measured
    as long as they are, not until its tie with the fastest is resolved."""
    import random

    rng = random.Random(28)
    since = time.perf_counter()

    def noisy(work: float):
        return lambda argument: Drifting(since, work * rng.uniform(0.5, 1.5))(argument)

    policy = Policy(warmup=0, min_rounds=1, min_time=0.0, max_time=0.5, block_time=0.005)
    works = (1.0, 3.0, 1.0)
    tied = asyncio.run(measure_side_by_side([_subject(noisy(w)) for w in works], policy))
    apart = asyncio.run(
        measure_side_by_side(
            [_subject(noisy(w)) for w in works], policy, decides=[True, True, False]
        )
    )
    assert len(apart[0].blocks) == policy.min_blocks < len(tied[0].blocks)


def test_asked_to_stop_after_a_block_the_comparison_keeps_what_it_measured() -> None:
    calls = []

    def stop_after(count: int):
        return lambda: len(calls) >= count

    def call(argument: object) -> None:
        calls.append(1)

    policy = Policy(warmup=1, min_rounds=1, min_time=0.0, block_time=0.0, min_blocks=50)
    subjects = [_subject(call), _subject(call)]
    kept = asyncio.run(measure_side_by_side(subjects, policy, stop_after(2 + 2 * 3)))
    assert [len(m.blocks) for m in kept] == [3, 3]  # three blocks, then the request
    calls.clear()
    with pytest.raises(KeyboardInterrupt):  # within the first block: nothing to keep
        asyncio.run(measure_side_by_side(subjects, policy, stop_after(3)))


def test_passes_are_recorded_and_the_report_gives_their_agreement(tmp_path) -> None:
    from sqla_bench.results.files import read_result
    from tests.helpers import run

    out = tmp_path / "passes.json"
    result = run(
        "sqla_bench", "run", "--scenario", "load.users_with_profile", "--mode", "sync",
        "--passes", "2", "--min-time", "0", "--max-time", "0.5", "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pass 2 of 2" in result.stdout
    header, cells = read_result(out)
    assert header["run"]["parameters"]["passes"] == 2
    assert sorted({cell.run_pass for cell in cells}) == [1, 2]
    compared = [cell for cell in cells if cell.samples_ns and cell.comparison]
    assert compared and all(sum(cell.blocks) == len(cell.samples_ns) for cell in compared)
    assert header["targets"]["sqlite"]["machine"]["cpus"] >= 1
    report = run("sqla_bench", "report", str(out), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "_Repeatability: " in text and "were the same in every pass" in text
