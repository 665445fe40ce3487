"""Result files of older schema versions read as the current one: each step adds what
that version lacked, with the value its runs had (nothing measured is made up)."""

from __future__ import annotations

from typing import Any


def upgrade(document: dict[str, Any], version: int) -> dict[str, Any]:
    """A document of an older ``version`` as the current one."""
    if version == 1:
        document = upgrade_v1(document)
    if version <= 2:
        document = upgrade_v2(document)
    if version <= 3:
        document = upgrade_v3(document)
    if version <= 4:
        document = upgrade_v4(document)
    if version <= 5:
        document = upgrade_v5(document)
    if version <= 6:
        document = upgrade_v6(document)
    return document


def upgrade_v6(document: dict[str, Any]) -> dict[str, Any]:
    """A version 6 document as version 7: it kept no SQL."""
    for cell in document.get("cells", []):
        if isinstance(cell, dict):
            cell.setdefault("sql", None)
    return {**document, "schema_version": 7}


def upgrade_v5(document: dict[str, Any]) -> dict[str, Any]:
    """A version 5 document as version 6: it counted no instructions."""
    for cell in document.get("cells", []):
        if isinstance(cell, dict):
            cell.setdefault("instructions", None)
    return {**document, "schema_version": 6}


def upgrade_v4(document: dict[str, Any]) -> dict[str, Any]:
    """A version 4 document as version 5: every cell was measured alone, one after
    another (no blocks, no comparison design), in one pass."""
    for cell in document.get("cells", []):
        if isinstance(cell, dict):
            cell.update(blocks=None, slots=None, comparison=None, run_pass=1)
    return {**document, "schema_version": 5}


def upgrade_v3(document: dict[str, Any]) -> dict[str, Any]:
    """A version 3 document as version 4: every cell with a latency, 0 ms included, was
    timed through the proxy."""
    for cell in document.get("cells", []):
        if isinstance(cell, dict):
            cell.setdefault("timed_through_proxy", cell.get("latency_ms") is not None)
    return {**document, "schema_version": 4}


def upgrade_v2(document: dict[str, Any]) -> dict[str, Any]:
    """A version 2 document as version 3: it counted no function calls."""
    for cell in document.get("cells", []):
        if isinstance(cell, dict):
            cell.setdefault("calls", None)
    return {**document, "schema_version": 3}


def upgrade_v1(document: dict[str, Any]) -> dict[str, Any]:
    """A version 1 document as version 2: its datasets had no payload (0 bytes), and it
    measured neither rows fetched, bytes, memory, nor recorded differences in words."""
    datasets = document.get("run", {}).get("parameters", {}).get("datasets", [])
    cells = document.get("cells", [])
    for dataset in [
        *datasets,
        *(cell.get("dataset", {}) for cell in cells if isinstance(cell, dict)),
    ]:
        if isinstance(dataset, dict):
            dataset.setdefault("payload", 0)
    for cell in cells:
        if isinstance(cell, dict):
            for name in ("rows_fetched", "bytes_up", "bytes_down", "peak_memory"):
                cell.setdefault(name, None)
            cell.setdefault("differences", [])
    return {**document, "schema_version": 2}
