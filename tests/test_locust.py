"""HTTP load from Locust (``--load-generator locust``): a master and two local workers
on 127.0.0.1, read back into the same cell as the built-in client's, which ``report``
and ``compare`` read; nothing of Locust left running afterwards, even after SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from sqla_bench.measuring.locust_load import FOLDER_PREFIX, WORKER_FOLDER_PREFIX
from sqla_bench.results.files import read_result
from tests.helpers import assert_one_line_error, closed_port, run

pytestmark = pytest.mark.harness


def _locusts() -> list[str]:
    return [
        " ".join(process.info["cmdline"] or ())
        for process in psutil.process_iter(["cmdline"])
        if "locustfile.py" in " ".join(process.info["cmdline"] or ())
    ]


def _web_load(tmp_path, name: str, *options: str):
    out = tmp_path / f"{name}.json"
    result = run(
        "sqla_bench", "run", "--target", "sqlite", "--mode", "async",
        "--scenario", "web.get_user", "--concurrency", "4", "--load-seconds", "1.5",
        "--output", str(out), *options,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return out


@pytest.mark.slow
def test_a_web_load_from_locust_lands_in_the_same_cell(tmp_path):
    locust = _web_load(tmp_path, "locust", "--load-generator", "locust", "--load-workers", "2")
    header, cells = read_result(locust)
    assert header["run"]["parameters"]["load_generator"] == "locust"
    (cell,) = cells
    load = cell.load
    assert load["generator"] == "locust" and load["load_workers"] == 2
    assert all(load["per_worker"]), load["per_worker"]  # every user was answered
    assert load["completed"] > 0 and len(cell.samples_ns) >= load["completed"]
    assert load["errors"] == {} and cell.matches_expected
    assert load["cpu_seconds"]["client"] > 0  # the Locust processes' own
    # Each worker process, where it ran and what it did: both sent, every request answered.
    processes = load["worker_processes"]
    assert len(processes) == 2 and len({p["pid"] for p in processes}) == 2, processes
    assert sum(p["users"] for p in processes) == 4 and load["failure"] is None
    assert all(p["ok"] == p["requests"] > 0 and p["unanswered"] == 0 for p in processes)
    assert not _locusts()
    report = run("sqla_bench", "report", str(locust))
    assert report.returncode == 0 and "web.get_user under load" in report.stdout
    assert "Locust worker processes" in report.stdout, report.stdout
    aiohttp = _web_load(tmp_path, "aiohttp")
    compared = run("sqla_bench", "compare", str(aiohttp), str(locust))
    assert compared.returncode in (0, 1), compared.stderr  # timings may differ; it reads both
    assert "in both runs" in compared.stdout and "only in" not in compared.stdout.replace(
        "only in base 0, only in new 0", ""
    )


@pytest.mark.slow
def test_a_load_that_never_reached_the_app_fails_its_cell_naming_the_exception(tmp_path):
    # The workers are told an address where nothing listens: every request is refused.
    out = tmp_path / "r.json"
    result = run(
        "sqla_bench", "run", "--target", "sqlite", "--mode", "async", "--scenario",
        "web.get_user", "--concurrency", "2", "--load-seconds", "1", "--output", str(out),
        "--load-generator", "locust", "--load-workers", "1", "--advertise-host", "127.0.0.2",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    (cell,) = read_result(out)[1]
    assert not cell.matches_expected and cell.load["failure"].startswith("Locust worker ")
    assert "ConnectionRefusedError" in cell.load["failure"]  # the cause, not CatchResponseError
    (process,) = cell.load["worker_processes"]
    assert process["ok"] == 0 and process["unanswered"] == process["requests"] > 0
    assert "load failed: Locust worker" in result.stdout
    assert "CatchResponseError" not in result.stdout
    assert not _locusts()


WEB_LOCUST = ("--load-generator", "locust", "--scenario", "web", "--concurrency", "2")
REMOTE = (*WEB_LOCUST, "--load-remote-workers", "1")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--load-generator", "locust", "--scenario", "crud"), "sends the web scenarios"),
        ((*WEB_LOCUST, "--locust-master", "nowhere"), "--locust-master: expected HOST:PORT"),
        ((*WEB_LOCUST, "--load-workers", "0"), "--load-workers 0 needs --load-remote-workers"),
        ((*REMOTE, "--locust-master", "0.0.0.0:0"), "must be told the master's port"),
        ((*REMOTE, "--locust-master", "127.0.0.1:5557"), "--locust-master 127.0.0.1: other"),
        ((*REMOTE, "--locust-master", "0.0.0.0:5557"), "--serve-host 127.0.0.1: other"),
        ((*REMOTE, "--locust-master", "0.0.0.0:5557", "--serve-host", "0.0.0.0"),
         "give --advertise-host"),
        ((*WEB_LOCUST, "--serve-port", "70000"), "--serve-port"),
        (("--scenario", "web", "--concurrency", "2", "--serve-host", "10.0.0.5"),
         "add --load-generator locust"),
    ],
)  # fmt: skip
def test_bad_load_generator_options_are_one_line(options, words):
    assert_one_line_error(run("sqla_bench", "run", "--target", "sqlite", *options), words)


@pytest.mark.parametrize("master", ["nowhere", "host:0", "host:99999", ":5557"])
def test_a_load_worker_told_a_bad_master_is_one_line(master):
    assert_one_line_error(run("sqla_bench", "load-worker", "--master", master), "--master")


def _locust_processes(run_pid: int) -> list[psutil.Process]:
    """The run's Locust master and workers (children of the run, or of its fork server)."""
    try:
        family = psutil.Process(run_pid).children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in family if "locustfile.py" in " ".join(_cmdline(p))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _locust_folders() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"))


