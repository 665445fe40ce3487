"""HTTP load for the web scenarios from Locust instead of the built-in client
(``run --load-generator locust --load-workers N``), for a load one process cannot make.

Locust runs in processes of its own (it runs on gevent, which must not patch the
measuring process): a master and N local workers, started here on 127.0.0.1 with
``bench/measuring/locustfile.py`` and stopped when the load is done. Workers on other
machines attach to the master (``sqla-bench load-worker``, which runs one worker after
another for a whole run), the master listening where they reach it and the app served
and advertised where they reach it (``LocustWorkers``); this module starts the local
ones only. A load that a worker process never made (nothing sent, nothing answered as
expected, or no HTTP answer for more than ``MAX_UNANSWERED_SHARE`` of its requests)
fails the cell, the process and its first error named. Every worker keeps each answer raw (see
``sqla_bench.measuring.locustfile``), so the cell is the same as the built-in client's:
samples in the measuring window, throughput, errors by status, and the workers' CPU
seconds. The master and the local workers end with the run whatever ends it, and the
load's folder names the run, so the next load (or ``containers --prune``) removes what a
killed run left."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqla_bench.base.owner import owned_folder
from sqla_bench.measuring.kernel import Window
from sqla_bench.measuring.load import Load
from sqla_bench.measuring.watch import Watched, watch
from sqla_bench.measuring.web import per_request
from sqla_bench.results.load_figures import WARMUP_SHARE
from sqla_bench.scenarios.registry import Request
from sqla_bench.servers.children import ChildFailed, with_parent_command

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
START_SECONDS = 60.0  # a master and its workers importing gevent and Locust
SPAWN_RATE = 100_000  # users started per second: all at once
FAILED_KEPT = 10_000
FOLDER_PREFIX = "sqla-bench-locust-"  # its owner file names the run
# sqla-bench load-worker's folder for a worker's notes and log, its owner file naming it.
WORKER_FOLDER_PREFIX = "sqla-bench-load-worker-"
# A worker process whose requests got no HTTP answer more often than this failed its load.
MAX_UNANSWERED_SHARE = 0.01


ANY_ADDRESS = ("0.0.0.0", "::", "*")  # listen on every interface: not an address to use


@dataclass(frozen=True)
class LocustWorkers:
    """Locust's workers: ``local`` started here; ``remote`` more that attach from other
    machines to the master, which listens on ``bind`` (``HOST:PORT``; port 0: any free
    one, which only local workers can find). The app they load listens on
    ``serve_host:serve_port`` (port 0: a free one per load) and workers are told to send
    to ``advertise_host`` (default: the serving address, or 127.0.0.1 where that is
    every interface)."""

    local: int = 2
    remote: int = 0
    bind: str = "127.0.0.1:0"
    serve_host: str = "127.0.0.1"
    serve_port: int = 0
    advertise_host: str | None = None

    @property
    def total(self) -> int:
        return self.local + self.remote

    def address(self) -> tuple[str, int]:
        host, _, port = self.bind.rpartition(":")
        return host, int(port) or _free_port()

    def app_host(self) -> str:
        """The host workers send their requests to."""
        return self.advertise_host or _usable(self.serve_host)


def _usable(host: str) -> str:
    """An address to connect to where ``host`` is one to listen on."""
    return "127.0.0.1" if host in ANY_ADDRESS else host


def run_locust_load(
    server: Any,
    request: Request,
    concurrency: int,
    seconds: float,
    workers: LocustWorkers,
    watched: Watched,
) -> Load:
    """``concurrency`` Locust users over ``workers`` worker processes sending
    ``request`` to ``server`` for ``seconds`` (the first share warm-up)."""
    load = Load(concurrency)
    server.reset()
    app_cpu = _app_cpu(server)
    # The load's folder (Locust's log and answers): a killed run's goes at the next load.
    with owned_folder(FOLDER_PREFIX) as folder:
        with watch(load, watched, app_cpu=app_cpu):
            app = f"http://{_url_host(workers.app_host())}:{server.port}"
            with _locust(app, request, concurrency, seconds, workers, str(folder)):
                pass  # the master quits by itself after the run time
            stats = {**server.stats(), "cpu_seconds": app_cpu()}
            server.close()  # its lifespan disposes of the engine; the watch counts what is left
        records = _records(folder)
    _tally(load, records, seconds, request)
    _cpu(load, records, _test_seconds(seconds))
    processes = worker_processes(records, request)
    load.failure = load_failure(processes, workers.total)
    load.first_error = next((p["first_error"] for p in processes if p["first_error"]), None)
    load.extra |= {
        "generator": "locust",
        "load_workers": workers.total,
        "worker_processes": processes,
        "server_errors": dict(stats["errors"]),
        "requests_sent": load.operations,
        "statements_per_request": per_request(stats),
    }
    return load


def _test_seconds(seconds: float) -> int:
    """Locust's run time (whole seconds): the load, and a second for its users to start."""
    return math.ceil(seconds + 1)


