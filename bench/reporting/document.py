"""A report of result files: Markdown, and the same as a self-contained HTML page.

Everything in it is computed from the result files. It opens with what a reader came
for: the decision guide's answers in a sentence per shape and target, with the dataset,
latency and drivers each holds for (``sqla_bench.reporting.guide``); then the guide in
detail (the winner at every point measured, the crossovers, a crossover plot and what
each strategy fetches), the verification matrix, the outcome matrix, the other plots,
the tables, and last where the numbers come from (commands, versions, machine, servers).
The HTML embeds the plots, so it opens with no network and no files beside it."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from pathlib import Path

import markdown

from sqla_bench.reporting.guide import (
    DIMENSIONS,
    Point,
    Series,
    compared_strategies,
    crossovers,
    latency_crossovers,
    latency_order,
    rtt,
    series,
    summary,
)
from sqla_bench.reporting.load_tables import LOAD_NOTE, load_tables
from sqla_bench.reporting.plots import write_plots, write_statement_plot
from sqla_bench.reporting.report import ASYNC_COST_NOTE, NOTE, TableData, async_cost, size, tables
from sqla_bench.reporting.sections import (
    VERIFICATION_LEGEND,
    _outcomes,
    models_section,
    verification_matrix,
)
from sqla_bench.reporting.verdicts import MIN_EFFECT, points, repeatability
from sqla_bench.results.compare import load_run
from sqla_bench.results.files import CellRecord, run_status
from sqla_bench.results.stats import MIN_BLOCKS
from sqla_bench.scenarios.registry import STRATEGY

STEM = "report"


def write_report(
    headers: list[dict], cells: list[CellRecord], folder: Path, checks: dict | None = None
) -> list[Path]:
    """``report.md``, ``report.html`` and the PNG plots in ``folder`` for the runs read
    (``read_runs``); the files written. ``checks`` is a ``sqla-bench verify --json``
    document (``read_verification``), for the pattern matrix."""
    folder.mkdir(parents=True, exist_ok=True)

    def caption(plotted: list[CellRecord]) -> str:
        return provenance_caption(headers, plotted)

    plots = write_plots(cells, folder, STEM, caption)
    statements = write_statement_plot(cells, folder / f"{STEM}-statements.png", caption)
    plots += [statements] if statements else []
    text = markdown_report(headers, cells, [plot.name for plot in plots], checks)
    report_md = folder / f"{STEM}.md"
    report_md.write_text(text)
    report_html = folder / f"{STEM}.html"
    report_html.write_text(html_page(text, folder))
    return [report_md, report_html, *plots]


def read_runs(sources: Iterable[Path]) -> tuple[list[dict], list[CellRecord]]:
    """Every run's header, and their cells: a cell in several keeps the last source's."""
    headers, cells = [], {}
    for source in sources:
        run_headers, run_cells = load_run(source)
        headers += run_headers
        cells |= {cell.key: cell for cell in run_cells}
    return headers, list(cells.values())


def provenance_caption(headers: list[dict], cells: list[CellRecord]) -> str:
    """One line for every figure: drivers, versions, machine."""
    drivers = ", ".join(sorted({f"{c.target}+{c.driver}" for c in cells}))
    environment = headers[0]["environment"]
    machine = environment["machine"]
    plotted = {cell.target for cell in cells}
    servers = "; ".join(
        dict.fromkeys(
            f"{target['server_version'] or name} ({target['source']})"
            for header in headers
            for name, target in header["targets"].items()
            if name != "sqlite" and name in plotted
        )
    )
    return (
        f"{drivers} | SQLAlchemy {environment['sqlalchemy']}, Python {environment['python']}"
        f" | {machine['cpus']} CPUs, {machine['platform']}" + (f" | {servers}" if servers else "")
    )


def markdown_report(
    headers: list[dict], cells: list[CellRecord], plots: list[str], checks: dict | None = None
) -> str:
    """The report: the guide's answers first, with their conditions, then the detail."""
    single = [cell for cell in cells if cell.load is None]
    loaded = [cell for cell in cells if cell.load is not None]
    lines = series(points(single))
    crossover_plots = [name for name in plots if "-crossover-" in name]
    parts = ["# sqla-bench report", "", _at_a_glance(headers), ""]
    # A run of an application's models answers per relationship in a table of its own;
    # the sentence per shape is for the built-in shapes.
    parts += models_section(headers, single, lines)
    shapes = [line for line in lines if not line.table.startswith("models.")]
    if shapes or len(shapes) == len(lines):
        parts += ["## In short", "", *short_answers(shapes), ""]
    parts += ["## Decision guide", "", *decision_guide(single, lines, crossover_plots), ""]
    if checks is not None:
        parts += ["## Verification catalogue", "", VERIFICATION_LEGEND, ""]
        parts += [verification_matrix(checks).to_markdown(), ""]
    parts += ["## Outcomes", "", _outcomes(single).to_markdown(), ""]
    async_cost_table = async_cost(single)
    if async_cost_table.rows:
        parts += ["## Async over sync, in function calls", "", f"_{ASYNC_COST_NOTE}_", ""]
        parts += [async_cost_table.to_markdown(), ""]
    other_plots = [name for name in plots if name not in crossover_plots]
    if other_plots:
        parts += ["## Plots", ""]
        parts += [f"![{name}]({name})" for name in other_plots] + [""]
    parts += ["## Tables", "", f"_{NOTE}_", ""]
    for table in tables(single):
        parts += [table.to_markdown(), ""]
    if loaded:
        parts += ["## Under load", "", f"_{LOAD_NOTE}_", ""]
        for table in load_tables(loaded):
            parts += [table.to_markdown(), ""]
    parts += ["## Where the numbers come from", "", *provenance(headers), ""]
    return "\n".join(parts)


