"""What the commands show on a console, all through rich and all fed from plain records
(result cells, figures, comparisons): progress while measuring, the tables of a run, the
verification matrix, and each command's closing lines. The Markdown and HTML report
(``sqla_bench.reporting.document``) draws from the same tables
(``sqla_bench.reporting.report.TableData``)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sqla_bench.reporting.load_tables import LOAD_NOTE, load_tables
from sqla_bench.reporting.report import NOTE, observed, outcome_matrix, short, tables
from sqla_bench.results.files import CellRecord, case_text

if TYPE_CHECKING:
    from sqla_bench.run.plan import RunPlan

PIPED_WIDTH = 200


def console() -> Console:
    """Piped output (CI logs, files) gets a width the matrix fits in, not rich's 80."""
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)


def say_on_stderr(text: str) -> None:
    """Progress that is not a result (containers starting): stderr keeps stdout clean."""
    print(f"sqla-bench: {text}", file=sys.stderr, flush=True)


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[str]]) -> Table:
    """A plain rich table, its title on the left."""
    drawn = Table(title=title, title_justify="left")
    for column in columns:
        drawn.add_column(column)
    for row in rows:
        drawn.add_row(*row)
    return drawn


# --- run and report ------------------------------------------------------------------------


def print_tables(console: Console, cells: list[CellRecord]) -> None:
    single = [cell for cell in cells if cell.load is None]
    loaded = [cell for cell in cells if cell.load is not None]
    for drawn in tables(single):
        console.print(drawn.to_rich())
    for drawn in load_tables(loaded):
        console.print(drawn.to_rich())
    console.print(NOTE if single else LOAD_NOTE, style="dim")


def plot(console: Console, cells: list[CellRecord], folder: Path, stem: str) -> None:
    from sqla_bench.reporting.plots import write_plots  # matplotlib: imported when a plot is drawn

    written = write_plots(cells, folder, stem)
    for path in written:
        console.print(f"plot: {path}", highlight=False)
    if not written:
        console.print("no plot: measure at several --latency values or --concurrency levels")


def print_lines(console: Console, lines: Iterable[str], style: str | None = None) -> None:
    for line in lines:
        console.print(line, style=style, highlight=False)


def print_differences(console: Console, cells: Iterable[CellRecord], word: str) -> None:
    """One line per cell that differs from the catalogue, however long, so that a log can
    be searched for it: ``MISMATCH crud.get[user_id=1] on sqlite-pysqlite-sync: ...``."""
    for cell in cells:
        if cell.matches_expected:
            continue
        text = f"{case_text(cell.case, cell.params)} on {cell.target}-{cell.driver}-{cell.mode}: "
        text += "expected "
        text += f"{cell.expected}, observed {observed(cell)}"
        if cell.message:  # what was raised, or a load's leak or failure (no exception)
            text += f" ({cell.error}: {cell.message})" if cell.error else f" ({cell.message})"
        if cell.differences or not cell.message:
            text += ": " + ("; ".join(cell.differences) or "see the outcome")
        console.print(f"[red]{word}[/red] {escape(text)}", highlight=False, soft_wrap=True)


def print_failed(console: Console, cells: Iterable[CellRecord]) -> None:
    """One line per cell the server's going away cut short: ``FAILED crud.get[...] on
    ...: the server went away (...)``, apart from the cells that differ."""
    for cell in cells:
        text = f"{case_text(cell.case, cell.params)} on {cell.target}-{cell.driver}-{cell.mode}: "
        text += f"not measured, the server went away ({cell.failed})"
        console.print(f"[red]FAILED[/red] {escape(text)}", highlight=False, soft_wrap=True)


def print_incomplete(failures: list[str]) -> None:
    for failure in failures:
        print(f"sqla-bench: incomplete: {failure}", file=sys.stderr)


# --- verify ----------------------------------------------------------------------------------


def verification_matrix(title: str, cells: list[CellRecord]) -> Table:
    """Every pattern and scenario cell against each driver and mode: ``ok 2``, or what it
    raised after how many statements; red, with what was declared, where it differs."""
    return outcome_matrix(cells, title, _verified, as_measured=True).to_rich()


def _verified(cell: CellRecord) -> str:
    text = short(cell)
    if cell.matches_expected:
        return text
    # The outcome may be the one declared while the value, SQL or commits are not.
    said = f"expected {cell.expected}" if observed(cell) != cell.expected else "see below"
    return f"[bold red]{text} ({said})[/bold red]"


VERIFY_LEGEND = (
    "Cells read 'ok N' (works, N statements), 'Error C/S' (raised after C statements "
    "completed, S started; StatementError(X) means X arrived wrapped), or 'WRONG\\[i] N' "
    "(returned wrong results, the worst outcome: no error, and from value\\[i] on not what "
    "the data holds). A cell that works is also held to its value, its SQL and, for a "
    "write, what was committed."
)


# --- selfcheck, compare, containers ------------------------------------------------------------


def figures_table(figures: Iterable[Any]) -> Table:
    met = {True: "yes", False: "[bold red]no[/bold red]", None: ""}
    rows = [(f.name, f.shown, f.goal, met[f.met], f.how) for f in figures]
    return table("sqla-bench selfcheck", ("figure", "value", "goal", "met", "how"), rows)


def comparison_table(title: str, columns: tuple[str, ...], rows: Iterable[dict]) -> Table:
    """The gate's rows, red where a cell changed or got slower, green where faster."""
    style = {"changed": "bold red", "slower": "bold red", "faster": "green"}
    drawn = table(title, columns, ())
    for row in rows:
        drawn.add_row(*(row[c] for c in columns), style=style.get(row["verdict"]))
    return drawn


def print_unhandled(console: Console, plan: RunPlan) -> None:
    """What ``--models`` leaves out of an application's models, and why."""
    if plan.workload is None:
        return
    unhandled = plan.workload.unhandled
    lines = [f"left out {item.name}: {reason}" for item in unhandled for reason in item.reasons]
    if unhandled:
        lines.append(plan.workload.next_step)
    if plan.workload.fitted is not None:
        lines.append(plan.workload.fitted)
    print_lines(console, lines, style="yellow")


def print_plan(console: Console, plan: RunPlan) -> None:
    """What a run with these options would measure, without measuring (--dry-run)."""
    lines = [f"{target.name}: {target.source}" for target in plan.targets]
    for driver in plan.selected_drivers():
        cells = sum(len(plan.cells(driver, size)) for size in plan.datasets)
        lines.append(f"  {driver.id}: {cells} cells per setting")
    lines.append(
        f"{len(plan.datasets)} datasets, latencies {plan.latencies or 'none (direct)'}, "
        f"pools {plan.pools()}, concurrency {plan.concurrency or 'one call at a time'}, "
        f"{plan.passes} pass{'es' if plan.passes > 1 else ''} over the workload"
    )
    created = plan.tables_created()
    lines.append(
        f"tables created on each target and dropped when done: {', '.join(created)}"
        if created
        else "no table created: the data is read where it is"
    )
    print_lines(console, lines)