def _app_cpu(server: Any) -> Callable[[], float]:
    seen = [0.0]

    def read() -> float:
        if server.running:  # the last reading stands once the app has shut down
            seen[0] = server.stats()["cpu_seconds"]
        return seen[0]

    return read


@contextlib.contextmanager
def _locust(
    app: str, request: Request, users: int, seconds: float, workers: LocustWorkers, folder: str
) -> Iterator[None]:
    """A Locust master and its local workers, until the master quits (after the run
    time, once every worker, local or remote, has attached and the load ran). Every
    worker sends its requests to ``app`` (``http://HOST:PORT``), which the master hands
    it."""
    settings = {
        "method": request.method, "path": request.path, "json": request.json,
        "status": request.status,
    }  # fmt: skip
    bind_host, master_port = workers.address()
    # Each ends with this process, whatever ends it (children.with_parent_command).
    common = with_parent_command("locust", "-f", str(LOCUSTFILE), "--loglevel", "ERROR")
    master = [
        *common, "--headless", "--master", "--master-bind-host", bind_host,
        "--master-bind-port", str(master_port), "--expect-workers", str(workers.total),
        "--expect-workers-max-wait", str(int(START_SECONDS)),
        "-u", str(users), "-r", str(SPAWN_RATE), "-t", f"{_test_seconds(seconds)}s",
        "--host", app, "--only-summary", "--stop-timeout", "5",
        "--exit-code-on-error", "0",
        "--sqla-bench-request", json.dumps(settings), "--sqla-bench-folder", folder,
    ]  # fmt: skip
    worker = [*common, "--worker", "--master-host", _usable(bind_host), "--master-port",
              str(master_port)]  # fmt: skip
    log = Path(folder) / "locust.log"
    with log.open("wb") as output, contextlib.ExitStack() as stack:
        started = [_start(master, output)]
        started += [_start(worker, output) for _ in range(workers.local)]
        for process in started:
            stack.callback(_stop, process)
        yield
        deadline = START_SECONDS + seconds + 30
        if started[0].wait(deadline) != 0:
            raise ChildFailed(f"Locust failed: {_last_line(log)}")


def _start(command: list[str], output: Any) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen) -> None:
    """A worker exits once its master has quit; one that does not is ended."""
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1][:200] if lines else "no message"


def _records(folder: Path) -> list[dict[str, Any]]:
    """Per worker, its answers on this clock and its CPU seconds (the master's file)."""
    path = folder / "answers.json"
    return json.loads(path.read_text()) if path.exists() else []


