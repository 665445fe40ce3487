"""A report of result files: Markdown, and the same as a self-contained HTML page.

Everything in it is computed from the result files. It opens with what a reader came
for: the decision guide's answers in a sentence per shape and target, with the dataset,
latency and drivers each holds for (``bench.guide``); then the guide in detail (the
winner at every point measured, the crossovers, a crossover plot and what each strategy
fetches), the verification matrix, the outcome matrix, the other plots, the tables, and
last where the numbers come from (commands, versions, machine, servers). The HTML embeds
the plots, so it opens with no network and no files beside it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from pathlib import Path

import markdown

from sqla_bench.compare import load_run
from sqla_bench.guide import (
    DIMENSIONS,
    MIN_EFFECT,
    Point,
    Series,
    advice,
    compared_strategies,
    crossovers,
    latency_crossovers,
    latency_order,
    points,
    repeatability,
    rtt,
    series,
    summary,
)
from sqla_bench.plots import write_plots, write_statement_plot
from sqla_bench.report import (
    ASYNC_COST_NOTE,
    LOAD_NOTE,
    NOTE,
    TableData,
    async_cost,
    load_tables,
    matrix,
    outcome,
    outcome_matrix,
    size,
    tables,
)
from sqla_bench.results import CellRecord, params_text, read_verification, run_status
from sqla_bench.scenarios.expect import WRONG_RESULTS
from sqla_bench.scenarios.registry import STRATEGY
from sqla_bench.stats import MIN_BLOCKS

STEM = "report"


def write_report(
    sources: Iterable[Path], folder: Path, verification: Path | None = None
) -> list[Path]:
    """``report.md``, ``report.html`` and the PNG plots in ``folder``; the files written.
    ``verification`` is a ``sqla-bench verify --json`` file, for the pattern matrix."""
    checks = read_verification(verification) if verification else None
    headers, cells = read_runs(sources)
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


VERIFICATION_LEGEND = (
    "Each cell: what the pattern did on that driver, as the catalogue words it. "
    '"returns wrong results from value[i]" is the worst outcome: no error, and from '
    "the i-th value on what the call returned is not what the data holds (through "
    "PgBouncer's transaction pooling, another client's statement ran in its place)."
)


def verification_matrix(document: dict) -> TableData:
    """Each verified pattern and cell against each driver and mode: what it did."""
    checks = document["checks"]
    title = (
        f"What each pattern did on each driver (SQLAlchemy {document.get('sqlalchemy', '?')}; "
        "bold where it differs from the catalogue)"
    )
    drivers = list(dict.fromkeys(check["driver"] for check in checks))
    return matrix(title, "pattern", drivers, (_verified(check) for check in checks))


def _verified(check: dict) -> tuple[str, str, str]:
    name = f"{check['case']} {params_text(check['params'])}".strip()
    if check.get("pgbouncer"):  # each pool mode a row of its own, as verify prints them
        name += f" via PgBouncer {check['pgbouncer']}"
    observed = check["observed"]
    if observed.startswith(WRONG_RESULTS):  # declared or not, the worst: seen at a glance
        observed = f"*{observed}*"
    if not check["passed"]:
        observed = f"**{observed}, expected {check['expected']}**"
    return name, check["driver"], observed


def _outcomes(cells: list[CellRecord]) -> TableData:
    """Each case and variant against each driver and mode: statements, or what it raised."""
    return outcome_matrix(
        cells,
        "Outcome per case and driver (statements per operation, or the error raised; "
        "bold where it differs from the catalogue)",
        _outcome_text,
    )


def _outcome_text(cell: CellRecord) -> str:
    worked = cell.outcome == "ok" and cell.wrong_from is None
    text = f"{cell.statements} stmts" if worked else outcome(cell)
    return text if cell.matches_expected else f"**{text}**"


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


def models_section(headers: list[dict], cells: list[CellRecord], lines: list[Series]) -> list[str]:
    """For a run of an application's models (``run --models``): per relationship, the
    strategy to use in sync and in async code, under the conditions it was measured at,
    with the rows each strategy fetched; then the relationships left out and why."""
    models = [
        h["run"]["parameters"]["models"] for h in headers if h["run"]["parameters"].get("models")
    ]
    if not models:
        return []
    parts = ["## Your models: what to use for each relationship", ""]
    parts += [f"_{MODELS_NOTE}_", ""]
    mine = [line for line in lines if line.table.startswith("models.")]
    if mine:
        parts += [models_table(cells, mine).to_markdown(), ""]
    left_out = {
        u["name"]: u.get("reasons") or [u["reason"]] for m in models for u in m["unhandled"]
    }
    if left_out:
        parts += ["Left out, with every reason:", ""]
        parts += [f"- **{name}**: {'; '.join(why)}" for name, why in left_out.items()]
        parts += ["", f"_{LEFT_OUT_NOTE}_", ""]
    return parts


MODELS_NOTE = (
    "Each answer holds at the conditions beside it (the target, the added latency, the "
    "generated data's fan-out and the parents one query loads) and on this machine: x1.42 "
    "[1.20 to 1.61] means the next strategy took 1.42 times as long, within blocks measured "
    "side by side (in brackets, the span of the drivers' 95 % intervals); "
    "≈ means the drivers could not tell the two apart. Sync code may also lazy-load; async "
    "code may not (MissingGreenlet), so its answer is among the eager loaders. Rows "
    "fetched are what the database sent for one load, at the largest fan-out measured "
    "(with the bytes, where the run measured them through its latency proxy), "
    "and the related rows what that came to for each relationship: a table under two "
    "parents (an association object) has the --posts fan-out under one of them only"
)
LEFT_OUT_NOTE = (
    "To measure one of these, write the query it serves as a scenario with an async twin in "
    "a module of your own and run it with --scenarios MODULE (README: On your own code)"
)


def models_table(cells: list[CellRecord], lines: list[Series]) -> TableData:
    table = TableData(
        "",
        [("relationship", "left"), ("measured at", "left"), ("related rows loaded", "left"),
         ("sync code", "left"), ("async code", "left"), ("rows fetched", "left")],
    )  # fmt: skip
    ordered = sorted(lines, key=lambda ln: (ln.table, ln.target, latency_order(ln.latency)))
    related: dict[tuple, str] = {}
    for line in ordered:
        name = line.table.removeprefix("models.")
        kind = line.label.split(" from ")[0]
        at = f"{line.target}, {rtt(line.latency)}, {_along(line)}"
        mine = _at_last_point(cells, line)
        related[line.table, line.target, line.latency] = _related(mine, kind)
        if kind.startswith("polymorphic "):  # its selectin also fetched subclass rows
            loaded = line.table.rsplit(".", 1)[0], line.target, line.latency
            related[line.table, line.target, line.latency] = related.get(loaded, "-")
        table.rows.append(
            [f"{name} ({kind})", at, related[line.table, line.target, line.latency],
             _advice(cells, line, "sync"), _advice(cells, line, "async"), _fetched(mine)]
        )  # fmt: skip
    return table


def _advice(cells: list[CellRecord], line: Series, mode: str) -> str:
    """What to use in one mode's code; where no loader option worked, what they raised."""
    said = advice(line, mode)
    if said != "-":
        return said
    raised = {
        c.error or c.outcome for c in cells
        if c.table == line.table and c.target == line.target and c.mode == mode
        and c.timed_latency == line.latency and c.outcome != "ok"
        and c.params.get(STRATEGY) in compared_strategies()
    }  # fmt: skip
    return f"none: every loader option raised {', '.join(sorted(raised))}" if raised else said


