"""A report of result files: Markdown, and the same as a self-contained HTML page.

Everything in it is computed from the result files: where the numbers come from
(commands, versions, machine, servers), the outcome matrix (each case and variant
against each driver and mode), a decision guide, the tables and the plots. The decision
guide only states what the tables show: per relationship shape (a table whose cells
vary by loading strategy, named by its description) and per added latency, which
strategy had the lowest median on how many drivers, and by what factor over the next.
The HTML embeds the plots, so it opens with no network and no files beside it.
"""

from __future__ import annotations

import base64
import re
import statistics
from collections.abc import Iterable
from pathlib import Path

import markdown

from bench.compare import load_run
from bench.plots import write_plots, write_statement_plot
from bench.report import LOAD_NOTE, NOTE, TableData, duration, load_tables, outcome, tables
from bench.results import CellRecord, read_json
from bench.stats import summarize
from bench.targets import ConfigError
from scenarios.registry import MODES, STRATEGY

STEM = "report"


def write_report(
    sources: Iterable[Path], folder: Path, verification: Path | None = None
) -> list[Path]:
    """``report.md``, ``report.html`` and the PNG plots in ``folder``; the files written.
    ``verification`` is a ``sqla-bench verify --json`` file, for the pattern matrix."""
    checks = read_verification(verification) if verification else None
    headers, cells = [], {}
    for source in sources:
        run_headers, run_cells = load_run(source)
        headers += run_headers
        cells |= {cell.key: cell for cell in run_cells}
    cells = list(cells.values())
    folder.mkdir(parents=True, exist_ok=True)
    caption = provenance_caption(headers, cells)
    plots = write_plots(cells, folder, STEM, caption)
    statements = write_statement_plot(cells, folder / f"{STEM}-statements.png", caption)
    plots += [statements] if statements else []
    text = markdown_report(headers, cells, [plot.name for plot in plots], checks)
    report_md = folder / f"{STEM}.md"
    report_md.write_text(text)
    report_html = folder / f"{STEM}.html"
    report_html.write_text(html_page(text, folder))
    return [report_md, report_html, *plots]


def provenance_caption(headers: list[dict], cells: list[CellRecord]) -> str:
    """One line for every figure: drivers, versions, machine."""
    drivers = ", ".join(sorted({f"{c.target}+{c.driver}" for c in cells}))
    environment = headers[0]["environment"]
    machine = environment["machine"]
    servers = "; ".join(
        dict.fromkeys(
            f"{name} {target['server_version'] or '?'} ({target['source']})"
            for header in headers
            for name, target in header["targets"].items()
            if name != "sqlite"
        )
    )
    return (
        f"{drivers} | SQLAlchemy {environment['sqlalchemy']}, Python {environment['python']}"
        f" | {machine['cpus']} CPUs, {machine['platform']}" + (f" | {servers}" if servers else "")
    )


def markdown_report(
    headers: list[dict], cells: list[CellRecord], plots: list[str], checks: dict | None = None
) -> str:
    single = [cell for cell in cells if cell.load is None]
    loaded = [cell for cell in cells if cell.load is not None]
    parts = ["# sqla-bench report", "", *provenance(headers), ""]
    parts += ["## Decision guide", "", *decision_guide(single), ""]
    if checks is not None:
        parts += ["## Verification catalogue", "", verification_matrix(checks).to_markdown(), ""]
    parts += ["## Outcomes", "", outcome_matrix(single).to_markdown(), ""]
    if plots:
        parts += ["## Plots", ""]
        parts += [f"![{name}]({name})" for name in plots] + [""]
    parts += ["## Tables", "", f"_{NOTE}_", ""]
    for table in tables(single):
        parts += [table.to_markdown(), ""]
    if loaded:
        parts += ["## Under load", "", f"_{LOAD_NOTE}_", ""]
        for table in load_tables(loaded):
            parts += [table.to_markdown(), ""]
    return "\n".join(parts)


def provenance(headers: list[dict]) -> list[str]:
    """Each run: its command, when, status, versions, machine and servers."""
    lines = []
    for header in headers:
        run, environment = header["run"], header["environment"]
        machine = environment["machine"]
        drivers = ", ".join(f"{name} {version}" for name, version in environment["drivers"].items())
        servers = "; ".join(
            f"{name}: {target['source']}, {target['server_version'] or 'version unknown'}"
            for name, target in header["targets"].items()
        )
        lines += [
            f"- `{' '.join(run['command'])}`: {run['status']}, {run['started']} to "
            f"{run['finished']}",
            f"    - Python {environment['python']}, SQLAlchemy {environment['sqlalchemy']}, "
            f"greenlet {environment['greenlet']}; {drivers}",
            f"    - {machine['cpus']} CPUs ({machine['platform']}, {machine['architecture']}), "
            f"pinned to CPUs {machine['affinity']}; servers: {servers}",
        ]
    return lines


def read_verification(path: Path) -> dict:
    """A ``sqla-bench verify --json`` document, or a one-line ConfigError."""
    document = read_json(path)
    checks = document.get("checks") if isinstance(document, dict) else None
    if not isinstance(checks, list) or not all(
        isinstance(c, dict) and c.keys() >= VERIFY_FIELDS for c in checks
    ):
        raise ConfigError(f"{path} is not the output of sqla-bench verify --json")
    return document


VERIFY_FIELDS = {"case", "params", "driver", "observed", "passed"}