def _tally(load: Load, records: list[dict[str, Any]], seconds: float, request: Request) -> None:
    """The answers as the built-in client would have counted them, in a window that
    opens when the first request was sent."""
    # Users are numbered per worker process: (process, user) names one across them all.
    users: dict[tuple[int, int], int] = {}
    answers = [
        [ended, elapsed, outcome, users.setdefault((index, user), len(users))]
        for index, record in enumerate(records)
        for ended, elapsed, outcome, user in record["answers"]
    ]
    if not answers:
        raise ChildFailed("Locust sent no request")
    first = min(ended - elapsed for ended, elapsed, _, _ in answers)
    window = Window(first + round(seconds * WARMUP_SHARE * 1e9), first + round(seconds * 1e9))
    failed: list[int] = []
    for ended, elapsed, outcome, user in answers:
        if not (ended - elapsed < window.closes and ended > window.opens):
            continue  # warm-up, or after the window
        if outcome != request.status:
            load.errors[outcome if isinstance(outcome, str) else f"HTTP {outcome}"] += 1
            if len(failed) < FAILED_KEPT:
                failed.append(elapsed)
            continue
        load.samples_ns.append(elapsed)
        if window.opens < ended <= window.closes:
            load.completed += 1
            load.per_worker[user] += 1
    load.operations = len(answers)
    load.window_seconds = window.seconds
    load.extra = {"failed_ns": failed}


def worker_processes(records: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    """Per Locust worker process: where it ran, its users, its requests (warm-up
    included), how many were answered as the request expects, how many failed and how
    many of those got no HTTP answer at all, its CPU seconds and its first error."""
    processes = []
    for record in records:
        outcomes = [outcome for _, _, outcome, _ in record["answers"]]
        ok = sum(1 for outcome in outcomes if outcome == request.status)
        process = record.get("process", {})
        processes.append({
            "host": process.get("host"), "pid": process.get("pid"),
            "users": process.get("users"), "requests": len(outcomes), "ok": ok,
            "errors": len(outcomes) - ok,
            "unanswered": sum(1 for outcome in outcomes if isinstance(outcome, str)),
            "cpu_seconds": round(record["cpu_seconds"], 3),
            "first_error": process.get("first_error"),
        })  # fmt: skip
    return processes


def load_failure(processes: list[dict[str, Any]], expected: int) -> str | None:
    """Why the load did not measure what it claims, in words; None when it did. A
    worker process that sent nothing, or had no request answered as expected, or whose
    requests got no HTTP answer more often than ``MAX_UNANSWERED_SHARE`` (the app out of
    its reach): its share of the load was never made. An HTTP error status is the app's
    own answer, counted as the built-in client counts it."""
    if len(processes) < expected:
        return f"{expected - len(processes)} of {expected} Locust worker processes sent no answer"
    for process in processes:
        name = f"Locust worker {process['host']}:{process['pid']}"
        first = f"; first: {process['first_error']}" if process["first_error"] else ""
        if not process["ok"]:
            return f"{name} had no request answered as expected ({process['errors']} failed{first})"
        if process["unanswered"] > MAX_UNANSWERED_SHARE * process["requests"]:
            return (
                f"{name}: {process['unanswered']} of {process['requests']} requests got no "
                f"answer{first}"
            )
    return None


def _cpu(load: Load, records: list[dict[str, Any]], ran: float) -> None:
    """The Locust processes' CPU seconds over the test (their imports left out) are the
    client's. A worker's share is of the time it ran the test (``ran``), which the
    watch's time, Locust's start-up included, would understate: it is restated over
    the watch's time in proportion, which is how ``cpu_bound`` reads it."""
    workers = [record["cpu_seconds"] for record in records]
    total = sum(workers)
    load.cpu_seconds["client"] = round((load.cpu_seconds.get("client") or 0.0) + total, 3)
    scale = load.watched_seconds / ran if ran > 0 else 1.0
    load.worker_cpu = [cpu * scale for cpu in workers]


def available() -> bool:
    """Whether Locust is installed (``pip install 'sqla-bench[locust]'``)."""
    return shutil.which("locust") is not None or _importable("locust")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _url_host(host: str) -> str:
    """``host`` as a URL holds it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
