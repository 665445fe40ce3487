"""A measured cell as the result file keeps it (``CellRecord``): its verdict (drawn by
``sqla_bench.measuring.verify`` from the checked call), its counts, its samples and the
design of the comparison it was sampled in, and where it ran."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqla_bench.base.errors import redact
from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.measure import Cell, Measurement
from sqla_bench.measuring.policy import Policy
from sqla_bench.measuring.probes import sql_of
from sqla_bench.measuring.verify import differences, wrong_from
from sqla_bench.results.files import CellRecord
from sqla_bench.run.routes import Route
from sqla_bench.scenarios.expect import Raises
from sqla_bench.servers.targets import Target, said_by


@dataclass(frozen=True)
class Where:
    """Where and when a cell ran: the target, the route to it, the data it held (as the
    result file keeps it) and the pass over the workload."""

    target: Target
    route: Route
    dataset: dict[str, Any]
    run_pass: int


def cell_record(
    where: Where, env: DriverEnv, cell: Cell, measurement: Measurement, policy: Policy
) -> CellRecord:
    case, params = cell
    return CellRecord(
        case=case.id,
        table=case.table,
        label=case.doc,
        baseline=case.baseline,
        params=dict(params),
        dataset=where.dataset,
        target=where.target.name,
        driver=env.driver,
        mode=env.mode,
        warmup=policy.warmup,
        samples_ns=measurement.samples_ns,
        latency_ms=where.route.latency_ms,
        timed_through_proxy=None if where.route.proxy is None else where.route.delays,
        pgbouncer=where.route.pgbouncer,
        peak_memory=measurement.peak_memory,
        calls=measurement.calls,
        instructions=measurement.instructions,
        run_pass=where.run_pass,
        **_verdict(where.target, env, cell, measurement),
        **_on_the_wire(measurement),
        **_design(measurement),
    )


def _verdict(target: Target, env: DriverEnv, cell: Cell, measurement: Measurement) -> dict:
    """What the cell did against what its case declares: outcome, statements, rows,
    SQL."""
    case, params = cell
    expected = case.expected(env.setting, env.size, **params)
    observed = measurement.outcome()
    failed = measurement.failure
    raised = isinstance(observed, Raises)
    checked = measurement.first  # the call a verdict on value, SQL and commits is drawn from
    found = [redact(text, target.url) for text in differences(expected, observed, checked)]
    return {
        "outcome": "raised" if raised else "ok",
        "error": observed.error.__name__ if raised else None,
        "wrapped_in": observed.wrapped_in.__name__ if raised and observed.wrapped_in else None,
        "message": said_by(failed.error, target) if failed else None,
        "expected": expected.describe(),
        "matches_expected": not found,
        "differences": found,
        "statements": observed.statements,
        "statements_started": observed.started if raised else observed.statements,
        "statements_seen": sorted(measurement.statements),
        # Every call of a cell that works returns the same data: the first one's rows.
        "rows": None if raised else rows_in(measurement.worked.value),
        "rows_fetched": None if checked is None else checked.rows_fetched,
        "sql": None if checked is None or checked.executed is None else sql_of(checked.executed),
        "wrong_from": wrong_from(expected, observed, checked),
    }


def _on_the_wire(measurement: Measurement) -> dict:
    """Round trips and bytes, counted where the calls went through the proxy (the
    samples, or at 0 ms the same calls repeated through it). A cell that raised has no
    samples: its round trips and bytes are the failing call's, up to the raise."""
    wire = measurement.on_the_wire
    failed = wire.failure
    return {
        "round_trips": failed.round_trips if failed else _usual(wire.round_trips),
        "round_trips_seen": sorted(wire.round_trips),
        "bytes_up": failed.bytes_up if failed else _usual(wire.bytes_up),
        "bytes_down": failed.bytes_down if failed else _usual(wire.bytes_down),
    }


def rows_in(value: Any) -> int:
    """Rows or items an operation returned: a list counts its items, one tuple is a
    row."""
    if value is None:
        return 0
    return len(value) if isinstance(value, list) else 1


def _design(measurement: Measurement) -> dict[str, Any]:
    """How a cell compared with others was sampled: its blocks, its places in them, and
    the comparison's design; nothing for a cell measured alone."""
    design = measurement.design
    if design is None or design.cells < 2:
        return {}
    return {
        "blocks": measurement.blocks,
        "slots": measurement.slots,
        "comparison": design.to_json(),
    }


def _usual(counts: Counter[int]) -> int | None:
    return counts.most_common(1)[0][0] if counts else None
