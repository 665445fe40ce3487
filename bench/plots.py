"""PNG plots of a result file's cells (matplotlib, no display needed).

- ``latency-<table>.png``: time per operation against added round-trip latency, one line
  per variant (strategy), mode and driver; a log scale, as strategies differ by orders
  of magnitude once the network is slow.
- ``load-<table>.png``: throughput and p99 against concurrency, one line per pool size,
  mode and driver.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt

from bench.report import variant_of
from bench.results import CellRecord
from bench.stats import percentile, summarize

MS = 1e6


def write_plots(cells: Iterable[CellRecord], folder: Path, stem: str) -> list[Path]:
    """Every plot the cells allow, written to ``folder``; returns the files written."""
    cells = list(cells)
    written = []
    for table, group in _by_table([c for c in cells if c.load is None]).items():
        if len({cell.latency_ms for cell in group}) > 1:
            written.append(_latency_plot(table, group, folder / f"{stem}-latency-{table}.png"))
    for table, group in _by_table([c for c in cells if c.load is not None]).items():
        if len({cell.concurrency for cell in group}) > 1:
            written.append(_load_plot(table, group, folder / f"{stem}-load-{table}.png"))
    return written


def _by_table(cells: list[CellRecord]) -> dict[str, list[CellRecord]]:
    grouped: dict[str, list[CellRecord]] = {}
    for cell in cells:
        grouped.setdefault(cell.table, []).append(cell)
    return grouped


def _lines(cells: list[CellRecord], label) -> dict[str, list[CellRecord]]:
    lines: dict[str, list[CellRecord]] = {}
    for cell in cells:
        lines.setdefault(label(cell), []).append(cell)
    return lines


def _latency_plot(table: str, cells: list[CellRecord], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(9, 5.5))
    timed = [cell for cell in cells if cell.samples_ns]
    lines = _lines(timed, lambda c: f"{variant_of(c, cells)} {c.mode} {c.driver}")
    for label, points in lines.items():
        points.sort(key=lambda cell: cell.latency_ms or 0)
        xs = [cell.latency_ms or 0 for cell in points]
        ys = [summarize(cell.samples_ns).median_ns / MS for cell in points]
        axes.plot(xs, ys, marker="o", label=label)
    axes.set_yscale("log")
    axes.set_xlabel("round-trip latency added (ms)")
    axes.set_ylabel("median time per operation (ms, log)")
    axes.set_title(f"{table}: time per operation against network latency")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small", ncol=2)
    return _save(figure, path)


def _load_plot(table: str, cells: list[CellRecord], path: Path) -> Path:
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))

    def label(cell: CellRecord) -> str:
        pool = cell.pool or {}
        size = f"{pool.get('pool_size', 5)}+{pool.get('max_overflow', 10)}"
        rtt = "" if cell.latency_ms is None else f" +{cell.latency_ms:g}ms"
        return f"pool {size} {cell.mode} {cell.driver}{rtt}"

    for name, points in _lines(cells, label).items():
        points.sort(key=lambda cell: cell.concurrency)
        xs = [cell.concurrency for cell in points]
        left.plot(xs, [cell.load["throughput"] for cell in points], marker="o", label=name)
        tails = [percentile(c.samples_ns, 99) / MS if c.samples_ns else None for c in points]
        right.plot(xs, tails, marker="o", label=name)
    for axes, title in ((left, "throughput (ops/s)"), (right, "p99 per operation (ms, log)")):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("concurrent workers")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize="small")
    figure.suptitle(f"{table} under load")
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
