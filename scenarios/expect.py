"""Expected outcomes: "works, with N statements", "raises X", or "returns wrong results"
(works, with no error, and returns what the data does not hold), per driver and version.

Scenarios and patterns declare what they expect through these types; the harness
observes what happened and compares. Where drivers or SQLAlchemy versions differ, the
difference is written here once, as data, with the evidence that established it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import MissingGreenlet, StatementError

from sqla_bench.scenarios.sql import SqlRule


@dataclass(frozen=True)
class Setting:
    """Where an outcome is observed: the facts an expectation may depend on."""

    target: str  # sqlite, postgresql, mysql
    driver: str  # pysqlite, aiosqlite, psycopg2, asyncpg, psycopg, pymysql, aiomysql
    mode: str  # sync or async
    sqlalchemy: tuple[int, int]  # major, minor
    # PgBouncer's pool mode between the client and the server (run --pgbouncer), if any.
    pgbouncer: str | None = None
    # Runs a query of the declaration's on a read-only connection to the data measured:
    # an application's own (run --models ... --scenarios), which no definition describes.
    read: Callable[[Callable[[Any], Any]], Any] | None = field(default=None, compare=False)


class _Undeclared:
    """The value of a case that declared none (a working call must declare one)."""

    def __repr__(self) -> str:
        return "undeclared"


UNDECLARED: Any = _Undeclared()


@dataclass(frozen=True)
class Committed:
    """What the database must hold once a call returned and its session closed, read on a
    connection of its own before the call and after it: ``read(connection)`` gives plain
    data, ``change(before)`` what it must be after. ``commits`` and ``rollbacks`` are the
    COMMITs and ROLLBACKs the engine must have sent, the session's closing included."""

    what: str  # in words, e.g. "users.visits of user 2"
    read: Callable[[Connection], Any]
    change: Callable[[Any], Any]
    commits: int
    rollbacks: int

    def describe(self) -> str:
        return f"{self.what}, {self.commits} COMMIT, {self.rollbacks} ROLLBACK"


def unchanged(before: Any) -> Any:
    """``Committed.change`` of a call whose writes must not be kept."""
    return before


@dataclass(frozen=True)
class Works:
    """Works, with ``statements`` completed; it returns ``value`` (from the dataset's
    definition), sends what ``sql`` describes, and leaves the database as ``committed``
    says, where those are declared."""

    statements: int
    value: Any = UNDECLARED
    sql: SqlRule | None = None
    committed: Committed | None = None

    def describe(self) -> str:
        return works_text(self.statements)


@dataclass(frozen=True)
class Raises:
    """The operation raises ``error``; ``statements`` completed before it did.

    ``attempted`` counts statements that started (``before_cursor_execute`` fired),
    which exceeds ``statements`` when a driver fails inside ``cursor.execute``.
    ``wrapped_in`` is set when SQLAlchemy delivers the error as the ``.orig`` of another
    exception."""

    error: type[BaseException]
    statements: int
    attempted: int | None = None
    wrapped_in: type[BaseException] | None = None

    @property
    def started(self) -> int:
        return self.statements if self.attempted is None else self.attempted

    def describe(self) -> str:
        name = self.error.__name__
        if self.wrapped_in is not None:
            name = f"{self.wrapped_in.__name__}({name})"
        return raises_text(name, self.statements, self.started)


@dataclass(frozen=True)
class WrongResults:
    """The worst outcome: no error, ``statements`` completed, and from value
    ``first_wrong`` on (an index into the list the call returns) the values are not
    the data's. ``value`` is what the data does hold (from the dataset's definition),
    so the wrong values are told apart from the right ones, not assumed."""

    statements: int
    first_wrong: int
    value: Any = UNDECLARED

    def describe(self) -> str:
        return wrong_text(self.statements, f"[{self.first_wrong}]")


@dataclass(frozen=True)
class NotApplicable:
    reason: str

    def describe(self) -> str:
        return f"n/a: {self.reason}"


Outcome = Works | Raises | WrongResults | NotApplicable


# An outcome in words, also for a result file's record of one (which keeps names, not
# classes): "works, 2 statements", "raises StatementError(MissingGreenlet) after 1 (started 2)",
# "returns wrong results from value[12], 14 statements".
def works_text(statements: int) -> str:
    return f"works, {_statements(statements)}"


def _statements(count: int) -> str:
    return f"{count} statement{'s' if count != 1 else ''}"


def raises_text(name: str, statements: int, started: int) -> str:
    return f"raises {name} after {statements} (started {started})"


WRONG_RESULTS = "returns wrong results"


def wrong_text(statements: int, first_wrong: str) -> str:
    """``first_wrong``: where in the value the first wrong one is, e.g. ``[12]``."""
    return f"{WRONG_RESULTS} from value{first_wrong}, {_statements(statements)}"


# Async drivers whose adapter awaits while it creates a cursor. There an implicit load
# fails before its statement starts, and SQLAlchemy wraps the MissingGreenlet in a
# StatementError; elsewhere the statement starts, fails in execute, and MissingGreenlet
# arrives plainly. Observed with SQLAlchemy 2.0.58 and 2.1.9 on the drivers installed
# by this project; the verification tests fail if a release changes it.
_CURSOR_CREATION_AWAITS: dict[tuple[int, int], frozenset[str]] = {
    (2, 0): frozenset({"aiomysql"}),
    (2, 1): frozenset({"psycopg", "aiomysql", "aiosqlite"}),
}


def missing_greenlet(setting: Setting, completed: int) -> Raises:
    """The form in which an implicit load inside async code fails on this driver."""
    newest = max(_CURSOR_CREATION_AWAITS)
    awaiting = _CURSOR_CREATION_AWAITS.get(setting.sqlalchemy, _CURSOR_CREATION_AWAITS[newest])
    if setting.driver in awaiting:
        return Raises(MissingGreenlet, completed, wrapped_in=StatementError)
    return Raises(MissingGreenlet, completed, attempted=completed + 1)


def sync_or_greenlet(setting: Setting, statements: int, completed_before_io: int) -> Outcome:
    """Works in sync mode; in async the implicit IO fails as ``missing_greenlet``."""
    if setting.mode == "sync":
        return Works(statements)
    return missing_greenlet(setting, completed_before_io)
