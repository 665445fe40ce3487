"""PNG plots of a result file's cells (matplotlib, no display needed).

- ``latency-<table>.png``: time per operation against added round-trip latency, one line
  per variant (strategy), mode and driver; a log scale, as strategies differ by orders
  of magnitude once the network is slow.
- ``load-<table>.png``: throughput and p99 against concurrency, one line per pool size,
  mode and driver.
- ``statements.png`` (reports): statements per operation for each loading strategy.
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
from scenarios.registry import STRATEGY

MS = 1e6


def write_plots(
    cells: Iterable[CellRecord], folder: Path, stem: str, caption: str = ""
) -> list[Path]:
    """Every plot the cells allow, written to ``folder``; returns the files written.
    ``caption`` (where the numbers come from: targets, versions, machine) goes under each."""
    cells = list(cells)
    written = []
    for table, group in _by_table([c for c in cells if c.load is None]).items():
        if len({cell.latency_ms for cell in group}) > 1:
            path = folder / f"{stem}-latency-{table}.png"
            written.append(_latency_plot(table, group, path, caption))
    for table, group in _by_table([c for c in cells if c.load is not None]).items():
        if len({cell.concurrency for cell in group}) > 1:
            written.append(_load_plot(table, group, folder / f"{stem}-load-{table}.png", caption))
    return written


def write_statement_plot(cells: Iterable[CellRecord], path: Path, caption: str = "") -> Path | None:
    """Statements per operation for every strategy of every table that has strategies,
    sync and async side by side; None when no table has strategies."""
    by_table = _by_table([c for c in cells if STRATEGY in c.params and c.load is None])
    if not by_table:
        return None
    figure, axes_row = plt.subplots(
        1, len(by_table), figsize=(4.2 * len(by_table), 5), squeeze=False
    )
    for axes, (table, group) in zip(axes_row[0], by_table.items(), strict=True):
        strategies = list(dict.fromkeys(cell.params[STRATEGY] for cell in group))
        for offset, mode in ((-0.2, "sync"), (0.2, "async")):
            counts = [
                max((c.statements for c in group if c.params[STRATEGY] == s and c.mode == mode),
                    default=0)
                for s in strategies
            ]  # fmt: skip
            positions = [index + offset for index in range(len(strategies))]
            axes.bar(positions, counts, width=0.4, label=mode)
        axes.set_xticks(range(len(strategies)), strategies, rotation=60, ha="right")
        axes.set_title(table, fontsize="medium")
        axes.set_ylabel("statements per operation")
        axes.grid(True, axis="y", alpha=0.3)
    axes_row[0][0].legend()
    figure.suptitle("statements per operation by loading strategy (a raised call: until it raised)")
    return _save(figure, path, caption)


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


def _latency_plot(table: str, cells: list[CellRecord], path: Path, caption: str) -> Path:
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
    return _save(figure, path, caption)


def _load_plot(table: str, cells: list[CellRecord], path: Path, caption: str) -> Path:
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
    return _save(figure, path, caption)


def _save(figure, path: Path, caption: str = "") -> Path:
    if caption:
        figure.text(0.01, 0.005, caption, fontsize="x-small", color="dimgray", wrap=True)
        figure.tight_layout(rect=(0, 0.04, 1, 1))
    else:
        figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
