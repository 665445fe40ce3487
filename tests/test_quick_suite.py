"""When a plain ``pytest`` spreads the quick suite over processes (tests/quick_suite.py)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from tests.helpers import NO_DOCKER, run
from tests.quick_suite import MAX_PROCESSES, processes_for, usable_cpus

CPUS = min(usable_cpus(), MAX_PROCESSES)
QUICK = dict(NO_DOCKER)  # no URL, no Docker engine, not CI


@pytest.fixture(autouse=True)
def no_docker_engine(monkeypatch) -> None:
    """Whether an engine answers is asked of this process's environment (CI starts one)."""
    for name, value in NO_DOCKER.items():
        monkeypatch.setenv(name, value)


def session(xdist: bool = True, tests_named: bool = False, **options: object) -> SimpleNamespace:
    """What ``processes_for`` reads of a pytest configuration: ``pytest`` as typed, with
    pytest-xdist installed, unless told otherwise."""
    given = {"numprocesses": None, "dist": "no", "usepdb": False, "capture": "fd"}
    source = pytest.Config.ArgsSource.ARGS if tests_named else pytest.Config.ArgsSource.TESTPATHS
    return SimpleNamespace(
        pluginmanager=SimpleNamespace(hasplugin=lambda name: xdist and name == "xdist"),
        option=SimpleNamespace(**(given | {"collectonly": False} | options)),
        args_source=source,
    )


@pytest.mark.skipif(CPUS < 2, reason="one CPU: the suite runs in one process")
def test_the_quick_suite_without_servers_runs_on_every_cpu_up_to_four() -> None:
    assert processes_for(session(), QUICK) == CPUS


@pytest.mark.parametrize(
    "environ",
    [
        {"CI": "true"},
        {"SQLA_BENCH_SLOW_TESTS": "1"},
        {"SQLA_BENCH_POSTGRESQL_URL": "postgresql://someone@127.0.0.1:1/db"},
        {"SQLA_BENCH_REQUIRE": "mysql"},
    ],
    ids=["CI", "slow-tests", "server-url", "required-server"],
)
def test_ci_the_slow_tests_or_a_server_keep_it_in_one_process(environ) -> None:
    assert processes_for(session(), QUICK | environ) == 0


@pytest.mark.parametrize(
    "asked",
    [
        {"numprocesses": 0},
        {"numprocesses": 3},
        {"dist": "loadfile"},
        {"usepdb": True},
        {"capture": "no"},
        {"collectonly": True},
        {"tests_named": True},
        {"xdist": False},
    ],
    ids=["-n0", "-n3", "--dist", "--pdb", "-s", "--collect-only", "named-tests", "no-xdist"],
)
def test_what_the_user_asked_for_is_left_alone(asked) -> None:
    assert processes_for(session(**asked), QUICK) == 0


def test_a_worker_of_pytest_xdist_starts_no_workers_of_its_own() -> None:
    worker = session()
    worker.workerinput = {"workerid": "gw0"}
    assert processes_for(worker, QUICK) == 0


@pytest.mark.skipif(
    CPUS < 2 or not hasattr(os, "sched_getaffinity"), reason="no CPU a run could keep"
)
def test_a_run_in_this_process_gives_the_cpus_back(tmp_path) -> None:
    """``--affinity auto`` pins the run's process to one CPU: run in the test process, it
    must not leave every later test (and the other worker's) on that one CPU."""
    before = os.sched_getaffinity(0)
    result = run(
        "sqla_bench", "run", "--scenario", "crud.get", "--mode", "sync", "--min-rounds", "1",
        "--min-time", "0", "--affinity", "auto", "--output", str(tmp_path / "run.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert os.sched_getaffinity(0) == before
