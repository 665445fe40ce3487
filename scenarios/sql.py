"""What SQL a case must send, checked against the statements the engine actually ran.

The harness captures each statement's text and parameter count on the engine (see
``sqla_bench.measuring.probes``); ``summarize`` reads what matters out of the text,
whatever the dialect (placeholders ``?``, ``%s``, ``%(name)s`` or ``$1::INTEGER``,
quoted or not): its verb, the table whose columns it loads first, the sizes of its ``IN
(...)`` lists, whether it selects from a subquery and whether it has an outer join.

A rule is declared beside what it describes: a loading strategy's rule comes from the
strategy (``scenarios.strategies``), a write's from its scenario. ``problems(observed)``
says, in words, every way the statements break the rule; an empty list is a match.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

JOINED, IN, SUBQUERY, PER_KEY, NONE = "joined", "in", "subquery", "per_key", "none"
SQL_KINDS = (JOINED, IN, SUBQUERY, PER_KEY, NONE)
# What each kind sends for one relationship, in words ({chunk}: keys per IN list).
KIND_WORDS = {
    JOINED: "a LEFT OUTER JOIN in the first query",
    IN: "a SELECT ... IN (keys) per {chunk} parents",
    SUBQUERY: "a SELECT joined to the first query, re-stated as a subquery",
    PER_KEY: "a SELECT per parent (per related key for a many-to-one)",
    NONE: "none: reading it raises",
}

_CAST = re.compile(r"::\w+(\[\])?")
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|\$\d+|\?")
_COLUMN_OWNER = re.compile(r"\b(\w+)\.\w+")
_IN_OPENING = re.compile(r"(?:\b(\w+\.\w+) )?\bIN \(")
_PLACEHOLDERS_ONLY = re.compile(r"^[?,\s()]*$")
_ALIAS_NUMBER = re.compile(r"_\d+$")
_SUBQUERY_TABLE = re.compile(r"\bFROM \(SELECT (?:DISTINCT )?.*? FROM (\w+)")
_WRITE_TABLE = re.compile(r"^(?:INSERT INTO|UPDATE|DELETE FROM) (\w+)")


@dataclass(frozen=True)
class Statement:
    """One statement as the engine ran it: its text and the values bound to it."""

    text: str
    parameters: int  # values in one parameter set
    sets: int = 1  # parameter sets: more than one for an executemany


@dataclass(frozen=True)
class Summary:
    """What a rule looks at in one statement."""

    verb: str  # SELECT, INSERT, UPDATE, DELETE
    table: str  # SELECT: whose columns it loads first (a subquery alias reads as "anon")
    loads: frozenset[str]  # SELECT: every table whose columns it returns
    in_lists: tuple[int, ...]  # placeholders in each IN (...) list
    parameters: int
    subquery_of: str | None  # the table a FROM (SELECT ...) subquery reads
    outer_join: bool
    text: str  # normalised: no quotes, casts or dialect placeholders

    def describe(self) -> str:
        return self.text if len(self.text) <= 120 else self.text[:117] + "..."


def normalise(text: str) -> str:
    """The statement with one placeholder style (``?``), no casts, quotes or line breaks."""
    text = _CAST.sub("", text.replace('"', "").replace("`", ""))
    return " ".join(_PLACEHOLDER.sub("?", text).split())


def summarize(
    statement: Statement, link_tables: Sequence[str] = (), discriminators: Sequence[str] = ()
) -> Summary:
    """What ``statement`` loads and how; ``link_tables`` (a many-to-many's secondary
    table) never count as what a statement loads, nor an IN list over one of the
    ``discriminators`` (``table.column``) as a list of keys."""
    text = normalise(statement.text)
    verb = text.split(" ", 1)[0].upper()
    owners = [name for name in _COLUMN_OWNER.findall(_select_list(text))]
    loaded = [name for name in owners if _table(name) not in link_tables]
    written = _WRITE_TABLE.match(text)
    subquery = _SUBQUERY_TABLE.search(text)
    return Summary(
        verb=verb,
        table=written[1] if written else _first_loaded(loaded),
        loads=frozenset(map(_table, loaded)),
        in_lists=_in_lists(text, discriminators),
        parameters=statement.parameters,
        subquery_of=subquery[1] if subquery else None,
        outer_join=" LEFT OUTER JOIN " in text,
        text=text,
    )


def _in_lists(text: str, discriminators: Sequence[str]) -> tuple[int, ...]:
    """The keys in each ``IN (...)`` list of placeholders: one per ``?``, or one per
    tuple for a composite key (``IN ((?, ?), (?, ?))``; SQLite's ``IN (VALUES (?, ?),
    ...)``); a subquery or a list of literals is no list of keys."""
    sizes = []
    for match in _IN_OPENING.finditer(text):
        column = match[1]
        if column is not None and _qualified(column) in discriminators:
            continue
        body = _parenthesised(text, match.end()).strip()
        body = body.removeprefix("VALUES ").strip()
        if not body or not _PLACEHOLDERS_ONLY.match(body):
            continue
        sizes.append(_top_level_groups(body) if "(" in body else body.count("?"))
    return tuple(sizes)


def _parenthesised(text: str, start: int) -> str:
    """What stands between an opening parenthesis (just before ``start``) and its match."""
    depth = 1
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index]
    return text[start:]


def _top_level_groups(body: str) -> int:
    depth, groups = 0, 0
    for character in body:
        if character == "(":
            groups += depth == 0
            depth += 1
        elif character == ")":
            depth -= 1
    return groups


def _qualified(column: str) -> str:
    """``table.column`` of a column as a statement names it (``rooms_1.kind``: rooms.kind)."""
    owner, _, name = column.partition(".")
    return f"{_table(owner)}.{name}"


def _select_list(text: str) -> str:
    if not text.startswith("SELECT "):
        return ""
    depth = 0
    for match in re.finditer(r"[()]|\bFROM\b", text):
        token = match[0]
        if token in "()":
            depth += 1 if token == "(" else -1
        elif depth == 0:
            return text[len("SELECT ") : match.start()]
    return text


def _first_loaded(owners: Sequence[str]) -> str:
    """The table a SELECT loads first: its first column owner under its own name.

    An aliased owner ahead of it is a key SQLAlchemy carries along: a many-to-many
    selectin on SQLAlchemy 2.0 selects ``posts_1.id`` before the tags it loads (2.1
    selects the link table's key instead). With every owner aliased (a joined eager
    load over a LIMIT selects from ``anon_1``), the first one it is."""
    plain = [name for name in owners if not _ALIAS_NUMBER.search(name)]
    return _table((plain or list(owners) or [""])[0])


def _table(name: str) -> str:
    """A table's name from the alias SQLAlchemy gave it (``posts_1``: posts; ``anon_1``,
    a subquery: anon)."""
    return _ALIAS_NUMBER.sub("", name)


# --- rules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """What loading one relationship must send: ``kind`` (one of ``SQL_KINDS``) over
    ``keys`` parent keys (distinct related keys for a many-to-one)."""

    name: str  # the relationship, for messages: "posts", "posts.comments"
    table: str | tuple[str, ...]  # the table it loads (each of an inherited class's)
    kind: str
    keys: int
    chunk: int = 0  # IN: at most this many keys per statement
    parameters: int = 1  # PER_KEY: values bound to each SELECT
    # A tree loaded level by level: the keys of each level, each level's IN lists apart
    # (``keys`` is their sum); empty for one level.
    levels: tuple[int, ...] = ()

    def statements(self) -> int:
        if self.levels:
            return sum(count_statements(self.kind, keys, self.chunk) for keys in self.levels)
        return count_statements(self.kind, self.keys, self.chunk)

    @property
    def tables(self) -> frozenset[str]:
        return _as_set(self.table)

    @property
    def named(self) -> str:
        return _first(self.table)


def _as_set(names: str | tuple[str, ...]) -> frozenset[str]:
    return frozenset((names,) if isinstance(names, str) else names)


def _first(names: str | tuple[str, ...]) -> str:
    return names if isinstance(names, str) else names[0]


def count_statements(kind: str, keys: int, chunk: int = 0) -> int:
    """Statements a relationship costs beyond the root query: the formula each kind of
    SQL implies. No parent key, no statement: nothing is loaded for no parent."""
    if keys == 0 or kind in (JOINED, NONE):
        return 0
    if kind == IN:
        return math.ceil(keys / chunk)
    if kind == SUBQUERY:
        return 1
    return keys  # PER_KEY


@dataclass(frozen=True)
class LoadSql:
    """A query of ``root`` rows and the relationships loaded with it."""

    root: str | tuple[str, ...]  # the table it selects (each of an inherited class's)
    edges: tuple[Edge, ...]
    link_tables: tuple[str, ...] = ()
    # ``table.column`` of a single-table discriminator: an IN list over it is no key list
    discriminators: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{edge.name}: {edge.kind}" for edge in self.edges]
        return f"SELECT {_first(self.root)}" + (f" ({', '.join(parts)})" if parts else "")

    def problems(self, observed: Sequence[Statement]) -> list[str]:
        summaries = [
            summarize(statement, self.link_tables, self.discriminators) for statement in observed
        ]
        if not summaries:
            return [f"no statement ran; expected {self.describe()}"]
        root, rest = summaries[0], summaries[1:]
        roots = _as_set(self.root)
        found = []
        if root.verb != "SELECT" or root.table not in roots | {"anon"}:
            found.append(
                f"the first statement should select {_first(self.root)}: {root.describe()}"
            )
        claimed: set[int] = set()
        for edge in self.edges:
            mine = [i for i, s in enumerate(rest) if s.verb == "SELECT" and s.table in edge.tables]
            claimed.update(mine)
            found += _edge_problems(edge, root, [rest[i] for i in mine], roots)
        found += [
            f"a statement no relationship explains: {s.describe()}"
            for i, s in enumerate(rest)
            if i not in claimed
        ]
        return found


def _edge_problems(
    edge: Edge, root: Summary, mine: list[Summary], roots: frozenset[str]
) -> list[str]:
    say = f"{edge.name} ({edge.kind}, {edge.keys} keys)"
    expected = edge.statements()
    # A self-referential load (or one within a hierarchy) reads the root's own table:
    # only an outer join in the first statement tells that it was loaded there.
    shared = bool(edge.tables & roots)
    if edge.kind == JOINED:
        if not (edge.tables & root.loads) or not root.outer_join:
            return [f"{say}: the first statement should LEFT OUTER JOIN {edge.named}"]
    elif (edge.tables & root.loads and not shared) or (shared and root.outer_join):
        return [f"{say}: the first statement should not load {edge.named}: {root.describe()}"]
    if len(mine) != expected:
        return [f"{say}: {len(mine)} statements load {edge.named}, expected {expected}"]
    if edge.kind == IN:
        return _in_problems(edge, say, mine)
    if edge.kind == SUBQUERY and any(s.subquery_of not in roots for s in mine):
        return [f"{say}: should select from the root query as a subquery: {mine[0].describe()}"]
    if edge.kind == PER_KEY:
        wrong = [s for s in mine if s.in_lists or s.parameters != edge.parameters]
        if wrong:
            return [
                f"{say}: each should load by one key ({edge.parameters} "
                f"value{'s' if edge.parameters != 1 else ''} bound), no IN list: "
                f"{wrong[0].describe()}"
            ]
    return []


def _in_problems(edge: Edge, say: str, mine: list[Summary]) -> list[str]:
    sizes = [s.in_lists[0] if len(s.in_lists) == 1 else None for s in mine]
    if None in sizes:
        wrong = mine[sizes.index(None)]
        return [f"{say}: each should have one IN (...) over the keys: {wrong.describe()}"]
    if sum(sizes) != edge.keys or max(sizes, default=0) > edge.chunk:
        return [f"{say}: IN lists of {sizes} keys, expected {edge.keys} in chunks of {edge.chunk}"]
    # The first query re-stated as a subquery holds an IN list of its own when the root
    # query picks its parents by key (``run --models`` does): that is no load by key.
    restated = [s for s in mine if s.subquery_of is not None]
    if restated:
        return [f"{say}: loads from the first query re-stated: {restated[0].describe()}"]
    return []


@dataclass(frozen=True)
class Writes:
    """Statements as (verb, table) pairs, in any order: what a write sends."""

    expected: tuple[tuple[str, str], ...]
    counted: Counter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counted", Counter(self.expected))

    def describe(self) -> str:
        return ", ".join(f"{count} {verb} {table}" for (verb, table), count in self.counted.items())

    def problems(self, observed: Sequence[Statement]) -> list[str]:
        seen = Counter((s.verb, s.table) for s in map(summarize, observed))
        if seen == self.counted:
            return []
        said = ", ".join(f"{count} {verb} {table}" for (verb, table), count in seen.items())
        return [f"sent {said or 'nothing'}; expected {self.describe()}"]


SqlRule = LoadSql | Writes
