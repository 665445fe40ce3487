"""The CI recipe (``ci/``): ``ci/gate.sh`` runs as the GitHub Actions and GitLab jobs call
it, against PostgreSQL, with BASE and NEW both this checkout (an A/A pair): it measures
the runs interleaved, writes the annotations and the job summary, and passes; and the
GitHub Actions job's steps and the GitLab job's script, run in order as written, fail a
change that adds a statement, naming the cell (GitHub: an annotation, and the change in
the job summary)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sqla_bench.servers.targets import URL_VARIABLES
from tests.helpers import NO_DOCKER, VARIABLES

pytestmark = pytest.mark.harness

ROOT = Path(__file__).resolve().parent.parent
GATE = ROOT / "ci" / "gate.sh"


def gate(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES} | env
    return subprocess.run(
        ["bash", str(GATE), *args], capture_output=True, text=True, env=clean, timeout=600
    )


def test_both_jobs_call_the_gate_script() -> None:
    for recipe in ("github-actions.yml", "gitlab-ci.yml"):
        text = (ROOT / "ci" / recipe).read_text()
        assert "bash ci/gate.sh ../base-env/bin/python ../new-env/bin/python" in text, recipe


def test_the_gate_runs_as_written_against_postgresql(servers, tmp_path) -> None:
    target = servers.target("postgresql")
    password = str(target.url.password or "")
    summary = tmp_path / "summary.md"
    out = tmp_path / "gate-results"
    # An A/A history as CI would carry it: three earlier runs of crud.get alone.
    history = tmp_path / "aa.json"
    cell = "crud.get user_id=1 postgresql+psycopg2 sync users=1200 posts=2"
    history.write_text(json.dumps({"version": 1, "cells": {cell: {"median_ns": [4e5, 5e5, 6e5]}}}))
    result = gate(
        sys.executable, sys.executable, str(out),
        **{URL_VARIABLES["postgresql"]: target.url.render_as_string(hide_password=False)},
        GATE_RUN_OPTIONS="--target postgresql --driver psycopg2 --scenario crud.get "
        "--min-time 0.05 --min-rounds 5",
        GATE_RUNS="3", GATE_INSTRUCTIONS="0", GATE_TIMING="0", GATE_HISTORY=str(history),
        GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "== pair 3 of 3" in result.stdout
    assert sorted(p.name for p in (out / "base").iterdir()) == [f"run-{i}.json" for i in (1, 2, 3)]
    assert "::" in result.stdout and "timing gate" in result.stdout, result.stdout
    assert "no regression" in result.stdout
    assert "A/A history's spread pooled in 1 of 2 cells" in result.stdout, result.stdout
    assert "sqla-bench compare" in summary.read_text()
    written = [result.stdout, result.stderr, summary.read_text()]
    written += [path.read_text() for path in out.rglob("*.json")]
    assert password and not any(password in text for text in written)


def test_fewer_than_three_runs_compare_counts_only(tmp_path) -> None:
    out = tmp_path / "gate-results"
    result = gate(sys.executable, sys.executable, str(out), GATE_RUNS="1", GATE_INSTRUCTIONS="0",
                  GATE_RUN_OPTIONS="--target sqlite --scenario crud.get --min-time 0 "
                  "--min-rounds 1", **NO_DOCKER)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GATE_RUNS is 1: counts only" in result.stdout
    assert "timing gate" not in result.stdout and "no regression" in result.stdout


def test_a_wrong_call_is_one_line() -> None:
    result = gate("only-one")
    assert result.returncode == 2
    assert result.stderr.strip() == "usage: bash ci/gate.sh BASE_PYTHON NEW_PYTHON OUT_DIR"


# The GitHub Actions job, step by step as written, on a pull request that adds a statement.
# What a runner provides is provided here: the two checkouts (this one as the base branch,
# a copy with the plant as the pull request), Python, the service's URL, the job summary's
# file. The job's settings are narrowed to one scenario on one driver (they are the user's
# to set); a step that installs system packages with sudo is checked instead (this
# machine has them; CI's runs as root without sudo).
GET = '    """Get a user by primary key with session.get."""\n'
GET += "    user = session.get(User, user_id)\n"
PLANT = (GET, GET + "    session.refresh(user)  # planted\n")
NARROWED = {
    "GATE_RUN_OPTIONS": "--target postgresql --driver psycopg2 --scenario crud.get "
    "--min-time 0.05 --min-rounds 5",
    "GATE_RUNS": "3",  # the fewest the timing gate takes
    "GATE_INSTRUCTIONS": "0",
}


@pytest.mark.slow
def test_the_github_job_runs_as_written_and_fails_a_planted_statement(servers, tmp_path):
    job = yaml.safe_load((ROOT / "ci" / "github-actions.yml").read_text())["jobs"]["gate"]
    url = servers.target("postgresql").url.render_as_string(hide_password=False)
    summary = tmp_path / "summary.md"
    env = _runner_environment(job["env"], url, summary, tmp_path)
    gate_status = None
    for step in job["steps"]:
        if "uses" in step:
            _provide(step, tmp_path)
            continue
        if step["run"].startswith("sudo apt-get"):
            assert _installed(step["run"]), step
            continue
        done = subprocess.run(["bash", "-e", "-c", step["run"]],
                              cwd=tmp_path / step.get("working-directory", "."), env=env,
                              capture_output=True, text=True, timeout=900)  # fmt: skip
        if step.get("name") == "the gate":
            gate_status, gate_output = done.returncode, done.stdout + done.stderr
        else:
            assert done.returncode == 0, f"{step.get('name')}: {done.stdout}{done.stderr}"
    assert gate_status == 1, gate_output  # a counted change fails the job
    cell = "crud.get user_id=1 postgresql+psycopg2 sync"
    changed = [line for line in gate_output.splitlines() if line.startswith("::error") and
               "changed::" in line]  # fmt: skip
    assert len(changed) == 1 and cell in changed[0], gate_output  # the sync cell alone
    assert "statements 1 -> 2" in changed[0] and "SQL added: 1 x SELECT" in changed[0]
    # GATE_TIMING is 0: whatever the timing gate says is a warning, never an error.
    errors = [line for line in gate_output.splitlines() if line.startswith("::error")]
    assert errors == changed, gate_output
    table = summary.read_text()
    assert "statements 1 -> 2" in table and "sqla-bench compare" in table, table
    assert sorted(p.name for p in (tmp_path / "gate-results" / "new").iterdir()) == [
        "run-1.json", "run-2.json", "run-3.json"]  # fmt: skip
    password = str(servers.target("postgresql").url.password or "")
    assert not password or password not in gate_output + table


def _runner_environment(job_env: dict, url: str, summary: Path, home: Path) -> dict[str, str]:
    """The GitHub job's environment on a runner: GitHub's variables beside the job's."""
    env = _job_environment(job_env, url, home)
    return env | {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}


