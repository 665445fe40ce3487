"""A command's options from a TOML file: ``run --config FILE``, or else the
``[tool.sqla-bench]`` table of the ``pyproject.toml`` in the current directory.

A key is a long option without its dashes (``min-rounds = 5``; ``min_rounds`` too); an
option that may be repeated takes a list (``target = ["postgresql", "mysql"]``), and an
option that takes a comma list takes a list or the same text as on the command line
(``posts = [1, 5, 20]`` or ``posts = "1,5,20"``). Each value goes through the option's
own parser, so a file accepts exactly what the command line does and is refused the
same way: one line naming the file and the key, exit status 2. Options given on the
command line win over the file.

A file of several runs has a ``[[run]]`` table for each, its keys over the file's
others: ``sqla-bench run --config FILE`` makes them one after another, every run's
options checked before the first starts; ``--config-run N`` makes only the Nth.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqla_bench.base.errors import ConfigError
from sqla_bench.base.reading import read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

PYPROJECT = Path("pyproject.toml")
TABLE = ("tool", "sqla-bench")
MAX_BYTES = 1 << 20  # a configuration file, not data
# argparse has no public way to list a parser's options or to tell a flag from an option
# that takes a value; documentation generators (sphinx-argparse) read ``_actions`` too.
FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction)


def configured_runs(
    args: argparse.Namespace,
    argv: Sequence[str],
    add_arguments: Callable[[argparse.ArgumentParser], None],
) -> tuple[list[argparse.Namespace], str | None]:
    """The runs ``args`` asks for: itself with the file's options that ``argv`` (the
    command's own words) does not give; with ``[[run]]`` tables in the file, one run per
    table (its options over the file's others), or only the one ``--config-run`` names.
    Also what was read, in words (None when there is no file)."""
    source, table = _read(args.config)
    entries = table.pop("run", None)
    if args.config_run is not None and entries is None:
        where = source or "no --config FILE, and no [tool.sqla-bench] in ./pyproject.toml"
        raise ConfigError(f"--config-run {args.config_run}: no [[run]] tables ({where})")
    if not table and entries is None:
        return [args], None
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    given = _given(parser, argv)
    shared = _values(parser, table, source)
    if entries is None:
        return [_with(args, shared, given)], f"options from {source}: {', '.join(sorted(table))}"
    tables = _run_tables(entries, source)
    runs = [
        _with(args, shared | _values(parser, entry, f"{source} [[run]] {number}"), given)
        for number, entry in enumerate(tables, 1)
    ]
    for number, one in enumerate(runs, 1):
        one.config_run = number
    if args.config_run is not None:
        if args.config_run > len(runs):
            raise ConfigError(f"--config-run {args.config_run}: {source} has {len(runs)} runs")
        runs = [runs[args.config_run - 1]]
    if "output" in given and len(runs) > 1:
        raise ConfigError(f"--output names one file for the {len(runs)} runs of {source}")
    return runs, f"{len(tables)} runs in {source}"


def _with(args: argparse.Namespace, values: dict[str, Any], given: set[str]) -> argparse.Namespace:
    """``args`` with ``values`` for every option the command line does not give."""
    one = argparse.Namespace(**vars(args))
    for dest, value in values.items():
        if dest not in given:
            setattr(one, dest, value)
    return one


def _run_tables(entries: Any, source: str) -> list[dict[str, Any]]:
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(e, dict) for e in entries)
    ):
        raise ConfigError(f"{source}: run must be [[run]] tables, each a table of options")
    return entries


def _values(parser: argparse.ArgumentParser, table: dict[str, Any], source: str) -> dict[str, Any]:
    return {action.dest: value for action, value in _converted(parser, table, source)}


def _read(path: Path | None) -> tuple[str, dict[str, Any]]:
    """The table of options, and where it came from, in words."""
    if path is None:
        if not PYPROJECT.is_file():
            return "", {}
        return _tool_table(PYPROJECT, _load(PYPROJECT))
    document = _load(path)
    if path.name == PYPROJECT.name:
        return _tool_table(path, document)
    return str(path), dict(document)


def _tool_table(path: Path, document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    tool = document.get(TABLE[0], {})
    table = tool.get(TABLE[1], {}) if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{'.'.join(TABLE)}] must be a table of options")
    return f"{path} [{'.'.join(TABLE)}]", dict(table)


def _load(path: Path) -> dict[str, Any]:
    text = read_text(path, MAX_BYTES)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not TOML: {error}") from None


def _converted(
    parser: argparse.ArgumentParser, table: dict[str, Any], source: str
) -> list[tuple[argparse.Action, Any]]:
    """Each key's option and its value as the command line would have stored it."""
    options = {
        option[2:]: action
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and action.dest not in ("help", "config", "config_run")
    }
    converted = []
    for key, value in table.items():
        action = options.get(key.replace("_", "-"))
        if action is None:
            known = ", ".join(sorted(options))
            raise ConfigError(f"{source}: unknown option {key!r}; the options: {known}")
        converted.append((action, _value(action, key, value, source)))
    return converted


def _value(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    def refuse(problem: str) -> ConfigError:
        return ConfigError(f"{source}: {key} = {_shown(value)}: {problem}")

    if isinstance(action, FLAGS):
        if not isinstance(value, bool):
            raise refuse("expected true or false")
        return action.const if value else action.default
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_one(action, item, refuse) for item in items]
    if isinstance(value, list):  # a comma list, as the command line writes it
        if any(isinstance(item, (bool, list, dict)) for item in value):
            raise refuse("expected a list of numbers or words")
        value = ",".join(str(item) for item in value)
    return _one(action, value, refuse)


def _one(action: argparse.Action, item: Any, refuse: Callable[[str], ConfigError]) -> Any:
    """One value through the option's own type and choices."""
    if isinstance(item, (bool, list, dict)) or item is None:
        raise refuse(f"expected {action.metavar or 'a value'}, as on the command line")
    text = str(item)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as error:
        raise refuse(str(error) or f"not a valid {action.metavar or 'value'}") from None
    if action.choices is not None and converted not in action.choices:
        raise refuse(f"expected one of {', '.join(map(str, action.choices))}")
    return converted


def _shown(value: Any) -> str:
    """A value as the file writes it (true, "text", [1, 2]), cut short if long."""
    shown = json.dumps(value, default=str)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."


def _given(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The options ``argv`` gives itself: parsed with no defaults, only they are set."""
    saved = {action: action.default for action in parser._actions}
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        given, _ = parser.parse_known_args(list(argv))
    finally:
        for action, default in saved.items():
            action.default = default
    return set(vars(given))
