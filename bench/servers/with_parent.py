"""``python -m sqla_bench.servers.with_parent PARENT MODULE ARGS...``: run ``python -m
MODULE ARGS...`` in a process the kernel kills when its parent, the measuring process
whose PID is PARENT, ends (Linux's ``PR_SET_PDEATHSIG``), as the helpers it starts
through multiprocessing do. For helpers that are commands of their own (Locust's master
and workers): a run killed with SIGKILL cannot stop them, and a Locust master would go
on waiting for its workers, its workers on loading the app, until their run time ends.

It imports nothing before MODULE but the standard library's few modules that
``sqla_bench.servers.children`` needs: Locust patches the standard library with gevent
as it is imported, and warns about modules (ssl) imported before."""

from __future__ import annotations

import runpy
import sys

from sqla_bench.servers.children import end_with_parent


def main(argv: list[str]) -> None:
    parent, module, *args = argv
    if not end_with_parent(int(parent)):
        raise SystemExit(1)  # the run that started it has already ended
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
