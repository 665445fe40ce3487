"""Faults planted in SQLAlchemy at run time, each leaving every statement count as it was.

A verdict that only counts statements passes under every one of them; the checks that
look at the SQL, the values and the committed state must not. ``tests/test_faults_found``
runs ``sqla-bench verify`` in a process of its own with one fault installed:

    python -m tests.sqla_faults FAULT verify --target sqlite ...

The faults are the project's own, written against SQLAlchemy 2.0 and 2.1 internals:

- ``selectin_as_subquery``: the loader registered for ``lazy="selectin"`` (option or
  mapping) is the subquery loader, which sends as many statements up to 500 parents;
- ``commit_rolls_back``: a session's COMMIT is sent as a ROLLBACK by the dialect (the
  engine's commit event still fires, so a count of COMMITs alone would not see it);
- ``rows_reversed``: every result fetched whole comes back in reverse order;
- ``awaitable_attrs_reversed``: ``await obj.awaitable_attrs.rel`` returns the
  collection reversed.

Two more are planted in the PgBouncer patterns' own settings (``scenarios/pooler.py``),
to show that their verdicts hold the outcome and the value, not a count:

- ``prepared_statements_kept``: "off" leaves the drivers' prepared statements on;
- ``set_local_as_set``: the session_state pattern's ``SET LOCAL`` is sent as ``SET``.

And one fault of the server's, for the tests of a target that fails part-way, after
every check made before any work passed:

- ``postgresql_gone_while_seeding``: seeding a PostgreSQL target raises the
  ``OperationalError`` of a server that closed the connection.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def selectin_as_subquery() -> None:
    from sqlalchemy.orm.relationships import RelationshipProperty

    # Strategies are looked up by their lazy= key when a property first needs one.
    registry = RelationshipProperty._all_strategies[RelationshipProperty]
    registry[(("lazy", "selectin"),)] = registry[(("lazy", "subquery"),)]


_SESSION_COMMITS = [0]  # session commits under way (SQLAlchemy nests one in another)


def commit_rolls_back() -> None:
    from sqlalchemy.engine.default import DefaultDialect
    from sqlalchemy.orm.session import SessionTransaction

    # Only a session's commit: the harness's own commits (seeding) go through.
    session_commit, do_commit = SessionTransaction.commit, DefaultDialect.do_commit

    def commit(self, *args, **kwargs):
        _SESSION_COMMITS[0] += 1
        try:
            return session_commit(self, *args, **kwargs)
        finally:
            _SESSION_COMMITS[0] -= 1

    def rolled_back(self, dbapi_connection) -> None:
        if _SESSION_COMMITS[0]:
            dbapi_connection.rollback()
        else:
            do_commit(self, dbapi_connection)

    SessionTransaction.commit, DefaultDialect.do_commit = commit, rolled_back
    # A dialect with a do_commit of its own would escape the fault: refuse to run then,
    # rather than pass silently.
    from sqlalchemy.dialects import mysql, postgresql, sqlite  # noqa: F401

    overriding = [cls for cls in _subclasses(DefaultDialect) if "do_commit" in vars(cls)]
    if overriding:
        raise SystemExit(f"commit_rolls_back does not reach {overriding}")


def rows_reversed() -> None:
    from sqlalchemy.engine.cursor import CursorFetchStrategy

    fetchall = CursorFetchStrategy.fetchall

    def reversed_fetchall(self, result, dbapi_cursor):
        return list(reversed(fetchall(self, result, dbapi_cursor)))

    CursorFetchStrategy.fetchall = reversed_fetchall


def awaitable_attrs_reversed() -> None:
    from sqlalchemy.ext.asyncio import AsyncAttrs

    getter = AsyncAttrs._AsyncAttrGetitem.__getattr__

    async def reversed_collection(awaitable):
        value = await awaitable
        return list(reversed(value)) if isinstance(value, list) else value

    def __getattr__(self, name):
        return reversed_collection(getter(self, name))

    AsyncAttrs._AsyncAttrGetitem.__getattr__ = __getattr__


def prepared_statements_kept() -> None:
    from sqla_bench.scenarios import pooler

    pooler.PREPARED_STATEMENTS_OFF.clear()


def set_local_as_set() -> None:
    from sqla_bench.scenarios import pooler

    setting = pooler._set_marker
    pooler._set_marker = lambda scope: setting("session")


def postgresql_gone_while_seeding() -> None:
    from sqlalchemy.exc import OperationalError

    from sqla_bench.measuring import engines

    rebuild = engines.rebuild

    def gone(connection, size) -> None:
        if connection.dialect.name == "postgresql":
            cause = ConnectionError("server closed the connection unexpectedly")
            raise OperationalError("INSERT INTO sqla_bench_users ...", None, cause)
        rebuild(connection, size)

    engines.rebuild = gone


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


FAULTS: dict[str, Callable[[], None]] = {
    fault.__name__: fault
    for fault in (
        *(selectin_as_subquery, commit_rolls_back, rows_reversed, awaitable_attrs_reversed),
        *(prepared_statements_kept, set_local_as_set),
        postgresql_gone_while_seeding,
    )
}


if __name__ == "__main__":
    FAULTS[sys.argv[1]]()
    from sqla_bench.cli import main

    raise SystemExit(main(sys.argv[2:]))
