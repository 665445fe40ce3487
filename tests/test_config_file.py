"""``run --config FILE`` and ``[tool.sqla-bench]``: a run's options from TOML, the
command line winning, bad files refused in one line (bench/commands/config_file.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqla_bench.results.files import read_result
from tests.helpers import assert_one_line_error, run

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


def test_a_tool_entry_that_is_not_a_table_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config(tmp_path, "[tool]\nsqla-bench = 3\n", "pyproject.toml")
    result = run("sqla_bench", "run", "--dry-run")
    assert_one_line_error(result, "pyproject.toml", "[tool.sqla-bench] must be a table")


def test_the_counting_child_plans_the_workload_the_file_gave_the_run(tmp_path) -> None:
    """``--instructions`` counts in a child that rebuilds the run's plan from the run's
    words: it reads the same file, or it would count another workload than was timed."""
    from sqla_bench.instructions_child import _child_plan
    from sqla_bench.servers.targets import Servers

    words = ["run", "--config", str(config(tmp_path, ONE_SCENARIO)), "--instructions", "10"]
    (tmp_path / "sqlite").mkdir()
    with Servers(tmp_path / "sqlite") as servers:
        plan = _child_plan({"run": words, "calls": 10}, servers)
    assert plan.scenarios == ("crud.get",) and plan.modes == ("sync",)