def _along(line: Series) -> str:
    xs = line.xs()
    unit = DIMENSIONS.get(line.axis, line.axis)
    return f"{', '.join(map(str, xs))} {unit}" if line.axis else "your data"


def _at_last_point(cells: list[CellRecord], line: Series) -> dict[str, CellRecord]:
    """Per strategy, the cell of the series' largest point that completed (a sync
    driver's first), with the rows it fetched."""
    last = tuple(sorted(line.points[-1].dataset))
    mine = [
        c for c in cells
        if c.table == line.table and c.target == line.target and c.outcome == "ok"
        and c.timed_latency == line.latency and tuple(sorted(c.dataset.items())) == last
        and c.rows_fetched is not None
    ]  # fmt: skip
    by: dict[str, CellRecord] = {}
    for cell in sorted(mine, key=lambda c: (c.mode != "sync", c.driver)):
        by.setdefault(cell.params.get(STRATEGY), cell)
    return by


def _fetched(by: dict[str, CellRecord]) -> str:
    """Rows each compared strategy fetched for one load, and the bytes that came down
    where a run measured them (through the latency proxy: run --latency)."""
    said = []
    for name in compared_strategies():
        if name in by:
            bytes_down = by[name].bytes_down
            said.append(
                f"{name} {by[name].rows_fetched}"
                + (f" ({size(bytes_down)})" if bytes_down is not None else "")
            )
    return ", ".join(said)


def _related(by: dict[str, CellRecord], kind: str) -> str:
    """The related rows one load brought, as sampled: what the data's fan-out came to
    for this relationship (a table under two parents fans out under one of them only).
    selectin fetches the parents, then the related rows: the difference is theirs."""
    cell = by.get("selectin")
    if cell is None or not cell.rows:
        return "-"
    related = cell.rows_fetched - cell.rows
    if kind == "many-to-one":
        return f"{related} distinct for {cell.rows} parents"
    return f"{related / cell.rows:.1f} per parent ({cell.rows} parents)"


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
