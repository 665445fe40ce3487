"""PgBouncer in front of a PostgreSQL target, as deployments run it (``--pgbouncer``).

The suite starts Debian's ``pgbouncer`` binary on 127.0.0.1 with a configuration it
writes into a private temporary folder, waits until it accepts connections, and stops
it afterwards: on leaving the ``with`` block, which a Ctrl-C or SIGTERM also does (the
run turns both into KeyboardInterrupt). PgBouncer refuses to run as root; started by
root it is told to switch to the owner of PostgreSQL's files (``-u``).

The target's password never touches a disk: the auth file is an anonymous file in
memory (``memfd_create``) that PgBouncer inherits and reads as ``/dev/fd/N``. A SCRAM
verifier in its place would not do: PgBouncer logs in to PostgreSQL with SCRAM only from
the plaintext password, or from the very verifier the server stores (its
authentication-file documentation), which only a superuser can read.

A run killed with SIGKILL cannot stop its PgBouncer (a session of its own, it outlives
the run). Its folder holds an ``owner`` file (the run's ``host:pid:start`` and
PgBouncer's PID), so the next run that starts a PgBouncer, and ``sqla-bench containers
--prune``, stop the PgBouncers whose run has ended and remove their folders
(``prune_leftovers``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy.engine import URL

from sqla_bench.base.errors import ConfigError, redact
from sqla_bench.base.owner import OWNER_FILE, make_owned_folder, owned_folders, owner_alive
from sqla_bench.servers.children import ChildFailed

MODES = ("session", "transaction")
DIRECT = "direct"  # a --pgbouncer value: the same cells without PgBouncer, to compare
DEFAULT_POOL_SIZE = 20
START_SECONDS = 10.0
STOP_SECONDS = 5.0
SETTLE_SECONDS = 1.0
# The client connections PgBouncer accepts: above any load one process drives (the
# --concurrency and pool bounds), so PgBouncer never refuses a client of ours.
MAX_CLIENT_CONNECTIONS = 2_000
# Whom PgBouncer runs as when the suite runs as root (it refuses root).
RUN_AS = "postgres"
FOLDER_PREFIX = "sqla-bench-pgbouncer-"  # its owner file: the run, then PgBouncer's PID


def binary() -> str:
    """The pgbouncer executable; ConfigError when it is not installed."""
    found = shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer",) if os.access(path, os.X_OK)), None
    )
    if found is None:
        raise ConfigError(
            "--pgbouncer needs PgBouncer on this machine: apt-get install pgbouncer "
            "(or put pgbouncer on PATH)"
        )
    return found


def run_as() -> pwd.struct_passwd | None:
    """The user PgBouncer runs as when the suite runs as root (it refuses root); None
    otherwise. ConfigError when root has no such user to hand it to."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        raise ConfigError(
            f"--pgbouncer: PgBouncer refuses to run as root, and this machine has no "
            f"{RUN_AS!r} user to run it as: run sqla-bench as another user"
        ) from None


