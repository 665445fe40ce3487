"""Instructions per operation: CPU work counted, not timed (``run --instructions N``).

Timings from two runs on a shared machine differ by a fifth and more; function calls
(cProfile) do not, but miss work that adds no call (a slower loop inside one function).
Valgrind's callgrind counts the instructions the process executes, on every thread (an
async driver's worker thread included), and gives the same count for the same program
and input whatever else the machine is doing. The price is speed: about fifty times
slower. So the count comes from a child process of its own, after the timed run:

- the child is ``python -m sqla_bench.instructions`` under callgrind, with a fixed
  command line and environment (``child_environment``): Python's hashing and the
  addresses of what it allocates depend on both, and a difference of one character in
  the command line moved counts by up to 1.3 % here;
- it measures the run's plan through the one measurement path (``bench.measure``), with
  a policy of no samples and ``instruction_calls`` calls per cell, between two marks: a
  call to ``os.getpgrp`` (callgrind zeroes its counters on entering it) and one to
  ``os.getppid`` (callgrind writes the counts to a file on entering it, before the call
  returns, so the child reads the file at once); it writes one on entering
  ``os.getpgrp`` too, so that the window's file holds the window's costs alone;
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
left (the same reason ``bench.measure`` pauses it for the counted call).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqla_bench.errors import ConfigError

if TYPE_CHECKING:
    from sqla_bench.measure import Policy
    from sqla_bench.plan import RunPlan
    from sqla_bench.results import CellRecord
    from sqla_bench.targets import Servers

MAX_CALLS = 1_000  # calls per cell in the window: a cell at 1 ms takes 50 ms a call here
OPEN_MARK = "os_getpgrp"  # the C functions behind os.getpgrp and os.getppid
CLOSE_MARK = "os_getppid"
# The function whose calls are cut from a count (``read_window``): CPython's lookup of a
# type's attributes, _PyType_Lookup in 3.11 (later versions add _PyType_LookupRef, ...).
CUT_CALLER = "_PyType_Lookup"
DUMPS = "callgrind.out"  # in the child's folder: callgrind.out.1, .2, ... one per window
CHILD_MODULE = "sqla_bench.instructions"
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


class Window:
    """The child's side of the count: marks the start and the end of a window, and reads
    what callgrind wrote at the end. Only meaningful under callgrind with the marks set
    (``callgrind_command``); elsewhere ``close`` finds no file and says so."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.closed = 0
        self.cut_seen = False  # whether any window found the type cache's misses to cut

    def open(self) -> None:
        # A stray dump since the last window (anything else calling os.getppid) would be
        # summed into this one: none may be left before the counters are zeroed.
        for stray in self._dumps():
            stray.unlink()
        gc.collect()
        gc.disable()
        # callgrind writes what came before (so the window's dump holds the window's
        # costs per function alone) and zeroes its counters here
        os.getpgrp()

    def close(self) -> int:
        """The instructions since ``open``, on every thread, less the type cache's
        misses (``read_window``)."""
        os.getppid()  # callgrind writes the counters to a file here
        gc.enable()
        dumps = self._dumps()
        # The dump made on opening holds everything since the window before (the warm-up,
        # for the first one the process's start): only its header is read. Parsing it
        # whole, under callgrind, doubled the time a count took.
        counted = [read_window(path) for path in dumps if dump_trigger(path) == CLOSE_MARK]
        for path in dumps:
            path.unlink()
        if not counted:
            raise RuntimeError("no callgrind dump: the child is not running under callgrind")
        self.closed += 1
        self.cut_seen = self.cut_seen or any(window.cut for window in counted)
        return sum(window.total - window.cut for window in counted)

    def _dumps(self) -> list[Path]:
        return sorted(self.folder.glob(f"{DUMPS}.*"))


@dataclass(frozen=True)
class Dump:
    """What one callgrind dump says: what triggered it, its instructions, and those of
    them spent in calls made by CPython's type attribute lookup (its cache misses)."""

    trigger: str
    total: int
    cut: int


def read_window(path: Path) -> Dump:
    """Read a callgrind dump (its format: valgrind's callgrind manual, "Callgrind Format
    Specification"): the ``summary:`` line, and the inclusive cost of every call a
    ``CUT_CALLER`` function makes. CPython looks a type's attributes up through a cache
    of 4,096 entries indexed by the type's version and the *address* of the name's
    string; two names that share an entry push each other out, and each miss walks the
    type's bases. Where strings lie depends on everything allocated before them, so a
    longer path or one more module imported moved counts by up to 3.3 % here (crud.list),
    in cells the change never runs. The misses are the calls the lookup makes (a hit
    calls nothing); without them three memory layouts counted every crud cell within
    0.32 %. A Python whose symbols do not name the lookup (Debian's, built with it
    inlined) gives no cut (``Window.cut_seen`` says so)."""
    total, cut = None, 0
    names: dict[str, str] = {}
    function = callee = ""
    ir_column = 1
    in_call = False
    with path.open() as dump:
        for line in dump:
            if line[0].isdigit() or line[0] in "+-*":
                if in_call:
                    in_call = False
                    if function.startswith(CUT_CALLER) and not callee.startswith(CUT_CALLER):
                        cut += int(line.split()[ir_column])
                continue
            key, _, value = line.rstrip("\n").partition("=")
            if key in ("fn", "cfn"):
                name = _function_name(value, names)
                function, callee = (name, callee) if key == "fn" else (function, name)
            elif key == "calls":
                in_call = True
            elif line.startswith("summary:"):
                total = int(line.split()[1])
            elif line.startswith("positions:"):
                ir_column = len(line.split()) - 1  # the cost follows the positions
    if total is None:
        raise RuntimeError(f"{path.name} has no summary line: not a callgrind dump")
    return Dump(dump_trigger(path), total, cut)


