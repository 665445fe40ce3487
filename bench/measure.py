"""The one measurement path, for sync and async alike.

A cell (one case, one parameter cell, one driver in one mode) is measured by calling it
repeatedly: warm-up calls first, discarded, then samples until both a minimum count and
a minimum time are reached. Each call gets a fresh argument (a new session, say) made
before the clock starts and cleaned up after it stops; the timed region is the call and
nothing else, read with ``time.perf_counter_ns``.

Sync and async differ in one line: an async call is awaited. Everything runs inside one
coroutine on one event loop that the caller creates before timing and keeps for the
whole run (async pooled connections belong to the loop that opened them); no sample
ever starts a loop. ``sqla-bench verify`` is this path with a policy of one call.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.exc import StatementError

from bench.engines import DriverEnv
from bench.fixtures import PerCall, arguments
from bench.probes import RoundTripCounter, StatementCounter
from scenarios.expect import Raises, Works
from scenarios.registry import Case

Cell = tuple[Case, dict[str, Any]]


@dataclass(frozen=True)
class Policy:
    """How long a cell is sampled: after ``warmup`` discarded calls, until at least
    ``min_rounds`` samples and ``min_time`` seconds of sampling (wall clock, untimed
    set-up included, so fast cells end in bounded time), or ``max_rounds`` samples."""

    warmup: int = 3
    min_rounds: int = 10
    min_time: float = 0.2
    max_rounds: int = 10_000

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_rounds < 1 or self.min_time < 0:
            raise ValueError("warm-up must be >= 0, rounds >= 1 and time >= 0")
        if self.max_rounds < self.min_rounds:
            raise ValueError("max rounds must be at least min rounds")

    def enough(self, samples: int, seconds: float) -> bool:
        if samples >= self.max_rounds:
            return True
        return samples >= self.min_rounds and seconds >= self.min_time


ONCE = Policy(warmup=0, min_rounds=1, min_time=0.0, max_rounds=1)


@dataclass
class Observation:
    """What one call did: its value or exception, the statements it ran, its time."""

    value: Any = None
    error: Exception | None = None
    started: int = 0
    completed: int = 0
    elapsed_ns: int = 0
    round_trips: int | None = None  # only when the target is reached through the proxy
    raised: Raises | None = None  # when the error happened elsewhere (a served app): what

    def outcome(self) -> Works | Raises:
        if self.error is None:
            return Works(self.completed)
        if self.raised is not None:
            return self.raised
        error, wrapper = unwrap(self.error)
        return Raises(error, self.completed, attempted=self.started, wrapped_in=wrapper)


def unwrap(error: BaseException) -> tuple[type[BaseException], type[BaseException] | None]:
    # A bare StatementError carrying .orig is SQLAlchemy re-delivering another error (for
    # example MissingGreenlet); DBAPI errors subclass StatementError and stay as they are.
    orig = getattr(error, "orig", None)
    if type(error) is StatementError and isinstance(orig, BaseException):
        return type(orig), StatementError
    return type(error), None


@dataclass
class Measurement:
    """A measured cell: the first call, the timed samples, and the call that raised."""

    first: Observation | None = None  # kept whole (with its value) for verification
    worked: Observation | None = None  # the first call that did not raise (its value)
    samples_ns: list[int] = field(default_factory=list)
    statements: Counter[int] = field(default_factory=Counter)  # completed, per sample
    round_trips: Counter[int] = field(default_factory=Counter)  # per sample, when counted
    failure: Observation | None = None  # the call that raised; sampling stopped there

    def add(self, observation: Observation, warm_up: bool) -> None:
        if self.first is None:
            self.first = observation
        if self.worked is None and observation.error is None:
            self.worked = observation
        if warm_up:
            return
        if observation.error is not None:
            self.failure = observation
        else:
            self.samples_ns.append(observation.elapsed_ns)
            self.statements[observation.completed] += 1
            if observation.round_trips is not None:
                self.round_trips[observation.round_trips] += 1

    def outcome(self) -> Works | Raises:
        """Raised, as the failing call did; else works with the usual statement count."""
        if self.failure is not None:
            return self.failure.outcome()
        if self.statements:
            return Works(self.statements.most_common(1)[0][0])
        return self.first.outcome()


@dataclass(frozen=True)
class Subject:
    """A call to time, whether to await it, and where its arguments come from."""

    call: Callable[[Any], Any]
    awaits: bool
    arguments: Callable[[], AbstractAsyncContextManager[PerCall]]
    counter: StatementCounter
    round_trips: RoundTripCounter | None = None


def subject_for(case: Case, params: dict[str, Any], env: DriverEnv) -> Subject:
    function = case.function(env.mode)
    return Subject(
        call=partial(function, **params),
        awaits=env.mode == "async",
        arguments=lambda: arguments(case.receives, env),
        counter=env.counter,
        round_trips=env.round_trips,
    )


async def observe(subject: Subject, argument: Any) -> Observation:
    """One call, timed. The only timed region in sqla-bench."""
    counter, round_trips = subject.counter, subject.round_trips
    counter.reset()
    if round_trips is not None:
        round_trips.reset()
    error = value = None
    started = time.perf_counter_ns()
    try:
        value = subject.call(argument)
        if subject.awaits:
            value = await value
    except Exception as raised:
        error = raised
    elapsed = time.perf_counter_ns() - started
    trips = None if round_trips is None else round_trips.count
    return Observation(value, error, counter.started, counter.completed, elapsed, trips)


def never() -> bool:
    return False


async def measure(
    subject: Subject, policy: Policy, stop_requested: Callable[[], bool] = never
) -> Measurement:
    """Sample ``subject`` under ``policy``; a measured call that raises ends the cell.

    ``stop_requested`` is polled between calls: when it says so, the cell is abandoned
    with KeyboardInterrupt at that safe point (see ``bench.cli.StopOnInterrupt``).
    """
    measurement = Measurement()
    async with subject.arguments() as per_call:
        calls = 0
        sampling_since = time.perf_counter()
        while True:
            if stop_requested():
                raise KeyboardInterrupt
            async with per_call() as argument:
                observation = await observe(subject, argument)
            warm_up = calls < policy.warmup
            measurement.add(observation, warm_up)
            calls += 1
            if warm_up:
                # A warm-up call that raises is warm-up too: the measured call decides, so
                # a failing cell's counts are a warm call's, not the first connection's.
                sampling_since = time.perf_counter()
                continue
            if observation.error is not None:
                break
            elapsed = time.perf_counter() - sampling_since
            if not warm_up and policy.enough(len(measurement.samples_ns), elapsed):
                break
    return measurement


OnMeasured = Callable[[Case, dict[str, Any], Measurement], None]


def measure_driver(
    env: DriverEnv,
    cells: list[Cell],
    policy: Policy,
    loop: asyncio.AbstractEventLoop,
    on_measured: OnMeasured,
    stop_requested: Callable[[], bool] = never,
) -> None:
    """Measure every cell on ``env`` in turn, handing each result to ``on_measured`` as it
    finishes, then dispose of the engine. Runs on ``loop``, which the caller keeps."""
    loop.run_until_complete(_measure_driver(env, cells, policy, on_measured, stop_requested))


async def _measure_driver(
    env: DriverEnv,
    cells: list[Cell],
    policy: Policy,
    on_measured: OnMeasured,
    stop_requested: Callable[[], bool],
) -> None:
    try:
        for case, params in cells:
            subject = subject_for(case, params, env)
            on_measured(case, params, await measure(subject, policy, stop_requested))
    finally:
        await env.dispose()
