"""PNG plots of result cells (matplotlib, no display needed), drawn to be read at a glance:
small multiples rather than one crowded panel, one fixed colour per loading strategy in
every plot, the legend outside the data, and the caption (where the numbers come from)
below everything, never over an axis label.

- ``crossover-<table>-<target>.png``: for a loading shape measured on several datasets,
  each strategy's time relative to the fastest (median over the drivers) along the
  workload dimension that varies (posts per user, say); one panel per latency and per
  value of the other dimensions (payload). Where the lines cross, the winner changes.
- ``latency-<table>.png``: time per operation against added round-trip latency, one
  panel per target, driver and mode, one line per variant (strategy); log scale.
- ``load-<table>.png``: throughput and p99 against concurrency, one panel per driver
  and mode, one colour per pool size, the throughput Little's law predicts from the
  time of one operation dashed, and a red ring on a load in which some process used at
  least 90 % of a CPU (the client, web app or proxy) or the server all of them.
- ``statements.png`` (reports): statements per operation for each loading strategy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from sqla_bench.reporting.guide import (
    DIMENSIONS,
    Point,
    Series,
    compared_strategies,
    dimension_words,
    latency_order,
    rtt,
    series,
)
from sqla_bench.reporting.report import cpu_bound, describe_dataset, variant_of
from sqla_bench.reporting.verdicts import points
from sqla_bench.results.files import CellRecord
from sqla_bench.results.load_figures import pool_capacity
from sqla_bench.results.stats import percentile, summarize
from sqla_bench.scenarios.registry import MODES, STRATEGY
from sqla_bench.scenarios.strategies import STRATEGIES

MS = 1e6
PANEL = (3.6, 2.9)  # inches per small multiple
STATEMENT_COLUMNS = 5  # panels per row of the statements plot: more would be unreadable
MAX_RELATIVE = 20.0  # a crossover plot's y axis stops here: beyond, no strategy is a rival
RELATIVE_TICKS = (1, 1.25, 1.5, 2, 3, 5, 10, 20)
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")  # 0.1, 1, 10 rather than 10^-1, 10^0
_PALETTE = plt.get_cmap("tab10").colors
# One colour per strategy, the same in every plot.
STRATEGY_COLOURS = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(STRATEGIES)}
MODE_COLOURS = {"sync": "#4c72b0", "async": "#dd8452"}


def colour_of(variant: str, others: Sequence[str]) -> tuple:
    """A strategy's own colour; any other variant, a colour by its place in ``others``
    (which the caller orders, so the same variants get the same colours)."""
    if variant in STRATEGY_COLOURS:
        return STRATEGY_COLOURS[variant]
    return _PALETTE[list(others).index(variant) % len(_PALETTE)]


Caption = Callable[[Sequence[CellRecord]], str]


def no_caption(cells: Sequence[CellRecord]) -> str:
    return ""


def write_plots(
    cells: Iterable[CellRecord], folder: Path, stem: str, caption: Caption = no_caption
) -> list[Path]:
    """Every plot the cells allow, written to ``folder``; returns the files written.
    ``caption(cells)`` says where a plot's numbers come from (its drivers, versions,
    machine, servers); it goes under the plot."""
    cells = list(cells)
    single = [c for c in cells if c.load is None]
    written = write_crossover_plots(single, folder, stem, caption)
    crossed = {path.stem.split("-crossover-")[1].rsplit("-", 1)[0] for path in written}
    for table, group in _by(single, lambda c: c.table).items():
        panels = _latency_panels(group)
        if table not in crossed and panels:
            path = folder / f"{stem}-latency-{table}.png"
            drawn = [cell for cells_ in panels.values() for cell in cells_]
            written.append(_latency_plot(table, group, path, caption(drawn)))
    for table, group in _by([c for c in cells if c.load is not None], lambda c: c.table).items():
        if len({cell.concurrency for cell in group}) > 1:
            path = folder / f"{stem}-load-{table}.png"
            written.append(_load_plot(table, group, path, caption(group)))
    return written


def _by(cells: Iterable[CellRecord], key: Callable[[CellRecord], object]) -> dict:
    grouped: dict = {}
    for cell in cells:
        grouped.setdefault(key(cell), []).append(cell)
    return grouped


# --- crossovers ------------------------------------------------------------------------


def write_crossover_plots(
    cells: Sequence[CellRecord], folder: Path, stem: str, caption: Caption = no_caption
) -> list[Path]:
    """A crossover plot per shape and target measured at two or more values of a workload
    dimension."""
    written = []
    lines = series(points(cells))
    for (table, target), shape_lines in _by(lines, lambda s: (s.table, s.target)).items():
        if max(len(line.points) for line in shape_lines) < 2:
            continue
        path = folder / f"{stem}-crossover-{table}-{target}.png"
        mine = [c for c in cells if c.table == table and c.target == target]
        written.append(crossover_plot(shape_lines, path, caption(mine)))
    return written


def crossover_plot(lines: Sequence[Series], path: Path, caption: str = "") -> Path:
    """One panel per latency (columns) and per value of the other dimensions (rows)."""
    rows = list(dict.fromkeys(line.fixed for line in lines))
    columns = list(dict.fromkeys(line.latency for line in lines))
    columns.sort(key=latency_order)
    figure, grid = _grid(len(rows), len(columns), sharex=True, sharey=True)
    strategies = compared_strategies()
    ticks = sorted({x for line in lines for x in line.xs()})
    highest = max(
        (min(MAX_RELATIVE, p.relative(s) or 1.0) for line in lines for p in line.points
         for s in strategies),
        default=MAX_RELATIVE,
    )  # fmt: skip
    for line in lines:
        axes = grid[rows.index(line.fixed)][columns.index(line.latency)]
        _crossover_panel(axes, line, strategies, ticks)
        axes.set_ylim(0.9, highest * 1.15)
        shown = [tick for tick in RELATIVE_TICKS if tick <= highest * 1.15]
        axes.set_yticks(shown, [f"{tick:g}x" for tick in shown])
        axes.set_title(f"{_fixed_title(line.fixed, rows)}{rtt(line.latency)}", fontsize="small")
    first = lines[0]
    axis = DIMENSIONS.get(first.axis, first.axis)
    for axes in grid[-1]:
        axes.set_xlabel(axis)
    for row in grid:
        row[0].set_ylabel("x the fastest (log)")
    drivers = sorted({d for line in lines for p in line.points for d in p.verdicts})
    figure.suptitle(
        f"{first.table} on {first.target}: time per operation relative to the fastest strategy\n"
        f"(median over {len(drivers)} drivers and modes, within blocks measured side by "
        "side; bars: the drivers' 95 % intervals; lower is better;\nhollow: no clear "
        f"winner between the two; above {MAX_RELATIVE:g}x drawn at {MAX_RELATIVE:g}x)",
        fontsize="medium",
    )
    drawn = {name for line in lines for name in line.compared()}
    handles = [_swatch(STRATEGY_COLOURS[name], name) for name in strategies if name in drawn]
    figure.legend(handles=handles, loc="outside right center", title="strategy", fontsize="small")
    return _save(figure, path, caption)


DODGE = 1.06  # on the log axis of the workload dimension


def _crossover_panel(axes, line: Series, strategies: Sequence[str], ticks: list[int]) -> None:
    xs = line.xs()
    for index, name in enumerate(strategies):
        # Each strategy's bars a little to one side of the point, so that they stay apart.
        beside = DODGE ** (index - (len(strategies) - 1) / 2)
        ys = [point.relative(name) for point in line.points]
        kept = [(x, y, p) for x, y, p in zip(xs, ys, line.points, strict=True) if y is not None]
        if not kept:
            continue
        colour = STRATEGY_COLOURS[name]
        axes.plot([x for x, _, _ in kept], [min(y, MAX_RELATIVE) for _, y, _ in kept],
                  color=colour, linewidth=1.6)  # fmt: skip
        for x, y, point in kept:
            hollow = _tied(point, name)
            interval = point.relative_interval(name)
            if interval is not None and interval[1] > interval[0]:
                low, high = (min(end, MAX_RELATIVE) for end in interval)
                axes.vlines(x * beside, low, high, color=colour, linewidth=2.5, alpha=0.45)
            axes.plot(x, min(y, MAX_RELATIVE), marker="o", markersize=5, color=colour,
                      markerfacecolor="white" if hollow else colour)  # fmt: skip
    axes.axhline(1.0, color="black", linewidth=0.6, alpha=0.5)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(ticks, [str(x) for x in ticks])
    axes.minorticks_off()
    axes.grid(True, which="major", alpha=0.3)


def _tied(point: Point, name: str) -> bool:
    """No clear winner at this point, and ``name`` is one of the two it was between."""
    return not point.decided and name in (point.leader, point.rival)


def _fixed_title(fixed: tuple, rows: list[tuple]) -> str:
    varying = [name for name, _ in fixed if len({dict(r).get(name) for r in rows}) > 1]
    parts = [dimension_words(name, value) for name, value in fixed if name in varying]
    return (", ".join(parts) + ", ") if parts else ""


# --- latency ---------------------------------------------------------------------------


def _latency_plot(table: str, cells: list[CellRecord], path: Path, caption: str) -> Path:
    timed = [cell for cell in cells if cell.samples_ns]
    panels = _latency_panels(timed)
    keys = sorted(panels, key=lambda k: (k[0], k[1], MODES.index(k[2])))
    columns = min(4, len(keys)) or 1
    figure, grid = _grid(math.ceil(len(keys) / columns), columns, sharex=True, sharey=True)
    variants = sorted({variant_of(cell, cells) for cell in timed})
    for index, key in enumerate(keys):
        axes = grid[index // columns][index % columns]
        for variant, points_ in _by(panels[key], lambda c: variant_of(c, cells)).items():
            points_.sort(key=lambda cell: cell.latency_ms or 0)
            xs = [cell.latency_ms or 0 for cell in points_]
            ys = [summarize(cell.samples_ns).median_ns / MS for cell in points_]
            axes.plot(xs, ys, marker="o", markersize=4, color=colour_of(variant, variants))
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(PLAIN)
        axes.set_title(f"{key[0]}+{key[1]} {key[2]}", fontsize="small")
        axes.grid(True, which="both", alpha=0.3)
    for index in range(len(keys)):
        axes = grid[index // columns][index % columns]
        if index + columns >= len(keys):  # nothing drawn below it: it carries the x axis
            axes.tick_params(labelbottom=True)
            axes.set_xlabel("round-trip latency added (ms)")
    for row in grid:
        row[0].set_ylabel("median per operation (ms, log)")
    _hide_unused(grid, len(keys))
    figure.suptitle(f"{table}: time per operation against network latency", fontsize="medium")
    handles = [_swatch(colour_of(v, variants), v) for v in _in_catalogue_order(variants)]
    figure.legend(handles=handles, loc="outside right center", fontsize="small")
    return _save(figure, path, caption)


def _latency_panels(cells: Sequence[CellRecord]) -> dict:
    """Cells by target, driver and mode, for those measured at two latencies or more (a
    driver at one latency, SQLite's say, has no line to draw)."""
    panels = _by(cells, lambda c: (c.target, c.driver, c.mode))
    return {key: group for key, group in panels.items() if len({c.latency_ms for c in group}) > 1}


def _in_catalogue_order(variants: Sequence[str]) -> list[str]:
    order = list(STRATEGIES)
    return sorted(variants, key=lambda v: (order.index(v) if v in order else len(order), v))


# --- load --------------------------------------------------------------------------------


LOAD_COLUMNS = 4  # drivers side by side; more wrap to another pair of rows


def _load_plot(table: str, cells: list[CellRecord], path: Path, caption: str) -> Path:
    """Per driver, mode and latency: throughput above, p99 below; one colour per pool."""
    panels = _by(cells, lambda c: (c.target, c.driver, c.mode, c.timed_latency, c.pgbouncer))
    keys = sorted(panels, key=lambda k: (k[0], k[1], MODES.index(k[2]), k[3] or 0, k[4] or ""))
    columns = min(LOAD_COLUMNS, len(keys))
    figure, grid = _grid(2 * math.ceil(len(keys) / columns), columns)
    pools = sorted({_pool_label(cell) for cell in cells}, key=_pool_order)
    workers = sorted({cell.concurrency for cell in cells})
    for index, key in enumerate(keys):
        row, column = 2 * (index // columns), index % columns
        top, bottom = grid[row][column], grid[row + 1][column]
        for pool, line in _by(panels[key], _pool_label).items():
            _load_lines(top, bottom, line, colour_of(pool, pools))
        title = f"{key[0]}+{key[1]} {key[2]}{_rtt_suffix(key[3])}"
        top.set_title(title + (f"\nvia PgBouncer {key[4]}" if key[4] else ""), fontsize="small")
        for axes in (top, bottom):
            axes.set_xscale("log")
            axes.set_xticks(workers, [str(n) for n in workers])
            axes.minorticks_off()
            axes.grid(True, which="major", alpha=0.3)
        top.set_ylim(bottom=0)
        bottom.set_yscale("log")
        bottom.yaxis.set_major_formatter(PLAIN)
        _label_a_short_log_range(bottom.yaxis)
        bottom.set_xlabel("concurrent workers")
        top.set_ylabel("throughput (ops/s)")
        bottom.set_ylabel("p99 (ms, log)")
    _hide_unused_pairs(grid, len(keys), columns)
    figure.suptitle(f"{table} under load", fontsize="medium")
    handles = [_swatch(colour_of(pool, pools), f"pool {pool}") for pool in pools]
    handles += [
        Line2D([], [], color="gray", linestyle="--", label="Little's law: min(workers, pool)\n"
               "/ time of one operation alone"),
        Line2D([], [], color="red", marker="o", markerfacecolor="none", linestyle="none",
               markersize=9, label="limited by CPU: a process\n(client, worker, app, proxy)\n"
               "at >= 90 % of a CPU, or a\nCPU at >= 85 % busy"),
    ]  # fmt: skip
    figure.legend(handles=handles, loc="outside right center", fontsize="small")
    return _save(figure, path, caption)


def _label_a_short_log_range(axis) -> None:
    """Within one decade a log axis has no major tick to label: label the minor ones
    then (20, 30, 40 ms), and only then, or a wide range is crowded with them."""
    low, high = axis.axes.get_ylim()
    if low > 0 and high / low < 10:
        axis.set_minor_formatter(PLAIN)


def _pool_order(label: str) -> tuple[int, ...]:
    """``5+10`` before ``20+0``, and ``5+10 x 2 procs`` after ``5+10``."""
    pool, _, processes = label.partition(" x ")
    return (
        *(int(part) for part in pool.split("+")),
        int(processes.split()[0] or 0) if processes else 0,
    )


def _hide_unused_pairs(grid, used: int, columns: int) -> None:
    for index in range(used, len(grid) // 2 * columns):
        row, column = 2 * (index // columns), index % columns
        grid[row][column].set_visible(False)
        grid[row + 1][column].set_visible(False)


def _load_lines(top, bottom, cells: list[CellRecord], colour: tuple) -> None:
    cells = sorted(cells, key=lambda cell: cell.concurrency)
    xs = [cell.concurrency for cell in cells]
    throughput = [cell.load["throughput"] for cell in cells]
    top.plot(xs, throughput, marker="o", markersize=4, color=colour)
    predicted = littles_law(cells)
    if predicted:
        # A cell limited by a CPU measured that CPU: the law says nothing of it.
        held = [
            math.nan if cpu_bound(c) else value for c, value in zip(cells, predicted, strict=True)
        ]
        if sum(not math.isnan(value) for value in held) >= 2:  # a lone point draws no line
            top.plot(xs, held, linestyle="--", color=colour, linewidth=1)
    tails = [percentile(c.samples_ns, 99) / MS if c.samples_ns else math.nan for c in cells]
    bottom.plot(xs, tails, marker="o", markersize=4, color=colour)
    for x, y, tail, cell in zip(xs, throughput, tails, cells, strict=True):
        if cpu_bound(cell):
            for axes, value in ((top, y), (bottom, tail)):
                axes.plot(x, value, marker="o", markersize=10, markerfacecolor="none",
                          markeredgecolor="red", linestyle="none")  # fmt: skip


def littles_law(cells: Sequence[CellRecord]) -> list[float] | None:
    """Throughput if nothing but the pool limited it: min(workers, pool capacity) over
    the median time of one operation at the lowest concurrency measured."""
    alone = min(cells, key=lambda cell: cell.concurrency)
    if not alone.samples_ns:
        return None
    seconds = summarize(alone.samples_ns).median_ns / 1e9
    capacity = sum(pool_capacity(alone.pool)) * (alone.processes or 1)  # a pool per process
    return [min(cell.concurrency, capacity) / seconds for cell in cells]


def _pool_label(cell: CellRecord) -> str:
    """A line of a load plot: the engine's pool, and the processes that each had one."""
    size, overflow = pool_capacity(cell.pool)
    label = f"{size}+{overflow}"
    count = cell.processes
    return label if count is None else f"{label} x {count} proc{'s' if count != 1 else ''}"


def _rtt_suffix(latency: float | None) -> str:
    return "" if latency is None else f", +{latency:g} ms"


# --- statements ----------------------------------------------------------------------------


def write_statement_plot(
    cells: Iterable[CellRecord], path: Path, caption: Caption = no_caption
) -> Path | None:
    """Statements per operation for every strategy of every table that has strategies,
    sync and async side by side, on the smallest dataset measured; None when no table
    has strategies."""
    strategic = [c for c in cells if STRATEGY in c.params and c.load is None]
    if not strategic:
        return None
    smallest = min((tuple(sorted(c.dataset.items())) for c in strategic), key=_dataset_size)
    by_table = _by([c for c in strategic if tuple(sorted(c.dataset.items())) == smallest],
                   lambda c: c.table)  # fmt: skip
    columns = min(len(by_table), STATEMENT_COLUMNS)
    figure, grid = _grid(math.ceil(len(by_table) / columns), columns)
    panels = [axes for row in grid for axes in row]
    _hide_unused(grid, len(by_table))
    for axes, (table, group) in zip(panels, by_table.items(), strict=False):
        strategies = _in_catalogue_order(list({cell.params[STRATEGY] for cell in group}))
        for offset, mode in ((-0.2, "sync"), (0.2, "async")):
            mine = [
                [c for c in group if c.params[STRATEGY] == s and c.mode == mode] for s in strategies
            ]
            counts = [max((c.statements for c in found), default=0) for found in mine]
            # A call that raised is drawn hatched and labelled so: its statements are
            # those sent before it raised, not what the strategy costs.
            raised = [any(c.outcome != "ok" for c in found) for found in mine]
            positions = [index + offset for index in range(len(strategies))]
            bars = axes.bar(
                positions, counts, width=0.4, color=MODE_COLOURS[mode],
                hatch=["///" if r else "" for r in raised], edgecolor="white",
            )  # fmt: skip
            labels = [
                "raised" if r else (str(n) if n else "")
                for n, r in zip(counts, raised, strict=True)
            ]
            axes.bar_label(bars, labels, fontsize=6, rotation=90 if any(raised) else 0)
        axes.set_xticks(range(len(strategies)), strategies, rotation=60, ha="right")
        axes.set_title(table, fontsize="small")
        axes.grid(True, axis="y", alpha=0.3)
    for row in grid:
        row[0].set_ylabel("statements per operation")
    figure.suptitle(
        "Statements per operation by loading strategy (hatched, 'raised': a call that raised, "
        "its statements until then; "
        f"{describe_dataset(dict(smallest))})",
        fontsize="medium",
    )
    handles = [Patch(color=MODE_COLOURS[mode], label=mode) for mode in MODES]
    figure.legend(handles=handles, loc="outside right center", fontsize="small")
    return _save(figure, path, caption([c for group in by_table.values() for c in group]))


def _dataset_size(dataset: tuple) -> tuple:
    return tuple(value for _, value in dataset)


# --- shared --------------------------------------------------------------------------------


def _grid(rows: int, columns: int, **shared: bool):
    figure, grid = plt.subplots(
        rows,
        columns,
        figsize=(PANEL[0] * columns + 2.2, PANEL[1] * rows + 1.0),
        squeeze=False,
        layout="constrained",
        **shared,
    )
    return figure, grid


def _hide_unused(grid, used: int) -> None:
    flat = [axes for row in grid for axes in row]
    for axes in flat[used:]:
        axes.set_visible(False)


def _swatch(colour: tuple | str, label: str) -> Line2D:
    return Line2D([], [], color=colour, marker="o", markersize=5, linewidth=1.6, label=label)


def _save(figure, path: Path, caption: str = "") -> Path:
    if caption:
        # Below the figure: saving with a tight box grows the canvas to hold it, so it
        # never sits on an axis label.
        figure.text(0.0, -0.01, caption, fontsize="x-small", color="dimgray", va="top",
                    ha="left", wrap=True)  # fmt: skip
    figure.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)
    plt.close(figure)
    return path
