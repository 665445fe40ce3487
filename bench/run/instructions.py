"""Instructions per operation: CPU work counted, not timed (``run --instructions N``).

Timings from two runs on a shared machine differ by a fifth and more; function calls
(cProfile) do not, but miss work that adds no call (a slower loop inside one function).
Valgrind's callgrind counts the instructions the process executes, on every thread (an
async driver's worker thread included), and gives the same count for the same program
and input whatever else the machine is doing. The price is speed: about fifty times
slower. So the count comes from a child process of its own, after the timed run:

- the child is ``python -m sqla_bench.instructions_child`` under callgrind, with a fixed
  command line and environment (``child_environment``): Python's hashing and the
  addresses of what it allocates depend on both, and a difference of one character in
  the command line moved counts by up to 1.3 % here;
- it measures the run's plan through the one measurement path
  (``sqla_bench.measuring.measure``), with a policy of no samples and
  ``instruction_calls`` calls per cell, between two marks: a call to ``os.getpgrp``
  (callgrind zeroes its counters on entering it) and one to ``os.getppid`` (callgrind
  writes the counts to a file on entering it, before the call returns, so the child
  reads the file at once); it writes one on entering ``os.getpgrp`` too, so that the
  window's file holds the window's costs alone;
- each window's count leaves out the misses of CPython's type attribute cache
  (``read_window``): they depend on where strings happen to lie in memory, and moved
  counts by up to 3.3 % in cells a change never ran;
- what it wrote comes back through a result file of its own, and each cell of the run
  gets its count (``merge``). Latency, PgBouncer and passes change no count the client
  makes by itself, so the child measures each cell once, straight to the server; cells
  under load are not counted.

The window holds each call with its fresh argument (the session it gets and its close)
and the harness's own bookkeeping around it, the same for every cell, so a change to
either moves every cell alike. The collector is run before the window and paused in it:
a collection that happens to fall inside it would count for one cell what earlier cells
left (the same reason ``sqla_bench.measuring.measure`` pauses it for the counted call).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sqla_bench.base.errors import ConfigError
from sqla_bench.base.stopping import stop_signals_deferred
from sqla_bench.measuring.callgrind import CLOSE_MARK, DUMPS, OPEN_MARK

if TYPE_CHECKING:
    from sqla_bench.measuring.measure import Policy
    from sqla_bench.results.files import CellRecord

MAX_CALLS = 1_000  # calls per cell in the window: a cell at 1 ms takes 50 ms a call here
CHILD_MODULE = "sqla_bench.instructions_child"
# What the child keeps of the parent's environment: where programs and modules are found
# and the locale. Everything else (a CI system's variables, the terminal) would move the
# child's stack, and so its counts, from one machine or job to the next.
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "TMPDIR")


def valgrind() -> str:
    """The valgrind command, or a ConfigError that says how to get it."""
    found = shutil.which("valgrind")
    if found is None:
        raise ConfigError(
            "--instructions counts with valgrind, which is not installed here "
            "(Debian/Ubuntu: apt-get install valgrind; macOS has none: leave --instructions out)"
        )
    return found


# --- the parent's side -------------------------------------------------------------


def callgrind_command(folder: Path) -> list[str]:
    """The child's command line: the same, character for character, for every run in a
    folder name of the same length (``tempfile.mkdtemp``'s are)."""
    return [
        valgrind(),
        "--tool=callgrind",
        "--quiet",
        # No gdbserver: its pipes in the temporary folder would outlive a child that is
        # killed (Ctrl-C, SIGTERM), and nothing here debugs the child.
        "--vgdb=no",
        f"--callgrind-out-file={folder / DUMPS}",
        f"--zero-before={OPEN_MARK}",
        f"--dump-before={OPEN_MARK}",
        f"--dump-before={CLOSE_MARK}",
        sys.executable,
        "-m",
        CHILD_MODULE,
    ]


def child_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The few variables the child keeps, and a fixed hash seed: string hashes decide
    where a dict puts its keys, and so how many instructions a lookup takes."""
    kept = {name: environ[name] for name in KEPT_VARIABLES if name in environ}
    return {**kept, "PYTHONHASHSEED": "0"}


def count(
    run_words: list[str],
    urls: Mapping[str, str],
    calls: int,
    say: Callable[[str], None] = print,
) -> dict[tuple, int]:
    """Instructions per operation for each cell the run's options select: ``run_words``
    is the run's command line after ``sqla-bench`` (``run --scenario crud ...``),
    ``urls`` the server targets' URL variables (with their passwords: they go to the
    child through a pipe, never a file or its command line). Returns counts by
    ``instruction_key``."""
    from sqla_bench.results.files import read_result

    with tempfile.TemporaryDirectory(prefix="sqla-bench-instr-") as name:
        folder = Path(name)
        output = folder / "counted.json"
        spec = {"run": run_words, "urls": dict(urls), "calls": calls, "output": str(output)}
        say(f"counting instructions under callgrind: {calls} calls a cell, about 50x slower")
        returncode = _run_child(callgrind_command(folder), json.dumps(spec))
        if not output.exists():
            raise ChildError(f"the counting process ended with status {returncode}")
        header, cells = read_result(output)
        if header["run"]["status"] != "complete":
            reason = header["run"]["reason"] or f"exit status {returncode}"
            raise ChildError(f"the counting process ended {header['run']['status']}: {reason}")
    return {instruction_key(cell): cell.instructions for cell in cells if cell.instructions}


def _run_child(command: list[str], spec: str) -> int:
    """Run the child to its end, or kill it when we are stopped (Ctrl-C, SIGTERM). It
    runs in a session of its own, out of reach of the signals a terminal or a CI runner
    sends the whole process group: interrupted anywhere (in its first imports, under
    valgrind for seconds), it would print a traceback where this process says what
    happened in one line. A stop that comes while it starts waits until its handle is
    ours to kill it by: raised inside ``subprocess.Popen``, after the fork, it would
    leave the child running on its own (seen in a loaded test run: the child kept the
    run's output open after the run had gone)."""
    process = None
    try:
        with stop_signals_deferred():
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                text=True,
                env=child_environment(),
                start_new_session=True,
            )
        process.communicate(spec)
    except BaseException:
        if process is not None:
            process.kill()
            process.wait()
        raise
    return process.returncode


