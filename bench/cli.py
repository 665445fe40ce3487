"""The ``sqla-bench`` command: parse, dispatch, map what happened to an exit status.

Each command lives in a module of its own (``sqla_bench.commands``), imported only when
it runs, and measures through the one pipeline (``sqla_bench.run.pipeline``); this
module knows the commands by name and one line each, so ``sqla-bench --help`` and a
mistyped command answer before SQLAlchemy, scipy or matplotlib is loaded.

Errors in what the user asked for end in one line on stderr and exit status 2; an
outcome that disagrees with the catalogue exits 1; a target that failed part-way exits
3 with everything that finished kept; an error no check foresaw exits 70 with its
traceback in a file. Passwords are never printed.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import shlex
import shutil
import signal
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

from sqla_bench.base.errors import EXIT_SOFTWARE, EXIT_USAGE, ConfigError, OutputError, fail, redact
from sqla_bench.base.stopping import raise_stop, stopped_by

SQLITE_FOLDER_PREFIX = "sqla-bench-run-"  # a command's own folder, its SQLite file in it

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

# Each command, and the line ``sqla-bench --help`` shows for it; its module is
# sqla_bench.commands.<name> (``list`` is sqla_bench.commands.listing: ``list`` is a builtin).
COMMANDS = {
    "list": "scenarios, strategies, patterns, targets and drivers available here",
    "verify": "run the verification catalogue and print the outcome matrix",
    "run": "measure scenarios: time, statements and rows per operation, raw samples saved",
    "selfcheck": "benchmark the harness itself: overhead, raw driver vs pgbench, run-to-run CV",
    "report": "print the tables of result files; --out writes a Markdown and HTML report",
    "compare": "the regression gate: compare two runs cell by cell",
    "calibrate": "measure a workload N times: each cell's spread, for compare --history",
    "baseline": "hold every scenario's counts to the committed baselines (--update rewrites them)",
    "containers": "list the containers sqla-bench started that still exist; --prune removes them",
    "tables": "list the tables sqla-bench created still in your databases; --prune removes them",
    "load-worker": "send a run's HTTP load from another machine (a Locust worker for the run)",
}
MODULES = {name: name for name in COMMANDS} | {"list": "listing", "load-worker": "load_worker"}

EPILOG = (
    "Server targets come from SQLA_BENCH_POSTGRESQL_URL and SQLA_BENCH_MYSQL_URL "
    "(plain postgresql:// or mysql:// URLs; every driver's URL is derived from them). "
    "Without a URL, sqla-bench starts the server in a container when a Docker engine "
    "answers (images: SQLA_BENCH_POSTGRESQL_IMAGE, SQLA_BENCH_MYSQL_IMAGE; server "
    "options: SQLA_BENCH_POSTGRESQL_SERVER_OPTIONS, SQLA_BENCH_MYSQL_SERVER_OPTIONS) "
    "and removes it when done. SQLite needs nothing. 'sqla-bench COMMAND --help' "
    "explains each command."
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"sqla-bench: error: {message} (see --help)\n")


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"{__package__}.commands.{MODULES[name]}")


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of ``commands`` (default: every command's). A
    command left out is still known by name and summary, so it can be listed and
    chosen; its options are declared only when it is the one that runs."""
    detailed = set(COMMANDS if commands is None else commands)
    parser = _Parser(
        prog="sqla-bench",
        description="Benchmark and pattern-verification suite for SQLAlchemy sync and async.",
        epilog=EPILOG,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name, summary in COMMANDS.items():
        if name not in detailed:
            subparsers.add_parser(name, help=summary, add_help=False)
            continue
        module = command_module(name)
        command = subparsers.add_parser(name, help=summary, description=module.DESCRIPTION)
        module.add_arguments(command)
    return parser


def _command_in(argv: Sequence[str]) -> list[str]:
    """The command an argument list names, if any: its first word that is not an option
    (no option of sqla-bench's own takes a value)."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return [first] if first in COMMANDS else []


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    args.argv = ["sqla-bench", *argv]
    quiet_abandoned_cursors()
    # SIGTERM unwinds like Ctrl-C, so containers and proxies are stopped on the way out.
    signal.signal(signal.SIGTERM, raise_stop)
    urls: list[URL] = []
    try:
        return _dispatch(args, urls)
    except (ConfigError, OutputError) as error:
        fail(f"sqla-bench: error: {error}", EXIT_USAGE)
    except KeyboardInterrupt as interruption:
        what, status = stopped_by(interruption)
        fail(f"sqla-bench: {what}", status)
    except Exception as error:  # the safety net under every check: a bug of ours
        _internal_error(error, args.argv, urls)
    finally:
        # Abandoned cursor coroutines (the MissingGreenlet cells) are finalised now, while
        # the warning filter above still works, not noisily at interpreter shutdown.
        gc.collect()


def quiet_abandoned_cursors() -> None:
    """The MissingGreenlet patterns abandon a cursor coroutine on purpose (see
    pyproject): Python's warning about it says nothing a user can act on."""
    warnings.filterwarnings(
        "ignore", "coroutine 'Connection.cursor' was never awaited", RuntimeWarning
    )


def _dispatch(args: argparse.Namespace, urls: list[URL]) -> int:
    """Run the command with the servers it may use, stopped however it ends; ``urls``
    collects their URLs, for a last-resort message to redact."""
    from sqla_bench.base.owner import make_owned_folder, prune_ended_folders
    from sqla_bench.commands.present import console, say_on_stderr

    module = command_module(args.command)
    # The SQLite target's folder is the command's own; one a killed command left (SIGKILL
    # skips the clean-up below) is removed by the next, whichever it is.
    prune_ended_folders(SQLITE_FOLDER_PREFIX)
    if not module.NEEDS_SERVERS:
        # A command that reads result files only: no server, container or SQLite folder
        # is set up for it, and none of the modules that do so is loaded.
        return module.execute(args, None, console())
    from sqla_bench.servers.targets import Servers

    execute = module.execute
    sqlite_dir = make_owned_folder(SQLITE_FOLDER_PREFIX)
    try:
        with Servers(sqlite_dir, say=say_on_stderr) as servers:
            try:
                return execute(args, servers, console())
            except Exception:
                urls += servers.urls()
                raise
    finally:
        shutil.rmtree(sqlite_dir, ignore_errors=True)


def _internal_error(error: Exception, argv: list[str], urls: list[URL]) -> NoReturn:
    """One line, and the traceback in a file of its own (passwords redacted): an error
    that no check foresaw is a bug to report, not a usage error."""
    text = redact("".join(traceback.format_exception(error)), *urls)
    with tempfile.NamedTemporaryFile(
        "w", prefix="sqla-bench-traceback-", suffix=".txt", delete=False
    ) as file:
        file.write(f"{shlex.join(argv)}\n\n{text}")
    first = redact(f"{type(error).__name__}: {error}", *urls).splitlines()[0][:200]
    fail(
        f"sqla-bench: internal error: {first}; please report it with the command line "
        f"and the traceback in {file.name}",
        EXIT_SOFTWARE,
    )
