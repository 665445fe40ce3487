"""One call of a cell observed (``observe``): the checked call's statements, rows,
COMMITs and committed state, the counted call's Python function calls (cProfile), the
traced call's peak memory (tracemalloc), and round trips through the latency proxy,
each read outside the clock. ``sqla_bench.measuring.measure`` says which call carries
what, and times the others."""

from __future__ import annotations

import cProfile
import gc
import pstats
import tracemalloc
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from sqlalchemy.exc import StatementError

from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.fixtures import PerCall, arguments
from sqla_bench.measuring.kernel import release_frames, timed
from sqla_bench.measuring.probes import Executed, RoundTripCounter, StatementCounter
from sqla_bench.scenarios.expect import Raises, Works
from sqla_bench.scenarios.registry import Case


@dataclass
class Observation:
    """What one call did: its value or exception, the statements it ran, its time; for
    the checked call, what it sent and what it left in the database."""

    value: Any = None
    error: Exception | None = None
    started: int = 0
    completed: int = 0
    elapsed_ns: int = 0
    round_trips: int | None = None  # only when the target is reached through the proxy
    bytes_up: int | None = None  # client to server, through the proxy
    bytes_down: int | None = None
    raised: Raises | None = None  # when the error happened elsewhere (a served app): what
    # The checked call only:
    executed: list[Executed] | None = None  # the statements that completed, in order
    rows_fetched: int | None = None  # rows the database returned over every statement
    commits: int | None = None  # up to and including the session's close
    rollbacks: int | None = None
    committed: tuple[Any, Any] | None = None  # declared state, before and after
    # The counted warm-up call only:
    calls: int | None = None  # Python function calls, builtins included (cProfile)
    # The traced warm-up call only:
    peak_memory: int | None = None  # bytes: the most the call held at once (tracemalloc)

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


class Inspector:
    """Reads for the checked call, on a connection of the harness's own (never the
    measured engine's): a case's declared committed state, and the rows of a SELECT
    whose driver did not report them (SQLite's cursors never do). A read that fails (the
    server went away) leaves the figure unread: the call itself records what
    happened."""

    def __init__(self, connect: Callable[[], Any], read_committed: Callable | None) -> None:
        self._connect = connect  # a context manager giving a sync Connection
        self._read_committed = read_committed

    @property
    def reads_committed(self) -> bool:
        return self._read_committed is not None

    def committed(self) -> Any:
        if self._read_committed is None:
            return None
        with self._connect() as connection:
            return self._read_committed(connection)

    def rows_fetched(self, executed: list[Executed]) -> int:
        """Rows the database returned over ``executed``: as each driver reported them,
        or, where it reported -1, counted by running the SELECT again."""
        unknown = [e for e in executed if e.rows == -1]
        total = sum(e.rows for e in executed if e.rows is not None and e.rows >= 0)
        if not unknown:
            return total
        with self._connect() as connection:
            for statement in unknown:
                total += self._count(connection, statement)
        return total

    @staticmethod
    def _count(connection: Any, statement: Executed) -> int:
        if not statement.text.lstrip().upper().startswith("SELECT"):
            # INSERT ... RETURNING on SQLite: a row back per row written.
            return len(statement.parameters) if statement.executemany else 1
        return len(connection.exec_driver_sql(statement.text, statement.parameters).all())


@dataclass(frozen=True)
class Subject:
    """A call to time, whether to await it, and where its arguments come from."""

    call: Callable[[Any], Any]
    awaits: bool
    arguments: Callable[[], AbstractAsyncContextManager[PerCall]]
    counter: StatementCounter
    round_trips: RoundTripCounter | None = None  # read around each call when set
    inspector: Inspector | None = None  # for the checked call; None: nothing to read
    # The same call through the latency proxy, untimed, when this one goes past it.
    counting: Subject | None = None


