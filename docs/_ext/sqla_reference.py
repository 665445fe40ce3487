"""The parts of the reference that are read from the code when the docs are built, so
that they cannot drift from it: the result file's fields (``result.schema.json``), the
catalogue of cases and their expected outcomes (``scenarios/``), the pytest plugin's
fixtures, markers and options, and a check that every option the pages name by hand is
one the command's parser has (the command-line reference itself is sphinx-argparse's).

Each directive renders Markdown through MyST, so the tables look like the hand-written
ones."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from documented_options import plugin_declarations, unknown_options
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)


class _MarkdownDirective(SphinxDirective):
    """A directive whose content is Markdown made from the code, parsed in place."""

    def markdown(self) -> str:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(
            self._lines(self.markdown()), self.content_offset, container, match_titles=True
        )
        return container.children

    def _lines(self, text: str) -> Any:
        from docutils.statemachine import StringList

        return StringList(text.splitlines(), source=self.env.docname)


def _cell(text: Any) -> str:
    """Text that fits in one cell of a Markdown table."""
    return " ".join(str(text).split()).replace("|", "\\|")


class ResultSchema(_MarkdownDirective):
    """Every field of a result file, from ``result.schema.json``: path, type, what it holds."""

    def markdown(self) -> str:
        schema = json.loads(
            resources.files("sqla_bench.results").joinpath("result.schema.json").read_text()
        )
        rows = list(_fields(schema, schema, "", depth=0))
        table = ["| field | type | what it holds |", "|---|---|---|"]
        table += [f"| `{path}` | {_cell(kind)} | {_cell(doc)} |" for path, kind, doc in rows]
        version = schema["properties"]["schema_version"].get("const", "")
        return f"Schema version {version}: {_cell(schema.get('description', ''))}\n\n" + "\n".join(
            table
        )


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = {**schema["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type_of(node: dict) -> str:
    kind = node.get("type", "")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if "enum" in node:
        kind = "one of " + ", ".join(f"`{value}`" for value in node["enum"] if value is not None)
    if "const" in node:
        kind = f"`{node['const']}`"
    return kind or "any"


def _fields(schema: dict, node: dict, prefix: str, depth: int):
    """(path, type, description) of each property, depth first; a cell's fields once."""
    node = _resolve(schema, node)
    for name, child in node.get("properties", {}).items():
        child = _resolve(schema, child)
        path = f"{prefix}.{name}" if prefix else name
        yield path, _type_of(child), child.get("description", "")
        items = _resolve(schema, child.get("items", {})) if child.get("type") == "array" else {}
        if "properties" in child and depth < 4:
            yield from _fields(schema, child, path, depth + 1)
        elif "properties" in items and depth < 4:
            yield from _fields(schema, items, f"{path}[]", depth + 1)


class Catalogue(_MarkdownDirective):
    """Every scenario and pattern with the outcome the catalogue expects of it, per driver
    and mode, on the default dataset (``scenarios/``: the same declarations the tests
    and ``verify`` hold the code to)."""

    SETTINGS = (
        ("sqlite", "pysqlite", "sync"),
        ("sqlite", "aiosqlite", "async"),
        ("postgresql", "psycopg2", "sync"),
        ("postgresql", "asyncpg", "async"),
    )

    def markdown(self) -> str:
        from sqla_bench.scenarios.registry import discover

        header = " | ".join(f"{driver} ({mode})" for _, driver, mode in self.SETTINGS)
        out = []
        for kind, title in (("scenario", "Scenarios"), ("pattern", "Patterns")):
            rule = "|---|" + "---|" * len(self.SETTINGS)
            out += [f"## {title}", "", f"| case | {header} |", rule]
            out += [self._row(case, params) for case in discover(kind) for params in case.cells()]
            out.append("")
        return "\n".join(out)

    def _row(self, case: Any, params: dict) -> str:
        from sqla_bench.scenarios.dataset import DatasetSize

        outcomes = [_outcome(case, where, DatasetSize(), params) for where in self.SETTINGS]
        shown = " ".join(f"{k}={v}" for k, v in params.items())
        name = f"`{case.id}` {_cell(shown)}".strip()
        return f"| {name} | " + " | ".join(map(_cell, outcomes)) + " |"


def _outcome(case: Any, where: tuple[str, str, str], size: Any, params: dict) -> str:
    from sqla_bench.measuring.engines import sqlalchemy_version
    from sqla_bench.scenarios.expect import Setting

    target, driver, mode = where
    try:
        setting = Setting(target, driver, mode, sqlalchemy_version())
        return case.expected(setting, size, **params).describe()
    except Exception as error:  # an expectation that reads the data measured
        return f"decided by the data ({type(error).__name__})"


class PluginReference(_MarkdownDirective):
    """The pytest plugin's fixtures, markers and command-line options, read from the
    plugin module itself."""

    def markdown(self) -> str:
        import sqla_bench.pytest_plugin as plugin

        declared = plugin_declarations()
        fixtures = [
            (name, (value.__doc__ or "").strip())
            for name, value in vars(plugin).items()
            if type(value).__name__ == "FixtureFunctionDefinition"
        ]
        out = ["## Fixtures", "", "| fixture | what it gives |", "|---|---|"]
        out += [f"| `{name}` | {_cell(doc)} |" for name, doc in fixtures]
        out += ["", "## Markers", "", "| marker | what it does |", "|---|---|"]
        for line in declared.markers:
            name, _, doc = line.partition(": ")
            out.append(f"| `@pytest.mark.{name}` | {_cell(doc)} |")
        out += ["", "## Options", "", "| option | what it does |", "|---|---|"]
        for names, settings in declared.options:
            metavar = f" {settings['metavar']}" if "metavar" in settings else ""
            out.append(f"| `{', '.join(names)}{metavar}` | {_cell(settings.get('help', ''))} |")
        return "\n".join(out)


def check_documented_options(app: Sphinx, docname: str, source: list[str]) -> None:
    """Warn (an error under -W) where a page names an option its command lacks."""
    for line, option, command in unknown_options(source[0]):
        logger.warning(
            f"{option} is not an option of sqla-bench {command or '(any command)'}",
            location=(docname, line),
        )


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("sqla-result-schema", ResultSchema)
    app.add_directive("sqla-catalogue", Catalogue)
    app.add_directive("sqla-plugin", PluginReference)
    app.connect("source-read", check_documented_options)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