def dump_trigger(path: Path) -> str:
    """What made callgrind write a dump: the function of its ``desc: Trigger:`` line,
    which comes before any cost (empty when there is none)."""
    with path.open() as dump:
        for line in dump:
            if line.startswith("desc: Trigger:"):
                return line.rsplit("=", 1)[-1].strip()
            if line.startswith(("fn=", "summary:")):
                break
    return ""


def _function_name(value: str, names: dict[str, str]) -> str:
    """A name in callgrind's compressed form: ``(7) name`` defines 7, ``(7)`` uses it."""
    if not value.startswith("("):
        return value
    number, _, name = value[1:].partition(") ")
    if name:
        names[number] = name
        return name
    return names[number.rstrip(")")]


_window: Window | None = None  # set in the child, before it measures (``counting_in``)


def counting_in(folder: Path) -> None:
    """In the child: count in windows whose dumps callgrind writes to ``folder``."""
    global _window
    _window = Window(folder)


def window() -> Window:
    """The child's window; RuntimeError outside the child."""
    if _window is None:
        raise RuntimeError("instructions are counted in the child process only")
    return _window


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
    is the run's command line after ``sqla-bench`` (``run --scenario crud ...``), ``urls``
    the server targets' URL variables (with their passwords: they go to the child through
    a pipe, never a file or its command line). Returns counts by ``instruction_key``."""
    from sqla_bench.results import read_result

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
    starts with Ctrl-C ignored: a terminal sends it to the whole process group, and the
    child, interrupted anywhere (in its first imports, under valgrind for seconds),
    would print a traceback where this process says what happened in one line."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, text=True, env=child_environment()
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    with process:
        try:
            process.communicate(spec)
        except BaseException:
            process.kill()
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


def _child_policy(policy: Policy, calls: int) -> Policy:
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


def _child_plan(spec: dict[str, Any], servers: Servers) -> RunPlan:
    from sqla_bench.cli import build_parser
    from sqla_bench.commands.run import plan_from
    from sqla_bench.targets import selected_targets

    args = build_parser(["run"]).parse_args(spec["run"])
    targets, _ = selected_targets(args.target or ["sqlite"], servers)
    plan = plan_from(args, targets)
    return replace(
        plan,
        policy=_child_policy(plan.policy, spec["calls"]),
        latencies=None,
        pgbouncer=None,
        concurrency=None,
        processes=None,
        passes=1,
    )


def _on_cell(record: CellRecord) -> None:
    counted = f"{record.instructions:,}" if record.instructions else "not counted"
    print(f"  {record.case} {record.driver} {record.mode}: {counted}", file=sys.stderr)


def child_main() -> int:
    """Read the spec on stdin, measure its plan with a window per cell, write the
    result file it names."""
    # Run as __main__: the measuring path finds the window on the module it imports.
    from sqla_bench import instructions
    from sqla_bench.cli import quiet_abandoned_cursors
    from sqla_bench.pipeline import run_to_file
    from sqla_bench.runner import Progress
    from sqla_bench.targets import Servers

    quiet_abandoned_cursors()

    spec = json.loads(sys.stdin.read())
    output = Path(spec["output"])
    instructions.counting_in(output.parent)
    command = ["sqla-bench", *spec["run"]]
    # SQLite's file goes in the child's own folder (removed with it by the parent): a
    # folder name of its own would be one more string that differs from run to run.
    sqlite_dir = output.parent / "sqlite"
    sqlite_dir.mkdir()
    with Servers(sqlite_dir, environ=spec["urls"]) as servers:
        plan = _child_plan(spec, servers)
        _, failures = run_to_file(plan, output, command, Progress(on_cell=_on_cell))
    if instructions.window().closed and not instructions.window().cut_seen:
        print(
            f"note: this Python's symbols do not name {CUT_CALLER}, so the counts include "
            "the misses of its type attribute cache, which moved counts by up to 3.3 % "
            "with memory layout alone here (a wider --instructions-tolerance may be needed)",
            file=sys.stderr,
        )
    return 3 if failures else 0


if __name__ == "__main__":
    raise SystemExit(child_main())
