"""The CI recipe (``ci/``): ``ci/gate.sh`` runs as the GitHub Actions and GitLab jobs call
it, against PostgreSQL, with BASE and NEW both this checkout (an A/A pair): it measures
the runs interleaved, writes the annotations and the job summary, and passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sqla_bench.servers.targets import URL_VARIABLES
from tests.helpers import VARIABLES

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


def test_a_wrong_call_is_one_line() -> None:
    result = gate("only-one")
    assert result.returncode == 2
    assert result.stderr.strip() == "usage: bash ci/gate.sh BASE_PYTHON NEW_PYTHON OUT_DIR"