def version() -> str:
    """PgBouncer's version, e.g. ``1.18.0``."""
    first = subprocess.run(
        [binary(), "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.split("\n", 1)[0]
    return first.removeprefix("PgBouncer ").strip() or "unknown"


def settings(mode: str, pool_size: int) -> dict[str, Any]:
    """What a run records of PgBouncer's configuration (never the auth file)."""
    return {
        "pool_mode": mode,
        "default_pool_size": pool_size,
        "max_client_conn": MAX_CLIENT_CONNECTIONS,
        "server_round_robin": 0,  # PgBouncer's default: the last server connection used first
    }


class PgBouncer:
    """A PgBouncer process in ``mode`` in front of ``url``'s server; ``port`` is its own."""

    def __init__(
        self,
        url: URL,
        mode: str,
        pool_size: int = DEFAULT_POOL_SIZE,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.mode = mode
        self.say = say  # what was done besides starting it (an ended run's PgBouncer stopped)
        self.pool_size = pool_size
        self.upstream = url
        self.port = 0
        self._folder: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PgBouncer:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def settings(self) -> dict[str, Any]:
        return settings(self.mode, self.pool_size)

    def fresh_servers(self) -> None:
        """Have every client's next transaction start on a new server connection, so
        that nothing an earlier client left on one (prepared statements, settings) is
        found there: PgBouncer's RECONNECT."""
        self._admin(f"RECONNECT {self.upstream.database}")

    def close_servers(self) -> None:
        """Close PgBouncer's idle server connections (RECONNECT; its janitor closes
        them within about 0.3 s here) and wait until they are gone, for up to a second:
        a load then starts with none, so the server's count of connections during it is
        what PgBouncer opened for it, as without PgBouncer."""
        self.fresh_servers()
        deadline = time.monotonic() + SETTLE_SECONDS
        while self._servers() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _servers(self) -> int:
        rows = self._admin("SHOW SERVERS")
        return sum(1 for row in rows if row["database"] == self.upstream.database)

    def clients_left(self) -> int:
        """Client connections to PgBouncer for the target's database, once those just
        closed have gone (within a second): what an engine left open after its
        dispose. PgBouncer keeps its own server connections open by design, so the
        server's count cannot tell a leak here."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            rows = self._admin("SHOW CLIENTS")
            left = sum(1 for row in rows if row["database"] == self.upstream.database)
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.02)

    def _admin(self, command: str) -> list[dict[str, Any]]:
        """A command on PgBouncer's admin console, its rows as dicts. The console speaks
        the simple query protocol only, without transactions: psycopg2 in autocommit
        (SQLAlchemy's first connect would begin one)."""
        import psycopg2  # the console's client: only once PgBouncer runs

        url = self.upstream
        console = psycopg2.connect(
            host="127.0.0.1", port=self.port, dbname="pgbouncer",
            user=url.username, password=url.password, connect_timeout=int(START_SECONDS),
        )  # fmt: skip
        try:
            console.autocommit = True
            with console.cursor() as cursor:
                cursor.execute(command)
                if cursor.description is None:
                    return []
                names = [column.name for column in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            console.close()

    def _start(self) -> None:
        prune_leftovers(say=self.say)
        self._folder = make_owned_folder(FOLDER_PREFIX)
        self.port = _free_port()
        auth = _auth_in_memory(self.upstream)
        try:
            config = self._write_config(self._folder, f"/dev/fd/{auth}")
            command = [binary(), *(["-u", RUN_AS] if run_as() else []), str(config)]
            log = os.open(
                self._folder / "pgbouncer.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
            )
            self._log = os.fdopen(log, "wb")
            # A session of its own: a terminal's Ctrl-C reaches the run, which stops it
            # here. It inherits the auth file, which lives as long as one of us holds it.
            self._process = subprocess.Popen(
                command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(auth,),
            )  # fmt: skip
        finally:
            os.close(auth)
        with (self._folder / OWNER_FILE).open("a") as owner:
            owner.write(f"{self._process.pid}\n")
        self._wait_until_listening()

    def _write_config(self, folder: Path, auth_file: str) -> Path:
        url = self.upstream
        lines = [
            "[databases]",
            f"{url.database} = host={url.host or '127.0.0.1'} port={url.port or 5432} "
            f"dbname={url.database}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            f"auth_type = {'scram-sha-256' if url.password else 'trust'}",
            f"auth_file = {auth_file}",
            f"admin_users = {url.username}",  # for RECONNECT (fresh_servers)
            *(f"{name} = {value}" for name, value in self.settings().items()),
            # Drivers send startup parameters PgBouncer does not track; it would refuse them.
            "ignore_startup_parameters = extra_float_digits,options",
        ]
        config = folder / "pgbouncer.ini"
        _private(config, "\n".join(lines) + "\n")
        return config

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ChildFailed(f"PgBouncer did not start: {self._last_log_line()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise ChildFailed(f"PgBouncer did not listen within {START_SECONDS:g} s")

    def _last_log_line(self) -> str:
        assert self._folder is not None
        text = (self._folder / "pgbouncer.log").read_text(errors="replace").strip()
        line = text.rsplit("\n", 1)[-1] if text else "no message"
        return redact(line, self.upstream)

    def close(self) -> None:
        """Stop PgBouncer (SIGTERM, then SIGKILL) and remove its folder; idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def _private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only (and by PgBouncer's user, when root
    starts PgBouncer as another user)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(text)
    entry = run_as()
    if entry is not None:
        os.chown(path.parent, entry.pw_uid, entry.pw_gid)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _auth_in_memory(url: URL) -> int:
    """A file descriptor of an anonymous in-memory file holding PgBouncer's auth file:
    the user and password, never on a disk."""
    descriptor = os.memfd_create("sqla-bench-pgbouncer-users")  # close-on-exec
    entry = f'"{_quoted(url.username or "")}" "{_quoted(str(url.password or ""))}"\n'
    os.write(descriptor, entry.encode())
    return descriptor


@dataclass(frozen=True)
class Leftover:
    """A PgBouncer a run started, found by its folder."""

    folder: Path
    owner: str  # the run's host:pid:start ("" when the run died before writing it)
    pid: int | None  # PgBouncer's

    @property
    def owner_alive(self) -> bool | None:
        return owner_alive(self.owner) if self.owner else False


def leftovers() -> list[Leftover]:
    """Every PgBouncer folder of a run in this machine's temporary folder."""
    return [
        Leftover(folder, lines[0], int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None)
        for folder, lines in owned_folders(FOLDER_PREFIX)
        if lines
    ]


def prune_leftovers(
    everything: bool = False, say: Callable[[str], None] = lambda _: None
) -> list[Leftover]:
    """Stop the PgBouncers whose run has ended (or all of them) and remove their
    folders; what went. A process is stopped only while its command line names its
    folder's configuration: one that reused the PID is not ours."""
    gone = []
    for leftover in leftovers():
        if not (everything or leftover.owner_alive is False):
            continue
        stopped = _stop_ours(leftover)
        shutil.rmtree(leftover.folder, ignore_errors=True)
        said = f", PgBouncer (PID {leftover.pid}) stopped" if stopped else ""
        say(f"removed {leftover.folder}, left by ended run {leftover.owner or '?'}{said}")
        gone.append(leftover)
    return gone


def _stop_ours(leftover: Leftover) -> bool:
    if leftover.pid is None:
        return False
    try:
        process = psutil.Process(leftover.pid)
        if str(leftover.folder / "pgbouncer.ini") not in process.cmdline():
            return False
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except psutil.TimeoutExpired:
            process.kill()
        return True
    except psutil.Error:
        return False


def _quoted(text: str) -> str:
    """A value inside the auth file's double quotes, where a quote is doubled."""
    return text.replace('"', '""')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