def _job_environment(variables: dict, url: str, home: Path) -> dict[str, str]:
    """A job's environment: its variables (narrowed), the service's URL in place of the
    service's own, and ``python`` the interpreter the job's image or setup step gives.
    A runner without a network (a test stays on this machine): pip reads no index and
    builds without isolation, and each virtual environment the job makes sees this
    test's own packages (as a runner's cache would hold them), so ``pip install`` adds
    only sqla-bench itself."""
    shims = home / "runner-bin"
    shims.mkdir()
    python = shims / "python"
    python.write_text(
        OFFLINE_PYTHON.format(python=shlex.quote(sys.executable), packages=_our_packages())
    )
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env |= {k: str(v) for k, v in variables.items()} | NARROWED
    env[URL_VARIABLES["postgresql"]] = url
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    # pip reads PIP_NO_BUILD_ISOLATION backwards: 0 turns the isolation off.
    return env | {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}


# ``python``, as the runner's: ``python -m venv DIR`` makes an environment that uses this
# test's packages, pip and setuptools included (none of its own to shadow them).
OFFLINE_PYTHON = """#!/usr/bin/env bash
if [[ "$1" == -m && "$2" == venv ]]; then
  venv="${{@: -1}}"
  {python} -m venv --without-pip "$venv" || exit
  for folder in "$venv"/lib/python*/site-packages; do
    printf '%s\\n' {packages} > "$folder/_runner_packages.pth"
  done
  printf '#!/bin/sh\\nexec "%s/bin/python" -m pip "$@"\\n' "$(cd "$venv" && pwd)" > "$venv/bin/pip"
  chmod +x "$venv/bin/pip"
  exit
fi
exec {python} "$@"
"""