def verification_matrix(document: dict) -> TableData:
    """Each verified pattern and cell against each driver and mode: what it did."""
    drivers = list(dict.fromkeys(check["driver"] for check in document["checks"]))
    rows: dict[str, dict[str, str]] = {}
    for check in document["checks"]:
        params = " ".join(f"{k}={v}" for k, v in check["params"].items())
        row = rows.setdefault(f"{check['case']} {params}".strip(), {})
        observed = check["observed"]
        row[check["driver"]] = (
            observed if check["passed"] else f"**{observed}, expected {check['expected']}**"
        )
    table = TableData(
        f"What each pattern did on each driver (SQLAlchemy {document.get('sqlalchemy', '?')}; "
        "bold where it differs from the catalogue)",
        [("pattern", "left")] + [(driver, "left") for driver in drivers],
    )
    for name, by_driver in rows.items():
        table.rows.append([name, *(by_driver.get(driver, "-") for driver in drivers)])
    return table


def outcome_matrix(cells: list[CellRecord]) -> TableData:
    """Each case and variant against each driver and mode: statements, or what it raised."""
    columns = sorted(
        {(c.target, c.driver, c.mode) for c in cells},
        key=lambda column: (column[0], column[1], MODES.index(column[2])),
    )
    rows: dict[tuple, dict[tuple, str]] = {}
    for cell in cells:
        row = rows.setdefault((cell.case, tuple(cell.params.items())), {})
        text = outcome(cell) if cell.outcome != "ok" else f"{cell.statements} stmts"
        if not cell.matches_expected:
            text = f"**{text}**"
        row[(cell.target, cell.driver, cell.mode)] = text
    table = TableData(
        "Outcome per case and driver (statements per operation, or the error raised; "
        "bold where it differs from the catalogue)",
        [("case", "left")] + [(f"{t}+{d} {m}", "left") for t, d, m in columns],
    )
    for (case, params), by_column in rows.items():
        name = " ".join([case, *(str(v) if k == STRATEGY else f"{k}={v}" for k, v in params)])
        table.rows.append([name, *(by_column.get(column, "-") for column in columns)])
    return table


def decision_guide(cells: list[CellRecord]) -> list[str]:
    """Per shape and latency: the strategy with the lowest median, from the tables."""
    timed = [
        cell
        for cell in cells
        if STRATEGY in cell.params and cell.outcome == "ok" and len(cell.samples_ns) > 0
    ]
    groups: dict[tuple, list[CellRecord]] = {}
    for cell in timed:
        groups.setdefault((cell.table, cell.label, cell.latency_ms), []).append(cell)
    if not groups:
        return ["No cell here compares loading strategies."]
    table = TableData(
        "",
        [("shape", "left"), ("rtt", "right"), ("fastest strategy", "left"),
         ("won on", "right"), ("its median", "right"), ("next best", "left"),
         ("factor", "right")],
    )  # fmt: skip
    # Direct connections (no proxy: SQLite, or a server without --latency) come first.
    order = lambda item: (item[0][1], -1 if item[0][2] is None else item[0][2])  # noqa: E731
    for (_, label, latency), group in sorted(groups.items(), key=order):
        table.rows.append(_guide_row(label, latency, group))
    return [
        "For each relationship shape and added round-trip latency (direct: no latency proxy, "
        "as for SQLite): the strategy with the "
        "lowest median time per operation, on how many of the drivers and modes measured it "
        "won, its median (the range over those drivers), the strategy that came next, and "
        "how many times slower that one was (the median over the drivers where both ran).",
        "",
        table.to_markdown(),
    ]


def _guide_row(label: str, latency: float | None, group: list[CellRecord]) -> list[str]:
    by_driver: dict[tuple, dict[str, float]] = {}
    for cell in group:
        median = summarize(cell.samples_ns).median_ns
        by_driver.setdefault((cell.target, cell.driver, cell.mode), {})[cell.params[STRATEGY]] = (
            median
        )
    winners = [min(medians, key=medians.get) for medians in by_driver.values()]
    best = max(dict.fromkeys(winners), key=winners.count)  # a tie goes to the first seen
    runner_ups = [
        min((s for s in medians if s != best), key=medians.get)
        for medians in by_driver.values()
        if best in medians and len(medians) > 1
    ]
    second = max(dict.fromkeys(runner_ups), key=runner_ups.count) if runner_ups else None
    factors = [
        medians[second] / medians[best]
        for medians in by_driver.values()
        if second is not None and best in medians and second in medians
    ]
    best_medians = [medians[best] for medians in by_driver.values() if best in medians]
    return [
        _shape(label),
        "direct" if latency is None else f"{latency:g} ms",
        best,
        f"{winners.count(best)} of {len(by_driver)}",
        f"{duration(min(best_medians))} to {duration(max(best_medians))}",
        second or "-",
        f"{statistics.median(factors):.2f}x" if factors else "-",
    ]


def _shape(label: str) -> str:
    """The shape a loading scenario's description names in parentheses, or the description."""
    match = re.search(r"\(([^)]*)\)\.?$", label)
    return match[1] if match else label


def html_page(text: str, folder: Path) -> str:
    """The Markdown as one HTML page, its images embedded as data URIs."""
    body = markdown.markdown(text, extensions=["tables"])

    def embed(match: re.Match) -> str:
        data = base64.b64encode((folder / match[1]).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"/]+\.png)"', embed, body)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sqla-bench report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }}
code {{ background: #f6f6f6; }}
</style></head>
<body>
{body}
</body></html>
"""
