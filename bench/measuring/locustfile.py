"""The locustfile a web load runs on Locust with (``run --load-generator locust``).

Locust imports it in its master and in each worker, processes of their own on gevent
(never the measuring process), on this machine or another. It imports nothing of
sqla-bench: what to send is the master's ``--sqla-bench-request`` (JSON: method, path,
body, the status that means it worked), which Locust forwards to every worker when the
run starts, so a worker elsewhere needs only this file and the master's address. Each
user sends the request again as soon as the answer is in, as the built-in client's
workers do.

Every answer is kept raw: when it ended, how long it took, its status or error (the
exception's own name where no answer came, not Locust's CatchResponseError), and the
user; and per worker process, its host, PID, users and first error in words. Workers
send theirs to the master every ``BATCH_SECONDS`` with Locust's custom
messages (so a worker on another machine reports as a local one does), stamped with
the worker's clock; the master restates each batch on its own clock (what it received
at, less what the worker sent at: the transfer, well under a millisecond on one
machine) and writes everything to the folder when it quits, so the run applies the
same measuring window to it as to its own client's samples.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from pathlib import Path

import gevent
from locust import FastHttpUser, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

MESSAGE = "sqla_bench_answers"
BATCH_SECONDS = 0.25  # well inside the second a run keeps beyond its window
MAX_ANSWERS = 1_000_000  # per worker: a load is bounded in count as well as time
ANSWERS: list[list] = []  # a worker's unsent [ended_ns, elapsed_ns, status or error, user]
SENT = [0]  # a worker's answers so far
CPU_AT_START = [0.0]  # its CPU seconds when the test started (its imports before)
NUMBERS = itertools.count()
USERS = [0]  # a worker's users that started
FIRST_ERROR: list[str | None] = [None]  # a worker's first failed answer, in words
NOTES = [""]  # a worker's folder for sqla-bench load-worker's notes, if it has one
RECEIVED: dict[str, dict] = {}  # the master's: per worker, its answers and CPU seconds


class Client(FastHttpUser):
    wait_time = constant(0)

    def context(self) -> dict:
        return {"user": self.number}

    def on_start(self) -> None:
        self.number = next(NUMBERS)
        USERS[0] += 1
        self.request = json.loads(self.environment.parsed_options.sqla_bench_request)

    @task
    def send(self) -> None:
        request = self.request
        with self.client.request(
            request["method"], request["path"], json=request.get("json"), catch_response=True
        ) as response:
            if response.status_code != request["status"]:
                # The exception itself where the request never got an answer (a refused
                # connection, a name that does not resolve): Locust would wrap text in a
                # CatchResponseError and hide it.
                response.failure(getattr(response, "error", None) or f"HTTP {response.status_code}")


@events.request.add_listener
def _answered(response_time, response, exception, context, **_) -> None:
    if SENT[0] + len(ANSWERS) >= MAX_ANSWERS:
        return
    ended = time.perf_counter_ns()
    status = getattr(response, "status_code", 0) or 0
    outcome = status if status else type(exception).__name__
    if exception is not None and FIRST_ERROR[0] is None:
        FIRST_ERROR[0] = f"{type(exception).__name__}: {exception}"[:200]
    ANSWERS.append([ended, round(response_time * 1e6), outcome, context.get("user", 0)])


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--sqla-bench-request", default="{}", include_in_web_ui=False)
    parser.add_argument("--sqla-bench-folder", default="", include_in_web_ui=False)
    # A worker that sqla-bench load-worker runs: a folder where it notes that it has
    # connected to a master ("connected") and that a load began ("loading").
    parser.add_argument("--sqla-bench-notes", default="", include_in_web_ui=False)


@events.init.add_listener
def _init(environment, **_) -> None:
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(MESSAGE, _receive)
    if isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_send_batches, environment.runner)
        # Read now: the master's options replace a worker's own when a load starts.
        NOTES[0] = environment.parsed_options.sqla_bench_notes
        _note("connected")  # a worker's runner exists once it has connected


@events.test_start.add_listener
def _started(**_) -> None:
    CPU_AT_START[0] = time.process_time()
    _note("loading")


def _note(name: str) -> None:
    if NOTES[0]:
        Path(NOTES[0], name).touch()


def _send_batches(runner) -> None:
    while True:
        gevent.sleep(BATCH_SECONDS)
        _send(runner)


def _send(runner) -> None:
    batch = ANSWERS[:]
    del ANSWERS[: len(batch)]
    SENT[0] += len(batch)
    cpu = time.process_time() - CPU_AT_START[0] if CPU_AT_START[0] else 0.0
    runner.send_message(MESSAGE, {
        "now": time.perf_counter_ns(), "answers": batch, "cpu": cpu,
        "process": {"host": socket.gethostname(), "pid": os.getpid(), "users": USERS[0],
                    "first_error": FIRST_ERROR[0]},
    })  # fmt: skip


@events.test_stop.add_listener
def _stopped(environment, **_) -> None:
    if isinstance(environment.runner, WorkerRunner):
        _send(environment.runner)


def _receive(environment, msg, **_) -> None:
    offset = time.perf_counter_ns() - msg.data["now"]  # the worker's clock to ours
    worker = RECEIVED.setdefault(msg.node_id, {"answers": [], "cpu_seconds": 0.0})
    worker["answers"] += [[ended + offset, *rest] for ended, *rest in msg.data["answers"]]
    worker["cpu_seconds"] = msg.data["cpu"]
    worker["process"] = msg.data["process"]  # where it ran, its users, its first error


@events.quitting.add_listener
def _write(environment, **_) -> None:
    folder = environment.parsed_options.sqla_bench_folder
    if folder and isinstance(environment.runner, MasterRunner):
        Path(folder, "answers.json").write_text(json.dumps(list(RECEIVED.values())))
