"""A client of the measured driver in a process of its own, for patterns about what a
second process, or a restarted one, meets on a shared server connection (PgBouncer's).

Some driver state is per process: asyncpg names its prepared statements from one counter
per process, so two processes (or one process and its restart) use the same names for
different statements. A pattern drives such a client step by step
(``env.client_process(**engine_options)``, then ``client.call(fn, *args)``): the child
builds an engine on the driver's URL with the pattern's options and runs ``fn(engine,
*args)`` (awaited when the driver is async) when told, so the steps of both processes
interleave exactly as the pattern says, and the outcome does not depend on timing.

The child's statements count as the call's own (added to the measuring process's
counter), and an exception it raised is raised again in the measuring process as the
same class (pickled), so the verdict reads as any other. The URL travels through the
pipe, never on a command line or a disk; the child ends with the measuring process.
"""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import pickle
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from sqla_bench.base.errors import first_line
from sqla_bench.measuring.probes import StatementCounter
from sqla_bench.servers.children import Child, ChildFailed

START_SECONDS = 30.0  # a new Python process importing SQLAlchemy and the driver
STEP_SECONDS = 60.0  # one step of a pattern: a few statements


class ClientProcessError(RuntimeError):
    """What a client process raised, where the exception itself could not travel back."""


class ClientProcess(Child):
    """The measuring process's handle on a client in another process."""

    def __init__(self, url: URL, awaits: bool, options: dict[str, Any], counter: Any) -> None:
        super().__init__(multiprocessing.get_context("spawn"), _serve, url, awaits, options)
        self._counter = counter  # the call's StatementCounter, in the measuring process
        reply = self._first_reply(START_SECONDS, "a client process")
        if reply[0] != "ready":
            self.close()
            raise ChildFailed(f"a client process did not start: {reply[1]}")

    def call(self, step: Callable[..., Any], *args: Any) -> Any:
        """``step(engine, *args)`` in the client process; its value, or what it raised."""
        self._control.send(("call", step, args))
        if not self._control.poll(STEP_SECONDS):
            self.close()
            raise ChildFailed(f"a client process did not finish a step within {STEP_SECONDS:g} s")
        kind, payload, started, completed = self._control.recv()
        self._counter.started += started
        self._counter.completed += completed
        if kind == "raised":
            raise _exception(payload)
        return payload


def _exception(payload: tuple[bytes | None, str]) -> BaseException:
    pickled, described = payload
    if pickled is not None:
        try:
            return pickle.loads(pickled)
        except Exception:  # a class that does not unpickle here: its name and message
            pass
    return ClientProcessError(described)


def _serve(control: Any, url: URL, awaits: bool, options: dict[str, Any], _cpus: Any) -> None:
    """The child: an engine with the pattern's options, running steps until told to stop."""
    loop = asyncio.new_event_loop()
    counter = StatementCounter()
    try:
        engine = (create_async_engine if awaits else create_engine)(url, **options)
        counter.attach(engine)
    except Exception as error:  # a bad option: one line back
        control.send(("failed", first_line(error, named=True)))
        return
    control.send(("ready",))
    try:
        while (message := _next(control))[0] == "call":
            _, step, args = message
            control.send(_step(loop, counter, step, engine, args))
    finally:
        disposed = engine.dispose()
        if inspect.isawaitable(disposed):
            loop.run_until_complete(disposed)
        loop.close()


def _next(control: Any) -> tuple:
    try:
        return control.recv()
    except (EOFError, OSError):  # the measuring process went away
        return ("stop",)


def _step(loop: asyncio.AbstractEventLoop, counter: StatementCounter, step, engine, args) -> tuple:
    counter.reset()
    try:
        value = step(engine, *args)
        if inspect.isawaitable(value):
            value = loop.run_until_complete(value)
        return ("value", value, counter.started, counter.completed)
    except Exception as error:
        described = first_line(error, named=True)
        return ("raised", (_pickled(error), described), counter.started, counter.completed)


def _pickled(error: Exception) -> bytes | None:
    try:
        return pickle.dumps(error)
    except Exception:
        return None
