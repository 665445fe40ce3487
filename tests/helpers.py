"""What several test modules share: the command line run as a user runs it, the one-line
error every bad input must give, a configured target, and the small applications the
tests bring. Test modules import from here, never from one another."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sqla_bench.servers.targets import URL_VARIABLES, Target

VARIABLES = ("SQLA_BENCH_POSTGRESQL_URL", "SQLA_BENCH_MYSQL_URL", "SQLA_BENCH_REQUIRE")
# A Docker engine that never answers: without a URL, a server target is then unavailable.
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m ARGS`` without the server URLs and without Docker, unless ``env`` sets
    them. The command line (``sqla_bench``) runs in this process, its output captured: a
    process of its own costs about a second of start-up a call. ``run_process`` starts
    one, for what only a process shows (signals, what start-up imports, the exit of a
    process). ``PYTHONPATH`` holds for the call as it would for a process
    (``_application_path``)."""
    if args[:1] == ("sqla_bench",):
        return run_in_process(list(args[1:]), **env)
    return run_process(*args, **env)


def run_process(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m ARGS`` in a process of its own, as ``run`` describes."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True, text=True, env=_user_environment(env), timeout=300,
    )  # fmt: skip


def run_in_process(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    """``sqla-bench ARGV`` through ``sqla_bench.cli.main`` in this process, in the
    environment ``run`` gives a process (restored after), its output captured and its
    exit status kept as a process's would be."""
    from sqla_bench.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        _environment(_user_environment(env)),
        _application_path(env.get("PYTHONPATH")),
        _own_sigterm_handler(),
        _own_cpus(),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = _exit_status(exit.code, stderr)
    return subprocess.CompletedProcess(
        ["sqla-bench", *argv], status or 0, stdout.getvalue(), stderr.getvalue()
    )


@contextlib.contextmanager
def _application_path(pythonpath: str | None) -> Iterator[None]:
    """``PYTHONPATH``'s folders first on ``sys.path`` for the call, and the modules
    imported from them forgotten after it, so that the next call imports its own (an
    application's models of the same name from another folder, say), as a process of
    its own would."""
    named = (pythonpath or "").split(os.pathsep)
    folders = [str(Path(folder).resolve()) for folder in named if folder]
    saved, before = list(sys.path), set(sys.modules)
    sys.path[:0] = folders
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved
        for name in set(sys.modules) - before:
            file = str(getattr(sys.modules[name], "__file__", None) or "")
            if any(file.startswith(folder + os.sep) for folder in folders):
                del sys.modules[name]


def _user_environment(env: dict[str, str]) -> dict[str, str]:
    # Not a worker's of pytest-xdist either: the pytest a test starts would take itself for
    # one (pytest-benchmark then refuses to time).
    kept = {k: v for k, v in os.environ.items() if k not in VARIABLES and not k.startswith(XDIST)}
    return kept | NO_DOCKER | env


XDIST = "PYTEST_XDIST_"


def _exit_status(code: object, stderr: io.StringIO) -> int:
    """What a process exiting with ``code`` reports (a message is printed, status 1)."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=stderr)
    return 1


@contextlib.contextmanager
def _environment(environ: dict[str, str]) -> Iterator[None]:
    """``os.environ`` replaced in place (what reads it holds the same mapping)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _own_sigterm_handler() -> Iterator[None]:
    """The command line takes SIGTERM over for its run; the test process gets it back."""
    saved = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved)


@contextlib.contextmanager
def _own_cpus() -> Iterator[None]:
    """A run pins its process to one CPU (``--affinity auto``); the test process gets all
    of its own back, as a run's own process would end: left pinned, every later test and
    the processes they start shared that CPU, and two pytest-xdist workers often the same
    one."""
    saved = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        yield
    finally:
        if saved is not None:
            os.sched_setaffinity(0, saved)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert PASSWORD not in result.stderr + result.stdout


def configured_target(request: pytest.FixtureRequest, name: str) -> Target:
    """The configured target, its container started if need be (skips if unavailable)."""
    return request.getfixturevalue("servers").target(name)


PASSWORD = "Pw-9f3b-never-printed"


