"""Loads in several worker processes (``--processes``), the connection budget they state,
and cells marked as limited by a CPU rather than by the pool."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from sqla_bench.measuring.processes import shares
from sqla_bench.results.files import read_result
from sqla_bench.results.load_figures import CpuBusy, cpu_bound
from sqla_bench.servers.targets import URL_VARIABLES
from tests.helpers import assert_one_line_error, run

pytestmark = pytest.mark.harness


def test_workers_are_shared_out_as_evenly_as_they_go():
    assert shares(10, 4) == [3, 3, 2, 2]
    assert shares(4, 4) == [1, 1, 1, 1]
    assert shares(64, 1) == [64]


@pytest.mark.parametrize(
    ("cpu_seconds", "workers", "limited"),
    [
        ({"client": 0.95, "proxy": 0.1, "server": 0.2}, None, ["client CPU"]),
        ({"client": 0.85, "proxy": 0.1, "server": 0.2}, None, []),
        ({"client": 0.5, "app": 0.93, "server": 0.2}, None, ["app CPU"]),
        ({"client": 0.4, "proxy": 0.92, "server": 0.1}, None, ["proxy CPU"]),
        # Two processes at half a CPU each: the client's sum is not one process's.
        ({"client": 1.0, "proxy": None, "server": 0.2}, [0.5, 0.5], []),
        ({"client": 1.15, "proxy": None, "server": 0.2}, [0.95, 0.2], ["worker CPU"]),
        # Nobody alone, but the machine's two CPUs are all but used up.
        ({"client": 0.8, "proxy": 0.75, "server": 0.3}, None, ["machine CPUs"]),
    ],
)
def test_a_load_is_limited_by_the_cpu_that_was_busy(cpu_seconds, workers, limited):
    assert cpu_bound(cpu_seconds, 1.0, workers, cpus=2) == limited
    # The same CPU seconds over twice the time are no limit.
    assert cpu_bound(cpu_seconds, 2.0, workers, cpus=2) == []


@pytest.mark.parametrize(
    ("per_cpu", "limited"),
    [
        ((0.10, 0.86), ["client's CPUs"]),  # the client's CPU (1) was full, the other not
        ((0.86, 0.10), ["other CPUs"]),  # the proxy's and the server's was
        ((0.88, 0.90), ["client's CPUs", "other CPUs", "machine CPUs"]),
        ((0.60, 0.80), []),
    ],
)
def test_a_full_cpu_limits_the_client_that_runs_on_it(per_cpu, limited):
    quiet = {"client": 0.3, "proxy": 0.2, "server": 0.4}  # no process near a CPU alone
    assert cpu_bound(quiet, 1.0, busy=CpuBusy(per_cpu, (1,))) == limited


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--processes", "2"), "--processes splits a load's workers: add --concurrency"),
        (("--processes", "5", "--concurrency", "4,8"), "each process needs a worker"),
        (("--processes", "0", "--concurrency", "4"), "from 1 to 64"),
        (("--processes", "2", "--concurrency", "2", "--scenario", "web"), "leave web.* out"),
        (
            (
                "--processes",
                "2",
                "--concurrency",
                "4",
                "--models",
                "tests.applications.shop_models",
            ),
            "not --models",
        ),
    ],
)
def test_bad_process_options_are_one_line(options, words):
    assert_one_line_error(run("sqla_bench", "run", "--target", "sqlite", *options), words)


def _load_run(tmp_path, *options: str, **env: str):
    out = tmp_path / "load.json"
    result = run(
        "sqla_bench", "run", "--scenario", "load.users_with_posts", "--param", "limit=1",
        "--strategy", "selectin", "--load-seconds", "1", "--output", str(out), *options, **env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return read_result(out)


@pytest.mark.slow
def test_a_load_in_worker_processes_adds_up_what_each_did(tmp_path):
    header, cells = _load_run(
        tmp_path, "--target", "sqlite", "--mode", "sync", "--concurrency", "5",
        "--processes", "1,2",
    )  # fmt: skip
    assert header["run"]["parameters"]["processes"] == [1, 2]
    by_processes = {cell.processes: cell for cell in cells}
    assert set(by_processes) == {1, 2}
    for count, cell in by_processes.items():
        load = cell.load
        assert [part["workers"] for part in load["processes"]] == shares(5, count)
        assert len(load["per_worker"]) == 5
        assert sum(part["completed"] for part in load["processes"]) == load["completed"] > 0
        # The client is the measuring process and its workers together.
        assert load["cpu_seconds"]["client"] >= sum(p["cpu_seconds"] for p in load["processes"])
        assert load["connection_budget"] == 15 * count  # 5 + 10 per process
    assert not [
        p for p in psutil.Process().children(recursive=True) if "spawn" in " ".join(p.cmdline())
    ]


@pytest.mark.slow
def test_worker_processes_hold_the_server_connections_their_pools_allow(servers, tmp_path):
    target = servers.target("postgresql")
    env = {URL_VARIABLES["postgresql"]: target.url.render_as_string(hide_password=False)}
    _, cells = _load_run(
        tmp_path, "--target", "postgresql", "--driver", "psycopg2", "--concurrency", "8",
        "--processes", "1,2", "--pool-size", "2", "--max-overflow", "0", **env,
    )  # fmt: skip
    peaks = {cell.processes: cell.load["peak_connections"] for cell in cells}
    budgets = {cell.processes: cell.load["connection_budget"] for cell in cells}
    assert budgets == {1: 2, 2: 4}
    assert peaks[1] <= 2 < peaks[2] <= 4  # each process has a pool of its own
    assert all(cell.load["server_max_connections"] >= 4 for cell in cells)
    assert all(cell.matches_expected for cell in cells)


@pytest.mark.slow
def test_a_killed_runs_worker_processes_end_with_it(tmp_path):
    """SIGKILL leaves a run no chance to stop its workers: the kernel ends them with it,
    rather than letting them load the database until the load's end (20 s here)."""
    out = tmp_path / "killed.json"
    run_command = [
        sys.executable, "-m", "sqla_bench", "run", "--target", "sqlite", "--mode", "sync",
        "--scenario", "crud.get", "--concurrency", "4", "--processes", "2",
        "--load-seconds", "20", "--min-time", "0", "--output", str(out),
    ]  # fmt: skip
    running = subprocess.Popen(run_command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while not _loading(workers) and time.monotonic() < deadline:
            assert running.poll() is None, running.stderr.read() if running.stderr else ""
            workers = [
                child for child in psutil.Process(running.pid).children()
                if "spawn_main" in " ".join(child.cmdline())
            ]  # fmt: skip
            time.sleep(0.2)
        assert _loading(workers), "the workers did not start their load"
    finally:
        running.kill()
        running.wait(timeout=60)
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive, [p.pid for p in alive]


def _loading(workers: list[psutil.Process]) -> bool:
    """Two workers, each busy with its load (a second of CPU: waiting for the run's
    word, a worker would end with its pipe anyway)."""
    try:
        return len(workers) == 2 and all(sum(w.cpu_times()[:2]) > 1.0 for w in workers)
    except psutil.Error:
        return False
