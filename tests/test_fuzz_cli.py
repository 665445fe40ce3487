"""Whole command lines, run as a user runs them: each a process of its own.

Hypothesis draws a subcommand, options from that subcommand's own parser (so a new
option is fuzzed the day it is added) and values from a grammar of what people and
scripts get wrong: huge, negative and non-finite numbers, empty and unicode text,
directories, /proc, /dev/zero, binary files, files of another kind. Every command line
must end within the timeout with exit status 0, 1, 2 or 3 and no traceback; exit 2 is
exactly one line on stderr.

A command line that parses could start real work, so each is bounded: ``run`` gets
``--dry-run``, ``selfcheck`` a check that needs a server URL (none is set),
``calibrate`` a result file to add instead of runs to make, and there is no server URL
and no Docker engine, so only SQLite works, and it is quick."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqla_bench.cli import build_parser
from tests.helpers import NO_DOCKER, VARIABLES

pytestmark = [pytest.mark.harness, pytest.mark.slow]

EXAMPLES = 25  # each runs COMMANDS_PER_EXAMPLE processes, two at a time
COMMANDS_PER_EXAMPLE = 2
TIMEOUT = 60  # seconds per command line; the slowest that parses (a baseline) takes ~5
ALLOWED = {0, 1, 2, 3}
REFERENCE = Path(__file__).parent.parent / "results" / "reference" / "sqlite-other.json"

NUMBERS = (
    "0", "-1", "1", "3", "-0", "0.5", "1e309", "nan", "-inf", "1,2", "1,,2", "0x10", "1_000",
    "99999999999999999999", "\u00b2", "\u0663",
)  # fmt: skip
TEXT = (
    "", " ", "\u00e9", "\u202e", "=", ",", "-x", "--", "a=b", "limit=abc", "limit=-5", "limit=0",
    "user_id=99999999999", "strategy=bogus", "pre_ping=maybe", "sqlite", "postgresql", "mysql",
    "crud", "load.users_with_posts", "joined", "selectin", "sync", "async", "all", "auto",
)  # fmt: skip
FIXED_PATHS = ("/", "/proc", "/proc/nope/x", "/proc/self/status", "/dev/zero", "/dev/null")


FOLDER = Path(tempfile.gettempdir()) / f"sqla-bench-fuzz-{os.getpid()}"
# name: what the file holds (None: not made; the path itself is the case)
FILES: dict[str, bytes | None] = {
    "binary.json": bytes(range(256)) * 4,
    "empty.json": b"",
    "verify.json": b'{"checks": []}',  # another kind of file: verify --json's
    "deep.json": b"[" * 50_000,
    "result.json": REFERENCE.read_bytes(),  # a valid result file
    "a-file": b"",
    "a-file/under-a-file.json": None,
    "new/out.json": None,
}
PATHS = (*FIXED_PATHS, str(FOLDER), *(str(FOLDER / name) for name in FILES))
# What a command line's argument can hold: no NUL (exec refuses it) and no lone surrogate
# (one that the file system encoding cannot write).
ARGUMENT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
VALUES = (*NUMBERS, *TEXT, *PATHS)


@pytest.fixture(scope="module", autouse=True)
def _files():
    FOLDER.mkdir(exist_ok=True)
    for name, content in FILES.items():
        if content is not None:
            (FOLDER / name).write_bytes(content)
    yield
    shutil.rmtree(FOLDER, ignore_errors=True)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


SUBCOMMANDS = _subcommands()
# What keeps a command line that parses from starting long work (see the module's doc).
# calibrate adds a run already measured instead of measuring five.
BOUNDED = {
    "run": ["--dry-run"],
    "selfcheck": ["--only", "driver"],
    "calibrate": ["--add", str(REFERENCE)],
}


def _option(action: argparse.Action) -> st.SearchStrategy[list[str]]:
    flag = st.sampled_from(action.option_strings)
    if action.nargs == 0:
        return flag.map(lambda name: [name])
    choices = tuple(map(str, action.choices or ()))
    value = st.one_of(st.sampled_from(VALUES), st.text(ARGUMENT, max_size=8), *(
        [st.sampled_from(choices)] if choices else []
    ))  # fmt: skip
    return st.tuples(flag, value).map(list)


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    name = draw(st.sampled_from(sorted(SUBCOMMANDS)))
    actions = [a for a in SUBCOMMANDS[name]._actions if a.option_strings and a.dest != "help"]
    chosen = draw(st.lists(st.sampled_from(actions), max_size=4)) if actions else []
    argv = [name, *(part for action in chosen for part in draw(_option(action)))]
    if any(not a.option_strings for a in SUBCOMMANDS[name]._actions):  # positionals
        argv += draw(st.lists(st.sampled_from(PATHS), min_size=0, max_size=3))
    return argv + BOUNDED.get(name, [])


def _run(argv: list[str]) -> tuple[list[str], int | None, str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES} | NO_DOCKER
    clean |= {"SQLA_BENCH_CONTAINERS": "off"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sqla_bench", *argv],
            capture_output=True,
            text=True,
            errors="replace",
            env=clean,
            timeout=TIMEOUT,
            cwd=FOLDER,  # results/local of a command line that runs goes there
        )
    except subprocess.TimeoutExpired as expired:
        return argv, None, str(expired.stdout or ""), str(expired.stderr or "")
    return argv, done.returncode, done.stdout, done.stderr


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(command_lines(), min_size=COMMANDS_PER_EXAMPLE, max_size=COMMANDS_PER_EXAMPLE))
def test_no_command_line_ends_in_a_traceback_or_runs_away(argvs: list[list[str]]) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        for argv, status, stdout, stderr in pool.map(_run, argvs):
            said = f"sqla-bench {' '.join(map(repr, argv))}: exit {status}\n{stderr[-2000:]}"
            assert status is not None, f"still running after {TIMEOUT} s: {said}"
            assert status in ALLOWED, said
            assert "Traceback" not in stdout + stderr, said
            if status == 2:
                lines = [line for line in stderr.splitlines() if line.strip()]
                assert len(lines) == 1 and lines[0].startswith("sqla-bench"), said
