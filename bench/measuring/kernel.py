"""The measuring kernel: the one module of the harness that reads the clock, and the one
that knows a call may have to be awaited.

Everything timed goes through here, handed in as a subject:

- a single call (``timed``): ``sqla_bench.measuring.measure`` samples a cell with it,
  and a served app's request is timed with it too;
- operations repeated by workers inside a window (``repeat_in_window``): the in-process
  loads of ``sqla_bench.measuring.load`` and the HTTP clients of
  ``sqla_bench.measuring.web`` describe one operation (``Operation``) and tally what the
  kernel reports of each (``Timed``);
- how long the harness has been at something (``Stopwatch``, ``Deadline``), for the
  sampling policy and for bounded waits.

Two other clocks exist, each in a process or a step of its own: the latency proxy's
(``sqla_bench.servers.latency``, a separate process that schedules when each chunk is
released) and the container start-up time (``sqla_bench.servers.containers``, set-up,
never a sample).

A call is awaited when its subject says so, on the event loop the caller keeps for the
whole run: starting a loop per call would cost more than many of the calls measured.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any


async def settled(value: Any, awaits: bool) -> Any:
    """``value``, awaited when the subject is async: the sync/async difference, for work
    outside the clock (inside it, the timed functions below test ``awaits`` inline: a
    coroutine of its own would add its cost to every sync sample)."""
    return await value if awaits else value


@dataclass(frozen=True)
class Timed:
    """One call or operation: what it returned or raised, and when (kernel clock, in
    nanoseconds) it started, had its connection, and ended."""

    value: Any
    error: Exception | None
    started: int
    acquired: int
    ended: int

    @property
    def elapsed_ns(self) -> int:
        return self.ended - self.started

    @property
    def wait_ns(self) -> int:
        return self.acquired - self.started


async def timed(call: Callable[[Any], Any], argument: Any, awaits: bool) -> Timed:
    """``call(argument)``, timed: the timed region of every sample in sqla-bench."""
    error = value = None
    started = time.perf_counter_ns()
    try:
        value = call(argument)
        if awaits:
            value = await value
    except Exception as raised:
        error = raised
    ended = time.perf_counter_ns()
    return Timed(value, error, started, started, ended)


def release_frames(error: BaseException) -> None:
    """Clear the finished frames in the tracebacks of ``error``, of the errors it wraps
    (SQLAlchemy's ``.orig``) and of its causes, once the clock has stopped (and, for a
    cell's calls, outside the counted call: clearing them is the harness's own work).

    What those frames hold (a coroutine the driver never awaited, when a lazy load raised
    MissingGreenlet) is then freed here, rather than by the collector wherever it next
    runs: once that was inside a namedtuple's generated ``__new__``, which has no
    builtins, where the coroutine's "never awaited" warning failed and Python printed
    "Exception ignored in: <coroutine object Connection.cursor> ... KeyError"."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__, getattr(current, "orig", None)]


def call_ns(call: Callable[[], Any]) -> int:
    """One plain call's nanoseconds (the selfcheck's loop alternatives)."""
    started = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - started


class Stopwatch:
    """Seconds since it was started (or restarted): how long sampling has gone on."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._since = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self._since


class Deadline:
    """A bounded wait: ``passed()`` once ``seconds`` have gone by since it was made."""

    def __init__(self, seconds: float) -> None:
        self._at = time.perf_counter() + seconds

    def passed(self) -> bool:
        return time.perf_counter() >= self._at


@dataclass(frozen=True)
class Window:
    """A load's measuring window on the kernel clock (nanoseconds): it opens once the
    warm-up share of its length has passed, and closes at its end."""

    opens: int
    closes: int

    @classmethod
    def starting_now(cls, seconds: float, warmup_share: float) -> Window:
        now = time.perf_counter_ns()
        return cls(now + round(seconds * warmup_share * 1e9), now + round(seconds * 1e9))

    @property
    def seconds(self) -> float:
        return (self.closes - self.opens) / 1e9

    def open(self) -> bool:
        """Whether an operation may still start: the window has not closed."""
        return time.perf_counter_ns() < self.closes

    def remaining(self) -> float:
        """Seconds until it closes."""
        return (self.closes - time.perf_counter_ns()) / 1e9

    def overlaps(self, operation: Timed) -> bool:
        # Every operation in progress during the window counts for latency, including one
        # that started waiting for the pool in the warm-up: checkout is not fair, and a
        # worker can wait for several of its neighbours' operations.
        return operation.started < self.closes and operation.ended > self.opens

    def holds(self, operation: Timed) -> bool:
        """Whether it ended inside the window: it counts for throughput."""
        return self.opens < operation.ended <= self.closes


@dataclass(frozen=True)
class Operation:
    """What a worker repeats under load: ``begin`` makes its argument (a session, say),
    ``acquire`` waits for its connection (the pool wait, timed apart), ``call`` is the
    work, ``end`` gives everything back. All but ``begin`` may return awaitables, which
    are awaited when ``awaits`` is set; an operation may have none but ``call``."""

    call: Callable[[Any], Any]
    awaits: bool
    begin: Callable[[], Any] = lambda: None
    acquire: Callable[[Any], Any] | None = None
    end: Callable[[Any], Any] | None = None


async def repeat_in_window(
    operation: Operation,
    window: Window,
    on_timed: Callable[[Timed], None],
    another: Callable[[], bool] = lambda: True,
) -> None:
    """Repeat ``operation`` until ``window`` closes (or ``another`` says no more),
    handing each to ``on_timed``; a worker's whole life under load."""
    while window.open() and another():
        on_timed(await _operate(operation))


async def _operate(operation: Operation) -> Timed:
    started = time.perf_counter_ns()
    argument = operation.begin()
    error = value = None
    try:
        if operation.acquire is not None:
            await settled(operation.acquire(argument), operation.awaits)
        acquired = time.perf_counter_ns()
        value = operation.call(argument)
        if operation.awaits:
            value = await value
    except Exception as raised:
        error, acquired = raised, time.perf_counter_ns()
    finally:
        if operation.end is not None:
            await settled(operation.end(argument), operation.awaits)
    ended = time.perf_counter_ns()
    if error is not None:
        release_frames(error)
    return Timed(value, error, started, acquired, ended)


def run_workers(
    workers: Sequence[Coroutine[Any, Any, None]],
    awaits: bool,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Async workers as tasks on the run's ``loop``; sync workers each in a thread of its
    own, with a loop of its own started once per worker, never per call."""
    if awaits:
        loop.run_until_complete(_together(workers))
        return
    threads = [threading.Thread(target=asyncio.run, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def _together(workers: Sequence[Coroutine[Any, Any, None]]) -> None:
    # gather inside the coroutine, so its tasks belong to the run's loop
    await asyncio.gather(*workers)