def _at_a_glance(headers: list[dict]) -> str:
    environment = headers[0]["environment"]
    machine = environment["machine"]
    servers = sorted(
        {
            target["server_version"] or f"{name} (version unknown)"
            for header in headers
            for name, target in header["targets"].items()
        }
    )
    return (
        f"_{len(headers)} run{'s' if len(headers) != 1 else ''} on {machine['cpus']} CPUs "
        f"({machine['platform']}); Python {environment['python']}, SQLAlchemy "
        f"{environment['sqlalchemy']}; {', '.join(servers)}. Commands and versions at the end. "
        "Timings are this machine's: the ratios and the order of the strategies carry over, "
        "the milliseconds do not._"
    )


def provenance(headers: list[dict]) -> list[str]:
    """Each run: its command, when, status, versions, machine and servers."""
    lines = []
    for header in headers:
        run, environment = header["run"], header["environment"]
        machine = environment["machine"]
        drivers = ", ".join(f"{name} {version}" for name, version in environment["drivers"].items())
        servers = "; ".join(
            f"{name}: {target['source']}, {target['server_version'] or 'version unknown'}"
            f"{machine_words(target.get('machine'))}"
            for name, target in header["targets"].items()
        )
        lines += [
            f"- `{' '.join(run['command'])}`: {run_status(header)}, {run['started']} to "
            f"{run['finished']}",
            f"    - Python {environment['python']}, SQLAlchemy {environment['sqlalchemy']}, "
            f"greenlet {environment['greenlet']}; {drivers}",
            f"    - {machine['cpus']} CPUs ({machine['platform']}, {machine['architecture']}), "
            f"pinned to CPUs {machine['affinity']}; servers: {servers}",
        ]
    return lines


def machine_words(state: dict | None) -> str:
    """How busy the machine was while a target was measured (schema 5 on)."""
    if not state:
        return ""
    start, end = state["load_average"]
    busy = f", **busier than its {state['cpus']} CPUs**" if state["busy"] else ""
    return f" (load average {start:g} to {end:g}, {state['steal']:.1%} of CPU time stolen{busy})"


