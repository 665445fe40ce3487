"""Committed deterministic baselines: what every scenario cell counts, per target.

A baseline is the result file of a short run (three timed calls per cell, too few for
any timing verdict) for one target: what matters in it is each cell's outcome,
statements, round trips and rows, which do not depend on the machine, and its Python
function calls, which depend on the libraries' versions but not on the machine's load.
Checking runs the same short matrix and holds it to the baseline: counts exactly, so a
change that adds a statement to any scenario fails, and calls within the gate's
tolerance when Python, SQLAlchemy, greenlet and the drivers are the versions the
baseline was made with (otherwise they are reported, not held: a new release of a
library is not a change of ours); ``--update`` rewrites the baselines on purpose.

A cell whose calls move from run to run by more than that tolerance (psycopg's async
wait loop polls as many times as the data takes to arrive: crud.delete of a user with
posts moved by 4.8 %) is held to what its runs showed instead: ``history.json`` beside
the baselines is an A/A history of baseline runs (``sqla-bench calibrate --add RUN
--history results/baselines/history.json``), and a cell it saw move gets 1.5 times its
widest spread, said in the line; it never makes a tolerance tighter."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqla_bench.results.compare import (
    ENVIRONMENT_FACTS,
    Comparison,
    Gate,
    compare,
    differences,
    load_run,
)
from sqla_bench.results.files import CellRecord, ResultFile, cell_name
from sqla_bench.results.history import History

BASELINES = Path("results/baselines")
HISTORY = "history.json"  # in the baselines' folder: their A/A history, when there is one


def baseline_path(folder: Path, target: str) -> Path:
    return folder / f"{target}.json"


def write_baselines(header: dict, cells: list[CellRecord], folder: Path) -> list[Path]:
    """One baseline file per target in ``cells``; the files written."""
    written = []
    for target in dict.fromkeys(cell.target for cell in cells):
        path = baseline_path(folder, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {**header, "targets": {target: header["targets"][target]}}
        baseline = ResultFile(path, document)
        for cell in cells:
            if cell.target == target:
                baseline.add(cell)
        written.append(path)
    return written


@dataclass(frozen=True)
class Check:
    """One target's run held to its baseline."""

    target: str
    comparison: Comparison | None  # None: there is no baseline for the target
    libraries: tuple[str, ...] = ()  # how the run's libraries differ from the baseline's

    @property
    def passed(self) -> bool:
        comparison = self.comparison
        return (
            comparison is not None
            and not comparison.regressed
            and not comparison.only_in_base
            and not comparison.only_in_new
        )


def check_baselines(header: dict, cells: list[CellRecord], folder: Path) -> list[Check]:
    """Each target of the run against its committed baseline, counts only."""
    history_path = folder / HISTORY
    history = History.read(history_path) if history_path.exists() else None
    checks = []
    for target in dict.fromkeys(cell.target for cell in cells):
        path = baseline_path(folder, target)
        if not path.exists():
            checks.append(Check(target, None))
            continue
        measured = [cell for cell in cells if cell.target == target]
        base = load_run(path)
        libraries = _library_differences(base[0], header)
        gate = Gate(hold_calls=not libraries, history=history, history_widens_only=True)
        checks.append(Check(target, compare(base, ([header], measured), gate), libraries))
    return checks


def _library_differences(base: list[dict], header: dict) -> tuple[str, ...]:
    """How the run's libraries differ from the baseline's, over the drivers both runs
    loaded: a baseline written by a run of every target lists every target's drivers, a
    run of one target loads its own alone, and the others' absence changes no count."""
    loaded = [header, *base]
    shared = set.intersection(*(set(h["environment"]["drivers"]) for h in loaded))

    def narrowed(h: dict) -> dict:
        drivers = {name: v for name, v in h["environment"]["drivers"].items() if name in shared}
        return h | {"environment": h["environment"] | {"drivers": drivers}}

    return tuple(differences([narrowed(h) for h in base], [narrowed(header)], ENVIRONMENT_FACTS))


def calls_not_held(checks: Iterable[Check]) -> list[str]:
    """Targets whose function calls were reported, not held, one line each, with why."""
    return [
        f"{check.target}: function calls not held, the libraries differ from the "
        f"baseline's ({'; '.join(check.libraries)})"
        for check in checks
        if check.libraries
    ]


def changed_cells(checks: Iterable[Check]) -> list[str]:
    """What differs from the baselines, one line each."""
    lines = []
    for check in checks:
        if check.comparison is None:
            lines.append(f"{check.target}: no baseline (sqla-bench baseline --update makes one)")
            continue
        comparison = check.comparison
        lines += [
            f"{cell_name(cell.new)}: {'; '.join(cell.changed)}"
            for cell in comparison.cells
            if cell.changed
        ]
        lines += [f"{cell_name(cell)}: not measured now" for cell in comparison.only_in_base]
        lines += [f"{cell_name(cell)}: not in the baseline" for cell in comparison.only_in_new]
    return lines
