"""An application's own data (``run --models --existing``): the connection made read-only
at the driver, and a checksum of each table before and after the run, so that a run that
changed anything says so."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, Table, event, select

# Statements that make every later transaction of a connection read-only, by dialect.
READ_ONLY = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = ON",
}


def make_read_only(engine: Any) -> None:
    """Every connection ``engine`` opens refuses writes, by the server's own rule."""
    sync_engine: Engine = getattr(engine, "sync_engine", engine)
    statement = READ_ONLY[sync_engine.dialect.name]

    @event.listens_for(sync_engine, "connect")
    def read_only(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()  # PostgreSQL keeps a SET only once it is committed


def checksum(connection: Any, tables: Iterable[Table]) -> dict[str, str]:
    """Each table's row count and a hash of its rows in key order."""
    found = {}
    for table in tables:
        order = list(table.primary_key.columns) or list(table.columns)
        digest, rows = hashlib.sha256(), 0
        result = connection.execution_options(stream_results=True).execute(
            select(table).order_by(*order)
        )
        for row in result:
            digest.update(repr(tuple(row)).encode())
            rows += 1
        found[table.name] = f"{rows:,} rows, sha256 {digest.hexdigest()[:16]}"
    return found