def short_answers(lines: list[Series]) -> list[str]:
    """The guide in a sentence per shape and target."""
    if not lines:
        return ["No cell here compares loading strategies."]
    return [
        "Which loading strategy is fastest, by shape and target, as the measured workload "
        "and latency change (details, noise and crossovers in the decision guide):",
        "",
        *summary(lines),
    ]


def decision_guide(cells: list[CellRecord], lines: list[Series], plots: list[str]) -> list[str]:
    """Per shape and target: the winner at every point measured, the crossovers, a plot,
    and what each strategy fetches."""
    if not lines:
        return ["No cell here compares loading strategies."]
    parts = [GUIDE_METHOD, "", repeatability_words(lines), ""]
    by_shape: dict[tuple, list[Series]] = {}
    for line in lines:
        by_shape.setdefault((line.table, line.target), []).append(line)
    for (table, target), shape_lines in by_shape.items():
        parts += [f"### {shape_lines[0].label.rstrip('.')} ({table}), {target}", ""]
        parts += [winner_grid(shape_lines).to_markdown(), ""]
        if any(point.busy for line in shape_lines for point in line.points):
            parts += [BUSY_NOTE, ""]
        found = [c for line in shape_lines for c in crossovers(line)]
        found += latency_crossovers(shape_lines)
        parts += ["Crossovers found:", ""] if found else ["No crossover: one leader throughout."]
        parts += [f"- {text}" for text in found] + [""]
        plot = next((name for name in plots if f"-crossover-{table}-{target}." in name), None)
        parts += [f"![{plot}]({plot})", ""] if plot else []
        fetched = fetch_table(cells, table, target)
        parts += [fetched.to_markdown(), ""] if fetched else []
    return parts


GUIDE_METHOD = (
    "Compared: the loader options an application picks per query (lazy in sync code only; "
    "joined, selectin, subquery, immediate). Model-level selectin, awaitable_attrs, run_sync "
    "and write_only send the SQL of selectin or of a lazy load; they are in the tables. At "
    "each point (a dataset and an added latency) and on each driver and mode, the "
    "strategies were measured side by side: in turn, in blocks whose order rotates, so "
    "that the machine's drift reaches each alike. The unit is the ratio of two strategies' "
    "medians within a block (each over at least three calls, so one slow call does not "
    "decide it); over the blocks, its Hodges-Lehmann estimate and 95 % interval. The "
    "fastest wins clearly when the next one's interval lies wholly above "
    f"{1 + MIN_EFFECT:g} ({MIN_EFFECT:.0%} slower), over at least {MIN_BLOCKS} blocks. A grid "
    "cell names the strategy that won on most drivers (with how many when not all), the "
    "factor by which the next was slower (median over the drivers) and, in brackets, the "
    "span of those drivers' intervals; '≈ A, B' means most drivers could not tell them "
    "apart: within noise, no winner is named. Measured in several passes (run --passes), "
    "a verdict is a winner only when every pass named it; '(unstable)' marks a point whose "
    "passes differed, '(few blocks)' one cut short by --max-time before "
    f"{MIN_BLOCKS} blocks, and '(one after another)' cells of a result file written "
    "before side-by-side measurement. A crossover is read between two neighbouring points "
    "that both have a clear winner."
)


BUSY_NOTE = (
    "_†: measured while the machine's load average was above its CPUs (another process "
    "competed for them); side by side, drift reaches every strategy alike, but the "
    "intervals are wider._"
)


def repeatability_words(lines: list[Series]) -> str:
    """How far the verdicts repeated between passes, or that they were measured once."""
    agreed, judged = repeatability(point for line in lines for point in line.points)
    if not judged:
        return (
            "_Repeatability: each point was measured in one pass (run --passes 2 or more "
            "measures how far the verdicts repeat)._"
        )
    return (
        f"_Repeatability: {agreed} of {judged} verdicts (a point on one driver and mode) "
        f"were the same in every pass ({agreed / judged:.0%}); the others are unstable and "
        "name no winner._"
    )


