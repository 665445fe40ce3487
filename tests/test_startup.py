"""The command line starts at once: it imports what a command uses when that command runs.

Guarded by what a fresh interpreter has imported once ``sqla_bench.cli.main`` is done, not by
wall time, which these shared machines make too noisy to hold (the figure itself comes
from ``hyperfine``: see bench/README.md). ``--help`` loads no library of the measuring
side at all; no command loads scipy or matplotlib unless it compares timings or draws.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import NO_DOCKER, VARIABLES

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

# Libraries that cost tenths of a second each on import here (scipy 0.9 s, matplotlib 0.4 s,
# SQLAlchemy 0.2 to 0.5 s), and the suite's own modules that bring them.
MEASURING_SIDE = ("sqlalchemy", "scipy", "matplotlib", "rich", "jsonschema", "psutil", "scenarios")
PLOTTING_AND_STATISTICS = ("scipy", "matplotlib")

REPORT_IMPORTS = """
import json, sys
from sqla_bench.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(*argv: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after ``sqla-bench ARGV``."""
    return {name.split(".")[0] for name in modules_imported_by(*argv)}


def modules_imported_by(*argv: str) -> set[str]:
    """Every module a fresh interpreter has imported after ``sqla-bench ARGV`` (run as the
    command-line tests run it: no server URL, no Docker engine)."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES} | NO_DOCKER
    result = subprocess.run(
        [sys.executable, "-c", REPORT_IMPORTS, *argv],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_help_imports_nothing_of_the_measuring_side() -> None:
    for argv in (["--help"], ["no-such-command"]):
        assert not imported_by(*argv) & set(MEASURING_SIDE), argv


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["run", "--dry-run"],
        ["run", "--scenario", "crud.get", "--mode", "sync", "--min-rounds", "1", "--min-time", "0"],
        ["verify", "--target", "sqlite", "--only", "patterns"],
    ],
    ids=["list", "run-dry", "run", "verify"],
)
def test_no_command_without_plots_or_a_gate_imports_scipy_or_matplotlib(argv, tmp_path) -> None:
    if argv[0] == "run" and "--dry-run" not in argv:
        argv = [*argv, "--output", str(tmp_path / "run.json")]
    imported = imported_by(*argv)
    assert "sqlalchemy" in imported  # it did run: the check below can see a command's imports
    assert not imported & set(PLOTTING_AND_STATISTICS), argv


def test_a_run_that_plots_does_import_matplotlib(tmp_path) -> None:
    """The positive control: the check above sees a command that does draw."""
    argv = ["run", "--scenario", "crud.get", "--mode", "sync", "--min-rounds", "1"]
    argv += ["--min-time", "0", "--plot", "--output", str(tmp_path / "run.json")]
    assert "matplotlib" in imported_by(*argv)


# The layers that measure (bench/README.md): reading result files needs none of them.
MEASURING_LAYERS = ("sqla_bench.run", "sqla_bench.measuring", "sqla_bench.servers")
REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
STORED = Path(__file__).resolve().parent / "data"  # small result files, tests/data/README.md


@pytest.mark.parametrize(
    "argv",
    [
        ["report", str(REFERENCE / "sqlite-other.json")],
        ["report", str(REFERENCE / "sqlite-other.json"), "--out", "{tmp}"],
        ["compare", str(REFERENCE / "sqlite-other.json"), str(REFERENCE / "sqlite-other.json")],
        ["compare", "{data}", "{data}", "--format", "json"],  # folders of result files
    ],
    ids=["report", "report-out", "compare", "compare-json"],
)
def test_reading_result_files_loads_no_module_that_measures(argv, tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("crud-get.json", "users-with-posts.json"):
        shutil.copy(STORED / name, data / name)
    argv = [arg.replace("{tmp}", str(tmp_path)).replace("{data}", str(data)) for arg in argv]
    imported = modules_imported_by(*argv)
    assert "sqla_bench.results.files" in imported  # it did read the files
    measuring = sorted(name for name in imported if name.startswith(MEASURING_LAYERS))
    assert not measuring, measuring


def test_a_run_does_load_the_modules_that_measure() -> None:
    """The positive control: the check above sees a command that measures."""
    imported = modules_imported_by("run", "--dry-run")
    assert {"sqla_bench.run.plan", "sqla_bench.servers.targets"} <= imported
