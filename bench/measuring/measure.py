"""The one measurement path, for sync and async alike.

A cell (one case, one parameter cell, one driver in one mode) is measured by calling it
repeatedly: warm-up calls first, discarded, then samples until both a minimum count and
a minimum time are reached. Each call gets a fresh argument (a new session, say) made
before the clock starts and cleaned up after it stops; the timed region is the call and
nothing else, timed by the measuring kernel (``sqla_bench.measuring.kernel``).

Cells that a verdict compares (``compared_together``: the loading strategies of one
shape at one parameter cell, on one driver and mode) are measured side by side: each is
warmed up, then they take turns in blocks whose order rotates, so that a machine that
drifts (machines of this kind drift by tens of per cent within minutes) reaches each
alike, and the unit of comparison is their ratio within a block (``stats.ratio``). A
cell alone is the same path with nothing beside it. Each comparison keeps its design
(``Design``) and the machine's state over it (``sqla_bench.measuring.machine``).

Sync and async differ in one flag the kernel reads: an async call is awaited.
Everything runs inside one coroutine on one event loop that the caller creates before
timing and keeps for the whole run (async pooled connections belong to the loop that
opened them); no sample ever starts a loop. ``sqla-bench verify`` is this path with a
policy of one call.

Three calls of a cell are never samples, and carry what samples cannot:

- the first, *checked* call: the statements it sent (text and parameters), the rows the
  driver returned, the COMMITs and ROLLBACKs up to its session's close, and, when the
  case declares it, the committed state read on a connection of its own before the call
  and after the session closed. Its verdict (``sqla_bench.measuring.verify``) is drawn
  from these.
- the second warm-up call: run under ``cProfile``, for the Python function calls per
  operation (``sys.monitoring`` could count them from Python 3.12 on): a count of the
  CPU work that does not depend on how busy the machine is, which the gate can hold
  where it cannot hold timings.
- the third warm-up call: run under ``tracemalloc``, for the client's peak memory per
  operation, which tracing would slow down tenfold if timed.

A policy with fewer warm-up calls leaves out the later of these, so ``verify`` (one
call) neither counts nor traces, and the gate's baselines (two) count but do not trace.
A policy with ``instruction_calls`` (the child of ``run --instructions``, under
valgrind's callgrind) then makes that many calls more, between the marks that count
their instructions (``sqla_bench.run.instructions``).

Round trips and bytes on the wire are read around each call that goes through the
latency proxy. With latency to add, the samples do. At 0 ms the proxy would add only its
own hops (about 50 us a round trip here), so the samples go straight to the server and
the same calls are then repeated through the proxy, untimed, on an engine of their own
(``Subject.counting``): as many warm-up calls (none of them profiled or traced), and up
to ``COUNTED_CALLS`` counted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from sqla_bench.measuring import callgrind
from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.fixtures import PerCall
from sqla_bench.measuring.kernel import Stopwatch
from sqla_bench.measuring.machine import Snapshot, state_between
from sqla_bench.measuring.observe import Observation, Subject, observe_call, subject_for
from sqla_bench.measuring.policy import Policy, counting_policy, role_of
from sqla_bench.results.stats import block_medians, geometric_mean, ratio
from sqla_bench.scenarios.expect import Raises, Works
from sqla_bench.scenarios.registry import STRATEGY, Case
from sqla_bench.scenarios.strategies import compared_strategies

Cell = tuple[Case, dict[str, Any]]


@dataclass
class Measurement:
    """A measured cell: the first call, the timed samples, and the call that raised."""

    first: Observation | None = None  # kept whole (with its value) for verification
    worked: Observation | None = None  # the first call that did not raise (its value)
    samples_ns: list[int] = field(default_factory=list)
    statements: Counter[int] = field(default_factory=Counter)  # completed, per sample
    round_trips: Counter[int] = field(default_factory=Counter)  # per sample, when counted
    bytes_up: Counter[int] = field(default_factory=Counter)
    bytes_down: Counter[int] = field(default_factory=Counter)
    failure: Observation | None = None  # the call that raised; sampling stopped there
    calls: int | None = None  # from the counted warm-up call
    peak_memory: int | None = None  # from the traced warm-up call
    instructions: int | None = None  # per call, from the window after the warm-up
    # The same calls through the latency proxy, when the samples went past it: where the
    # round trips and bytes were counted.
    wire: Measurement | None = None
    # Samples taken in each block, by block number (a cell that raised stops early), and
    # the cell's place in each block's order; the design of the group it was compared in.
    blocks: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    design: Design | None = None

    @property
    def on_the_wire(self) -> Measurement:
        """The measurement whose calls counted round trips and bytes."""
        return self.wire or self

    def add(self, observation: Observation, warm_up: bool) -> None:
        if self.first is None:
            self.first = observation
        if self.worked is None and observation.error is None:
            self.worked = observation
        # A raising call's: what it did and held until it raised.
        if observation.calls is not None:
            self.calls = observation.calls
        if observation.peak_memory is not None:
            self.peak_memory = observation.peak_memory
        if warm_up:
            return
        if observation.error is not None:
            self.failure = observation
        else:
            self.samples_ns.append(observation.elapsed_ns)
            self.statements[observation.completed] += 1
            if observation.round_trips is not None:
                self.round_trips[observation.round_trips] += 1
                self.bytes_up[observation.bytes_up] += 1
                self.bytes_down[observation.bytes_down] += 1

    def outcome(self) -> Works | Raises:
        """Raised, as the failing call did; else works with the usual statement count."""
        if self.failure is not None:
            return self.failure.outcome()
        if self.statements:
            return Works(self.statements.most_common(1)[0][0])
        return self.first.outcome()


def never() -> bool:
    return False


@dataclass(frozen=True, eq=False)
class Design:
    """How the cells of one comparison were sampled, as each of their records keeps it:
    in rotating blocks of ``block_time`` seconds each, and how busy the machine was."""

    group: str  # the same for every cell of the comparison, unique across runs
    cells: int
    blocks: int
    block_time: float
    machine: dict[str, Any]  # machine.state_between, over the sampling

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "cells": self.cells,
            "blocks": self.blocks,
            "block_time": self.block_time,
            "order": "rotating",
            "machine": self.machine,
        }


async def measure(
    subject: Subject, policy: Policy, stop_requested: Callable[[], bool] = never
) -> Measurement:
    """One cell alone: ``measure_side_by_side`` with nothing beside it."""
    return (await measure_side_by_side([subject], policy, stop_requested))[0]


async def measure_side_by_side(
    subjects: list[Subject],
    policy: Policy,
    stop_requested: Callable[[], bool] = never,
    decides: list[bool] | None = None,
) -> list[Measurement]:
    """Sample ``subjects`` under ``policy``: each warmed up in turn, then sampled in
    rotating blocks (``Policy``); a measured call that raises ends that cell's sampling.
    Only the subjects that ``decides`` marks (all, by default) are sampled until their
    ratios are precise: the others are measured beside them, as long as they are.
    When a subject counts round trips apart, its calls are then repeated through the
    proxy (``counting_policy``), untimed.

    ``stop_requested`` is polled between calls: when it says so during the first block
    or a warm-up, the cells are abandoned with KeyboardInterrupt at that safe point (see
    ``sqla_bench.base.stopping.StopOnInterrupt``); after a block, sampling ends there
    and what the blocks measured is returned (with no round trips counted apart), for
    the caller to keep before it stops."""
    before = Snapshot.now()
    measurements = await _sample(subjects, policy, stop_requested, decides=decides)
    design = Design(
        group=uuid.uuid4().hex[:12],
        cells=len(subjects),
        blocks=max(len(m.blocks) for m in measurements),
        block_time=policy.block_time,
        machine=state_between(before, Snapshot.now()),
    )
    for subject, measurement in zip(subjects, measurements, strict=True):
        measurement.design = design
        if subject.counting is not None and not stop_requested():
            counting = counting_policy(policy)
            wire = await _sample([subject.counting], counting, stop_requested, roles=False)
            measurement.wire = wire[0]
    return measurements


@dataclass
class _Sampled:
    """One cell while it is sampled: where its calls come from, how many it has made,
    and its planned warm-up (cut short once warming has taken ``max_time``)."""

    subject: Subject
    per_call: PerCall
    measurement: Measurement
    roles: bool
    warmup: int
    decides: bool = True  # its ratio to the fastest must be precise before sampling ends
    calls: int = 0

    def role(self) -> str | None:
        """The role of its next call (``ROLES``), if it has one."""
        return role_of(self.calls, self.warmup) if self.roles else None

    def observed(self, observation: Observation, warm_up: bool) -> Observation:
        self.calls += 1
        self.measurement.add(observation, warm_up)
        return observation


async def _sample(
    subjects: list[Subject],
    policy: Policy,
    stop_requested: Callable[[], bool],
    roles: bool = True,
    decides: list[bool] | None = None,
) -> list[Measurement]:
    """Warm-up calls (with their roles, unless ``roles`` is False: calls that only count
    round trips need no profile or trace), one cell after another; then the samples,
    side by side."""
    deciding = [True] * len(subjects) if decides is None else decides
    async with AsyncExitStack() as stack:
        cells = [
            _Sampled(
                subject,
                await stack.enter_async_context(subject.arguments()),
                Measurement(),
                roles,
                policy.warmup,
                decides=decided,
            )
            for subject, decided in zip(subjects, deciding, strict=True)
        ]
        for cell in cells:
            # A warm-up call that raises is warm-up too: the measured call decides, so a
            # failing cell's counts are a warm call's, not the first connection's.
            warming = Stopwatch()
            while cell.calls < cell.warmup:
                _poll(stop_requested)
                # Awaited here, not in a helper coroutine: the counted call's function
                # calls include one per coroutine frame above it each time its task
                # resumes, so a frame more here is a call more per resumption on every
                # async cell (+9 of 211 for the aiosqlite driver baseline with two);
                # measure_side_by_side -> _sample -> observe_call is the depth the committed
                # baselines were written at (one frame more than before 5fd85e4 moved
                # async calls by up to 1.4 %).
                observation = await observe_call(cell.subject, cell.per_call, cell.role())
                cell.observed(observation, warm_up=True)
                cell.warmup = policy.warm_calls(cell.calls, warming.seconds(), cell.warmup)
            if policy.instruction_calls:
                await _count_instructions(cell, policy.instruction_calls)
        await _blocks(cells, policy, stop_requested)
    return [cell.measurement for cell in cells]


async def _count_instructions(cell: _Sampled, calls: int) -> None:
    """``calls`` more warm calls, each with its fresh argument, inside the instruction
    window (``sqla_bench.run.instructions``); the cell keeps the instructions per
    call."""
    window = callgrind.window()
    window.open()
    for _ in range(calls):
        cell.observed(await observe_call(cell.subject, cell.per_call, None), warm_up=True)
    cell.measurement.instructions = round(window.close() / calls)


async def _blocks(
    cells: list[_Sampled], policy: Policy, stop_requested: Callable[[], bool]
) -> None:
    """Blocks until the policy has enough: in each, every cell still working takes its
    samples in turn, starting one place further along than in the block before."""
    sampling, block = Stopwatch(), 0
    while True:
        active = [cell for cell in cells if cell.measurement.failure is None]
        if not active or (block and stop_requested()):
            return  # asked to stop: what the blocks so far measured is kept
        turn, block_time = block % len(active), policy.block_time if len(active) > 1 else 0.0
        for slot, cell in enumerate(active[turn:] + active[:turn]):
            await _fill_block(cell, policy, block_time, stop_requested)
            cell.measurement.slots.append(slot)
        block += 1
        if _enough(cells, block, sampling.seconds(), policy):
            return


async def _fill_block(
    cell: _Sampled, policy: Policy, block_time: float, stop_requested: Callable[[], bool]
) -> None:
    """The cell's samples in one block: for ``block_time`` (at least one: a cell sampled
    alone is checked for enough after each), up to its ``max_rounds``; a call that
    raises ends it."""
    measurement, in_block, taken = cell.measurement, Stopwatch(), 0
    min_taken = policy.block_samples if block_time else 1
    while True:
        _poll(stop_requested)
        observation = await observe_call(cell.subject, cell.per_call, cell.role())
        if cell.observed(observation, warm_up=False).error is not None:
            break
        taken += 1
        if len(measurement.samples_ns) >= policy.max_rounds:
            break
        if in_block.seconds() >= block_time and taken >= min_taken:
            break
    measurement.blocks.append(taken)


def _enough(cells: list[_Sampled], blocks: int, seconds: float, policy: Policy) -> bool:
    working = [cell.measurement for cell in cells if cell.measurement.failure is None]
    deciding = [c.measurement for c in cells if c.decides and c.measurement.failure is None]
    if not working:
        return True
    if len(working) == 1:
        return policy.enough(len(working[0].samples_ns), seconds)
    counts = [len(m.samples_ns) for m in working]
    samples, width = (min(counts), max(counts)), len(working)
    if policy.enough_blocks(blocks, seconds, samples, width, precise=False):
        return True  # out of budget, whatever the precision
    # The intervals are computed only once everything else is enough: they cost the most.
    if not policy.enough_blocks(blocks, seconds, samples, width, precise=True):
        return False
    return len(deciding) < 2 or precise(deciding, policy)


def precise(measurements: list[Measurement], policy: Policy) -> bool:
    """Whether every cell's time relative to the fastest is settled: known within the
    policy's precision, or clearly slower (its whole interval above 1 + twice the
    precision: how much slower, no verdict turns on, and the report shows the interval)."""
    medians = [block_medians(m.samples_ns, m.blocks) for m in measurements]
    fastest = min(medians, key=lambda values: geometric_mean(values) or float("inf"))
    for other in medians:
        if other is fastest:
            continue
        found = ratio(other, fastest)
        if found is None:
            return False
        if found.half_width > policy.precision and found.low <= 1 + 2 * policy.precision:
            return False
    return True


def _poll(stop_requested: Callable[[], bool]) -> None:
    if stop_requested():
        raise KeyboardInterrupt


def compared_together(cells: list[Cell]) -> list[list[Cell]]:
    """The cells as they are measured: those of one table whose parameters differ only
    in the loading strategy side by side (a verdict compares them), the others alone;
    in the order of their first cell."""
    groups: dict[tuple, list[Cell]] = {}
    for case, params in cells:
        others = tuple(sorted((k, repr(v)) for k, v in params.items() if k != STRATEGY))
        key = (case.table, others) if STRATEGY in params else (case.id, id(params))
        groups.setdefault(key, []).append((case, params))
    return list(groups.values())


# Given each measured cell as it finishes; returns whether to go on with the next one.
OnMeasured = Callable[[Case, dict[str, Any], Measurement], bool]


def measure_driver(
    env: DriverEnv,
    cells: list[Cell],
    policy: Policy,
    loop: asyncio.AbstractEventLoop,
    on_measured: OnMeasured,
    stop_requested: Callable[[], bool] = never,
) -> None:
    """Measure the cells on ``env``, those compared with each other side by side
    (``compared_together``), handing each result to ``on_measured`` as it finishes,
    until it says not to go on; then dispose of the engine. Runs on ``loop``, which the
    caller keeps."""
    loop.run_until_complete(_measure_driver(env, cells, policy, on_measured, stop_requested))


async def _measure_driver(
    env: DriverEnv,
    cells: list[Cell],
    policy: Policy,
    on_measured: OnMeasured,
    stop_requested: Callable[[], bool],
) -> None:
    decided_by = set(compared_strategies())
    try:
        for group in compared_together(cells):
            subjects = [subject_for(case, params, env) for case, params in group]
            decides = [params.get(STRATEGY) in decided_by for _, params in group]
            measured = await measure_side_by_side(
                subjects, policy, stop_requested, decides if any(decides) else None
            )
            for (case, params), measurement in zip(group, measured, strict=True):
                if not on_measured(case, params, measurement):
                    return
            _poll(stop_requested)  # a comparison cut short by Ctrl-C is kept, then stop
    finally:
        await env.dispose()