def winner_grid(lines: list[Series]) -> TableData:
    """Rows: the dataset (the axis and whatever else varies); columns: the latencies."""
    latencies_ = sorted({line.latency for line in lines}, key=latency_order)
    axis = lines[0].axis
    varying = sorted({n for line in lines for n, v in line.fixed if _varies_among(lines, n)})
    columns = [(DIMENSIONS.get(axis, axis), "right")]
    columns += [(DIMENSIONS.get(name, name), "right") for name in varying]
    table = TableData("", columns + [(rtt(latency), "left") for latency in latencies_])
    rows: dict[tuple, dict[float | None, str]] = {}
    for line in lines:
        fixed = dict(line.fixed)
        for point in line.points:
            key = (*(fixed[name] for name in varying), point.dimension(axis))
            rows.setdefault(key, {})[line.latency] = _grid_cell(point)
    for key in sorted(rows):
        said = [key[-1], *key[:-1]]  # the axis first, as the header says
        table.rows.append([*map(str, said), *(rows[key].get(lat, "-") for lat in latencies_)])
    return table


def _varies_among(lines: list[Series], name: str) -> bool:
    return len({dict(line.fixed)[name] for line in lines}) > 1


def _grid_cell(point: Point) -> str:
    factor, interval = point.factor(), point.interval()
    if factor is None:
        return point.say()
    bracket = f" [{interval[0]:.2f} to {interval[1]:.2f}]" if interval else ""
    busy = " †" if point.busy else ""
    return f"{point.say()} x{factor:.2f}{bracket}{busy}"


def fetch_table(cells: list[CellRecord], table: str, target: str) -> TableData | None:
    """Per strategy and value of the axis: rows fetched, bytes down and memory held, on one
    driver at the widest payload and lowest latency (none of them depends on latency)."""
    mine = [
        c for c in cells
        if c.table == table and c.target == target and c.outcome == "ok" and c.load is None
        and c.params.get(STRATEGY) in compared_strategies()
    ]  # fmt: skip
    if not mine:
        return None
    driver = min({(c.mode != "sync", c.driver) for c in mine})[1]
    payload = max(c.dataset.get("payload", 0) for c in mine)
    # Data generated for an application's models, or its own, has no payload column.
    payload_words = f"payload {payload} B, " if "payload" in mine[0].dataset else ""
    latency = min((c.timed_latency for c in mine), key=latency_order)
    chosen = [
        c for c in mine
        if c.driver == driver and c.dataset.get("payload", 0) == payload
        and c.timed_latency == latency
    ]  # fmt: skip
    held = [name for name in DIMENSIONS if name in chosen[0].dataset] or [""]
    axis = next(
        (name for name in DIMENSIONS if len({c.dataset.get(name) for c in chosen}) > 1),
        held[0],
    )
    xs = sorted({c.dataset.get(axis) for c in chosen}, key=lambda x: (x is None, x))
    result = TableData(
        f"What each strategy costs per operation on {target}+{driver} ({payload_words}"
        f"{rtt(latency)}): rows fetched from the database, bytes down, memory held",
        [("strategy", "left")]
        + [(f"{x} {DIMENSIONS[axis]}" if axis else "your data", "right") for x in xs],
    )
    for strategy in compared_strategies():
        by_x = {c.dataset.get(axis): c for c in chosen if c.params[STRATEGY] == strategy}
        if by_x:
            result.rows.append([strategy, *(_costs(by_x.get(x)) for x in xs)])
    return result


def _costs(cell: CellRecord | None) -> str:
    if cell is None:
        return "-"
    parts = [f"{cell.rows_fetched} rows" if cell.rows_fetched is not None else "- rows"]
    parts += [size(cell.bytes_down)] if cell.bytes_down is not None else []
    parts += [f"{size(cell.peak_memory)} held"] if cell.peak_memory is not None else []
    return ", ".join(parts)


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
