"""The child's side of an instruction count (``run --instructions``,
``sqla_bench.run.instructions``): the marks around each cell's window, which callgrind
zeroes its counters at and writes them out at, and the reading of what it wrote.

Only meaningful in the child that ``sqla_bench.run.instructions`` starts under
callgrind; the measuring path asks for the window here and nowhere else."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from pathlib import Path

OPEN_MARK = "os_getpgrp"  # the C functions behind os.getpgrp and os.getppid
CLOSE_MARK = "os_getppid"
# The function whose calls are cut from a count (``read_window``): CPython's lookup of a
# type's attributes, _PyType_Lookup in 3.11 (later versions add _PyType_LookupRef, ...).
CUT_CALLER = "_PyType_Lookup"
DUMPS = "callgrind.out"  # in the child's folder: callgrind.out.1, .2, ... one per window


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
    longer path or one more module imported moved counts by up to 3.3 % here
    (crud.list), in cells the change never runs. The misses are the calls the lookup
    makes (a hit calls nothing); without them three memory layouts counted every crud
    cell within 0.32 %. A Python whose symbols do not name the lookup (Debian's, built
    with it inlined) gives no cut (``Window.cut_seen`` says so)."""
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
    """A name in callgrind's compressed form: ``(7) name`` defines 7, ``(7)`` uses
    it."""
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
