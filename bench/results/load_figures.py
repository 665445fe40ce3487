"""The figures of a load that reports read as well as the load itself: how much of a
load warmed up, a pool's capacity, how busy each CPU was and what limited a load by CPU.

They live here, with the result files, so that reading a result file never loads the
code that measures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WARMUP_SHARE = 0.2
# SQLAlchemy's QueuePool defaults, which an engine keeps when the run does not set them.
DEFAULT_POOL = {"pool_size": 5, "max_overflow": 10}
# A process that used this share of a CPU over a load, or processes that together used
# this share of the machine's CPUs, are what the load measured, not the pool.
CPU_BOUND = 0.9
# A CPU busy this share of a load's time (whoever kept it so) has no room left: queueing
# for it then sets the pace (at 85 % busy a request waits about 5.7 times its own CPU
# time, M/M/1). In three runs of issue 18's measurement on this 2-CPU machine
# (PostgreSQL, +5 ms, pools of 5 and 20, 1 to 64 workers), the 22 cells with a CPU this
# busy reached 56-85 % of the throughput Little's law predicts; of the 50 others, 49
# reached 88-111 % and one 78 % (its CPUs 84 % busy).
BUSY_CPU = 0.85
# Each runs Python on one CPU at a time (the GIL): a CPU is all one of them can use.
ONE_CPU_OWNERS = ("client", "app", "proxy")


def cpu_bound(
    cpu_seconds: dict[str, float | None],
    seconds: float,
    worker_cpu: Sequence[float] | None = None,
    cpus: int | None = None,
    busy: CpuBusy | None = None,
) -> list[str]:
    """What limited a load by CPU, in words: each of the client (or, with several worker
    processes, any one of them), the web app and the latency proxy that used at least
    ``CPU_BOUND`` of one CPU over ``seconds`` ("client CPU", "worker CPU"); "client's
    CPUs" when the CPUs the client may run on were ``BUSY_CPU`` busy, whoever kept them
    so (a client pinned to one CPU shares it with server backends); "other CPUs" when
    one of the others was (the proxy's, the app's, the server's); and "machine CPUs"
    when the machine's CPUs were (without ``busy``, as in files written before it was
    recorded: when all the processes' CPU seconds add up to ``CPU_BOUND`` of the
    machine's ``cpus``). Empty when nothing was: then the pool, the latency or the
    server set the pace."""
    if seconds <= 0:
        return []
    shares = {owner: (cpu_seconds.get(owner) or 0.0) / seconds for owner in ONE_CPU_OWNERS}
    if worker_cpu:  # the client's figure is the processes' sum: each is held to one CPU
        shares["client"] = 0.0
        shares["worker"] = max(worker_cpu) / seconds
    found = [f"{owner} CPU" for owner, share in shares.items() if share >= CPU_BOUND]
    if busy is not None:
        if busy.clients() >= BUSY_CPU and "client CPU" not in found and not worker_cpu:
            found.append("client's CPUs")
        if busy.others() >= BUSY_CPU:
            found.append("other CPUs")
        if busy.machine() >= BUSY_CPU:
            found.append("machine CPUs")
        return found
    total = sum(value for value in cpu_seconds.values() if value is not None)
    if total / seconds / (cpus or os.cpu_count() or 1) >= CPU_BOUND:
        found.append("machine CPUs")
    return found


@dataclass(frozen=True)
class CpuBusy:
    """How busy each CPU of the machine was over a load (0 to 1), and which of them the
    client may run on."""

    per_cpu: tuple[float, ...]
    client_cpus: tuple[int, ...]

    @classmethod
    def between(cls, before: list, after: list, client_cpus: Sequence[int]) -> CpuBusy:
        shares = []
        for start, end in zip(before, after, strict=True):
            total = sum(end) - sum(start)
            idle = (end.idle + getattr(end, "iowait", 0)) - (
                start.idle + getattr(start, "iowait", 0)
            )
            shares.append(round(1 - idle / total, 3) if total > 0 else 0.0)
        return cls(tuple(shares), tuple(client_cpus))

    def clients(self) -> float:
        mine = [self.per_cpu[n] for n in self.client_cpus if n < len(self.per_cpu)]
        return sum(mine) / len(mine) if mine else 0.0

    def others(self) -> float:
        """The busiest CPU the client may not run on: the proxy's and the web app's
        (they move off the client's), and the server's, which runs anywhere."""
        theirs = [share for n, share in enumerate(self.per_cpu) if n not in self.client_cpus]
        return max(theirs, default=0.0)

    def machine(self) -> float:
        return sum(self.per_cpu) / len(self.per_cpu) if self.per_cpu else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"per_cpu": list(self.per_cpu), "client_cpus": list(self.client_cpus)}


def pool_capacity(pool: dict[str, Any] | None) -> tuple[int, int]:
    """An engine's ``pool_size`` and ``max_overflow``, SQLAlchemy's defaults where
    unset."""
    settings = {**DEFAULT_POOL, **(pool or {})}
    return settings["pool_size"], settings["max_overflow"]
