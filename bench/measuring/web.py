"""Web scenarios over real HTTP: their app served by uvicorn in a process of its own, and
a bounded concurrent load from this process.

``AppServer`` starts a web scenario's app (the factory its declaration names, in the
driver's mode, on the driver's URL, with the run's pool settings) under uvicorn on
127.0.0.1 in a spawned child, off the measuring process's CPU. The child counts what
the measuring process cannot see: statements its engines ran and the exceptions its
requests raised, by class; ``stats()`` asks for them over a pipe. Closing it shuts
uvicorn down, which runs the app's lifespan shutdown (``engine.dispose()``).

``measure_once`` is a web scenario's outcome from one warm request, as ``measure`` gives
any other cell's; ``run_web_load`` is C clients, each sending the request again as soon
as its answer arrives, for a bounded time and count, with the same warm-up window and
the same ``Load`` record as the in-process loads of ``sqla_bench.measuring.load``.

A failing request is a 500 to the client; what failed is the server's exception. FastAPI
turns an exception raised while the response model reads an attribute (a lazy load in
async code, or ``lazy="raise"``) into a ``ResponseValidationError`` that keeps only its
text, so the cause is read back from that text (``observed_error``).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL

from sqla_bench.measuring.kernel import Deadline, Operation, Timed, Window, repeat_in_window, timed
from sqla_bench.measuring.load import Load
from sqla_bench.measuring.measure import Measurement, Observation
from sqla_bench.measuring.probes import RoundTripCounter
from sqla_bench.measuring.served_app import ServedOutcome, serve_app
from sqla_bench.measuring.watch import Watched, watch
from sqla_bench.results.load_figures import WARMUP_SHARE
from sqla_bench.scenarios.registry import Case, Request
from sqla_bench.servers.children import Child, ChildFailed

START_TIMEOUT_SECONDS = 30
NOTED_WITHIN_SECONDS = 10  # for the app to note how a request it answered ended
# A request still waiting this long after the load's window closed is abandoned: the
# load stops by itself whatever the server does.
GRACE_SECONDS = 5.0
MAX_REQUESTS = 1_000_000  # per load, so that a load is bounded in count as well as time
FAILED_KEPT = 10_000
# What every app process imports: loaded once into the fork server, so an app starts in a
# fork of it (tens of milliseconds) instead of a fresh interpreter (about a second here).
PRELOADED = [
    "sqla_bench.measuring.web",
    "fastapi",
    "uvicorn",
    "sqlalchemy.ext.asyncio",
    "sqla_bench.scenarios.models",
]


def _app_processes() -> Any:
    """Where app processes come from: a fork server (a clean process that has imported
    the app's libraries and opened no engine) where the platform has one, else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    return context


class AppError(Exception):
    """The served app raised; its message is the server's, its outcome the parsed one."""


class AppServer(Child):
    """A web scenario's app under uvicorn, in a child process, on 127.0.0.1 (or where
    ``listen`` says, ``(host, port)``, port 0 for any: for load generators on other
    machines)."""

    stop_seconds = 10.0  # a graceful shutdown, then the app's lifespan (dispose)

    def __init__(
        self,
        case: Case,
        request: Request,
        mode: str,
        url: URL,
        engine_options: dict[str, Any],
        listen: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        app = {
            "listen": listen,
            "factory": case.app,
            "mode": mode,
            # Only through the pipe: the URL carries the password, so it never goes on a
            # command line or into the environment of a process others can list.
            "url": url.render_as_string(hide_password=False),
            "engine_options": engine_options,
            "app_options": dict(request.app_options),
        }
        super().__init__(_app_processes(), serve_app, app)
        self.port = self._started()

    def _started(self) -> int:
        kind, value = self._first_reply(START_TIMEOUT_SECONDS, "the web app")
        if kind != "ready":
            self.close()
            raise ChildFailed(f"the web app did not start: {value}")
        return value

    def stats(self) -> dict[str, Any]:
        """Since the last reset: statements, requests, exceptions by class, the last
        request's outcome, and the app process's CPU seconds (a running total)."""
        return self._ask("stats")

    def reset(self) -> None:
        self._ask("reset")

    def last_request(self) -> ServedOutcome:
        """The outcome of the one request since the reset. The app may have sent its
        answer a moment before the middleware outside it has noted how it ended."""
        deadline = Deadline(NOTED_WITHIN_SECONDS)
        stats = self.stats()
        while not stats["requests"] and not deadline.passed():
            time.sleep(0.001)
            stats = self.stats()
        return stats["last"]


def client(port: int, connections: int) -> Any:
    """An HTTP client for the app on ``port``, with up to ``connections`` kept-alive
    connections; made inside the loop that uses it.

    aiohttp rather than httpx (which the in-process tests use for its ASGI transport):
    measured here on one core, an httpx client saturated it at 16 concurrent requests
    (about 650 requests/s) and fell to about 160 requests/s at 64, so the load measured
    the client, not the app.
    """
    import aiohttp

    return aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{port}",
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=None),
    )


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


async def send(http: Any, request: Request) -> Answer:
    async with http.request(request.method, request.path, json=request.json) as response:
        return Answer(response.status, await response.read())


