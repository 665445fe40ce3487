"""Helper processes of the measuring process: the latency proxy, a served web app, a
client process; and Locust's master and workers, started as commands.

Each runs ``target(control, *args, client_cpus)`` in a child process: ``control`` is its
end of a pipe to the measuring process, and ``client_cpus`` the CPUs the measuring
process uses, so that it can move to the others. It stops when told ``("stop",)`` or
when the pipe closes; one that does not stop in time is killed. And it ends with the
measuring process whatever ends that (Linux's ``PR_SET_PDEATHSIG``): a run killed with
SIGKILL cannot stop its helpers, and a worker process in the middle of a load would go
on loading the database until the load's end.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends


class ChildFailed(RuntimeError):
    """A helper process did not start; its message is one line, without a password."""


class Child:
    """The measuring process's handle on a helper process."""

    stop_seconds = 2.0  # how long a stop may take before the process is killed

    def __init__(
        self, context: Any, target: Callable[..., None], *args: Any, daemon: bool = False
    ) -> None:
        self._control, child = context.Pipe()
        client_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self._process = context.Process(
            target=_with_parent, args=(target, child, *args, client_cpus), daemon=daemon
        )
        self._process.start()
        child.close()  # the child's end lives in the child only: its exit closes the pipe
        self.pid = self._process.pid

    def _first_reply(self, seconds: float, what: str) -> Any:
        """The child's first message, or ChildFailed (and the child stopped) if none
        comes within ``seconds``."""
        if not self._control.poll(seconds):
            self.close()
            raise ChildFailed(f"{what} did not start within {seconds:g} s")
        return self._control.recv()

    @property
    def running(self) -> bool:
        return not self._control.closed and self._process.is_alive()

    def close(self) -> None:
        """Stop the child (kill it if it does not stop in time); idempotent."""
        if self._control.closed:
            return
        if self._process.is_alive():
            with contextlib.suppress(OSError, EOFError):  # it may have gone already
                self._control.send(("stop",))
            self._process.join(self.stop_seconds)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._control.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ask(self, *message: Any) -> Any:
        self._control.send(message)
        return self._control.recv()


def _with_parent(target: Callable[..., None], *args: Any) -> None:
    """Run ``target(*args)`` in a child that the kernel kills when its parent ends: the
    measuring process (started from its main thread, which lives as long as it does),
    or a fork server, which ends with the measuring process."""
    if end_with_parent(os.getppid()):
        target(*args)


def end_with_parent(parent: int) -> bool:
    """Have the kernel kill this process when its parent ends (Linux); False when the
    parent, ``parent``, has already ended (before the kernel was told): then the caller
    should end at once. Elsewhere than Linux, True: the caller's pipe still tells."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    return os.getppid() == parent


def with_parent_command(module: str, *args: str) -> list[str]:
    """The command that runs ``python -m module args`` in a process that ends with this
    one (``sqla_bench.servers.with_parent``): for helpers started as commands, not as
    children of multiprocessing (Locust's master and workers)."""
    return [sys.executable, "-m", "sqla_bench.servers.with_parent", str(os.getpid()), module, *args]