class ChildError(RuntimeError):
    """The counting child ended without a result file."""


def instruction_key(cell: CellRecord) -> tuple:
    """What a count belongs to: the case, its parameters and data, where and how it ran;
    not the latency, PgBouncer, pool or pass, which change no instruction the client
    counts for itself."""
    # As JSON: the child's cells come from its result file, the run's from memory (a
    # tuple there is a list here).
    params = json.dumps(cell.params, sort_keys=True, default=str)
    dataset = json.dumps(cell.dataset, sort_keys=True)
    return (cell.case, params, dataset, cell.target, cell.driver, cell.mode)


def merge(cells: list[CellRecord], counts: Mapping[tuple, int]) -> int:
    """Each cell measured one call at a time gets its count; how many did."""
    merged = 0
    for cell in cells:
        found = counts.get(instruction_key(cell)) if cell.concurrency is None else None
        if found is not None:
            cell.instructions = found
            merged += 1
    return merged


# --- the child ---------------------------------------------------------------------


def child_policy(policy: Policy, calls: int) -> Policy:
    """The run's warm-up (its checked, counted and traced calls), then the window, then
    one sample: counts need no more. (A driver that changes how it sends a statement
    after some calls, psycopg preparing it after five, is counted as the window finds
    it, the same in every run with the same options.)"""
    return replace(
        policy,
        min_rounds=1,
        min_time=0.0,
        max_rounds=1,
        max_time=3600.0,
        block_time=0.0,
        block_samples=1,
        min_blocks=1,
        max_blocks=1,
        instruction_calls=calls,
    )
