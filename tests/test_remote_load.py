"""Load from another machine (``sqla-bench load-worker``), across a real network boundary:
a Linux network namespace with a veth pair and addresses of this test's own stands for
the other machine. One worker started there once loads every cell of a run that has no
local worker, and leaves by itself when the run is over. Everything the test creates
(the namespace, the link, the worker) is removed, also when it fails; no address beyond
this machine is touched. Needs root and ``ip`` (CI runs as root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sqla_bench.results.files import read_result

pytestmark = [pytest.mark.harness, pytest.mark.slow]


@dataclass(frozen=True)
class OtherMachine:
    """A namespace reached from here at ``host``; it reaches us at ``here``."""

    name: str
    here: str
    host: str

    def command(self, *words: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *words]


def _ip(*words: str) -> None:
    subprocess.run(["ip", *words], check=True, capture_output=True, timeout=30)


@pytest.fixture
def other_machine() -> Iterator[OtherMachine]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a network namespace needs root and iproute2's ip")
    tag = os.getpid() % 100_000
    subnet = 20 + os.getpid() % 200  # 10.231.N.0/30: its own, beside a concurrent session's
    machine = OtherMachine(f"sqlab-{tag}", f"10.231.{subnet}.1", f"10.231.{subnet}.2")
    outside, inside = f"sqlh{tag}", f"sqln{tag}"
    try:
        _ip("netns", "add", machine.name)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", machine.name)
        _ip("addr", "add", f"{machine.here}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        for words in (("addr", "add", f"{machine.host}/30", "dev", inside),
                      ("link", "set", inside, "up"), ("link", "set", "lo", "up")):  # fmt: skip
            _ip("netns", "exec", machine.name, "ip", *words)
        yield machine
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            _ip("netns", "del", machine.name)  # takes its end of the pair, and so both
        with contextlib.suppress(subprocess.SubprocessError):
            _ip("link", "del", outside)  # in case the namespace never got it


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def test_a_worker_on_another_machine_loads_every_cell_of_a_run(other_machine, tmp_path):
    master = f"{other_machine.here}:{_free_port(other_machine.here)}"
    worker = subprocess.Popen(
        other_machine.command(sys.executable, "-m", "sqla_bench", "load-worker",
                              "--master", master, "--idle-seconds", "15"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out = tmp_path / "remote.json"
        result = subprocess.run(
            [sys.executable, "-m", "sqla_bench", "run", "--target", "sqlite", "--mode", "async",
             "--scenario", "web.get_user", "--concurrency", "4,8", "--load-seconds", "1.5",
             "--load-generator", "locust", "--load-workers", "0", "--load-remote-workers", "1",
             "--locust-master", master, "--serve-host", other_machine.here,
             "--output", str(out)],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        said, _ = worker.communicate(timeout=60)  # it leaves once no master comes
    finally:
        if worker.poll() is None:  # SIGTERM: it removes its folder on the way out
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    cells = read_result(Path(out))[1]
    assert [cell.concurrency for cell in cells] == [4, 8]
    for cell in cells:  # each cell's load came from the worker over there, and only from it
        (process,) = cell.load["worker_processes"]
        assert process["users"] == cell.concurrency and process["errors"] == 0, process
        assert process["ok"] == process["requests"] > 0 and cell.load["completed"] > 0
        assert cell.matches_expected and cell.load["failure"] is None
    assert worker.returncode == 0 and "load 2 done" in said and "leaving after 2 loads" in said
