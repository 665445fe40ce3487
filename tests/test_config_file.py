"""``run --config FILE`` and ``[tool.sqla-bench]``: a run's options from TOML, the
command line winning, bad files refused in one line (bench/commands/config_file.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sqla_bench.results.files import read_result
from tests.helpers import assert_one_line_error, run

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

ONE_SCENARIO = 'scenario = ["crud.get"]\nmode = ["sync"]\n'
# On the command line of the tests whose file must stop the run: a run that went ahead
# anyway is short, and writes where the test looks.
SMALL_RUN = ("--scenario", "crud.get", "--mode", "sync", "--min-rounds", "1", "--min-time", "0")


def config(folder: Path, text: str, name: str = "run.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def planned_drivers(stdout: str) -> list[str]:
    """The drivers a dry run plans, from its lines such as ``  sqlite-pysqlite-sync: 2
    cells per setting``."""
    return [line.split(":")[0].strip() for line in stdout.splitlines() if "cells per" in line]


def test_the_file_sets_the_options_and_says_so(tmp_path) -> None:
    path = config(tmp_path, ONE_SCENARIO + "posts = [1, 5, 20]\n")
    result = run("sqla_bench", "run", "--config", str(path), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"options from {path}: mode, posts, scenario" in result.stdout
    assert planned_drivers(result.stdout) == ["sqlite-pysqlite-sync"]
    assert "3 datasets" in result.stdout
    # crud.get and its driver baseline, at each of the three datasets
    assert "6 cells per setting" in result.stdout


def test_the_command_line_wins_and_replaces_a_repeated_option_whole(tmp_path) -> None:
    path = config(tmp_path, ONE_SCENARIO)
    result = run("sqla_bench", "run", "--config", str(path), "--mode", "async", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert planned_drivers(result.stdout) == ["sqlite-aiosqlite-async"]


def test_a_flag_in_the_file_acts_as_on_the_command_line(tmp_path) -> None:
    out = tmp_path / "never.json"
    path = config(tmp_path, ONE_SCENARIO + "dry-run = true\n")
    result = run("sqla_bench", "run", "--config", str(path), *SMALL_RUN, "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert planned_drivers(result.stdout) == ["sqlite-pysqlite-sync"]
    assert not out.exists()


def test_a_run_from_the_file_records_the_options_it_ran_with(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default results/local/, were the output not taken
    out = tmp_path / "run.json"
    text = ONE_SCENARIO + f'min_rounds = 4\nmin-time = 0\nwarmup = 3\noutput = "{out}"\n'
    result = run("sqla_bench", "run", "--config", str(config(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    header, cells = read_result(out)
    parameters = header["run"]["parameters"]
    assert parameters["modes"] == ["sync"] and parameters["scenarios"] == ["crud.get"]
    assert parameters["policy"]["min_rounds"] == 4 and parameters["policy"]["warmup"] == 3
    assert {cell.case for cell in cells} == {"crud.get", "baseline.driver_get"}
    assert all(len(cell.samples_ns) >= 4 for cell in cells)


def test_the_projects_pyproject_table_applies_unless_a_file_is_named(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config(
        tmp_path, f'[project]\nname = "shop"\n\n[tool.sqla-bench]\n{ONE_SCENARIO}', "pyproject.toml"
    )
    from_project = run("sqla_bench", "run", "--dry-run")
    assert from_project.returncode == 0, from_project.stderr
    assert "options from pyproject.toml [tool.sqla-bench]: mode, scenario" in from_project.stdout
    assert planned_drivers(from_project.stdout) == ["sqlite-pysqlite-sync"]
    named = config(tmp_path, 'mode = ["async"]\n')
    from_file = run("sqla_bench", "run", "--config", str(named), "--dry-run")
    assert planned_drivers(from_file.stdout) == ["sqlite-aiosqlite-async"]
    assert f"options from {named}: mode\n" in from_file.stdout  # the table is not read


def test_a_pyproject_without_the_table_changes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config(tmp_path, '[project]\nname = "shop"\n', "pyproject.toml")
    result = run("sqla_bench", "run", "--scenario", "crud.get", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "options from" not in result.stdout
    assert planned_drivers(result.stdout) == ["sqlite-pysqlite-sync", "sqlite-aiosqlite-async"]


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('colour = "red"', ("unknown option 'colour'", "min-rounds")),
        ('min-rounds = "many"', ('min-rounds = "many"', "expected a number")),
        ("min-rounds = true", ("min-rounds = true", "as on the command line")),
        ("min-rounds = 0", ("min-rounds = 0", "from 1")),
        ('mode = ["both"]', ("mode", "one of sync, async")),
        ("dry-run = 1", ("dry-run = 1", "true or false")),
        ("posts = [1, true]", ("posts", "numbers or words")),
        ('config = "other.toml"', ("unknown option 'config'",)),
        ("x = = 1", ("is not TOML",)),
    ],
    ids=[
        "unknown", "text-for-number", "bool-for-number", "out-of-bounds", "choice",
        "number-for-flag", "bool-in-list", "config-in-config", "not-toml",
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line_naming_it_and_the_key(tmp_path, text, needles) -> None:
    out = tmp_path / "never.json"
    path = config(tmp_path, text + "\n")
    result = run("sqla_bench", "run", "--config", str(path), *SMALL_RUN, "--output", str(out))
    assert_one_line_error(result, str(path), *needles)
    assert not out.exists()


@pytest.mark.parametrize("name", ["missing.toml", "."], ids=["missing", "a-folder"])
def test_a_file_that_cannot_be_read_is_one_line(tmp_path, name) -> None:
    result = run("sqla_bench", "run", "--config", str(tmp_path / name), "--dry-run")
    assert_one_line_error(result, "cannot read")


@pytest.mark.parametrize("text", ["[tool]\nsqla-bench = 3\n", "tool = 3\n"], ids=["entry", "tool"])
def test_a_tool_entry_that_is_not_a_table_is_one_line(tmp_path, monkeypatch, text) -> None:
    monkeypatch.chdir(tmp_path)
    config(tmp_path, text, "pyproject.toml")
    result = run("sqla_bench", "run", "--dry-run")
    assert_one_line_error(result, "pyproject.toml", "[tool.sqla-bench] must be a table")


def test_the_counting_child_plans_the_workload_the_file_gave_the_run(tmp_path) -> None:
    """``--instructions`` counts in a child that rebuilds the run's plan from the run's
    words: it reads the same file, or it would count another workload than was timed."""
    from sqla_bench.instructions_child import _child_plan
    from sqla_bench.servers.targets import Servers

    words = ["run", "--config", str(config(tmp_path, ONE_SCENARIO)), "--instructions", "10"]
    (tmp_path / "sqlite").mkdir()
    runs = config(tmp_path, TWO_RUNS.format(folder=tmp_path), "runs.toml")
    second = ["run", "--config", str(runs), "--config-run", "2", "--instructions", "10"]
    with Servers(tmp_path / "sqlite") as servers:
        plan = _child_plan({"run": words, "calls": 10}, servers)
        of_two = _child_plan({"run": second, "calls": 10}, servers)
    assert plan.scenarios == ("crud.get",) and plan.modes == ("sync",)
    assert of_two.scenarios == ("tx.manual_commit",)


TWO_RUNS = """
mode = ["sync"]
min-rounds = 2
min-time = 0

