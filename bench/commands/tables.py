"""``sqla-bench tables``: the tables sqla-bench created that still exist in the databases
given by URL."""

from __future__ import annotations

import argparse

from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from sqla_bench.base.errors import ConfigError
from sqla_bench.base.owner import owner_state
from sqla_bench.commands.option_groups import add_prune, add_target, check_prune
from sqla_bench.commands.present import table
from sqla_bench.measuring.engines import sync_engine
from sqla_bench.servers import owned
from sqla_bench.servers.targets import URL_VARIABLES, Servers, Target, check_reachable, said_by

NEEDS_SERVERS = True  # targets come from URLs, containers or SQLite (cli._dispatch)
DESCRIPTION = (
    "List the tables sqla-bench created that are still in the databases of "
    f"{' and '.join(URL_VARIABLES.values())}, with the process that created each. A run "
    f"records its tables in {owned.OWNER_TABLE} before it creates them and removes them "
    "when it ends, also on Ctrl-C, SIGTERM or a failure; one that was killed cannot, and "
    "the next run on that database removes what it left. --prune removes them now: the "
    "tables whose creator has ended. No other table is ever dropped. (A container and "
    "the SQLite file go with the run that made them: 'sqla-bench containers' lists the "
    "containers a killed run left.)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target(parser, "every target given by URL")
    add_prune(parser, "tables")


def execute(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    check_prune(args)
    rows = []
    for target in _url_targets(args.target, servers):
        check_reachable(target)
        engine = sync_engine(target.drivers[0])
        try:
            with engine.begin() as connection:
                if args.prune:
                    for record in owned.prune(connection, everything=args.all):
                        console.print(f"removed {record.name} from {target.name} ({record.owner})")
                rows += [(target.name, *_row(r)) for r in owned.leftovers(connection)]
        except SQLAlchemyError as error:
            raise ConfigError(
                f"{target.name} at {target.safe_url}: {said_by(error, target)}"
            ) from None
        finally:
            engine.dispose()
    columns = ("target", "table", "created", "creator")
    console.print(table("sqla-bench tables", columns, rows) if rows else "no sqla-bench tables")
    return 0


def _url_targets(names: list[str] | None, servers: Servers) -> list[Target]:
    """The named targets (each must have a URL), or every target that has one."""
    if names:
        for name in names:
            if name not in URL_VARIABLES:
                raise ConfigError(
                    f"--target {name}: only a database given by URL can hold a killed run's "
                    f"tables ({', '.join(URL_VARIABLES)})"
                )
    planned = [servers.plan(name) for name in names or URL_VARIABLES]
    found = [t for t in planned if isinstance(t, Target) and t.source.startswith("url")]
    if names and len(found) < len(planned):
        missing = [name for name in names if name not in {t.name for t in found}]
        raise ConfigError(f"{missing[0]} has no URL: set {URL_VARIABLES[missing[0]]}")
    return found


def _row(record: owned.Record) -> tuple[str, str, str]:
    return record.name, record.created[:19], f"{record.owner} ({owner_state(record.owner_alive)})"
