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

from sqla_bench.reporting.gate_formats import to_json
from sqla_bench.results.compare import Gate, compare, load_run
from tests.helpers import assert_one_line_error, run

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

DATA = Path(__file__).parent / "data"
SAMPLES = 400  # enough for the test to see a 2x change many times over


@pytest.fixture(scope="module")
def measured() -> dict:
    """A run of crud.get on SQLite, as stored (tests/data/README.md says how it was made)."""
    return json.loads((DATA / "crud-get.json").read_text())


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
            cell["sql"] = [*cell["sql"], {"text": "SELECT 1 FROM audit", "count": 1}]

    new = write(tmp_path, "new", measured, one_more)
    result = gate(base, new, "--format", "markdown")
    assert result.returncode == 1, result.stdout + result.stderr
    changed = [line for line in result.stdout.splitlines() if line.startswith("| changed")]
    assert len(changed) == 1
    assert "crud.get" in changed[0] and "aiosqlite" in changed[0]
    # The statement the run kept, and which one is new.
    assert "statements 1 -> 2; SQL added: 1 x SELECT 1 FROM audit" in changed[0]


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

    from sqla_bench.reporting.gate_formats import JSON_SCHEMA_PATH

    base = write(tmp_path, "base", measured)

    def one_more(cell, index):
        if index == 0:
            cell["statements"] += 1
            cell["sql"][0]["count"] += 1  # the same statement once more: an N+1's way

    fewer = dict(measured, cells=measured["cells"][1:])
    result = gate(base, write(tmp_path, "new", fewer, one_more), "--format", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, json.loads(JSON_SCHEMA_PATH.read_text()))
    (changed,) = [row for row in report["cells"] if row["verdict"] == "changed"]
    second = measured["cells"][1]
    (again,) = second["sql"][:1]
    assert changed["changes"] == [
        {
            "metric": "statements",
            "base": second["statements"],
            "new": second["statements"] + 1,
            "sql_added": [{"text": again["text"], "count": 1}],
            "sql_removed": [],
        }
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


def counted_instructions(cell, index) -> None:
    """The measured run counted no instructions (that takes valgrind): a made-up count."""
    cell["instructions"] = 1_000_000 + 1_000 * index


@pytest.mark.parametrize(
    ("metric", "option", "within_factor", "count"),
    [
        ("calls", "--calls-tolerance", 1.015, lambda cell, index: None),
        ("instructions", "--instructions-tolerance", 1.008, counted_instructions),
    ],
)
def test_counts_grown_beyond_their_tolerance_fail_and_fewer_are_reported(
    measured, tmp_path, metric, option, within_factor, count
) -> None:
    base = write(tmp_path, "base", measured, count)

    def times(factor: float):
        def change(cell, index):
            count(cell, index)
            if cell["case"] == "crud.get" and cell["mode"] == "sync":
                cell[metric] = round(cell[metric] * factor)

        return change

    def verdicts(name: str, factor: float, rule: Gate | None = None) -> dict[str, tuple]:
        new = write(tmp_path, name, measured, times(factor))
        comparison = compare(load_run(base), load_run(new), rule or Gate())
        return {
            f"{c.new.case} {c.new.mode}": (c.verdict, c.changed, c.noted) for c in comparison.cells
        }

    (counted,) = [
        c[metric]
        for c in json.loads(base.read_text())["cells"]
        if c["case"] == "crud.get" and c["mode"] == "sync"
    ]
    assert counted > 0
    within = verdicts("within", within_factor)["crud.get sync"]
    assert within[0] == "unchanged" and within[1:] == ((), ()), within
    verdict, changed, _ = verdicts("beyond", 1.1)["crud.get sync"]
    assert verdict == "changed"
    assert f"{metric} {counted:,} -> {round(counted * 1.1):,}" in changed[0], changed
    loose = Gate(**{option.lstrip("-").replace("-", "_"): 0.2})
    assert verdicts("loose", 1.1, loose)["crud.get sync"][0] == "unchanged"
    assert verdicts("unheld", 1.1, Gate(hold_calls=False))["crud.get sync"][0] == "unchanged"
    verdict, changed, noted = verdicts("fewer", 0.8)["crud.get sync"]
    assert (verdict, changed) == ("unchanged", ()) and f"-> {round(counted * 0.8):,}" in noted[0]
    # In the JSON document, a count beyond its tolerance (either way) is a change of its own.
    beyond = tmp_path / "beyond.json"
    changes = {
        f"{row['case']} {row['mode']}": row["changes"]
        for row in to_json(compare(load_run(base), load_run(beyond), Gate()), Gate())["cells"]
    }
    grown = {"metric": metric, "base": counted, "new": round(counted * 1.1)}
    assert changes["crud.get sync"] == [grown] and changes["crud.get async"] == []
    # The option reaches the gate.
    assert gate(base, beyond).returncode == 1
    assert gate(base, beyond, option, "0.2").returncode == 0


def test_instructions_counted_in_one_run_only_are_not_compared_and_say_so(
    measured, tmp_path
) -> None:
    base = write(tmp_path, "base", measured)
    new = write(tmp_path, "new", measured, counted_instructions)
    comparison = compare(load_run(base), load_run(new))
    assert not comparison.regressed
    assert any("only the new run counted instructions" in w for w in comparison.warnings)
    both = compare(load_run(new), load_run(new))
    assert not any("instructions" in w for w in both.warnings)


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
    from sqla_bench.reporting.gate_formats import _annotation

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


def test_a_history_holds_each_cell_to_the_spread_its_own_runs_showed(measured, tmp_path) -> None:
    """calibrate --add builds the history from runs of the same code; compare --history
    then gives a cell whose instructions moved 8 % between them room (1.5 x 8 %, where
    the default is 1 %), and holds calls and instructions that never moved to the floor
    (0.5 %, where the defaults are 2 % and 1 %)."""

    def counted(sync_get: float, async_calls: float):
        def change(cell, index):
            if cell["case"] == "crud.get":
                cell["instructions"] = round(
                    1_000_000 * (sync_get if cell["mode"] == "sync" else 1)
                )
                if cell["mode"] == "async":
                    cell["calls"] = round(cell["calls"] * async_calls)

        return change

    runs = [
        write(tmp_path, f"aa-{i}", measured, counted(scale, 1.0))
        for i, scale in enumerate((1.0, 1.08, 1.03))
    ]
    history = tmp_path / "history.json"
    added = run(
        "sqla_bench", "calibrate", "--history", str(history),
        *(word for path in runs for word in ("--add", str(path))),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "8.00%" in added.stdout and "0.00%" in added.stdout, added.stdout
    new = write(tmp_path, "new", measured, counted(1.1, 1.015))
    plain = compare(load_run(runs[0]), load_run(new), Gate())
    verdicts = {c.new.mode: c.verdict for c in plain.cells if c.new.case == "crud.get"}
    assert verdicts == {"sync": "changed", "async": "unchanged"}
    from sqla_bench.results.history import History

    held = compare(load_run(runs[0]), load_run(new), Gate(history=History.read(history)))
    by_mode = {c.new.mode: c for c in held.cells if c.new.case == "crud.get"}
    assert by_mode["sync"].verdict == "unchanged", by_mode["sync"].changed
    assert by_mode["async"].verdict == "changed"
    assert "tolerance 0.5%, history: 3 runs spread 0.00%" in by_mode["async"].changed[0]
    assert History.read(history).tolerance(by_mode["async"].new, "instructions", 0.01)[0] == 0.005
    # The option reaches the gate, and a bad history is one line.
    assert gate(runs[0], new).returncode == 1
    assert gate(runs[0], new, "--history", str(history)).returncode == 1  # async, now
    history.write_text('{"version": 1, "cells": {"x": {"calls": ["many"]}}}')
    refused = gate(runs[0], new, "--history", str(history))
    assert_one_line_error(refused, "not an sqla-bench history")


QUIET = {"load_average": [0.4, 0.6], "steal": 0.0, "cpus": 2, "busy": False}


def interleaved(
    folder: Path, measured: dict, runs: int, slower: float, seed: int, drift: float = 0.03
) -> tuple:
    """BASE and NEW folders of ``runs`` runs each, as if made interleaved: every run's
    timings drift by a few per cent together (the machine), NEW's ``slower`` times more."""
    rng = random.Random(seed)
    sides = folder / "base", folder / "new"
    for side, factor in zip(sides, (1.0, slower), strict=True):
        side.mkdir(parents=True)
        for index in range(runs):
            scale = rng.lognormvariate(0, drift) * factor
            document = json.loads(json.dumps(measured))
            document["run"]["started"] = f"2026-12-04T00:{index:02d}:00+00:00"
            document["targets"]["sqlite"]["machine"] = QUIET
            for number, cell in enumerate(document["cells"]):
                cell["samples_ns"] = samples(scale, count=50, seed=rng.randrange(10**6) + number)
            (side / f"run-{index}.json").write_text(json.dumps(document))
    return sides


@pytest.mark.slow  # a study, pairs of A/A and A/B runs: 62 s on a slow machine
def test_the_timing_gate_is_quiet_on_a_and_a_and_fails_a_clear_slowdown(measured, tmp_path) -> None:
    from sqla_bench.results.compare import load_runs
    from sqla_bench.results.timing_gate import gate_timing

    alarms = 0
    for seed in range(20):  # seeded: the same 20 pairs every time
        base, new = interleaved(tmp_path / f"aa-{seed}", measured, 5, 1.0, seed)
        alarms += bool(gate_timing(load_runs(base), load_runs(new), 0.05).slower)
    assert alarms <= 1, f"{alarms} false alarms in 20 A/A pairs at alpha 0.05"
    base, new = interleaved(tmp_path / "slow", measured, 5, 1.2, seed=99)
    verdict = gate_timing(load_runs(base), load_runs(new), 0.05)
    assert len(verdict.slower) == len(verdict.cells) == 4, verdict.summary()
    # 3 % drift a run, five runs a side: (t(1 - 0.05/4, 8) + t(0.8, 8)) x 3.8 % x sqrt(2/5)
    assert 0.06 < (verdict.detectable() or 0) < 0.12, verdict.summary()
    assert "found with 80 % power" in verdict.summary()
    # Through the command: exit 4, the verdict in the JSON document; too few runs is one line.
    result = gate(base, new, "--gate-timing", "--format", "json")
    assert result.returncode == 4, result.stderr
    document = json.loads(result.stdout)
    assert document["gate"]["holds_timing"] and len(document["timing"]["slower"]) == 4
    import jsonschema

    from sqla_bench.reporting.gate_formats import JSON_SCHEMA_PATH

    jsonschema.validate(document, json.loads(JSON_SCHEMA_PATH.read_text()))
    # As advice (ci/gate.sh unless GATE_TIMING=1): the same verdict, warnings, exit 0.
    advised = gate(base, new, "--gate-timing", "--timing-advises", "--format", "github")
    assert advised.returncode == 0 and "advises and does not fail" in advised.stderr
    lines = advised.stdout.splitlines()
    slower = [line for line in lines if "slower (timing gate)::" in line]
    assert len(slower) == 4 and all(line.startswith("::warning") for line in slower), lines
    assert "::error" not in advised.stdout
    assert_one_line_error(gate(base, new, "--timing-advises"), "goes with --gate-timing")
    assert gate(*interleaved(tmp_path / "aa", measured, 5, 1.0, 3), "--gate-timing").returncode == 0
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "run.json").write_text((base / "run-0.json").read_text())
    assert_one_line_error(gate(lone, new, "--gate-timing"), "at least 3 runs a side")


@pytest.mark.slow  # a study, three runs a side and a history: 33 s on a slow machine
def test_a_history_of_the_machine_s_spread_lets_three_runs_a_side_find_what_alone_they_miss(
    measured, tmp_path
) -> None:
    """Three runs a side leave Welch's t four degrees of freedom or fewer: at 2 % drift
    a run, an 8 % slowdown is found in about a quarter of the cells. An A/A history of
    20 runs with the same drift, pooled in, gives the test 24 and finds it in most (33
    of 40 here), with no more false alarms on A/A pairs; a history from a noisier
    machine (8 %) makes the test more careful, not less."""
    from sqla_bench.results.compare import load_runs
    from sqla_bench.results.history import History
    from sqla_bench.results.timing_gate import gate_timing

    def history(drift: float) -> History:
        rng, kept = random.Random(11), History()
        for index in range(20):
            document = json.loads(json.dumps(measured))
            for number, cell in enumerate(document["cells"]):
                scale = rng.lognormvariate(0, drift)
                cell["samples_ns"] = samples(scale, count=50, seed=index * 100 + number)
            path = tmp_path / f"h-{drift}-{index}.json"
            path.write_text(json.dumps(document))
            kept.add_run(load_run(path)[1])
        return kept

    quiet, noisy = history(0.02), history(0.08)
    caught = {"alone": 0, "quiet": 0, "noisy": 0}
    false_alarms = 0
    for seed in range(10):  # seeded: the same pairs every time
        runs = interleaved(tmp_path / f"slow-{seed}", measured, 3, 1.08, seed, drift=0.02)
        base, new = load_runs(runs[0]), load_runs(runs[1])
        for name, kept in (("alone", None), ("quiet", quiet), ("noisy", noisy)):
            caught[name] += len(gate_timing(base, new, 0.05, kept).slower)
        same = interleaved(tmp_path / f"aa-{seed}", measured, 3, 1.0, seed, drift=0.02)
        false_alarms += bool(
            gate_timing(load_runs(same[0]), load_runs(same[1]), 0.05, quiet).slower
        )
    # 10 pairs of 4 cells each.
    assert caught["quiet"] >= 30 and caught["quiet"] >= caught["alone"] + 15, caught
    assert caught["noisy"] <= caught["alone"], caught
    assert false_alarms <= 1, false_alarms
    verdict = gate_timing(base, new, 0.05, quiet)
    assert all(cell.history_runs == 20 for cell in verdict.cells)
    assert "A/A history's spread pooled (median 20 runs)" in verdict.summary()
    alone = gate_timing(base, new, 0.05)
    assert (verdict.detectable() or 1) < (alone.detectable() or 0), (
        verdict.summary(),
        alone.summary(),
    )


def test_a_run_on_a_busy_machine_gives_no_timing_verdict(measured, tmp_path) -> None:
    from sqla_bench.results.compare import load_runs
    from sqla_bench.results.timing_gate import gate_timing

    base, new = interleaved(tmp_path, measured, 3, 1.5, seed=5)
    busy = json.loads((new / "run-1.json").read_text())
    busy["targets"]["sqlite"]["machine"] = {
        "load_average": [3.5, 4.1], "steal": 0.0, "cpus": 2, "busy": True
    }  # fmt: skip
    (new / "run-1.json").write_text(json.dumps(busy))
    verdict = gate_timing(load_runs(base), load_runs(new), 0.05)
    assert not verdict.judged and verdict.slower == []
    assert "NO VERDICT" in verdict.summary() and "load 4.1 on 2 CPUs" in verdict.summary()
    assert gate(base, new, "--gate-timing").returncode == 0


def test_holm_adjusts_in_order() -> None:
    from sqla_bench.results.timing_gate import holm

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