[[run]]
scenario = ["crud.get"]
output = "{folder}/one.json"

[[run]]
scenario = ["tx.manual_commit"]
min-rounds = 3
output = "{folder}/two.json"
"""


def test_a_file_of_runs_makes_each_with_its_own_options_and_file(tmp_path) -> None:
    path = config(tmp_path, TWO_RUNS.format(folder=tmp_path))
    result = run("sqla_bench", "run", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert f"2 runs in {path}" in result.stdout
    expected = {"one": (["crud.get"], 2), "two": (["tx.manual_commit"], 3)}
    for number, (name, (scenarios, rounds)) in enumerate(expected.items(), 1):
        header, cells = read_result(tmp_path / f"{name}.json")
        parameters = header["run"]["parameters"]
        assert parameters["scenarios"] == scenarios and parameters["modes"] == ["sync"]
        assert parameters["policy"]["min_rounds"] == rounds
        assert cells and all(len(cell.samples_ns) >= rounds for cell in cells)
        # What makes this file again: the file and the run's number in it.
        assert header["run"]["command"][-4:] == ["--config", str(path), "--config-run", str(number)]


def test_config_run_makes_only_the_table_it_names(tmp_path) -> None:
    path = config(tmp_path, TWO_RUNS.format(folder=tmp_path))
    result = run("sqla_bench", "run", "--config", str(path), "--config-run", "2", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "[[run]] 2" in result.stdout and "[[run]] 1" not in result.stdout
    assert "sqlite-pysqlite-sync: 1 cells per setting" in result.stdout  # tx.manual_commit


@pytest.mark.parametrize(
    ("text", "options", "needles"),
    [
        (TWO_RUNS.replace("min-rounds = 3", "min-rounds = 0"), (), ("[[run]] 2", "min-rounds")),
        (TWO_RUNS.replace('["tx.manual_commit"]', '["no.such"]'), (), ("no.such",)),
        (TWO_RUNS, ("--output", "{folder}/x.json"), ("--output names one file", "2 runs")),
        (TWO_RUNS, ("--config-run", "3"), ("--config-run 3", "has 2 runs")),
        (ONE_SCENARIO, ("--config-run", "1"), ("--config-run 1", "no [[run]] tables")),
        ("run = 3", (), ("run must be [[run]] tables",)),
    ],
    ids=["bad-value", "bad-plan", "one-output", "no-such-run", "no-runs", "not-tables"],
)
def test_every_run_is_checked_before_the_first_starts(tmp_path, text, options, needles) -> None:
    path = config(tmp_path, text.format(folder=tmp_path))
    words = [word.format(folder=tmp_path) for word in options]
    result = run("sqla_bench", "run", "--config", str(path), *words)  # small runs, if made
    assert_one_line_error(result, *needles)
    assert not list(tmp_path.glob("*.json"))


REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"


def test_the_reference_file_makes_every_result_file_of_the_reference(monkeypatch) -> None:
    """``run --config results/reference/reference.toml`` makes the reference again: its
    runs plan on every target (URLs that are never dialled: a dry run connects to
    nothing) and name each result file in the folder once."""
    monkeypatch.chdir(REFERENCE.parent.parent)
    unreachable = {
        "SQLA_BENCH_POSTGRESQL_URL": "postgresql://nobody@127.0.0.1:1/nothing",
        "SQLA_BENCH_MYSQL_URL": "mysql://nobody@127.0.0.1:1/nothing",
    }
    path = REFERENCE / "reference.toml"
    result = run("sqla_bench", "run", "--config", str(path), "--dry-run", **unreachable)
    assert result.returncode == 0, result.stderr
    runs = tomllib.loads(path.read_text())["run"]
    assert f"{len(runs)} runs in {path}" in result.stdout
    assert result.stdout.count("cells per setting") >= len(runs)
    outputs = sorted(Path(one["output"]).name for one in runs)
    assert outputs == sorted(p.name for p in REFERENCE.glob("*.json") if p.name != "verify.json")