async def measure_once(
    server: AppServer, request: Request, round_trips: RoundTripCounter | None = None
) -> Measurement:
    """A warm request (it opens the connections), then the one whose outcome counts."""
    measurement = Measurement()
    async with client(server.port, 1) as http:
        for warm_up in (True, False):
            server.reset()
            if round_trips is not None:
                round_trips.reset()
            call = await timed(lambda http: send(http, request), http, awaits=True)
            if call.error is not None:  # no answer at all: the connection failed
                raise call.error
            observation = _observation(request, call.value, server.last_request(), call.elapsed_ns)
            observation.round_trips = None if round_trips is None else round_trips.count
            measurement.add(observation, warm_up)
    return measurement


def _observation(
    request: Request, response: Answer, served: ServedOutcome, elapsed_ns: int
) -> Observation:
    counts = {"started": served.started, "completed": served.completed}
    if served.raised is not None:
        error = AppError(served.message or served.raised.error.__name__)
        return Observation(error=error, elapsed_ns=elapsed_ns, raised=served.raised, **counts)
    if response.status != request.status:
        text = response.body[:200].decode(errors="replace")
        error = AppError(f"HTTP {response.status}: {text}")
        return Observation(error=error, elapsed_ns=elapsed_ns, **counts)
    return Observation(value=_json(response.body), elapsed_ns=elapsed_ns, **counts)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


@dataclass
class _Tally:
    """What the load's clients saw, beside the samples ``Load`` keeps."""

    failed_ns: list[int] = field(default_factory=list)  # time to each failed answer
    sent: int = 0

    def more(self) -> bool:
        """Whether another request may go: a load is bounded in count as well as time."""
        if self.sent >= MAX_REQUESTS:
            return False
        self.sent += 1
        return True


def run_web_load(
    server: AppServer,
    request: Request,
    concurrency: int,
    seconds: float,
    loop: asyncio.AbstractEventLoop,
    watched: Watched,
) -> Load:
    """``concurrency`` clients sending ``request`` for ``seconds`` (the first share warm-up);
    then the app is shut down, and what it left on the server is counted."""
    load, tally = Load(concurrency), _Tally()
    server.reset()
    cpu_seconds = 0.0

    def app_cpu() -> float:
        nonlocal cpu_seconds
        if server.running:  # the last reading stands once the app has shut down
            cpu_seconds = server.stats()["cpu_seconds"]
        return cpu_seconds

    with watch(load, watched, app_cpu=app_cpu):
        window = Window.starting_now(seconds, WARMUP_SHARE)
        loop.run_until_complete(_clients(server.port, request, concurrency, window, load, tally))
        stats = {**server.stats(), "cpu_seconds": app_cpu()}
        server.close()  # its lifespan disposes of the engine; the watch counts what is left
    load.window_seconds = window.seconds
    load.extra = {
        "server_errors": dict(stats["errors"]),
        "failed_ns": tally.failed_ns,
        "requests_sent": tally.sent,
        "statements_per_request": per_request(stats),
    }
    return load


def per_request(stats: dict[str, Any]) -> float | None:
    if not stats["requests"]:
        return None
    return round(stats["completed"] / stats["requests"], 3)


async def _clients(
    port: int,
    request: Request,
    concurrency: int,
    window: Window,
    load: Load,
    tally: _Tally,
) -> None:
    async with client(port, concurrency) as http:
        sending = Operation(call=lambda _: send(http, request), awaits=True)
        tallies = [_tally(n, request, window, load, tally) for n in range(concurrency)]
        workers = [
            asyncio.ensure_future(repeat_in_window(sending, window, note, tally.more))
            for note in tallies
        ]
        _, pending = await asyncio.wait(workers, timeout=window.remaining() + GRACE_SECONDS)
        for worker in pending:  # still waiting for an answer: abandoned, counted
            worker.cancel()
            load.errors["unanswered"] += 1
        await asyncio.gather(*pending, return_exceptions=True)


def _tally(
    number: int, request: Request, window: Window, load: Load, tally: _Tally
) -> Callable[[Timed], None]:
    """What client ``number`` adds to ``load`` for each answer (or failure) it gets."""

    def note(sent: Timed) -> None:
        problem = _problem(sent, request, load)
        if not window.overlaps(sent):
            return  # entirely in the warm-up: not recorded
        if problem is not None:
            load.errors[problem] += 1
            if len(tally.failed_ns) < FAILED_KEPT:
                tally.failed_ns.append(sent.elapsed_ns)
            return
        load.samples_ns.append(sent.elapsed_ns)
        if window.holds(sent):
            load.completed += 1
            load.per_worker[number] += 1

    return note


def _problem(sent: Timed, request: Request, load: Load) -> str | None:
    """Why a request failed (its status, or the connection's error), or None."""
    if sent.error is not None:  # the connection failed: no answer at all
        problem = type(sent.error).__name__
        load.first_error = load.first_error or f"{problem}: {sent.error}"[:200]
        return problem
    status = sent.value.status
    return None if status == request.status else f"HTTP {status}"
