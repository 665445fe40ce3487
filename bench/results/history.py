"""An A/A history: how far each cell's counts and timings move when nothing changed.

``sqla-bench calibrate`` measures the same workload several times on one machine and
keeps, per cell, what each run counted (function calls, instructions) and its median
time. The file is JSON and small, so CI can carry it from one job to the next (a cache
or an artifact) and let it grow. ``compare --history FILE`` then holds each cell's calls
and instructions to a tolerance drawn from its own evidence (``tolerance``) instead of
one figure for every cell: a psycopg async cell whose wait loop polls a varying number
of times gets the room its runs showed it needs, and says so; a cell that never moved
is held tighter, down to ``FLOOR``. The per-run medians give each cell's spread of
median time between runs, which ``calibrate`` prints and the timing gate (``compare
--gate-timing --history``) pools into its test.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqla_bench.base.errors import ConfigError
from sqla_bench.results.files import CellRecord, read_json, temporary_beside
from sqla_bench.results.stats import summarize

HISTORY_VERSION = 1
MIN_RUNS = 3  # fewer runs of a cell, and its tolerance is the gate's default
MARGIN = 1.5  # a tolerance is this many times the widest spread the history saw
# No tolerance tighter than this. A history is usually of one installation, and another
# installation of the same code moves a count a little more than repeated runs of one
# do: instructions by up to 0.3 % here (memory layout; see callgrind.read_window).
FLOOR = 0.005
MAX_RUNS_KEPT = 50  # the newest runs of each cell: a history that grows without end
# would hold on to a machine or a library it no longer runs on


def cell_id(cell: CellRecord) -> str:
    """A cell's name in the history: its identity across runs, as text."""
    from sqla_bench.results.files import cell_name

    return cell_name(cell)


@dataclass(frozen=True)
class Spread:
    """One cell's evidence: a metric's values over the runs that counted it."""

    values: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.values)

    def relative_range(self) -> float:
        """(largest - smallest) / smallest: how far apart two runs were at most."""
        low = min(self.values)
        return (max(self.values) - low) / low if low > 0 else math.inf


class History:
    """Per cell and metric, the values of every run it holds."""

    def __init__(self, cells: dict[str, dict[str, list[float]]] | None = None) -> None:
        self.cells = cells or {}

    @classmethod
    def read(cls, path: Path) -> History:
        document = read_json(path)
        if not isinstance(document, dict) or document.get("version") != HISTORY_VERSION:
            raise ConfigError(f"{path} is not an sqla-bench history (version {HISTORY_VERSION})")
        cells = document.get("cells")
        if not isinstance(cells, dict) or not all(_metrics_ok(m) for m in cells.values()):
            raise ConfigError(f"{path} is not an sqla-bench history: its cells are malformed")
        return cls(cells)

    def write(self, path: Path) -> None:
        document = {"version": HISTORY_VERSION, "cells": self.cells}
        temporary = temporary_beside(path)
        temporary.write_text(json.dumps(document, indent=1, sort_keys=True))
        temporary.replace(path)

    def add_run(self, cells: Iterable[CellRecord]) -> None:
        """One run's counts and median time per cell (a cell that raised has none)."""
        for cell in cells:
            metrics = self.cells.setdefault(cell_id(cell), {})
            summary = summarize(cell.samples_ns)
            for name, value in (
                ("calls", cell.calls),
                ("instructions", cell.instructions),
                ("median_ns", summary.median_ns if summary else None),
            ):
                if value is not None:
                    kept = [*metrics.get(name, []), value][-MAX_RUNS_KEPT:]
                    metrics[name] = kept

    def spread(self, cell: CellRecord, metric: str) -> Spread | None:
        values = self.cells.get(cell_id(cell), {}).get(metric)
        return Spread(tuple(values)) if values else None

    def tolerance(self, cell: CellRecord, metric: str, default: float) -> tuple[float, str]:
        """The tolerance ``metric`` gets in ``cell`` and where it comes from, in words:
        ``MARGIN`` times the widest spread of at least ``MIN_RUNS`` runs, at least
        ``FLOOR``; otherwise ``default``."""
        spread = self.spread(cell, metric)
        if spread is None or spread.runs < MIN_RUNS:
            runs = spread.runs if spread else 0
            return default, f"default: the history has {runs} runs of this cell"
        widest = spread.relative_range()
        tolerance = max(FLOOR, MARGIN * widest)
        return tolerance, f"history: {spread.runs} runs spread {widest:.2%}"

    def median_noise(self, cell: CellRecord) -> float | None:
        """The standard deviation of log(per-run median) over the history's runs: how far
        one run's median strays from another's on this machine (None below MIN_RUNS)."""
        spread = self.spread(cell, "median_ns")
        if spread is None or spread.runs < MIN_RUNS:
            return None
        return statistics.stdev(math.log(value) for value in spread.values)


def _metrics_ok(metrics: Any) -> bool:
    return isinstance(metrics, dict) and all(
        isinstance(values, list) and all(isinstance(v, int | float) and v > 0 for v in values)
        for values in metrics.values()
    )
