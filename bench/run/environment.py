"""The facts a result file keeps beside its cells: the run's header (tool, command,
plan, status), the libraries, drivers and machine it ran on, and the CPUs it was pinned
to (``--affinity``), which decide how far repeated runs agree."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psutil
import sqlalchemy

from sqla_bench.base.errors import ConfigError
from sqla_bench.base.owner import owner_label
from sqla_bench.results.files import SCHEMA_VERSION
from sqla_bench.run.plan import RunPlan
from sqla_bench.servers.targets import Driver, Target


def run_header(plan: RunPlan, command: Sequence[str], started: datetime) -> dict[str, Any]:
    """Everything about the run except its cells: the result file's header."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "sqla-bench", "version": _distribution_version("sqla-bench") or "dev"},
        "run": {
            "started": started.isoformat(timespec="seconds"),
            "finished": None,
            "status": "running",
            "owner": owner_label(),  # so that a file a killed process left "running" is told
            "reason": None,
            # The command line never carries a URL (targets come from the environment).
            "command": list(command),
            "parameters": plan.parameters(),
        },
        "environment": environment(plan.selected_drivers()),
        "targets": {target.name: _target_facts(target) for target in plan.targets},
    }


def _target_facts(target: Target) -> dict[str, Any]:
    """Where the target's server came from; its version is filled in once it answers."""
    facts = {"url": target.safe_url, "source": target.source, "server_version": None}
    if target.container is not None:
        facts["container"] = dict(target.container)
    return facts


def environment(drivers: Sequence[Driver]) -> dict[str, Any]:
    """Library, driver and machine facts for the result file."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlalchemy": sqlalchemy.__version__,
        "greenlet": _distribution_version("greenlet"),
        "drivers": {d.spec.module: _module_version(d.spec.module) for d in drivers},
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": current_affinity(),
            "platform": platform.platform(),
            "architecture": platform.machine(),
        },
    }


def current_affinity() -> list[int] | None:
    """The CPUs this process may run on (None where the platform cannot tell)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))


def pin_to(cpus: str) -> None:
    """Restrict this process to ``cpus``: ``auto`` (the least busy CPU it may use), ``all``
    (leave scheduling to the OS) or a list such as ``1`` or ``0,1``.

    Pinning is what makes repeated runs agree on a small machine: with the event loop
    and aiosqlite's worker thread free to land on different cores, one run's medians
    differed from the next by up to 20 %; pinned to one core, by under 3 %. Threads
    started later (driver threads) inherit the setting. Call before any is started.
    """
    chosen = chosen_cpus(cpus)
    if chosen is not None:
        os.sched_setaffinity(0, chosen)


def chosen_cpus(cpus: str) -> set[int] | None:
    """The CPUs ``--affinity`` names (None: leave it to the OS), or ConfigError."""
    if cpus == "all" or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    chosen = {least_busy(allowed)} if cpus == "auto" else _cpu_list(cpus)
    if not chosen <= allowed:
        raise ConfigError(f"--affinity {cpus}: this process may only use CPUs {sorted(allowed)}")
    return chosen


def least_busy(allowed: set[int], seconds: float = 0.1) -> int:
    """The CPU of ``allowed`` that did the least work over ``seconds``, the highest-numbered
    of those that tie (on an idle machine: the last, as before). Pinning every run to
    the last CPU put each run, and another tester's, on the same busy core (issue 29)."""
    before = psutil.cpu_times(percpu=True)
    time.sleep(seconds)
    after = psutil.cpu_times(percpu=True)

    def busy(cpu: int) -> float:
        spent = [now - then for now, then in zip(after[cpu], before[cpu], strict=True)]
        idle = after[cpu].idle - before[cpu].idle
        return round(sum(spent) - idle, 2)  # hundredths of a second: ticks are coarser

    return min(sorted(allowed, reverse=True), key=busy)


def _cpu_list(text: str) -> set[int]:
    try:
        return {int(part) for part in text.split(",")}
    except ValueError:
        raise ConfigError(
            f"--affinity: expected auto, all or CPU numbers such as 0,1, got {text!r}"
        ) from None


def _module_version(module: str) -> str | None:
    if module == "sqlite3":  # in the standard library: the SQLite library's version matters
        import sqlite3

        return sqlite3.sqlite_version
    distributions = importlib.metadata.packages_distributions().get(module, [module])
    return _distribution_version(distributions[0])


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
