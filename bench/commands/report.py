"""``sqla-bench report``: the tables of result files; a Markdown and HTML report with --out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from sqla_bench.commands import present
from sqla_bench.results.compare import load_run
from sqla_bench.results.files import check_writable, read_verification, run_status

# Reads result files only: run without servers (cli._dispatch).
NEEDS_SERVERS = False
DESCRIPTION = (
    "Read result files written by run (each is validated against the schema; a "
    "folder stands for the result files in it) and print their tables. --out DIR "
    "writes report.md and a self-contained report.html (plots embedded) with where "
    "the numbers come from, a decision guide computed from the tables, the outcome "
    "matrix, the tables and the PNG plots: time per operation against latency when "
    "it was measured at several latencies, throughput and p99 against concurrency "
    "when it was measured under load, and statements per loading strategy. --plot "
    "writes only the PNG plots, beside the first file or in --output; "
    "--verification adds the verification catalogue's matrix (patterns x drivers x "
    "modes) from a file written by verify --json."
)


def add_arguments(report: argparse.ArgumentParser) -> None:
    report.add_argument(
        "results", type=Path, nargs="+", metavar="RESULT", help="result files or folders"
    )
    report.add_argument("--out", type=Path, metavar="DIR", help="write the full report here")
    report.add_argument(
        "--verification",
        type=Path,
        metavar="MATRIX.json",
        help="with --out: add the pattern matrix from a sqla-bench verify --json file",
    )
    report.add_argument("--plot", action="store_true", help="write PNG plots")
    report.add_argument(
        "--output", type=Path, metavar="DIR", help="folder for --plot (default: the file's)"
    )


def execute(args: argparse.Namespace, servers: None, console: Console) -> int:
    first = args.results[0]
    plots = args.output or (first if first.is_dir() else first.parent)
    if args.plot:
        check_writable(plots / "probe.png")
    if args.out:
        check_writable(args.out / "report.md")
    # A wrong verification file is one line before any output; each file is read once.
    checks = read_verification(args.verification) if args.verification else None
    runs = [(source, *load_run(source)) for source in args.results]
    headers: list[dict] = []
    cells: dict[tuple, Any] = {}  # a cell in several files: the last file's
    for source, run_headers, run_cells in runs:
        present.print_lines(console, _describe(source, run_headers, len(run_cells)))
        headers += run_headers
        cells |= {cell.key: cell for cell in run_cells}
    present.print_tables(console, list(cells.values()))
    if args.plot:
        present.plot(console, list(cells.values()), plots, first.stem)
    if args.out:
        from sqla_bench.reporting.document import write_report  # draws plots: matplotlib

        written = write_report(headers, list(cells.values()), args.out, checks)
        present.print_lines(console, (f"written: {path}" for path in written))
    return 0


def _describe(source: Path, headers: list[dict], cells: int) -> list[str]:
    """A line per run read: its status, size, start and SQLAlchemy version."""
    lines = [f"{source}: {len(headers)} runs, {cells} cells"] if len(headers) > 1 else []
    for header in headers:
        run = header["run"]
        count = f"{cells} cells, " if len(headers) == 1 else ""
        lines.append(
            f"{source}: {run_status(header)}, {count}started {run['started']}, "
            f"SQLAlchemy {header['environment']['sqlalchemy']}"
        )
    return lines