def _our_packages() -> str:
    """This interpreter's site-packages folders, quoted for the shell."""
    return " ".join(shlex.quote(folder) for folder in site.getsitepackages())


def _installed(apt_line: str) -> bool:
    """Whether the packages an ``apt-get install`` line asks for are on this machine."""
    return all(shutil.which(package) for package in apt_line.split("-qq ")[-1].split())


def _provide(step: dict, workspace: Path) -> None:
    """What a ``uses:`` step gives the job: the checkouts; Python is already there, and
    the artifact is the folder the test reads."""
    action = step["uses"].split("@")[0]
    if action == "actions/checkout":
        where = workspace / step["with"]["path"]
        _check_out(where)
        if "ref" not in step["with"]:  # the pull request's own checkout
            crud = where / "scenarios" / "crud.py"
            text = crud.read_text()
            assert text.count(PLANT[0]) == 1  # the sync twin of crud.get
            crud.write_text(text.replace(*PLANT))
    else:
        assert action in ("actions/setup-python", "actions/upload-artifact"), action


def _check_out(where: Path) -> None:
    """This checkout's files as a clone holds them (what git tracks, and new files it
    does not ignore): no build folder, virtual environment or local result."""
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(listing, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, where / name)


# The GitLab job, script line by line as written, in a clone of a merge request's branch
# whose target branch is this checkout; the service's URL is the test's server.
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}  # fmt: skip


@pytest.mark.slow
def test_the_gitlab_job_runs_as_written_and_fails_a_planted_statement(servers, tmp_path):
    job = yaml.safe_load((ROOT / "ci" / "gitlab-ci.yml").read_text())["sqla-bench-gate"]
    url = servers.target("postgresql").url.render_as_string(hide_password=False)
    project = _merge_request(tmp_path)
    env = _job_environment(job["variables"], url, tmp_path)
    env["CI_MERGE_REQUEST_TARGET_BRANCH_NAME"] = "main"
    gate_status = None
    for line in job["script"]:
        if line.startswith("apt-get"):
            assert _installed(line), line
            continue
        done = subprocess.run(["bash", "-e", "-c", line], cwd=project, env=env,
                              capture_output=True, text=True, timeout=900)  # fmt: skip
        if "ci/gate.sh" in line:
            gate_status, gate_output = done.returncode, done.stdout + done.stderr
        else:
            assert done.returncode == 0, f"{line}: {done.stdout}{done.stderr}"
    assert gate_status == 1, gate_output  # a counted change fails the job
    assert "REGRESSION" in gate_output and "statements 1 -> 2" in gate_output, gate_output
    artifacts = project / job["artifacts"]["paths"][0]
    assert sorted(p.name for p in (artifacts / "base").iterdir()) == [
        "run-1.json", "run-2.json", "run-3.json"]  # fmt: skip


def _merge_request(folder: Path) -> Path:
    """A repository whose ``main`` is this checkout and whose ``feature`` branch adds
    the planted statement, and the job's clone of ``feature`` (its ``origin`` is it)."""
    origin = folder / "origin"
    _check_out(origin)
    env = {**os.environ, **GIT_IDENTITY}
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"],
                    ["checkout", "-q", "-b", "feature"]):  # fmt: skip
        subprocess.run(["git", *command], cwd=origin, env=env, check=True)
    crud = origin / "scenarios" / "crud.py"
    crud.write_text(crud.read_text().replace(*PLANT))
    subprocess.run(["git", "commit", "-q", "-am", "plant"], cwd=origin, env=env, check=True)
    subprocess.run(["git", "clone", "-q", "--branch", "feature", str(origin), "project"],
                   cwd=folder, env=env, check=True)  # fmt: skip
    return folder / "project"
