"""Tables for people, computed from result records only (never while measuring).

One table per scenario table and dataset size: a row per variant (strategy, or the case
that joined the table), mode and driver, with statements per operation, median and p95
time, throughput, the ratio to the fastest row of the table, and the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rich.table import Table
from rich.text import Text

from sqla_bench.results.files import CellRecord, duration, params_text
from sqla_bench.results.load_figures import WARMUP_SHARE
from sqla_bench.results.load_figures import cpu_bound as limited_by_cpu
from sqla_bench.results.stats import Summary, summarize
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.expect import raises_text, works_text, wrong_text
from sqla_bench.scenarios.registry import MODES, STRATEGY

NOTE = (
    "median and p95 per operation over the samples after warm-up; ops/s is one client's "
    "rate at the median (1 / median); x fastest compares medians within the table, "
    "drivers and modes measured one after another (on a shared machine absolute medians "
    "drift by a fifth between passes: the guide's side-by-side ratios are the comparison "
    "that holds); stmts "
    "is statements per operation as SQLAlchemy counts them (a driver baseline bypasses "
    "SQLAlchemy, so it shows -); rows is what the operation returned, fetched the rows the "
    "database sent for it (a JOIN repeats a parent row once per child); mem is the most "
    "memory the client held during one operation (Python allocations, tracemalloc, in a "
    "warm-up call of its own); calls is the Python function calls in one operation "
    "(cProfile, in another warm-up call: the same from run to run, where times are not); "
    "with --instructions, instr is the instructions one operation executed, its fresh "
    "session included, less the misses of CPython's type attribute cache (callgrind, in "
    "a process of its own: within 0.3 % from run to run here); "
    "with --latency, rtt is the round-trip time the proxy added (at 0 ms the samples went "
    "straight to the server), trips the round trips per operation and down/up the bytes "
    "each way on the wire, counted through the proxy"
)


@dataclass
class TableData:
    """A table as text: printed by rich on a console, written as Markdown in a report."""

    title: str
    columns: list[tuple[str, str]]  # name and justification ("left" or "right")
    rows: list[list[str]] = field(default_factory=list)  # may hold rich markup

    def to_rich(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        for name, justify in self.columns:
            # A column of words may wrap, but never to nothing when the table is wide.
            table.add_column(
                name, justify=justify, no_wrap=justify == "right", min_width=min(len(name), 8)
            )
        for row in self.rows:
            table.add_row(*row)
        return table

    def to_markdown(self) -> str:
        align = {"left": "---", "right": "--:"}
        lines = [f"**{_plain(self.title)}**", ""] if self.title else []
        lines += [
            "| " + " | ".join(name for name, _ in self.columns) + " |",
            "|" + "|".join(align[justify] for _, justify in self.columns) + "|",
        ]
        lines += ["| " + " | ".join(_plain(value) for value in row) + " |" for row in self.rows]
        return "\n".join(lines)


def _plain(text: str) -> str:
    """Rich markup removed, and pipes escaped for a Markdown table."""
    return Text.from_markup(text).plain.replace("|", "\\|")


@dataclass
class _Row:
    cell: CellRecord
    summary: Summary | None


def tables(cells: Iterable[CellRecord]) -> list[TableData]:
    """One rich table per (table, dataset) in the order the cells were measured."""
    cells = list(cells)
    several_sizes = len({_dataset_key(cell) for cell in cells}) > 1
    # A table's own cells come first and place it: a baseline measured early that joins
    # crud.get's table does not move that table to the top.
    owners_first = sorted(cells, key=lambda cell: cell.case != cell.table)
    grouped: dict[tuple, list[CellRecord]] = {}
    for cell in owners_first:
        grouped.setdefault((cell.table, _dataset_key(cell)), []).append(cell)
    return [_table(group, several_sizes) for group in grouped.values()]


def _dataset_key(cell: CellRecord) -> tuple:
    return tuple(sorted(cell.dataset.items()))


def _table(cells: list[CellRecord], several_sizes: bool) -> TableData:
    owner = next((cell for cell in cells if cell.case == cell.table), cells[0])
    title = f"{owner.table}: {owner.label}"
    if several_sizes:
        title += f" ({describe_dataset(owner.dataset)})"
    proxied = any(cell.latency_ms is not None for cell in cells)
    counted = any(cell.instructions for cell in cells)
    columns = [
        c
        for c in COLUMNS
        if (proxied or c[0] not in PROXY_COLUMNS) and (counted or c[0] != "instr")
    ]
    table = TableData(title, columns)
    rows = [_Row(cell, summarize(cell.samples_ns)) for cell in cells]
    fastest = min((row.summary.median_ns for row in rows if row.summary), default=None)
    for row in sorted(rows, key=_order(cells)):
        values = _cells(row, variant_of(row.cell, cells), fastest)
        table.rows.append([values[name] for name, _ in columns])
    return table


COLUMNS = (
    ("variant", "left"),
    ("rtt", "right"),
    ("mode", "left"),
    ("driver", "left"),
    ("stmts", "right"),
    ("trips", "right"),
    ("rows", "right"),
    ("fetched", "right"),
    ("down", "right"),
    ("up", "right"),
    ("mem", "right"),
    ("calls", "right"),
    ("instr", "right"),  # shown when the run counted instructions (run --instructions)
    ("median", "right"),
    ("p95", "right"),
    ("ops/s", "right"),
    ("x fastest", "right"),
    ("outcome", "left"),
)
PROXY_COLUMNS = ("rtt", "trips", "down", "up")  # shown when the run went through the proxy


def _order(cells: list[CellRecord]):
    """Variants in the order first measured, then sync before async, then driver."""
    first_seen: dict[str, int] = {}
    for cell in cells:
        first_seen.setdefault(variant_of(cell, cells), len(first_seen))

    def key(row: _Row) -> tuple:
        cell = row.cell
        variant = first_seen[variant_of(cell, cells)]
        return (variant, cell.latency_ms or 0, MODES.index(cell.mode), cell.target, cell.driver)

    return key


def variant_of(cell: CellRecord, table: list[CellRecord]) -> str:
    """The case (when the table has several) and the parameters that vary in the table."""
    parts = [cell.case] if len({c.case for c in table}) > 1 else []
    varying = [name for name in cell.params if len({repr(c.params.get(name)) for c in table}) > 1]
    # A strategy is its own name ("selectin"); other parameters need theirs ("user_id=0").
    parts += [
        str(cell.params[name]) if name == STRATEGY else f"{name}={cell.params[name]}"
        for name in varying
    ]
    if len({c.pgbouncer for c in table}) > 1:
        parts.append(f"via PgBouncer {cell.pgbouncer}" if cell.pgbouncer else "direct")
    if len({c.run_pass for c in table}) > 1:  # run --passes
        parts.append(f"pass {cell.run_pass}")
    return " ".join(parts) or cell.case


def _cells(row: _Row, variant: str, fastest: float | None) -> dict[str, str]:
    cell, summary = row.cell, row.summary
    values = {
        "variant": variant,
        "rtt": "-" if cell.latency_ms is None else f"{cell.latency_ms:g} ms",
        "mode": cell.mode,
        "driver": f"{cell.target}+{cell.driver}",
        "stmts": "-" if cell.baseline == "driver" else str(cell.statements),
        "trips": "-" if cell.round_trips is None else str(cell.round_trips),
        "rows": "-" if cell.rows is None else str(cell.rows),
        "fetched": "-" if cell.rows_fetched is None else str(cell.rows_fetched),
        "down": size(cell.bytes_down),
        "up": size(cell.bytes_up),
        "mem": size(cell.peak_memory),
        "calls": count(cell.calls),
        "instr": count(cell.instructions),
        "outcome": outcome(cell),
    }
    names = ("median", "p95", "ops/s", "x fastest")
    values |= dict.fromkeys(names, "-")
    if summary is not None:
        values |= {
            "median": duration(summary.median_ns),
            "p95": duration(summary.p95_ns),
            "ops/s": f"{summary.ops_per_second:,.0f}",
            "x fastest": f"{summary.median_ns / fastest:.2f}" if fastest else "-",
        }
    return values


def describe_dataset(dataset: dict[str, int]) -> str:
    """A dataset's workload dimensions in words (a version 1 result had no payload): the
    built-in one's, the dimensions of data generated for an application's models, or
    none, for data that was in the database already."""
    if not dataset:
        return "the data already in the database"
    if "users" in dataset:
        return DatasetSize(**dataset).describe()
    return ", ".join(f"{name.replace('_', ' ')}={value}" for name, value in dataset.items())


def cpu_bound(cell: CellRecord) -> list[str]:
    """What limited a load cell by CPU ("client CPU", "machine CPUs"), as its result
    file records it (``sqla_bench.measuring.load.cpu_bound``); for a file written before
    it did, the same rule over the load's length. Empty when nothing did, or not a
    load."""
    load = cell.load
    if not load:
        return []
    if "cpu_bound" in load:
        return load["cpu_bound"]
    seconds = load.get("window_seconds", 0) / (1 - WARMUP_SHARE)  # the load ran this long
    return limited_by_cpu(load.get("cpu_seconds") or {}, seconds)


def outcome(cell: CellRecord) -> str:
    """``ok``, ``wrong results``, or the error (with its wrapper); flagged when it is not
    what is declared."""
    text = "ok" if cell.outcome == "ok" else error_name(cell)
    if cell.wrong_from is not None:
        text = "wrong results"
    if cell.failed is not None:
        return f"[bold red]failed: the server went away ({cell.failed})[/bold red]"
    if not cell.matches_expected:
        text = f"[bold red]{text}, catalogue: {cell.expected}[/bold red]"
    return text


def error_name(cell: CellRecord) -> str:
    """The exception a cell raised, inside what delivered it: StatementError(MissingGreenlet)."""
    return cell.error if cell.wrapped_in is None else f"{cell.wrapped_in}({cell.error})"


def observed(cell: CellRecord) -> str:
    """What the cell did, in the catalogue's words (as ``expected`` is written)."""
    if cell.failed is not None:
        return f"failed: the server went away ({cell.failed})"
    if cell.wrong_from is not None:
        return wrong_text(cell.statements, cell.wrong_from)
    if cell.outcome == "ok":
        return works_text(cell.statements)
    return raises_text(error_name(cell), cell.statements, cell.statements_started)


