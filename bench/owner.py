"""Which process owns something, in a form that survives PID reuse: host, PID and the
process's start time. Containers carry it as a label, result files in their header, so
that a container or a run left behind by a killed process can be told from a live one."""

from __future__ import annotations

import socket

import psutil


def owner_label(pid: int | None = None) -> str:
    """``host:pid:start time`` of the process ``pid`` (default: this one)."""
    process = psutil.Process(pid)
    return f"{socket.gethostname()}:{process.pid}:{process.create_time():.0f}"


def owner_state(alive: bool | None) -> str:
    """``owner_alive``'s answer in words, for the listings of what runs left."""
    return {True: "running", False: "ended: --prune removes it", None: "on another host"}[alive]


def owner_alive(label: str) -> bool | None:
    """Whether the process that ``label`` names still runs; None if it is on another host."""
    host, _, rest = label.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname():
        return None
    try:
        return f"{psutil.Process(int(pid)).create_time():.0f}" == started
    except (psutil.Error, ValueError):
        return False
