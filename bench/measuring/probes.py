"""Probes that observe an engine without changing what it does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sqla_bench.scenarios.sql import Statement
from sqla_bench.servers.latency import Totals


@dataclass(frozen=True)
class Executed:
    """A statement that completed: its text and parameters as the driver got them, and
    the rows the driver reported it returned (None: not a query; -1: the driver does not
    say, as SQLite's cursors do not for a SELECT)."""

    text: str
    parameters: Any
    executemany: bool
    rows: int | None

    def statement(self) -> Statement:
        if self.executemany:
            first = self.parameters[0] if self.parameters else ()
            return Statement(self.text, len(first), len(self.parameters))
        return Statement(self.text, len(self.parameters or ()))


MAX_SQL_TEXTS = 100  # distinct statements a cell keeps (an N+1 repeats one text)
MAX_SQL_CHARS = 2_000  # of each text: a long IN list says what it is long before this


def sql_of(executed: list[Executed]) -> list[dict[str, Any]]:
    """The statements in ``executed`` as a cell keeps them: each distinct text once
    (whitespace collapsed, cut at ``MAX_SQL_CHARS``) with how many times it ran, in the
    order each first ran, at most ``MAX_SQL_TEXTS`` texts. Counting repeats keeps an
    N+1 of a thousand loads to two entries, and a change to it readable as a count."""
    counts: dict[str, int] = {}
    for statement in executed:
        text = " ".join(statement.text.split())
        if len(text) > MAX_SQL_CHARS:
            text = text[: MAX_SQL_CHARS - 3] + "..."
        if text in counts or len(counts) < MAX_SQL_TEXTS:
            counts[text] = counts.get(text, 0) + 1
    return [{"text": text, "count": count} for text, count in counts.items()]


class StatementCounter:
    """Counts statements started and completed on an engine, and the COMMITs and
    ROLLBACKs it sends; while ``detail`` is on, keeps what each statement was.

    ``before_cursor_execute`` fires as a statement starts, ``after_cursor_execute`` once
    it returned. They differ when the driver fails inside ``cursor.execute``: with
    asyncpg a lazy load in async code starts its SELECT and then raises MissingGreenlet,
    so it shows as started but not completed. An ``executemany`` counts once, as it is
    one call. ``commit`` and ``rollback`` fire when a transaction ends on a connection,
    including the rollback of a session that closes with its transaction open (a pool's
    reset of a returned connection is not one). Detail is for the call a verdict is
    drawn from, never for timed samples or loads, which would only grow the list.
    Listeners go on the sync engine or connection: SQLAlchemy has no events on their
    async proxies."""

    def __init__(self) -> None:
        self.detail = False
        self._attached: list[Any] = []
        self.reset()

    def attach(self, target: Engine | AsyncEngine | Connection | AsyncConnection | type) -> None:
        """Count on ``target``: an engine, a connection, or the ``Engine`` class itself
        (every engine of the process)."""
        if isinstance(target, (AsyncEngine, AsyncConnection)):
            target = (
                target.sync_engine if isinstance(target, AsyncEngine) else target.sync_connection
            )
        for name, listener in self._listeners():
            event.listen(target, name, listener)
        self._attached.append(target)

    def detach(self) -> None:
        """Stop counting wherever ``attach`` started it."""
        for target in self._attached:
            for name, listener in self._listeners():
                event.remove(target, name, listener)
        self._attached.clear()

    def _listeners(self) -> list[tuple[str, Callable[..., None]]]:
        return [
            ("before_cursor_execute", self._on_start),
            ("after_cursor_execute", self._on_complete),
            ("commit", self._on_commit),
            ("rollback", self._on_rollback),
        ]

    def reset(self) -> None:
        self.started = 0
        self.completed = 0
        self.commits = 0
        self.rollbacks = 0
        self.executed: list[Executed] = []

    def _on_start(self, *_: Any) -> None:
        self.started += 1

    def _on_complete(
        self, conn: Any, cursor: Any, text: str, parameters: Any, context: Any, many: bool
    ) -> None:
        self.completed += 1
        if self.detail:
            rows = None if cursor.description is None else cursor.rowcount
            self.executed.append(Executed(text, parameters, many, rows))

    def _on_commit(self, *_: Any) -> None:
        self.commits += 1

    def _on_rollback(self, *_: Any) -> None:
        self.rollbacks += 1


class RoundTripCounter:
    """Counts network round trips and bytes each way through a latency proxy
    (``sqla_bench.servers.latency``).

    ``read`` returns the proxy's running totals. The proxy counts a round trip when the
    server's answer reaches it, before passing it on, so by the time a call has its
    answer, the count includes it.
    """

    def __init__(self, read: Callable[[], Totals]) -> None:
        self._read = read
        self._base = read()

    def reset(self) -> None:
        self._base = self._read()

    def since(self) -> Totals:
        """Round trips, bytes up (client to server) and down since the last reset."""
        return self._read() - self._base

    @property
    def count(self) -> int:
        return self.since().round_trips