def short(cell: CellRecord) -> str:
    """A matrix cell: ``ok 2``, ``WRONG[12] 14`` (returned wrong results from value[12],
    14 statements), or ``MissingGreenlet 1/2`` (completed/started)."""
    if cell.failed is not None:
        return "FAILED (server gone)"
    if cell.wrong_from is not None:
        return f"WRONG{cell.wrong_from} {cell.statements}"
    if cell.outcome == "ok":
        return f"ok {cell.statements}"
    started = cell.statements_started
    counts = f"{cell.statements}" + (f"/{started}" if started != cell.statements else "")
    return f"{error_name(cell)} {counts}"


def identity(cell: CellRecord) -> str:
    """A cell's case and parameters in one line: ``load.users_with_posts joined``, and
    the PgBouncer pool mode it went through, if any (``... via PgBouncer transaction``)."""
    name = f"{cell.case} {params_text(cell.params, bare=(STRATEGY,))}".strip()
    return name if cell.pgbouncer is None else f"{name} via PgBouncer {cell.pgbouncer}"


def outcome_matrix(
    cells: Iterable[CellRecord],
    title: str,
    text: Callable[[CellRecord], str],
    as_measured: bool = False,
) -> TableData:
    """Each case and parameter cell (a row) against each target, driver and mode (a
    column, in the order measured or by name): ``text`` of the cell measured there."""
    cells = list(cells)
    columns = list(dict.fromkeys((c.target, c.driver, c.mode) for c in cells))
    if not as_measured:
        columns.sort(key=lambda column: (column[0], column[1], MODES.index(column[2])))
    names = {column: f"{column[0]}+{column[1]} {column[2]}" for column in columns}
    entries = [(identity(c), names[(c.target, c.driver, c.mode)], text(c)) for c in cells]
    return matrix(title, "case", list(names.values()), entries)


