"""The harness's layers as bench/README.md draws them, held: import-linter's contracts in
pyproject.toml (each layer imports only those below it, reporting and results never
import what measures, the scenarios nothing of the harness, no import cycle), and the
size limits that keep a module readable in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("bench", "scenarios")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# Declarative argument tables: one add_argument call after another, each an option's
# whole declaration; cut into pieces they would say less.
ARGUMENT_TABLES = {
    ("bench/commands/run.py", "add_workload_arguments"),
    ("bench/commands/run.py", "_add_load_options"),
    ("bench/commands/compare.py", "add_arguments"),
}

pytestmark = pytest.mark.harness


def _modules() -> list[Path]:
    return sorted(path for folder in SOURCES for path in (ROOT / folder).rglob("*.py"))


def test_import_linter_contracts_hold(capsys) -> None:
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert status == 0, capsys.readouterr().out


def test_no_module_is_longer_than_the_limit() -> None:
    long = {}
    for path in _modules():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            long[str(path.relative_to(ROOT))] = lines
    assert not long, f"split these modules (at most {MAX_MODULE_LINES} lines): {long}"


def test_no_function_is_longer_than_the_limit_but_argument_tables() -> None:
    long = {}
    for path in _modules():
        name = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and (name, node.name) not in ARGUMENT_TABLES:
                    long[f"{name}:{node.name}"] = lines
    assert not long, f"split these functions (at most {MAX_FUNCTION_LINES} lines): {long}"
