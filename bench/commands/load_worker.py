"""``sqla-bench load-worker``: a Locust worker on another machine, for a whole run.

A run with ``--load-generator locust --load-remote-workers M`` starts a Locust master
for each load (a cell) and waits for its workers. A worker quits with its master, so
this command keeps one going: it starts a worker, which connects to the master and
loads that cell's app as the master says, and when it quits, starts the next for the
next cell. It leaves when no master has come for ``--idle-seconds``: the run is over.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import time
from pathlib import Path

from rich.console import Console

from sqla_bench.base.errors import EXIT_INCOMPLETE, ConfigError
from sqla_bench.base.owner import owned_folder
from sqla_bench.commands.options import number
from sqla_bench.measuring.locust_load import LOCUSTFILE, WORKER_FOLDER_PREFIX
from sqla_bench.servers.children import with_parent_command

# Nothing of the run's servers: the worker loads the run's app over HTTP.
NEEDS_SERVERS = False
DESCRIPTION = (
    "Send HTTP load for a sqla-bench run on another machine: a Locust worker that "
    "connects to the run's master (run --load-generator locust --load-remote-workers M "
    "--locust-master HOST:PORT), loads each cell's app as the master says, and connects "
    "again for the next cell; it leaves when no master has come for --idle-seconds (the "
    "run is over). Needs Locust: pip install 'sqla-bench[locust]'. Exit status 0 when it "
    "made at least one load, 3 when no master came."
)
POLL_SECONDS = 0.1
MAX_IDLE_SECONDS = 86_400.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--master",
        required=True,
        metavar="HOST:PORT",
        help="the run's Locust master: the host and port of its --locust-master, as this "
        "machine reaches it",
    )
    parser.add_argument(
        "--idle-seconds",
        type=number(float, 1.0, MAX_IDLE_SECONDS),
        default=120.0,
        metavar="SECONDS",
        help="leave when no master has come for this long (default: 120; a run starts the "
        "next cell's master within seconds of the last)",
    )


def execute(args: argparse.Namespace, servers: None, console: Console) -> int:
    host, port = _master(args.master)
    if importlib.util.find_spec("locust") is None:
        raise ConfigError("load-worker needs Locust: pip install 'sqla-bench[locust]'")
    loads = 0
    console.print(f"waiting for a master at {host}:{port}", highlight=False)
    while True:
        # A worker's notes and log: a killed load-worker's go at the next one's start,
        # or with containers --prune.
        with owned_folder(WORKER_FOLDER_PREFIX) as notes:
            if not _one_load(host, port, notes, args.idle_seconds):
                break
            if (notes / "loading").exists():
                loads += 1
                console.print(f"load {loads} done", highlight=False)
    console.print(
        f"no master at {host}:{port} for {args.idle_seconds:g} s: leaving after {loads} "
        f"load{'s' if loads != 1 else ''}",
        highlight=False,
    )
    return 0 if loads else EXIT_INCOMPLETE


def _master(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"--master: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _one_load(host: str, port: int, notes: Path, idle_seconds: float) -> bool:
    """One worker, until its master quits; False when none came within ``idle_seconds``."""
    command = with_parent_command(
        "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", host,
        "--master-port", str(port), "--loglevel", "ERROR", "--sqla-bench-notes", str(notes),
    )  # fmt: skip
    with open(notes / "locust.log", "wb") as log:
        worker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            if not _connects(worker, notes / "connected", idle_seconds):
                return False
            worker.wait()
            return True
        finally:
            _end(worker)


def _connects(worker: subprocess.Popen, connected: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not connected.exists():
        if worker.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def _end(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(5)
        if worker.poll() is None:
            worker.kill()
            worker.wait()
