"""The regression gate on result files: exact on what is counted, which decides the exit
status; statistical on time, which only advises.

The runs compared here are one real run (``crud.get`` on SQLite) and copies of it with
one thing changed; timings are replaced by seeded samples so that the size of each
change is known exactly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sqla_bench.compare import Gate, compare, load_run, to_json
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
    assert "outcome ok -> raised" in changed["what_changed"]
    assert {"metric": "outcome", "base": "ok", "new": "raised"} in changed["changes"]
    assert changed["regressed"] and changed["new"]["outcome"] == "raised"


def test_a_three_percent_slowdown_is_not_a_regression(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)

    def slower(cell, index):
        cell["samples_ns"] = [int(ns * 1.03) for ns in cell["samples_ns"]]

    result = gate(base, write(tmp_path, "new", measured, slower), "--format", "json")
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert {row["verdict"] for row in report["cells"]} == {"unchanged"}
    assert report["geometric_mean_ratio"] == pytest.approx(1.03, abs=0.005)


def test_timings_advise_a_doubling_slower_and_a_halving_faster_but_never_fail(
    measured, tmp_path
) -> None:
    base = write(tmp_path, "base", measured)

    def changed(cell, index):
        scale = 2.0 if index == 0 else 0.5 if index == 1 else 1.0
        cell["samples_ns"] = samples(scale, seed=index + 1000)

    result = gate(base, write(tmp_path, "new", measured, changed), "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    verdicts = [row["verdict"] for row in report["cells"]]
    assert verdicts.count("slower") == 1 and verdicts.count("faster") == 1
    assert not report["regressed"] and not report["gate"]["holds_timing"]
    (slower,) = [row for row in report["cells"] if row["verdict"] == "slower"]
    assert not slower["regressed"] and slower["ratio"] == pytest.approx(2.0, rel=0.1)
    assert slower["new"]["median_ns"] == pytest.approx(2 * slower["base"]["median_ns"], rel=0.1)
    assert slower["p_slower"] < 1e-6


def test_a_larger_minimum_effect_no_longer_calls_a_doubling_slower(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)

    def doubled(cell, index):
        cell["samples_ns"] = samples(2.0, seed=index + 1000)

    new = write(tmp_path, "new", measured, doubled)

    def verdicts(*options: str) -> set[str]:
        result = gate(base, new, "--format", "json", *options)
        assert result.returncode == 0, result.stdout + result.stderr
        return {row["verdict"] for row in json.loads(result.stdout)["cells"]}

    assert verdicts() == {"slower"}
    assert verdicts("--min-effect", "1.5") == {"unchanged"}


def test_the_json_document_follows_its_schema_with_numbers_in_fields(measured, tmp_path) -> None:
    import jsonschema

    from sqla_bench.compare import JSON_SCHEMA_PATH

    base = write(tmp_path, "base", measured)

    def one_more(cell, index):
        if index == 0:
            cell["statements"] += 1

    fewer = dict(measured, cells=measured["cells"][1:])
    result = gate(base, write(tmp_path, "new", fewer, one_more), "--format", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, json.loads(JSON_SCHEMA_PATH.read_text()))
    (changed,) = [row for row in report["cells"] if row["verdict"] == "changed"]
    second = measured["cells"][1]
    assert changed["changes"] == [
        {"metric": "statements", "base": second["statements"], "new": second["statements"] + 1}
    ]
    assert isinstance(changed["base"]["median_ns"], float | int)
    (missing,) = report["only_in_base"]
    assert (missing["case"], missing["driver"]) == (measured["cells"][0]["case"],
                                                    measured["cells"][0]["driver"])  # fmt: skip


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
    # In the JSON document, calls beyond the tolerance (either way) are a change of their own.
    beyond = tmp_path / "beyond.json"
    changes = {
        f"{row['case']} {row['mode']}": row["changes"]
        for row in to_json(compare(load_run(base), load_run(beyond), Gate()), Gate())["cells"]
    }
    grown = {"metric": "calls", "base": counted, "new": round(counted * 1.05)}
    assert changes["crud.get sync"] == [grown] and changes["crud.get async"] == []
    # The option reaches the gate.
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


def test_github_format_annotates_counted_changes_as_errors_and_slower_timings_as_warnings(
    measured, tmp_path
) -> None:
    base = write(tmp_path, "base", measured)

    def changed(cell, index):
        if index == 0:
            cell["statements"] += 1
        if index == 1:
            cell["samples_ns"] = samples(2.0, seed=index + 1000)

    new = write(tmp_path, "new", dict(measured, cells=measured["cells"][:-1]), changed)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = run(
        "sqla_bench", "compare", str(base), str(new), "--format", "github",
        GITHUB_STEP_SUMMARY=str(summary),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    first, second, last = measured["cells"][0], measured["cells"][1], measured["cells"][-1]
    errors = [line for line in lines if line.startswith("::error ")]
    warnings = [line for line in lines if line.startswith("::warning ")]
    notices = [line for line in lines if line.startswith("::notice ")]
    assert len(errors) == 1 and f"title=sqla-bench%3A {first['case']} changed::" in errors[0]
    assert f"statements {first['statements']} -> {first['statements'] + 1}" in errors[0]
    assert len(warnings) == 1 and f"{second['case']} slower (advice)::" in warnings[0]
    assert len(notices) == 1 and "only in base" in notices[0] and last["driver"] in notices[0]
    assert lines[-1].startswith("REGRESSION: ")
    # The job summary gets the markdown table, after what earlier steps wrote.
    written = summary.read_text()
    assert written.startswith("earlier step\n**sqla-bench compare: REGRESSION")
    assert "| changed |" in written


def test_annotations_escape_what_would_end_them() -> None:
    from sqla_bench.compare import _annotation

    line = _annotation("error", "a: b, c", "50% done\nnext line")
    assert line == "::error title=sqla-bench%3A a%3A b%2C c::50%25 done%0Anext line"


def test_an_unwritable_job_summary_is_one_line_before_any_output(measured, tmp_path) -> None:
    base = write(tmp_path, "base", measured)
    result = run(
        "sqla_bench", "compare", str(base), str(base), "--format", "github",
        GITHUB_STEP_SUMMARY=str(tmp_path / "missing" / "summary.md"),
    )  # fmt: skip
    assert_one_line_error(result, "GITHUB_STEP_SUMMARY")
    assert result.stdout == ""
