"""Sections of the report (``sqla_bench.reporting.document``): the verification matrix,
the outcomes of an application's own cases, and the section on an application's models
with the advice for each relationship."""

from __future__ import annotations

from sqla_bench.reporting.guide import DIMENSIONS, Series, advice, latency_order, rtt
from sqla_bench.reporting.report import TableData, matrix, outcome, outcome_matrix, size
from sqla_bench.results.files import CellRecord, params_text
from sqla_bench.scenarios.expect import WRONG_RESULTS
from sqla_bench.scenarios.registry import STRATEGY
from sqla_bench.scenarios.strategies import compared_strategies

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
    """Each case and variant against each driver and mode: statements, or what it
    raised."""
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
    "a module of your own and run it with --scenarios MODULE (docs/howto/own-scenarios.md)"
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
    """What to use in one mode's code; where no loader option worked, what they
    raised."""
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
