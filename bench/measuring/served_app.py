"""The web app's own process (``sqla_bench.measuring.web`` starts it): uvicorn serving
the FastAPI integration pattern, each request's statements counted and its outcome
noted, answering the measuring process's questions on a control pipe."""

from __future__ import annotations

import contextlib
import importlib
import socket
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import exc as sqlalchemy_errors

from sqla_bench.base.errors import first_line
from sqla_bench.measuring.observe import unwrap
from sqla_bench.scenarios.expect import Raises


def observed_error(error: BaseException) -> tuple[type[BaseException], type[BaseException] | None]:
    """The exception a request failed with, and what delivered it.

    A ``ResponseValidationError`` from an attribute that could not be read keeps only
    the cause's text, e.g. ``StatementError: (sqlalchemy.exc.MissingGreenlet) …`` or
    ``InvalidRequestError: 'User.posts' is not available due to lazy='raise'``: the
    cause is the innermost SQLAlchemy exception that text names."""
    cause = _attribute_error_cause(error)
    if cause is None:
        return unwrap(error)
    return cause, type(error)


def _attribute_error_cause(error: BaseException) -> type[BaseException] | None:
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return None
    for detail in errors():
        if isinstance(detail, dict) and detail.get("type") == "get_attribute_error":
            text = str(detail.get("ctx", {}).get("error", ""))
            name, _, rest = text.partition(": ")
            if name == "StatementError" and rest.startswith("(sqlalchemy.exc."):
                name = rest[len("(sqlalchemy.exc.") :].split(")", 1)[0]
            found = getattr(sqlalchemy_errors, name, None)
            if isinstance(found, type) and issubclass(found, BaseException):
                return found
    return None


class _Counts:
    """Statements and requests in the app's process; reset between measurements."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.started = self.completed = self.requests = 0
            self.errors: Counter[str] = Counter()
            self.last = ServedOutcome()

    def statement_started(self, *_: Any) -> None:
        with self.lock:
            self.started += 1

    def statement_completed(self, *_: Any) -> None:
        with self.lock:
            self.completed += 1

    def report(self) -> dict[str, Any]:
        with self.lock:
            return {
                "started": self.started,
                "completed": self.completed,
                "requests": self.requests,
                "errors": dict(self.errors),
                "last": self.last,
            }


class _Instrumented:
    """ASGI middleware outside the app: counts each request's statements and the
    exception it ended with (FastAPI has already answered 500 when one arrives here)."""

    def __init__(self, app: Any, counts: _Counts) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counts = self.counts
        before = (counts.started, counts.completed)
        raised = message = None
        try:
            await self.app(scope, receive, send)
        except Exception as error:
            cause, wrapper = observed_error(error)
            raised, message = (cause, wrapper), first_line(error)
        with counts.lock:
            counts.requests += 1
            started, completed = counts.started - before[0], counts.completed - before[1]
            outcome = ServedOutcome(started, completed, None, message)
            if raised is not None:
                cause, wrapper = raised
                counts.errors[cause.__name__] += 1
                outcome.raised = Raises(cause, completed, attempted=started, wrapped_in=wrapper)
            counts.last = outcome


def serve_app(control: Connection, app: dict[str, Any], client_cpus: set[int] | None) -> None:
    """The child: build the app, serve it on 127.0.0.1 (or the address ``app["listen"]``
    names), answer the measuring process."""
    from sqla_bench.servers.latency import leave_the_clients_cpus

    leave_the_clients_cpus(client_cpus)
    _quiet()
    counts = _Counts()
    try:
        server, sock = _uvicorn(app, counts)
    except Exception as error:  # a bad URL or option: one line back, nothing served
        control.send(("failed", first_line(error, named=True)))
        return
    threading.Thread(target=_answer, args=(control, server, sock, counts), daemon=True).start()
    with contextlib.suppress(SystemExit):  # uvicorn exits when the app's start-up fails
        server.run(sockets=[sock])
    if not server.started:  # the lifespan start-up failed; uvicorn logged why
        with contextlib.suppress(OSError):
            control.send(("failed", "the app's start-up failed (its engine could not be made)"))


def _quiet() -> None:
    # An implicit load that fails before awaiting leaves a coroutine behind: the point of
    # the lazy cells, not news (the test suite filters the same warning).
    warnings.filterwarnings("ignore", message="coroutine 'Connection.cursor' was never awaited")


def _uvicorn(app: dict[str, Any], counts: _Counts) -> tuple[Any, socket.socket]:
    import uvicorn
    from sqlalchemy import Engine, event

    module, _, name = app["factory"].partition(":")
    factory = getattr(importlib.import_module(module), name)
    asgi = factory(
        app["mode"], app["url"], engine_options=app["engine_options"], **app["app_options"]
    )
    # On the Engine class: the app makes its engine in its lifespan, after this.
    event.listen(Engine, "before_cursor_execute", counts.statement_started)
    event.listen(Engine, "after_cursor_execute", counts.statement_completed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    host, port = app.get("listen", ("127.0.0.1", 0))
    sock.bind((host, port))
    config = uvicorn.Config(
        _Instrumented(asgi, counts),
        log_level="critical",
        access_log=False,
        lifespan="on",
        # Requests stuck in the app (a sync app whose threads all wait for the pool) are
        # cut off at shutdown instead of holding it until their pool_timeout.
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    return uvicorn.Server(config), sock


def _answer(control: Connection, server: Any, sock: socket.socket, counts: _Counts) -> None:
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.01)
    control.send(("ready", sock.getsockname()[1]))
    import psutil

    me = psutil.Process()
    while True:
        try:
            message = control.recv()
        except (EOFError, OSError):
            message = ("stop",)
        if message[0] == "stop":
            server.should_exit = True
            return
        if message[0] == "reset":
            counts.reset()
            control.send(None)
        else:
            times = me.cpu_times()
            control.send({**counts.report(), "cpu_seconds": times.user + times.system})


GRACEFUL_SECONDS = 2


@dataclass
class ServedOutcome:
    """What one request did inside the app: statements and, if it raised, what."""

    started: int = 0
    completed: int = 0
    raised: Raises | None = None
    message: str | None = None