@pytest.mark.slow
def test_a_killed_runs_locust_ends_with_it_and_its_folder_goes_at_the_next_prune(tmp_path):
    """SIGKILL leaves a run no chance to stop Locust: the kernel ends its master and
    workers with it, and the folder it left (named for the run) goes at the next
    ``containers --prune``, while a live run's folder would stay."""
    before = set(_locust_folders())
    command = [
        sys.executable, "-m", "sqla_bench", "run", "--target", "sqlite", "--mode", "async",
        "--scenario", "web.get_user", "--concurrency", "4", "--load-seconds", "30",
        "--load-generator", "locust", "--load-workers", "2", "--output", str(tmp_path / "k.json"),
    ]  # fmt: skip
    running = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        locusts: list[psutil.Process] = []
        while len(locusts) < 3 and time.monotonic() < deadline:  # a master, two workers
            assert running.poll() is None, running.stderr.read() if running.stderr else ""
            locusts = _locust_processes(running.pid)
            time.sleep(0.2)
        assert len(locusts) == 3, "Locust did not start"
        left = set(_locust_folders()) - before
        assert len(left) == 1  # the load's, named for the run
    finally:
        running.kill()
        running.wait(timeout=60)
    _, alive = psutil.wait_procs(locusts, timeout=5)
    assert not alive, [p.pid for p in alive]
    assert all(folder.exists() for folder in left)  # SIGKILL: nothing could remove it
    pruned = run("sqla_bench", "containers", "--prune")  # no Docker: its folders all the same
    assert "removed 1 Locust folder(s) of ended runs" in pruned.stdout, pruned.stdout
    assert not any(folder.exists() for folder in left)


def _worker_folders(pid: int) -> list[Path]:
    return [
        folder
        for folder in Path(tempfile.gettempdir()).glob(f"{WORKER_FOLDER_PREFIX}*")
        if f":{pid}:" in (folder / "owner").read_text()
    ]


@pytest.mark.slow
def test_a_killed_load_worker_s_folder_goes_when_the_next_starts(tmp_path):
    command = [sys.executable, "-m", "sqla_bench", "load-worker", "--master",
               f"127.0.0.1:{closed_port()}"]  # fmt: skip
    killed = subprocess.Popen([*command, "--idle-seconds", "60"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not _worker_folders(killed.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    (left,) = _worker_folders(killed.pid)
    killed.kill()  # SIGKILL: nothing of its own clean-up runs
    killed.wait()
    assert left.exists()
    nobody = subprocess.run([*command, "--idle-seconds", "1"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert nobody.returncode == 3 and "leaving after 0 loads" in nobody.stdout, nobody
    assert not left.exists()  # the next one removed what the killed one left
    assert not _worker_folders(os.getpid()) and not _locusts()
