"""Where a run pins itself (``--affinity auto``): the least busy CPU it may use."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from sqla_bench.run.environment import least_busy

pytestmark = pytest.mark.harness


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
    reason="needs two CPUs",
)
def test_auto_affinity_avoids_the_cpu_another_process_keeps_busy() -> None:
    # Every CPU of the machine, not this process's: a run measured in this process
    # earlier pinned it to one.
    allowed = list(range(os.cpu_count() or 1))
    if max(psutil.cpu_percent(interval=0.3, percpu=True)) > 50:
        pytest.skip("a CPU is busy already: which one another process loads cannot be told")
    for loaded in (allowed[0], allowed[-1]):
        spinner = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import os; os.sched_setaffinity(0, {{{loaded}}})\nwhile 1: pass",
            ]
        )
        try:
            chosen = least_busy(set(allowed), seconds=0.5)
        finally:
            spinner.kill()
            spinner.wait()
        assert chosen != loaded, (loaded, chosen)
