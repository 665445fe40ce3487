"""The README's quick start is what CI runs and what the CLI offers."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from sqla_bench.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_quick_start_is_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2 and all("\n" not in command for command in commands)


def test_ci_runs_the_readme_test_command_last() -> None:
    ci_lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci_lines[-1] == quick_start_commands()[1]


def test_the_main_job_is_a_real_subcommand() -> None:
    main_job = quick_start_commands()[0]
    subcommand = main_job.split("sqla-bench", 1)[1].split()[0]
    assert subcommand in COMMANDS


def test_ci_runs_the_readme_main_command() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert quick_start_commands()[0] in ci_lines


@pytest.mark.parametrize(
    "command",
    ["run", "selfcheck", "verify", "report", "compare", "calibrate", "baseline", "containers"],
)
def test_every_option_is_documented_in_the_readme(command) -> None:
    readme = (ROOT / "README.md").read_text()
    subcommands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    options = [
        option
        for action in subcommands.choices[command]._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]
    assert options and [option for option in options if f"`{option}" not in readme] == []
