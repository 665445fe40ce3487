"""``run --instructions``: instructions per operation, counted under valgrind's callgrind
in a process of their own, and held by the gate where timings cannot be (issue 29).

The plant is the study's (``tests.gate_study``): a loop of ``+=`` at the top of
``Session.get``, which adds work and no function call, so the count that sees it is the
instructions' alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sqla_bench.compare import Gate, compare, load_run
from sqla_bench.targets import VALGRIND, required_targets
from tests.gate_study import planted_source
from tests.test_cli import assert_one_line_error, run

pytestmark = pytest.mark.harness

# A short run: crud.get (which calls Session.get) beside the driver baseline (which does
# not), sync only, with as few timed calls as a run takes.
RUN = (
    *("run", "--scenario", "crud.get", "--mode", "sync", "--min-time", "0"),
    *("--min-rounds", "1", "--warmup", "2", "--instructions", "3"),
)
PLANTED_LOOP = 3_000  # iterations: about a third more instructions in crud.get


@pytest.fixture(scope="module")
def valgrind() -> None:
    if shutil.which("valgrind") is None:
        reason = "valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)"
        if VALGRIND in required_targets():
            pytest.fail(f"SQLA_BENCH_REQUIRE names valgrind, but {reason}")
        pytest.skip(reason)


def counted_run(folder: Path, **env: str) -> dict:
    out = folder / "run.json"
    result = run("sqla_bench", *RUN, "--output", str(out), **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "instructions counted for 2 of 2 cells" in result.stdout, result.stdout
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def counted(valgrind, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("counted")
    counted_run(folder)
    return folder / "run.json"


@pytest.fixture(scope="module")
def planted(valgrind, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("planted")
    (folder / "plant").mkdir()
    (folder / "plant" / "sitecustomize.py").write_text(planted_source("Session.get", PLANTED_LOOP))
    counted_run(folder, PYTHONPATH=str(folder / "plant"))
    return folder / "run.json"


def by_case(path: Path) -> dict:
    _, cells = load_run(path)  # validated against the schema as it is read
    return {cell.case: cell for cell in cells}


def test_each_cell_gets_its_instructions_per_operation(counted) -> None:
    cells = by_case(counted)
    assert set(cells) == {"crud.get", "baseline.driver_get"}
    driver, orm = cells["baseline.driver_get"].instructions, cells["crud.get"].instructions
    # The ORM's get does far more than the driver's own query: a session, an identity
    # map, a compiled statement, an object.
    assert driver and orm and 5 * driver < orm, (driver, orm)
    header = json.loads(counted.read_text())
    assert header["run"]["parameters"]["instructions"] == 3


def test_a_loop_planted_in_session_get_fails_the_gate_in_crud_get_alone(counted, planted) -> None:
    comparison = compare(load_run(counted), load_run(planted), Gate())
    regressed = {cell.new.case: cell.changed for cell in comparison.cells if cell.regressed}
    assert list(regressed) == ["crud.get"], regressed
    (change,) = regressed["crud.get"]
    assert change.startswith("instructions "), change
    # No function call was added: the calls cannot see it.
    base, new = by_case(counted)["crud.get"], by_case(planted)["crud.get"]
    assert abs(new.calls - base.calls) <= 0.02 * base.calls, (base.calls, new.calls)
    result = run("sqla_bench", "compare", str(counted), str(planted))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "instructions" in result.stdout


def test_without_valgrind_the_option_is_one_line_before_anything_runs(tmp_path) -> None:
    out = tmp_path / "never.json"
    result = run("sqla_bench", *RUN, "--output", str(out), PATH=str(tmp_path))
    assert_one_line_error(result, "--instructions", "valgrind", "apt-get install valgrind")
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "1001", "many"])
def test_a_count_out_of_bounds_is_one_line(tmp_path, value) -> None:
    result = run("sqla_bench", "run", "--instructions", value, "--dry-run")
    assert_one_line_error(result, "--instructions")
