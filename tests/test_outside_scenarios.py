"""An application's own twins (``run --scenarios MODULE``), in a folder of its own whose
packages are called what ours are called in the checkout (``scenarios``, ``bench``): they
are measured and verified like the built-in ones, and neither package shadows ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TWINS, VARIABLES, application, assert_one_line_error

pytestmark = pytest.mark.harness


def sqla_bench(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed console script, run in ``folder`` on SQLite (a console script, unlike
    ``python -m``, does not put the current directory on the path by itself)."""
    script = Path(sys.executable).with_name("sqla-bench")
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env["SQLA_BENCH_CONTAINERS"] = "off"
    return subprocess.run(
        [str(script), *args], cwd=folder, capture_output=True, text=True, env=env, timeout=300
    )


def measure(folder: Path) -> subprocess.CompletedProcess:
    quick = ("--min-time", "0", "--min-rounds", "3", "--warmup", "1")
    return sqla_bench(folder, "run", "--scenarios", "scenarios.shop", *quick, "--output", "r.json")


def test_an_applications_twins_are_measured_and_verified_in_both_modes(tmp_path) -> None:
    result = measure(application(tmp_path, f"OFF_BY = 0\n{TWINS}"))
    assert result.returncode == 0, result.stderr
    cells = json.loads((tmp_path / "r.json").read_text())["cells"]
    assert sorted((cell["case"], cell["mode"]) for cell in cells) == [
        ("shop.count_users", "async"),
        ("shop.count_users", "sync"),
    ]
    assert all(cell["matches_expected"] and cell["statements"] == 1 for cell in cells)


def test_an_application_twin_that_returns_other_values_than_declared_differs(tmp_path) -> None:
    result = measure(application(tmp_path, f"OFF_BY = 1\n{TWINS}"))
    assert result.returncode == 1, result.stderr
    assert "2 differ from the catalogue" in result.stdout


def test_an_application_scenario_without_its_twin_is_one_line_before_any_work(tmp_path) -> None:
    alone = TWINS.split("@count_users.twin")[0]
    result = measure(application(tmp_path, f"OFF_BY = 0\n{alone}"))
    assert_one_line_error(result, "--scenarios scenarios.shop", "shop.count_users: no async twin")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    ("module", "needle"),
    [("no_such_module", "No module named 'no_such_module'"), ("json", "declares no scenario")],
)
def test_a_module_that_cannot_give_scenarios_is_one_line(tmp_path, module, needle) -> None:
    assert_one_line_error(sqla_bench(tmp_path, "run", "--scenarios", module), module, needle)


def test_twins_on_an_applications_own_tables_are_refused_before_any_work(tmp_path) -> None:
    # Run with sqla-bench's dataset, they would read and write the application's `users`
    # wherever the URL points: sqla-bench's own tables are never under those names.
    own_model = TWINS.replace(
        "from sqla_bench.scenarios.models import User\n",
        "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column\n\n\n"
        "class Base(DeclarativeBase):\n    pass\n\n\n"
        "class User(Base):\n    __tablename__ = 'users'\n"
        "    id: Mapped[int] = mapped_column(primary_key=True)\n",
    )
    result = measure(application(tmp_path, f"OFF_BY = 0\n{own_model}"))
    assert_one_line_error(result, "map tables sqla-bench does not create (users)", "--models")
    assert not (tmp_path / "r.json").exists()
