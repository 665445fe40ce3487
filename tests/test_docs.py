"""The documentation holds to the code: the README's quick start is what CI runs; every
option has a page that explains it; every option a page names by hand is one its
command's parser has; and every console example of the tutorial and the how-to guides
prints what the page shows (``tests/doc_examples.py`` says within what). The
site itself is built with warnings as errors in CI (``.ci/run``)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sqla_bench.cli import COMMANDS, build_parser
from sqla_bench.servers.targets import URL_VARIABLES, Unavailable
from tests.doc_examples import mismatch, read_page, run_commands
from tests.helpers import NO_DOCKER, VARIABLES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
from documented_options import unknown_options  # noqa: E402  (docs/_ext is no package)

TUTORIAL_AND_HOW_TOS = [DOCS / "tutorial.md", *sorted((DOCS / "howto").glob("*.md"))]
PAGES_WITH_EXAMPLES = [page for page in TUTORIAL_AND_HOW_TOS if "```console" in page.read_text()]
HAND_WRITTEN = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
WIDTH = "200"  # the console width the pages' examples were printed at


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
    [
        "run",
        "selfcheck",
        "verify",
        "report",
        "compare",
        "calibrate",
        "baseline",
        "containers",
        "load-worker",
    ],
)
def test_every_option_is_explained_in_the_pages(command) -> None:
    """The reference lists every option by itself; a page that explains one in prose is
    what a user reads, so every option has one."""
    readme = "\n".join(path.read_text() for path in HAND_WRITTEN)
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
    unexplained = [o for o in options if f"`{o}" not in readme and f" {o}" not in readme]
    assert options and unexplained == []


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def broken_links(text: str, folder: Path) -> list[str]:
    """The links of a Markdown text to files beside it (not the web) that lead nowhere.
    The docs' own links are the docs build's to check; the README is no page of it."""
    targets = [t for t in LINK.findall(text) if "://" not in t and not t.startswith("mailto:")]
    return [target for target in targets if not (folder / target).exists()]


def test_every_link_of_the_readme_leads_to_a_file() -> None:
    assert broken_links((ROOT / "README.md").read_text(), ROOT) == []
    planted = "[the guide](docs/howto/no-such-page.md) and ![shot](docs/_static/none.png)"
    assert broken_links(planted, ROOT) == ["docs/howto/no-such-page.md", "docs/_static/none.png"]


@pytest.mark.parametrize("path", HAND_WRITTEN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_option_a_page_names_is_its_commands(path: Path) -> None:
    unknown = [f"line {n}: {option} ({command or 'any command'})"
               for n, option, command in unknown_options(path.read_text())]  # fmt: skip
    assert not unknown, unknown


def test_an_option_the_parser_lacks_is_found_wherever_it_is_named() -> None:
    page = "\n".join([
        "sqla-bench run --min-time 0.1 --no-such-run-option",
        "`run --gate-timing`",  # compare's, not run's
        "`--no-such-option` and `--min-time`",
        "sqla-bench compare A B \\",
        "  --gate-timing --no-such-compare-option",
        "sqla-bench load-worker --master 10.0.0.5:5557 --no-such-worker-option",
    ])  # fmt: skip
    found = [(option, command) for _, option, command in unknown_options(page)]
    assert found == [
        ("--no-such-run-option", "run"),
        ("--gate-timing", "run"),
        ("--no-such-option", None),
        ("--no-such-compare-option", "compare"),
        ("--no-such-worker-option", "load-worker"),  # a command with a hyphen in its name
    ]


TABLE = """\
┃ variant   ┃ mode ┃ stmts ┃  median ┃ outcome             ┃
│ lazy      │ sync │    21 │ 3.71 ms │ ok                  │
│ raise     │ sync │     1 │       - │ InvalidRequestError │
12 cells measured in 4.2 s. Results: results/local/run-20261205-050606-sqlite.json"""


def test_shown_output_matches_within_the_declared_tolerances() -> None:
    assert mismatch(["│ lazy │ sync │ 21 │ 9.99 ms │ ok │"], TABLE) is None  # a timing may vary
    assert mismatch(["│ lazy      │ sync │    22 │ 3.71 ms │ ok                  │"], TABLE)
    assert mismatch(["│ raise │ sync │ 1 │ - │ ok │"], TABLE)  # an outcome may not
    results = "12 cells measured in 9 s. Results: results/local/run-20270101-000000-sqlite.json"
    assert mismatch([results], TABLE) is None
    assert mismatch([results.replace("12", "13")], TABLE)
    # In order: a shown line found only before the one shown above it is a mismatch.
    raised, lazy = "│ raise │ sync │ 1 │ - │ InvalidRequestError │", "│ lazy │ sync │ 21 │ 1 │ ok │"
    assert mismatch([raised, lazy], TABLE)


@pytest.mark.slow
@pytest.mark.harness  # the CLI and the pages, not SQLAlchemy: CI's last stage only
@pytest.mark.parametrize("path", PAGES_WITH_EXAMPLES, ids=lambda p: p.name)
def test_a_pages_examples_print_what_it_shows(path: Path, servers, tmp_path: Path) -> None:
    page = read_page(path, ROOT)
    assert page.examples, "a console block with no $ command"
    shutil.copytree(DOCS / "examples", tmp_path, dirs_exist_ok=True)
    for example in page.examples:
        env = _environment(example.needs, servers)
        if env is None:
            continue  # a server this run does not have: CI's stages have it
        done = subprocess.run(["bash", "-c", example.command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        where = f"{example.page}:{example.line}: $ {example.command}"
        assert done.returncode == 0, f"{where}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        if not example.output_varies:
            printed = done.stdout + done.stderr
            wrong = mismatch(example.shown, printed)
            assert wrong is None, f"{where}\nnot printed: {wrong}\nprinted:\n{printed[-4000:]}"


def _environment(needs: str | None, servers) -> dict[str, str] | None:
    """A user's environment: sqla-bench on PATH, no server but the one an example needs."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES} | NO_DOCKER
    env |= {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "COLUMNS": WIDTH, "SQLA_BENCH_CONTAINERS": "off"}  # fmt: skip
    if needs is None:
        return env
    if isinstance(servers.targets.get(needs), Unavailable):
        return None
    target = servers.target(needs)
    return env | {URL_VARIABLES[needs]: target.url.render_as_string(hide_password=False)}


