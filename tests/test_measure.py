"""The measuring loop: warm-up, stopping rules, errors, and one event loop for async.

These drive ``measure`` with plain functions: what is under test is the loop, not a
database (the catalogue and run tests cover those through the same loop).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from sqla_bench.measuring.measure import Policy, Subject, counting_policy, measure
from sqla_bench.measuring.policy import COUNTED_CALLS, ONCE
from sqla_bench.measuring.probes import StatementCounter
from sqla_bench.scenarios.expect import Raises, Works


class Calls:
    """A callable that records each call and, in async mode, the loop it ran on."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.count = 0
        self.loops: set[int] = set()
        self.fail_at = fail_at

    def sync(self, argument: str) -> str:
        self.count += 1
        if self.count == self.fail_at:
            raise KeyError("boom")
        return argument

    async def async_(self, argument: str) -> str:
        self.loops.add(id(asyncio.get_running_loop()))
        return self.sync(argument)


def _subject(call, awaits: bool, made: list[str]) -> Subject:
    @asynccontextmanager
    async def per_call():
        made.append("argument")
        yield "argument"

    @asynccontextmanager
    async def arguments():
        yield per_call

    return Subject(call, awaits, arguments, StatementCounter())


def _measure(subject: Subject, policy: Policy, loop: asyncio.AbstractEventLoop):
    return loop.run_until_complete(measure(subject, policy))


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.parametrize("awaits", [False, True], ids=["sync", "async"])
def test_warm_up_is_discarded_and_min_rounds_is_reached(loop, awaits) -> None:
    calls, made = Calls(), []
    call = calls.async_ if awaits else calls.sync
    policy = Policy(warmup=4, min_rounds=7, min_time=0.0)
    measurement = _measure(_subject(call, awaits, made), policy, loop)
    assert calls.count == 11 and len(made) == 11  # a fresh argument for every call
    assert len(measurement.samples_ns) == 7
    assert all(sample > 0 for sample in measurement.samples_ns)
    assert measurement.first.value == "argument"
    assert measurement.outcome() == Works(0)


def test_min_time_keeps_sampling_past_min_rounds(loop) -> None:
    calls = Calls()
    policy = Policy(warmup=0, min_rounds=1, min_time=0.05, max_rounds=1_000_000)
    started = loop.time()
    measurement = _measure(_subject(calls.sync, False, []), policy, loop)
    assert loop.time() - started >= 0.05
    assert len(measurement.samples_ns) > 1


def test_max_rounds_ends_a_cell_before_min_time(loop) -> None:
    policy = Policy(warmup=0, min_rounds=5, min_time=60.0, max_rounds=5, max_time=60.0)
    measurement = _measure(_subject(Calls().sync, False, []), policy, loop)
    assert len(measurement.samples_ns) == 5


def test_async_samples_all_run_on_the_callers_loop(loop) -> None:
    calls = Calls()
    _measure(_subject(calls.async_, True, []), Policy(warmup=2, min_rounds=50, min_time=0), loop)
    assert calls.loops == {id(loop)}


def test_a_raising_call_ends_the_cell_and_is_the_outcome(loop) -> None:
    calls = Calls(fail_at=6)
    policy = Policy(warmup=2, min_rounds=100, min_time=0)
    measurement = _measure(_subject(calls.sync, False, []), policy, loop)
    assert calls.count == 6
    assert len(measurement.samples_ns) == 3  # calls 3, 4 and 5; call 6 raised
    assert measurement.outcome() == Raises(KeyError, 0, attempted=0)


def test_a_warm_up_call_that_raises_does_not_decide(loop) -> None:
    calls = Calls(fail_at=1)  # only the very first call fails, as a cold start might
    policy = Policy(warmup=2, min_rounds=4, min_time=0)
    measurement = _measure(_subject(calls.sync, False, []), policy, loop)
    assert calls.count == 6 and len(measurement.samples_ns) == 4
    assert measurement.failure is None and measurement.outcome() == Works(0)
    assert isinstance(measurement.first.error, KeyError)  # verify still sees the first call
    assert measurement.worked.value == "argument"  # what a working cell's rows come from


def test_once_is_a_single_sampled_call(loop) -> None:
    calls = Calls()
    measurement = _measure(_subject(calls.sync, False, []), ONCE, loop)
    assert calls.count == 1 and len(measurement.samples_ns) == 1


@pytest.mark.parametrize(
    "options",
    [{"warmup": -1}, {"min_rounds": 0}, {"min_time": -0.1}, {"min_rounds": 5, "max_rounds": 4}],
)
def test_a_policy_that_cannot_be_followed_is_refused(options) -> None:
    with pytest.raises(ValueError):
        Policy(**options)


def test_calls_counted_apart_follow_the_samples_untimed_unprofiled_and_bounded(loop) -> None:
    """At 0 ms the same calls are repeated on the counting subject (through the proxy):
    as many warm-up calls, at most COUNTED_CALLS counted, none profiled or traced."""
    timed, counted = Calls(), Calls()
    subject = replace(_subject(timed.sync, False, []), counting=_subject(counted.sync, False, []))
    policy = Policy(warmup=3, min_rounds=50, min_time=0.0)
    measurement = _measure(subject, policy, loop)
    assert timed.count == 53 and len(measurement.samples_ns) == 50
    assert measurement.calls is not None and measurement.peak_memory is not None
    wire = measurement.on_the_wire
    assert wire is measurement.wire and counted.count == 3 + COUNTED_CALLS
    assert len(wire.samples_ns) == COUNTED_CALLS
    assert wire.calls is None and wire.peak_memory is None  # no cProfile, no tracemalloc
    assert _measure(_subject(timed.sync, False, []), policy, loop).on_the_wire.wire is None


def test_counting_apart_is_bounded_in_calls_and_time() -> None:
    counting = counting_policy(Policy(warmup=3, min_rounds=100, min_time=5.0, max_time=10.0))
    assert (counting.warmup, counting.min_rounds, counting.max_rounds) == (3, COUNTED_CALLS, 10)
    assert counting.min_time == 0.0 and counting.max_time == 1.0
    assert counting_policy(ONCE).max_rounds == 1