def matrix(
    title: str, first: str, columns: list[str], entries: Iterable[tuple[str, str, str]]
) -> TableData:
    """A table of (row, column, text) entries: a row per name in the order first seen,
    the ``columns`` in the order given, ``-`` where an entry is missing."""
    rows: dict[str, dict[str, str]] = {}
    for row, column, text in entries:
        rows.setdefault(row, {})[column] = text
    table = TableData(title, [(first, "left")] + [(column, "left") for column in columns])
    for name, by_column in rows.items():
        table.rows.append([name, *(by_column.get(column, "-") for column in columns)])
    return table


def size(count: int | None) -> str:
    """Bytes in the unit that keeps them short: 512 B, 3.7 KB, 1.4 MB."""
    if count is None:
        return "-"
    # From 999,500 on, three figures of KB would read 1e+03 KB.
    for unit, scale, from_ in (("MB", 1e6, 999_500), ("KB", 1e3, 999.5)):
        if count >= from_:
            return f"{count / scale:.3g} {unit}"
    return f"{count} B"


def count(number: int | None) -> str:
    """A count short enough for a column: 875, 7,006, 24.2k, 1.31M (all four digits
    below 10,000, where they still fit)."""
    if number is None:
        return "-"
    # From 999,500 on, three figures of k would read 1e+03k.
    for unit, scale, from_ in (("M", 1e6, 999_500), ("k", 1e3, 1e4)):
        if number >= from_:
            return f"{number / scale:.3g}{unit}"
    return f"{number:,}"