def closed_port() -> int:
    """A local port with nothing listening on it (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SHOP = '''
"""A shop: customers and their orders."""

from sqlalchemy import ForeignKey, create_engine
from sqlalchemy.ext.asyncio import AsyncAttrs, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

CUSTOMERS, ORDERS_EACH = 3, 2


class Base(AsyncAttrs, DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    orders: Mapped[list["Order"]] = relationship(back_populates="customer")


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    customer: Mapped[Customer] = relationship(back_populates="orders")
    product: Mapped["Product | None"] = relationship()


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Category(Base):
    """A tree: one top category, two under it, two under each of those."""

    __tablename__ = "categories"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    children: Mapped[list["Category"]] = relationship()


def seeded(path):
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        products = [Product(id=p, name=f"p{p}") for p in range(1, CUSTOMERS * ORDERS_EACH + 1)]
        session.add_all(
            Customer(
                id=c,
                name=f"c{c}",
                orders=[Order(product=products.pop()) for _ in range(ORDERS_EACH)],
            )
            for c in range(1, CUSTOMERS + 1)
        )
        session.add_all(Category(id=i, parent_id=i // 2 or None) for i in range(1, 8))
        session.commit()
    return engine


def async_engine(path):
    return create_async_engine(f"sqlite+aiosqlite:///{path}")
'''


def user_env(target: str, url: str, **extra: str) -> dict[str, str]:
    """The environment a user runs sqla-bench in: only ``target``'s URL set (none for
    SQLite), no container."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES} | extra
    env["SQLA_BENCH_CONTAINERS"] = "off"
    if target in URL_VARIABLES:
        env[URL_VARIABLES[target]] = url
    return env


def run_as_user(target: str, url: str, *args: str, cwd: Path, **extra: str):
    """The command as a user runs it, with only ``target``'s URL set."""
    env = user_env(target, url, **extra)
    return subprocess.run(
        [sys.executable, "-m", "sqla_bench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# The how-to's own twins (docs/examples/shop_twins.py), their declared value moved by
# OFF_BY, which a test defines first: 0 agrees with the data, 1 does not.
_DOCUMENTED_TWINS = Path(__file__).resolve().parent.parent / "docs" / "examples" / "shop_twins.py"
TWINS = _DOCUMENTED_TWINS.read_text().replace("return size.users\n", "return size.users + OFF_BY\n")
assert "OFF_BY" in TWINS, "docs/examples/shop_twins.py no longer returns size.users"


def application(folder: Path, twins: str) -> Path:
    """A project with a ``scenarios`` package holding ``twins`` and a ``bench`` package
    that must never be imported (each is what a test suite often calls its own)."""
    (folder / "scenarios").mkdir()
    (folder / "scenarios" / "__init__.py").write_text("")
    (folder / "scenarios" / "shop.py").write_text(twins)
    (folder / "bench").mkdir()
    (folder / "bench" / "__init__.py").write_text("raise ImportError('the application bench')")
    return folder


def start_run_process(
    tmp_path: Path, target: str, env: dict[str, str], *options: str
) -> tuple[subprocess.Popen, Path]:
    path = tmp_path / "signalled.json"
    command = [
        sys.executable, "-m", "sqla_bench", "run", "--target", target, "--latency", "1",
        "--scenario", "crud", "--scenario", "load", "--output", str(path), *options,
    ]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES} | env
    process = subprocess.Popen(
        command, env=clean, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    return process, path


def signal_after_cells(process: subprocess.Popen, path: Path, signum: int) -> list[int]:
    """Wait for two finished cells, note the run's children, send ``signum``; returns the
    children's pids."""
    deadline = time.monotonic() + 120
    while cells_in(path) < 2:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the run did not finish two cells in 120 s"
        time.sleep(0.1)
    children = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
    process.send_signal(signum)
    process.wait(timeout=60)
    return children


def still_running(pids: list[int], within: float = 5.0) -> list[str]:
    """Of ``pids``, those still running after ``within`` seconds (a child may take a
    moment to see that its parent has gone; a zombie is not running)."""
    deadline = time.monotonic() + within
    while True:
        running = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                process = psutil.Process(pid)
                if process.status() != psutil.STATUS_ZOMBIE:
                    running.append(" ".join(process.cmdline())[:120])
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.1)


def cells_in(path: Path) -> int:
    try:
        return len(json.loads(path.read_text())["cells"])
    except (OSError, ValueError, KeyError):
        return 0
