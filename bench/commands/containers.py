"""``sqla-bench containers``: the containers sqla-bench started that still exist, and
the PgBouncers runs started that outlived them."""

from __future__ import annotations

import argparse

from rich.console import Console

from sqla_bench.base.errors import ConfigError
from sqla_bench.base.owner import owner_state, prune_ended_folders
from sqla_bench.commands.option_groups import add_prune, check_prune
from sqla_bench.commands.present import table
from sqla_bench.measuring import locust_load
from sqla_bench.servers import pgbouncer
from sqla_bench.servers.containers import ContainerError, Leftover, containers, prune
from sqla_bench.servers.targets import Servers

NEEDS_SERVERS = True  # targets come from URLs, containers or SQLite (cli._dispatch)
DESCRIPTION = (
    "List every container labelled as sqla-bench's, with the process that owns it, and "
    "every PgBouncer a run started (run --pgbouncer) that is still there. A run removes "
    "them when it ends, also on Ctrl-C or SIGTERM; one that was killed (SIGKILL) cannot, "
    "and testcontainers' reaper is off where no registry serves its image. --prune "
    "removes those whose owning process has ended, and the folders of Locust loads such "
    "a run left (the next run that starts a PgBouncer, or a Locust load, also does). A "
    "run's other helpers (the latency proxy, worker processes, the web app, Locust) end "
    "with it, whatever ends it."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_prune(parser, "containers")


def execute(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    check_prune(args)
    if args.prune:  # no Docker engine needed for these
        gone = pgbouncer.prune_leftovers(everything=args.all, say=console.print)
        console.print(f"removed {len(gone)} PgBouncer(s)")
        # A killed run's Locust processes ended with it; their folder stays (a live
        # run's, in use, never goes).
        folders = prune_ended_folders(locust_load.FOLDER_PREFIX)
        folders += prune_ended_folders(locust_load.WORKER_FOLDER_PREFIX)
        console.print(f"removed {len(folders)} Locust folder(s) of ended runs")
    _list_pgbouncers(console)
    try:
        if args.prune:
            removed = prune(everything=args.all, say=lambda line: console.print(line))
            console.print(f"removed {len(removed)} container(s)")
        left = containers()
    except ContainerError as error:
        raise ConfigError(str(error)) from None
    rows = [(c.id, c.target, c.image, c.status, _owner(c)) for c in left]
    columns = ("id", "target", "image", "status", "owner")
    console.print(
        table("sqla-bench containers", columns, rows) if left else "no sqla-bench containers"
    )
    return 0


def _list_pgbouncers(console: Console) -> None:
    left = pgbouncer.leftovers()
    if left:
        rows = [
            (str(b.pid or "?"), str(b.folder), f"{b.owner or '?'} ({owner_state(b.owner_alive)})")
            for b in left
        ]
        console.print(table("sqla-bench PgBouncers", ("pid", "folder", "owner"), rows))


def _owner(leftover: Leftover) -> str:
    return f"{leftover.owner or '?'} ({owner_state(leftover.owner_alive)})"