DRY_RUNS = [(path, command) for path in TUTORIAL_AND_HOW_TOS for command in run_commands(path)]


@pytest.mark.slow
@pytest.mark.harness  # the CLI and the pages, not SQLAlchemy: CI's last stage only
@pytest.mark.parametrize(("path", "command"), DRY_RUNS,
                         ids=[f"{p.name}:{c[:60]}" for p, c in DRY_RUNS])  # fmt: skip
def test_a_run_command_a_page_shows_passes_a_dry_run(path, command, servers, tmp_path) -> None:
    """Options, values, modules and the plan they make: all but the measuring."""
    # The school the pages name is the tests' own; the pages' own files come last.
    shutil.copytree(ROOT / "tests" / "applications", tmp_path, dirs_exist_ok=True)
    shutil.copytree(DOCS / "examples", tmp_path, dirs_exist_ok=True)
    needs = next((t for t in URL_VARIABLES if f"--target {t}" in command), None)
    env = _environment(None if URL_VARIABLES.get(needs, "") in command else needs, servers)
    if env is None:
        pytest.skip(f"{needs} is not configured here")
    done = subprocess.run(["bash", "-c", f"{command} --dry-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, f"{path.name}: {command}\n{done.stdout[-2000:]}{done.stderr}"
    assert "cells per setting" in done.stdout + done.stderr  # the plan was printed
