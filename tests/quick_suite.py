"""What a plain ``pytest`` runs, and on how many processes.

Slow harness tests (processes, latency physics, load windows, web serving, containers)
run in CI and when asked; a plain ``pytest`` on a new machine skips them, saying how to
run them, so that the README's test command stays quick. That quick suite, on a machine
with no server, runs on up to four processes when pytest-xdist is installed (the test
extra has it): about half the time on two cores. Not CI's run, nor one with a server:
each process would start its own containers, and the slow tests hold timings that
another process on the same cores disturbs. A ``-n`` given, ``-p no:xdist``, named
tests, ``--pdb``, ``-s`` or ``--collect-only`` keep it in one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from sqla_bench.servers.targets import TARGETS, ConfigError, Servers, Unavailable, required_targets

# The seconds a ``slow`` mark's comment gives were measured on a slow machine of this
# project's kind, one where ``python -m timeit "sum(range(10**7))"`` takes 330 ms (a
# recent laptop: about 120 ms).
SLOW_VARIABLE = "SQLA_BENCH_SLOW_TESTS"

# Each process collects the suite (about 5 s of CPU): more than four gain little.
MAX_PROCESSES = 4


def slow_tests_run(environ: Mapping[str, str] = os.environ) -> bool:
    asked = environ.get(SLOW_VARIABLE, "").strip().lower()
    if asked in ("0", "false", "no", "off"):
        return False
    return bool(asked) or environ.get("CI", "").lower() in ("1", "true", "yes")


def processes_for(config: pytest.Config, environ: Mapping[str, str] = os.environ) -> int:
    """How many processes the session should run on (0: pytest-xdist is not asked to)."""
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return 0  # without pytest-xdist, or inside one of its workers
    cpus = min(usable_cpus(), MAX_PROCESSES)
    quick = not slow_tests_run(environ) and not any_server(environ)
    if cpus < 2 or not quick or _asked_otherwise(config):
        return 0
    return cpus


def usable_cpus() -> int:
    """The CPUs this process may run on (where the platform cannot tell: all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _asked_otherwise(config: pytest.Config) -> bool:
    option = config.option
    return (
        option.numprocesses is not None
        or option.dist != "no"
        or option.usepdb
        or option.capture == "no"
        or option.collectonly
        or config.args_source != pytest.Config.ArgsSource.TESTPATHS  # tests named
    )


def any_server(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a server target has a URL, or a container could start for one (planned
    only: nothing starts, and no SQLite folder is made)."""
    if required_targets(environ):
        return True
    servers = Servers(Path(tempfile.gettempdir()) / "sqla-bench-never-made", environ)
    try:
        planned = [servers.plan(name) for name in TARGETS if name != "sqlite"]
    except ConfigError:  # said in one line when the session configures
        return True
    return any(not isinstance(target, Unavailable) for target in planned)
