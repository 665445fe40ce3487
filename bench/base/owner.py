"""Which process owns something, in a form that survives PID reuse: host, PID and the
process's start time. Containers carry it as a label, result files in their header, so
that a container or a run left behind by a killed process can be told from a live one."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

OWNER_FILE = "owner"  # in a temporary folder a process made: its host:pid:start first


def owner_label(pid: int | None = None) -> str:
    """``host:pid:start time`` of the process ``pid`` (default: this one)."""
    process = psutil.Process(pid)
    return f"{socket.gethostname()}:{process.pid}:{process.create_time():.0f}"


def owner_of_port(port: int) -> str | None:
    """``owner_label`` of the process on this host whose TCP connection has the local
    ``port`` (a database client, from the server's list of connections); None when no
    process here has it, or it cannot be seen."""
    try:
        found = [
            c.pid for c in psutil.net_connections(kind="tcp") if c.laddr and c.laddr.port == port
        ]
        return owner_label(found[0]) if found and found[0] else None
    except (psutil.Error, OSError):
        return None


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


def make_owned_folder(prefix: str) -> Path:
    """A new temporary folder that names this process as its owner (``OWNER_FILE``),
    so that what a killed process left can be told from what a live one uses."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))  # mode 0700
    descriptor = os.open(folder / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as owner:
        owner.write(f"{owner_label()}\n")
    return folder


def owned_folders(prefix: str) -> list[tuple[Path, list[str]]]:
    """The temporary folders named ``prefix*`` that hold an owner file, and its lines
    (the owner first). A folder without one is not known to be ours: never listed."""
    found = []
    for folder in sorted(Path(tempfile.gettempdir()).glob(f"{prefix}*")):
        try:
            found.append((folder, (folder / OWNER_FILE).read_text().split()))
        except OSError:
            continue
    return found


def prune_ended_folders(prefix: str) -> list[Path]:
    """Remove the folders ``owned_folders`` lists whose owner has ended on this host."""
    gone = []
    for folder, lines in owned_folders(prefix):
        if lines and owner_alive(lines[0]) is False:
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder)
    return gone


@contextmanager
def owned_folder(prefix: str) -> Iterator[Path]:
    """A folder of this process's own (``make_owned_folder``) for the block, removed
    afterwards; those that ended processes left under ``prefix`` are removed first (a
    process killed with SIGKILL removes nothing)."""
    prune_ended_folders(prefix)
    folder = make_owned_folder(prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
