"""``sqla-bench list``: the scenarios, strategies, patterns and targets available here."""

from __future__ import annotations

import argparse

from rich.console import Console

from sqla_bench.commands.present import table
from sqla_bench.scenarios.registry import discover
from sqla_bench.scenarios.sql import KIND_WORDS
from sqla_bench.scenarios.strategies import STRATEGIES, Strategy
from sqla_bench.servers.targets import TARGETS, Pending, Servers, Unavailable

NEEDS_SERVERS = True  # targets come from URLs, containers or SQLite (cli._dispatch)
DESCRIPTION = "List what can be run here, and why any target is unavailable."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``list`` takes no options."""


def execute(args: argparse.Namespace, servers: Servers, console: Console) -> int:
    scenarios = [
        (case.id, case.doc, _grid(case.params))
        for case in discover(("scenario", "web"))  # web: measured with --concurrency
    ]
    console.print(table("Scenarios", ("id", "what it does", "parameters"), scenarios))
    strategies = [
        (s.name, KIND_WORDS[s.sql].format(chunk=s.chunk), _in_async(s), s.doc)
        for s in STRATEGIES.values()
    ]
    columns = ("strategy", "SQL per relationship", "in async code", "what it is")
    console.print(table("Loading strategies (scenarios/strategies.py)", columns, strategies))
    console.print(
        f"Verification patterns: {len(discover('pattern'))} (sqla-bench verify --only patterns)"
    )
    targets = [_target_row(name, servers) for name in TARGETS]
    console.print(table("Targets", ("target", "status", "drivers"), targets))
    return 0


def _grid(params: dict) -> str:
    return ", ".join(f"{name}: {'/'.join(map(str, values))}" for name, values in params.items())


def _in_async(strategy: Strategy) -> str:
    if strategy.only is not None:
        return f"{strategy.only} only"
    if strategy.implicit_io:
        return "MissingGreenlet"
    return "raises" if strategy.refuses else "works"


def _target_row(name: str, servers: Servers) -> tuple[str, str, str]:
    target = servers.plan(name)  # a container is only named here, not started
    if isinstance(target, Unavailable):
        return name, f"unavailable: {target.reason}", ""
    drivers = ", ".join(f"{d.spec.name} ({d.spec.mode})" for d in target.drivers)
    where = "started when used" if isinstance(target, Pending) else target.safe_url
    return name, f"{target.source}: {where}", drivers
