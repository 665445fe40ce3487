"""Options named by hand in the docs, held to the parsers that define them.

A page that says ``sqla-bench run --no-such-option`` (in a command, or in inline code
such as ``run --no-such-option`` or ``--no-such-option``) names an option that a user
would type and be refused: the docs build warns (an error under ``-W``) and
``tests/test_docs.py`` fails. Known options are read from ``sqla_bench.cli``'s parser,
command by command, and from the pytest plugin's own declarations."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

# Other tools' options that the pages name in passing (pytest, pip, Chromium, tox).
OTHER_TOOLS = frozenset(
    {"--dist", "--pdb", "--config-settings", "--headless", "--no-sandbox", "--disable-gpu",
     "--screenshot", "--window-size", "--benchmark-json", "--benchmark-only", "--master",
     "--worker", "--master-host", "--master-bind-host", "--master-bind-port", "--master-port",
     "--host", "--collect-only", "--processes", "--version", "--benchmark-storage",
     "--name"}  # --name=value: how MariaDB's server options are written
)  # fmt: skip

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND_USE = re.compile(r"sqla-bench\s+([a-z][a-z-]*)\b([^`|;&\n]*)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")


@cache
def command_options() -> dict[str, frozenset[str]]:
    """Each sqla-bench command's option strings, from the parser the command line uses."""
    from sqla_bench.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    return {
        name: frozenset(s for action in sub._actions for s in action.option_strings)
        for name, sub in commands.choices.items()
    }


class PluginRecorder:
    """Stands in for pytest's parser and config: records what the plugin declares."""

    def __init__(self) -> None:
        self.options: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self.markers: list[str] = []
        self.stash: dict[Any, Any] = {}

    def getgroup(self, *_: Any) -> PluginRecorder:
        return self

    def addoption(self, *names: str, **settings: Any) -> None:
        self.options.append((names, settings))

    def addinivalue_line(self, name: str, line: str) -> None:
        if name == "markers":
            self.markers.append(line)

    def getoption(self, name: str) -> Any:
        for names, settings in self.options:
            if names[0].lstrip("-").replace("-", "_") == name:
                return settings.get("default")
        return None


@cache
def plugin_declarations() -> PluginRecorder:
    """What ``sqla_bench.pytest_plugin`` declares: its options, and its markers as
    configured with every option at its default."""
    import sqla_bench.pytest_plugin as plugin

    recorder = PluginRecorder()
    plugin.pytest_addoption(recorder)
    plugin.pytest_configure(recorder)
    return recorder


@cache
def benchmark_options() -> frozenset[str]:
    """The options of the pytest-benchmark suite (``sqla_bench.benchmarks``)."""
    from sqla_bench.benchmarks import conftest

    recorder = PluginRecorder()
    conftest.pytest_addoption(recorder)
    return frozenset(name for names, _ in recorder.options for name in names)


def known_anywhere() -> frozenset[str]:
    plugin = {name for names, _ in plugin_declarations().options for name in names}
    return frozenset().union(*command_options().values(), plugin, benchmark_options(), OTHER_TOOLS)


def unknown_options(text: str) -> Iterator[tuple[int, str, str | None]]:
    """(line number, option, command or None) for each option ``text`` names that its
    command (or, named alone, every command and the plugin) lacks."""
    commands = command_options()
    anywhere = known_anywhere()
    for number, line in enumerate(_joined_lines(text), start=1):
        checked: set[int] = set()
        for use in COMMAND_USE.finditer(line):
            command = use.group(1)
            if command not in commands:
                continue
            for option in OPTION.finditer(use.group(2)):
                checked.add(use.start(2) + option.start())
                if option.group() not in commands[command]:
                    yield number, option.group(), command
        for code in INLINE_CODE.finditer(line):
            words = code.group(1).split()
            command = words[0] if words and words[0] in commands else None
            for option in OPTION.finditer(code.group(1)):
                if code.start(1) + option.start() in checked:
                    continue
                known = commands[command] if command else anywhere
                if option.group() not in known:
                    yield number, option.group(), command


def _joined_lines(text: str) -> list[str]:
    """The lines of ``text``, a shell line continued with a backslash joined to the next
    (the continuation kept in the first one's place, so line numbers hold)."""
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].endswith("\\"):
            lines[i + 1] = lines[i][:-1] + " " + lines[i + 1].lstrip()
            lines[i] = ""
    return lines
