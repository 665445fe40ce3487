"""How busy the machine was while something was measured: the load average, the CPU time
the hypervisor took (steal) and the CPUs there were, read before and after, outside the
clock. Machines of this kind are shared: a comparison measured while more was runnable
than there are CPUs is marked, beside the numbers, rather than trusted silently."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass(frozen=True)
class Snapshot:
    """The machine at one moment: the 1-minute load average and the CPU times so far."""

    load: float
    busy_seconds: float  # every CPU's time but idle and I/O wait, steal included
    steal_seconds: float

    @classmethod
    def now(cls) -> Snapshot:
        times = psutil.cpu_times()
        steal = getattr(times, "steal", 0.0)  # Linux only
        idle = times.idle + getattr(times, "iowait", 0.0)
        return cls(psutil.getloadavg()[0], sum(times) - idle, steal)


def cpus() -> int:
    """The CPUs the machine has (not only those this process is pinned to: the load
    average counts every CPU's queue)."""
    return os.cpu_count() or 1


def state_between(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """What the result file keeps: the load average at both ends, the share of the CPU
    time spent meanwhile that was stolen, the CPUs, and whether it was busier than the
    machine has CPUs (a mark the report shows beside the comparison)."""
    spent = after.busy_seconds - before.busy_seconds
    stolen = after.steal_seconds - before.steal_seconds
    return {
        "load_average": [round(before.load, 2), round(after.load, 2)],
        "steal": round(stolen / spent, 3) if spent > 0 else 0.0,
        "cpus": cpus(),
        "busy": max(before.load, after.load) > cpus(),
    }
