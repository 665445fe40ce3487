"""The regression gate on result files: exact on what is counted, statistical on time.

The runs compared here are one real run (``crud.get`` on SQLite) and copies of it with
one thing changed; timings are replaced by seeded samples so that the size of each
change is known exactly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sqla_bench.compare import Gate, compare, load_run
from tests.test_cli import assert_one_line_error, run

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

SAMPLES = 400  # enough for the test to see a 2x change many times over


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("compare") / "base.json"
    result = run(
        "sqla_bench", "run", "--scenario", "crud.get", "--min-time", "0", "--min-rounds", "5",
        "--warmup", "2", "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def samples(scale: float, count: int = SAMPLES, seed: int = 7) -> list[int]:
    """Seeded timings around 100 us with a realistic right tail, times ``scale``."""
    rng = random.Random(seed)
    return [int(rng.lognormvariate(11.5, 0.15) * scale) for _ in range(count)]


def write(folder: Path, name: str, document: dict, change=lambda cell, i: None) -> Path:
    """``document`` with seeded samples in every cell, ``change`` applied to each."""
    document = json.loads(json.dumps(document))
    for index, cell in enumerate(document["cells"]):
        cell["samples_ns"] = samples(1.0, seed=index)
        change(cell, index)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(document))
    return path


def gate(base: Path, new: Path, *options: str):
    return run("sqla_bench", "compare", str(base), str(new), *options)


def test_a_run_against_itself_passes(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)
    result = gate(base, base)
    assert result.returncode == 0, result.stdout + result.stderr
    cells = len(measured["cells"])
    assert f"no regression: {cells} cells in both runs ({cells} unchanged)" in result.stdout


def test_an_added_statement_fails_and_names_the_cell(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)

    def one_more(cell, index):
        if cell["case"] == "crud.get" and cell["mode"] == "async":
            cell["statements"] += 1

    new = write(tmp_path, "new", measured, one_more)
    result = gate(base, new, "--format", "markdown")
    assert result.returncode == 1, result.stdout + result.stderr
    changed = [line for line in result.stdout.splitlines() if line.startswith("| changed")]
    assert len(changed) == 1
    assert "crud.get" in changed[0] and "aiosqlite" in changed[0]
    assert "statements 1 -> 2" in changed[0]


def test_a_changed_outcome_fails(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)

    def raises(cell, index):
        if index == 0:
            cell.update(outcome="raised", error="MissingGreenlet", rows=None)

    result = gate(base, write(tmp_path, "new", measured, raises), "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    (changed,) = [row for row in report["cells"] if row["verdict"] == "changed"]
    assert "outcome ok -> raised" in changed["what changed"]


def test_a_three_percent_slowdown_is_not_a_regression(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)

    def slower(cell, index):
        cell["samples_ns"] = [int(ns * 1.03) for ns in cell["samples_ns"]]

    result = gate(base, write(tmp_path, "new", measured, slower), "--format", "json")
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert {row["verdict"] for row in report["cells"]} == {"unchanged"}
    assert report["geometric_mean_ratio"] == pytest.approx(1.03, abs=0.005)


def test_a_doubling_fails_and_a_halving_is_reported_faster(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)

    def changed(cell, index):
        scale = 2.0 if index == 0 else 0.5 if index == 1 else 1.0
        cell["samples_ns"] = samples(scale, seed=index + 1000)

    result = gate(base, write(tmp_path, "new", measured, changed), "--format", "json")
    assert result.returncode == 1
    verdicts = [row["verdict"] for row in json.loads(result.stdout)["cells"]]
    assert verdicts.count("slower") == 1 and verdicts.count("faster") == 1


def test_a_larger_minimum_effect_lets_a_doubling_pass(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)

    def doubled(cell, index):
        cell["samples_ns"] = samples(2.0, seed=index + 1000)

    new = write(tmp_path, "new", measured, doubled)
    assert gate(base, new).returncode == 1
    assert gate(base, new, "--min-effect", "1.5").returncode == 0


def test_a_doubling_on_too_few_samples_is_not_judged(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured, lambda c, i: c.update(samples_ns=samples(1, 3)))
    new = write(tmp_path, "new", measured, lambda c, i: c.update(samples_ns=samples(2, 3)))
    report = json.loads(gate(base, new, "--format", "json").stdout)
    assert {row["verdict"] for row in report["cells"]} == {"not timed"}


def test_cells_in_one_run_only_are_listed(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)
    fewer = dict(measured, cells=measured["cells"][1:])
    result = gate(base, write(tmp_path, "new", fewer))
    assert result.returncode == 0
    first = measured["cells"][0]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("only in base")]
    assert first["case"] in line and first["driver"] in line
    assert "only in base 1, only in new 0" in result.stdout


def test_different_libraries_and_machines_are_warned_about(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)
    other = json.loads(json.dumps(measured))
    other["environment"]["sqlalchemy"] = "2.0.0"
    other["environment"]["machine"]["cpus"] = 64
    result = gate(base, write(tmp_path, "new", other))
    assert result.returncode == 0
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert "sqlalchemy differ" in warnings[0] and "2.0.0 (new)" in warnings[0]
    assert "machine cpus differ" in warnings[1]


def test_folders_are_read_whole(measured, tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    half = len(measured["cells"]) // 2
    write(tmp_path / "a", "all", measured)
    write(tmp_path / "b", "first", dict(measured, cells=measured["cells"][:half]))
    write(tmp_path / "b", "rest", dict(measured, cells=measured["cells"][half:]))
    comparison = compare(load_run(tmp_path / "a"), load_run(tmp_path / "b"), Gate())
    assert len(comparison.cells) == len(measured["cells"])
    assert not comparison.only_in_base and not comparison.only_in_new


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        ("{not json", "is not JSON"),
        ('{"schema_version": 99}', "has schema_version 99"),
        ('{"schema_version": 1}', "is not a valid result file"),
    ],
)
def test_bad_result_files_are_one_line(measured, tmp_path, content, needle) -> None:
    base = write(tmp_path, "base", measured)
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert_one_line_error(gate(base, bad), needle)


@pytest.mark.parametrize(
    ("option", "value"), [("--min-effect", "-1"), ("--alpha", "nan"), ("--format", "xml")]
)
def test_bad_options_are_one_line(measured, tmp_path, option, value) -> None:
    base = write(tmp_path, "base", measured)
    assert_one_line_error(gate(base, base, option, value), option)


def test_function_calls_grown_beyond_the_tolerance_fail_and_fewer_are_reported(
    measured, tmp_path
) -> None:
    base = write(tmp_path, "base", measured)

    def calls_times(factor: float):
        def change(cell, index):
            if cell["case"] == "crud.get" and cell["mode"] == "sync":
                cell["calls"] = round(cell["calls"] * factor)

        return change

    def verdicts(name: str, factor: float, rule: Gate | None = None) -> dict[str, tuple]:
        new = write(tmp_path, name, measured, calls_times(factor))
        comparison = compare(load_run(base), load_run(new), rule or Gate())
        return {
            f"{c.new.case} {c.new.mode}": (c.verdict, c.changed, c.noted) for c in comparison.cells
        }

    (counted,) = [
        c["calls"] for c in measured["cells"] if c["case"] == "crud.get" and c["mode"] == "sync"
    ]
    assert counted > 0
    within = verdicts("within", 1.015)["crud.get sync"]
    assert within[0] == "unchanged" and within[1:] == ((), ()), within
    verdict, changed, _ = verdicts("beyond", 1.05)["crud.get sync"]
    assert verdict == "changed" and f"calls {counted:,} -> {round(counted * 1.05):,}" in changed[0]
    assert verdicts("loose", 1.05, Gate(calls_tolerance=0.1))["crud.get sync"][0] == "unchanged"
    assert verdicts("unheld", 1.05, Gate(hold_calls=False))["crud.get sync"][0] == "unchanged"
    verdict, changed, noted = verdicts("fewer", 0.8)["crud.get sync"]
    assert (verdict, changed) == ("unchanged", ()) and f"-> {round(counted * 0.8):,}" in noted[0]
    # The option reaches the gate.
    beyond = tmp_path / "beyond.json"
    assert gate(base, beyond).returncode == 1
    assert gate(base, beyond, "--calls-tolerance", "0.1").returncode == 0


def test_zero_ms_cells_are_compared_with_cells_run_without_latency(measured, tmp_path) -> None:
    """At 0 ms a cell is timed straight to the server, its round trips counted apart:
    the same timing as a run without --latency, so the two are compared; a cell at 0 ms
    from a file before schema 4 was timed through the proxy, and is not."""
    base = write(tmp_path, "base", measured)

    def at_zero(cell, index, proxied=False) -> None:
        cell.update(latency_ms=0.0, timed_through_proxy=proxied, round_trips=2)
        cell.update(bytes_up=100, bytes_down=200)

    zero = write(tmp_path, "zero", measured, at_zero)
    result = gate(base, zero)
    assert result.returncode == 0, result.stdout + result.stderr
    cells = len(measured["cells"])
    assert "only in base 0, only in new 0" in result.stdout
    assert "unchanged" in result.stdout and "timed through the latency proxy" not in result.stdout

    old = json.loads(json.dumps(measured))
    old["schema_version"] = 3
    for cell in old["cells"]:
        del cell["timed_through_proxy"]  # schema 3 had none: upgraded, it reads True
        cell.update(latency_ms=0.0, round_trips=2)
    result = gate(base, write(tmp_path, "old", old))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"only in base {cells}, only in new {cells}" in result.stdout
    (warning,) = [line for line in result.stdout.splitlines() if "latency proxy" in line]
    assert f"{cells} cells of the new run at 0 ms were timed through" in warning