ASYNC_COST_NOTE = (
    "Python function calls per operation in async over the same in sync, per target, "
    "between the drivers named (the same driver in both modes where one has both): the "
    "CPU that AsyncSession, the greenlet bridge and the event loop add, counted rather "
    "than timed. cProfile counts the calls on the thread that ran the operation, so "
    "aiosqlite's work in its own thread is left out. Where the async cell raises "
    "(a lazy load's MissingGreenlet), no ratio is given: it stopped early."
)


def async_cost(cells: Iterable[CellRecord]) -> TableData:
    """Per case and target, the async cell's function calls over the sync cell's (the
    first measured of each, when a run has several datasets or latencies)."""
    cells = [cell for cell in cells if cell.calls and cell.baseline is None]
    entries, compared = [], set()
    for target in dict.fromkeys(cell.target for cell in cells):
        here = [cell for cell in cells if cell.target == target]
        pair = _driver_pair(here)
        if None in pair:
            continue
        first: dict[tuple, CellRecord] = {}
        for cell in here:
            first.setdefault((identity(cell), cell.driver, cell.mode), cell)
        column = f"{target} " + (pair[0] if pair[0] == pair[1] else " → ".join(pair))
        for case in dict.fromkeys(identity(cell) for cell in here):
            sync = first.get((case, pair[0], "sync"))
            async_ = first.get((case, pair[1], "async"))
            if sync and async_:
                entries.append((case, column, _calls_ratio(sync, async_)))
                compared |= {_conditions(sync), _conditions(async_)}
    columns = list(dict.fromkeys(column for _, column, _ in entries))
    title = "async over sync, in function calls"
    # Calls grow with the objects an operation loads: the table says on which dataset.
    if len(compared) == 1:
        title += f" ({compared.pop()})"
    elif compared:
        title += " (each case on the first dataset and latency it was measured at)"
    return matrix(title, "case", columns, entries)


def _conditions(cell: CellRecord) -> str:
    latency = "direct" if cell.timed_latency is None else f"+{cell.timed_latency:g} ms"
    return f"{describe_dataset(cell.dataset)}; {latency}"


def _calls_ratio(sync: CellRecord, async_: CellRecord) -> str:
    if sync.outcome == async_.outcome == "raised":
        return f"both raise {error_name(async_)}"
    if "raised" in (sync.outcome, async_.outcome):
        raised = async_ if async_.outcome == "raised" else sync
        return f"{raised.mode} raises {error_name(raised)}"
    ratio = async_.calls / sync.calls
    return f"{ratio:.2f}x ({count(sync.calls)} → {count(async_.calls)})"


def _driver_pair(cells: list[CellRecord]) -> tuple[str | None, str | None]:
    """The sync and async drivers to compare: one that has both modes, else the first
    measured of each."""
    by_mode = {
        mode: list(dict.fromkeys(c.driver for c in cells if c.mode == mode)) for mode in MODES
    }
    both = [driver for driver in by_mode["sync"] if driver in by_mode["async"]]
    if both:
        return both[0], both[0]
    first = {mode: (drivers[0] if drivers else None) for mode, drivers in by_mode.items()}
    return first["sync"], first["async"]
