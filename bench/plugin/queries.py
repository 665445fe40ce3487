"""What the plugin's ``sqla_queries`` fixture and ``sqla_max_statements`` marker count:
the statements that run on an engine, a connection or a session, sync or async, and
their SQL grouped for a failure's message."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqla_bench.plugin.lazy_loads import LazyLoad


@dataclass
class Queries:
    """What ran inside one ``sqla_queries(...)`` block."""

    started: int = 0
    completed: int = 0
    commits: int = 0
    rollbacks: int = 0
    statements: list[str] = field(default_factory=list)  # SQL of each completed one

    def __len__(self) -> int:
        return self.completed


@contextmanager
def counting(target: Any) -> Iterator[Queries]:
    """Count on ``target`` (an Engine, a Connection or a Session, sync or async; the
    ``Engine`` class counts on every engine) until the block ends."""
    from sqla_bench.measuring.probes import StatementCounter

    counter, queries = StatementCounter(), Queries()
    counter.detail = True
    for place in _event_targets(target):
        counter.attach(place)
    try:
        yield queries
    finally:
        counter.detach()
        queries.started, queries.completed = counter.started, counter.completed
        queries.commits, queries.rollbacks = counter.commits, counter.rollbacks
        queries.statements = [executed.text for executed in counter.executed]


def _event_targets(target: Any) -> list[Any]:
    """Where statements of ``target`` can be listened to: engines and connections carry
    events; a session's statements run on the engine or connection it is bound to."""
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    if isinstance(target, AsyncSession):
        target = target.sync_session
    return [target.get_bind() if isinstance(target, Session) else target]


def grouped_statements(statements: list[str], loads: list[LazyLoad] = ()) -> list[str]:
    """The statements in the order first sent, each text once with how many times it
    ran ("20 times") and, for a repeated one, the lazy load that sent it."""
    counted = Counter(" ".join(sql.split()) for sql in statements)
    lines = []
    for number, (text, times) in enumerate(counted.items(), 1):
        said = f"  {number}. {text}" + (f" ({times} times)" if times > 1 else "")
        sender = next(
            (load for load in loads if times > 1 and f" FROM {load.table} " in f"{text} "),
            None,
        )
        if sender is not None:
            said += f" <- {sender.relationship} loaded lazily at {sender.call_site}"
        lines.append(said)
    return lines
