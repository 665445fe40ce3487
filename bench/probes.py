"""Probes that observe an engine without changing what it does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine


class StatementCounter:
    """Counts statements started and completed on an engine.

    ``before_cursor_execute`` fires as a statement starts, ``after_cursor_execute`` once it
    returned. They differ when the driver fails inside ``cursor.execute``: with asyncpg a
    lazy load in async code starts its SELECT and then raises MissingGreenlet, so it shows
    as started but not completed. An ``executemany`` counts once, as it is one call.
    Listeners go on the sync engine: SQLAlchemy has no events on ``AsyncEngine`` itself.
    """

    def __init__(self) -> None:
        self.started = 0
        self.completed = 0

    def attach(self, engine: Engine | AsyncEngine) -> None:
        sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        event.listen(sync_engine, "before_cursor_execute", self._on_start)
        event.listen(sync_engine, "after_cursor_execute", self._on_complete)

    def reset(self) -> None:
        self.started = 0
        self.completed = 0

    def _on_start(self, *_: Any) -> None:
        self.started += 1

    def _on_complete(self, *_: Any) -> None:
        self.completed += 1


class RoundTripCounter:
    """Counts network round trips through a latency proxy (``bench.latency``).

    ``read`` returns the proxy's running total. The proxy counts a round trip when the
    server's answer reaches it, before passing it on, so by the time a call has its
    answer, the count includes it.
    """

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read
        self._base = read()

    def reset(self) -> None:
        self._base = self._read()

    @property
    def count(self) -> int:
        return self._read() - self._base