def subject_for(case: Case, params: dict[str, Any], env: DriverEnv) -> Subject:
    expected = case.expected(env.setting, env.size, **params)
    committed = expected.committed if isinstance(expected, Works) else None
    apart = env.counting if env.counting is not env else None
    return replace(
        _calling(case, params, env),
        inspector=Inspector(env.observer, committed.read if committed else None),
        counting=None if apart is None else _calling(case, params, apart),
    )


def _calling(case: Case, params: dict[str, Any], env: DriverEnv) -> Subject:
    """The case's call on ``env``, reading the proxy's counters when it goes through."""
    return Subject(
        call=partial(case.function(env.mode), **params),
        awaits=env.awaits,
        arguments=lambda: arguments(case.receives, env),
        counter=env.counter,
        round_trips=env.round_trips,
    )


async def observe(subject: Subject, argument: Any) -> Observation:
    """One call, timed by the kernel, with the statements and round trips it made."""
    counter, round_trips = subject.counter, subject.round_trips
    counter.reset()
    if round_trips is not None:
        round_trips.reset()
    call = await timed(subject.call, argument, subject.awaits)
    observation = Observation(
        call.value, call.error, counter.started, counter.completed, call.elapsed_ns
    )
    if round_trips is not None:
        totals = round_trips.since()
        observation.round_trips = totals.round_trips
        observation.bytes_up, observation.bytes_down = totals.bytes_up, totals.bytes_down
    return observation


async def observe_call(subject: Subject, per_call: PerCall, role: str | None) -> Observation:
    """One call with a fresh argument; the checked one is inspected, the counted one
    profiled and the traced one traced, all outside ``observe``'s clock."""
    checked = role == "checked"
    inspector = subject.inspector if checked else None
    before = _or_failed(inspector.committed) if inspector else None
    subject.counter.detail = checked
    async with per_call() as argument:
        if role == "counted":
            observation = await _counted(subject, argument)
        elif role == "traced":
            observation = await _traced(subject, argument)
        else:
            observation = await observe(subject, argument)
    if observation.error is not None:
        release_frames(observation.error)
    subject.counter.detail = False
    if checked:
        _inspected(observation, subject.counter, inspector, before)
    return observation


async def _counted(subject: Subject, argument: Any) -> Observation:
    """``observe`` under cProfile, which counts every function call in this thread: the
    call's own, and for an async call the event loop's work on its behalf. The harness's
    own part (``observe`` and the kernel's wrapper) is the same for every cell."""
    # A collection inside the call would run finalizers and weakref callbacks of
    # whatever earlier calls left: calls that belong to no one operation. (Collecting
    # first instead would cost 60-70 ms a cell here.)
    was_collecting = gc.isenabled()
    gc.disable()
    profile = cProfile.Profile()
    profile.enable()
    try:
        observation = await observe(subject, argument)
    finally:
        profile.disable()
        if was_collecting:
            gc.enable()
    observation.calls = pstats.Stats(profile).total_calls
    return observation


async def _traced(subject: Subject, argument: Any) -> Observation:
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    held_before = tracemalloc.get_traced_memory()[0]
    try:
        observation = await observe(subject, argument)
        observation.peak_memory = tracemalloc.get_traced_memory()[1] - held_before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return observation


def _inspected(
    observation: Observation,
    counter: StatementCounter,
    inspector: Inspector | None,
    before: Any,
) -> None:
    """What the checked call sent and left: its session has closed by now, so the
    transaction counts include the close, and the database shows what was kept."""
    observation.executed = counter.executed
    observation.commits, observation.rollbacks = counter.commits, counter.rollbacks
    if inspector is None:
        return
    # No statement through the engine (a driver baseline), no rows it could count.
    rows = _or_failed(lambda: inspector.rows_fetched(counter.executed))
    observation.rows_fetched = None if rows is FAILED or not counter.executed else rows
    after = _or_failed(inspector.committed) if inspector.reads_committed else FAILED
    if before is not FAILED and after is not FAILED:
        observation.committed = (before, after)


def _or_failed(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception:  # the server went away, say: the call's own outcome says so
        return FAILED


FAILED: Any = object()  # a read of the harness's own that failed
