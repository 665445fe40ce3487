"""Result files: one JSON document per run, raw samples and all, described by a schema.

The document (``result.schema.json`` beside this module) holds a ``schema_version``,
what was run and how (parameters, command line, start time), where (library, driver and
server versions, the machine), and one record per measured cell with its raw samples.
Statistics are computed from these files when they are read, never stored in them.

The file is rewritten after every finished cell, to a temporary file that then replaces
it, so an interrupted run leaves a complete, valid document of what finished. URLs are
stored with their password masked, and every message is redacted before it is stored.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from sqla_bench.base.errors import ConfigError, OutputError
from sqla_bench.base.owner import owner_alive
from sqla_bench.base.reading import read_text
from sqla_bench.results.stats import summarize
from sqla_bench.results.upgrades import upgrade

SCHEMA_VERSION = 7
# ``sqla-bench verify --json``: the outcome matrix, one record per case, cell and driver.
VERIFY_SCHEMA_VERSION = 1
READABLE_VERSIONS = tuple(range(1, SCHEMA_VERSION + 1))  # older ones are upgraded as read
SCHEMA_PATH = Path(__file__).with_name("result.schema.json")
LOCAL_RESULTS = Path("results") / "local"
STATUSES = ("running", "complete", "incomplete", "interrupted", "failed")


@dataclass
class CellRecord:
    """One measured cell: what ran, where, what happened, and every timed sample."""

    case: str
    table: str  # the report table it belongs to (its own id, or the case it joins)
    label: str  # the case's one-line description
    baseline: str | None
    params: dict[str, Any]
    dataset: dict[str, int]
    target: str
    driver: str
    mode: str
    outcome: str  # "ok" or "raised" ("ok" with wrong_from set: it returned wrong results)
    error: str | None  # the exception's class name, when it raised
    wrapped_in: str | None  # e.g. StatementError, when SQLAlchemy wrapped the error
    message: str | None  # the exception's first line, redacted
    expected: str  # what the catalogue declares, in words
    matches_expected: bool
    statements: int  # completed per operation (the usual count over the samples)
    statements_started: int  # differs from ``statements`` only for a call that raised
    statements_seen: list[int]  # every distinct per-sample count; more than one is a finding
    rows: int | None  # rows or items the operation returned (None when it raised)
    warmup: int
    samples_ns: list[int] = field(default_factory=list)
    latency_ms: float | None = None  # round-trip time the proxy added; None without proxy
    # Whether the samples went through the proxy: only with latency to add (schema 4).
    # At 0 ms they went straight to the server, and round trips were counted apart.
    timed_through_proxy: bool | None = None
    pgbouncer: str | None = None  # PgBouncer's pool mode on the way, if any (run --pgbouncer)
    round_trips: int | None = None  # per operation, counted by the proxy
    round_trips_seen: list[int] = field(default_factory=list)
    concurrency: int | None = None  # workers sharing the engine; None: one call at a time
    processes: int | None = None  # worker processes the load ran in (run --processes)
    pool: dict[str, Any] | None = None  # pool_size, max_overflow, pool_timeout when set
    load: dict[str, Any] | None = None  # throughput, pool waits, errors, peak connections, CPU
    # Per operation, from calls outside the timed samples (schema version 2):
    rows_fetched: int | None = None  # rows the database returned, repeated parents included
    bytes_up: int | None = None  # on the wire, client to server (through the proxy only)
    bytes_down: int | None = None
    peak_memory: int | None = None  # bytes the client held at most (tracemalloc)
    calls: int | None = None  # Python function calls (cProfile; schema version 3)
    differences: list[str] = field(default_factory=list)  # from the catalogue, in words
    # Measured side by side with the other cells of its comparison (schema version 5):
    blocks: list[int] | None = None  # samples per block, by block number; None: alone
    slots: list[int] | None = None  # its place in each block's (rotating) order
    comparison: dict[str, Any] | None = None  # measure.Design: group, blocks, machine
    run_pass: int = 1  # run --passes: which pass over the workload measured it
    # Instructions per operation, counted under callgrind (run --instructions; schema 6).
    instructions: int | None = None
    # The checked call's statements, each distinct text once with its count, in the
    # order each first ran (``sql_of``; schema 7): what compare shows for a change.
    sql: list[dict[str, Any]] | None = None
    # Where a call that worked first returned what the data does not hold ("[12]"): it
    # returned wrong results. None: it raised, or every value was right.
    wrong_from: str | None = None
    # Why the cell could not be measured: the server went away during it. Its samples up to
    # then are dropped (a cut-off cell's figures are no timing), and it is counted apart
    # from the cells that differ from the catalogue.
    failed: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellRecord:
        # A field the schema leaves optional (pgbouncer) may be absent: its default then.
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    @property
    def timed_latency(self) -> float | None:
        """The round-trip time the samples crossed in the proxy; None when they went
        straight to the server (no --latency, or 0 ms from schema 4 on)."""
        return self.latency_ms if self.timed_through_proxy else None

    @property
    def key(self) -> tuple:
        """What identifies the cell across runs (for comparing two result files); the
        passes of one run (run --passes) are cells of their own."""
        params = tuple(sorted(self.params.items()))
        dataset = tuple(sorted(self.dataset.items()))
        pool = tuple(sorted((self.pool or {}).items()))
        # Samples timed straight to the server are comparable whether or not round trips
        # were counted apart (--latency 0 or none); those timed through the proxy at
        # 0 ms (schema 3 and older) are not.
        return (
            *(self.case, params, dataset, self.target, self.driver, self.mode),
            *(self.timed_latency, self.concurrency, pool, self.pgbouncer, self.processes),
            self.run_pass,
        )


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_path(started: datetime, targets: Iterable[str]) -> Path:
    stamp = started.strftime("%Y%m%d-%H%M%S")
    return LOCAL_RESULTS / f"run-{stamp}-{'-'.join(targets)}.json"


class ResultFile:
    """A run's result document on disk, rewritten atomically as cells finish.

    A write that fails (a full disk, say) leaves the file as the last good write left
    it, no temporary file beside it, and ``cells`` what that file holds; it raises
    OutputError, and later writes are not attempted."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.cells: list[CellRecord] = []
        self._encoded: list[str] = []  # cells are encoded once, not at every rewrite
        self._failed: OutputError | None = None
        self._written = 0  # the cells the file on disk holds
        self._write()

    def add(self, cell: CellRecord) -> None:
        self.cells.append(cell)
        self._encoded.append(_encoded(cell))
        try:
            self._write()
        except OutputError:
            self.cells.pop()  # what the file holds, and no more
            self._encoded.pop()
            raise

    def rewrite_cells(self) -> None:
        """Write the file again, after a change to cells already added."""
        self._encoded = [_encoded(cell) for cell in self.cells]
        self._write()

    def note_target(self, name: str, **facts: Any) -> None:
        """Keep what a run learned about a target in the header (the server's version,
        the machine's state, PgBouncer's settings...): a fact that is a mapping is merged
        into what the header holds, so that each PgBouncer mode adds its own. Written with
        the next cell, or at once with ``flush``."""
        _merge(self.header["targets"][name], facts)

    def flush(self) -> None:
        """Write the file again, after a change to its header."""
        self._write()

    def finish(self, status: str, reason: str | None = None) -> None:
        self.header["run"].update(status=status, reason=reason, finished=now())
        self._write()

    def _write(self) -> None:
        if self._failed is not None:  # the file stays as its last good write left it
            return
        # The header is indented for people; each cell is one line, so a diff of two
        # result files shows cells, and writing after every cell stays cheap.
        head = json.dumps(self.header, indent=2)
        cells = ",\n".join(f"    {encoded}" for encoded in self._encoded)
        body = f"[\n{cells}\n  ]" if cells else "[]"
        text = f'{head[:-2]},\n  "cells": {body}\n}}\n'  # head ends "\n}": reopen it
        temporary = temporary_beside(self.path)
        try:
            temporary.write_text(text)
            os.replace(temporary, self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            self._failed = OutputError(
                f"cannot write {self.path}: {error.strerror or error}; it holds the "
                f"{self._written} cells written before"
            )
            raise self._failed from None
        self._written = len(self._encoded)


def temporary_beside(path: Path) -> Path:
    """Where this process writes ``path``'s next content before it replaces ``path``: a
    name of its own, so that two runs given one output (two started in the same second,
    with the same default name) each write whole files and never move or remove the
    other's half-written one."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _encoded(cell: CellRecord) -> str:
    return json.dumps(cell.to_json(), separators=(",", ":"))


def run_status(header: dict[str, Any]) -> str:
    """The run's status as its file records it; a run still marked running whose process
    has ended (killed, or its machine lost) is "interrupted (its process is gone)"."""
    run = header["run"]
    owner = run.get("owner")
    if run["status"] == "running" and owner and owner_alive(owner) is False:
        return "interrupted (its process is gone)"
    return run["status"]


def check_output_path(path: Path) -> None:
    """What can be told of ``path`` without creating anything (a dry run): it names a
    file, and the nearest of its folders that exists is a folder."""
    if not path.name or os.path.isdir(path):  # "/" has no name to write a file under
        raise ConfigError(f"cannot write results to {path}: it is a directory")
    existing = path.parent
    while not os.path.lexists(existing):
        existing = existing.parent
    if not os.path.isdir(existing):
        raise ConfigError(f"cannot write results to {path}: a parent is not a directory")


def check_writable(path: Path) -> None:
    """Create ``path``'s folder and prove a file can be written there, or ConfigError."""
    check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # some part of the folder is a file
        raise ConfigError(f"cannot write results to {path}: a parent is not a directory") from None
    except OSError as error:
        raise ConfigError(f"cannot write results to {path}: {error.strerror}") from None
    try:
        probe = temporary_beside(path)
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"cannot write results to {path}: {error.strerror}") from None


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@cache
def _validator() -> jsonschema.protocols.Validator:
    """The schema's validator, the schema itself checked once: ``jsonschema.validate``
    checks the schema again on every call, 0.2 to 0.3 s each here, two thirds of the time
    to read a small result file (the test suite reads hundreds; a history, dozens)."""
    validator_class = jsonschema.validators.validator_for(schema())
    validator_class.check_schema(schema())
    return validator_class(schema())


def validate(document: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` follows the schema; the
    error raised is the one ``jsonschema.validate`` would raise (its best match)."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    if error is not None:
        raise error


def read_json(path: Path) -> Any:
    """A JSON file's content, or a one-line ConfigError saying why it cannot be read."""
    try:
        return json.loads(read_text(Path(path), MAX_READ_BYTES))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not JSON: {error.msg} at line {error.lineno}") from None
    except RecursionError:  # nested deeper than the parser goes
        raise ConfigError(f"{path} is not a file sqla-bench wrote: JSON nested too deep") from None


# The largest file read: a result file of a long sweep is tens of MB.
MAX_READ_BYTES = 1 << 30


def read_result(path: Path) -> tuple[dict[str, Any], list[CellRecord]]:
    """A result file's header and cells, or a one-line ConfigError saying what is wrong."""
    document = read_json(path)
    version = document.get("schema_version") if isinstance(document, dict) else None
    if version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise ConfigError(
            f"{path} has schema_version {version!r}; this sqla-bench reads {readable}"
        )
    document = upgrade(document, version)
    try:
        validate(document)
    except jsonschema.ValidationError as error:
        where = "/".join(map(str, error.absolute_path)) or "the top level"
        raise ConfigError(f"{path} is not a valid result file: {where}: {error.message}") from None
    cells = [CellRecord.from_json(cell) for cell in document.pop("cells")]
    return document, cells


CSV_COLUMNS = (
    *("target", "driver", "mode", "case", "table", "params", "users", "posts_per_user"),
    *("comments_per_post", "tags_per_post", "payload"),
    *("outcome", "error", "expected", "matches_expected", "statements", "rows"),
    *("rows_fetched", "latency_ms", "round_trips", "bytes_up", "bytes_down", "peak_memory"),
    *("calls", "instructions", "run_pass", "samples"),
    *("median_us", "p95_us", "mean_us", "stdev_us", "min_us", "ops_per_second"),
)


def write_csv(path: Path, cells: Iterable[CellRecord]) -> None:
    """One row per cell with its summary, for pandas or a spreadsheet."""
    try:
        with path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(_csv_row(cell) for cell in cells)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None


def params_text(params: dict[str, Any], bare: tuple[str, ...] = (), sep: str = " ") -> str:
    """Parameters in one line, ``limit=20 strategy=joined``; those named in ``bare`` by
    their value alone (a strategy is its own name: ``joined``)."""
    return sep.join(str(v) if k in bare else f"{k}={v}" for k, v in params.items())


def case_text(case: str, params: dict[str, Any]) -> str:
    """A case and its parameter cell, as a mismatch line names them:
    ``load.users_with_posts[strategy=lazy, limit=20]``."""
    return f"{case}[{params_text(params, sep=', ')}]" if params else case


def _csv_row(cell: CellRecord) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(cell, name, None) for name in CSV_COLUMNS}
    row["params"] = params_text(cell.params)
    for name in ("users", "posts_per_user", "comments_per_post", "tags_per_post", "payload"):
        row[name] = cell.dataset.get(name)
    summary = summarize(cell.samples_ns)
    row["samples"] = len(cell.samples_ns)
    if summary is not None:
        for name in ("median", "p95", "mean", "stdev", "min"):
            row[f"{name}_us"] = round(getattr(summary, f"{name}_ns") / 1000, 3)
        row["ops_per_second"] = round(summary.ops_per_second, 1)
    return row


def read_verification(path: Path) -> dict:
    """A ``sqla-bench verify --json`` document, or a one-line ConfigError."""
    document = read_json(path)
    checks = document.get("checks") if isinstance(document, dict) else None
    if not isinstance(checks, list) or not all(
        isinstance(c, dict) and c.keys() >= VERIFY_FIELDS for c in checks
    ):
        raise ConfigError(f"{path} is not the output of sqla-bench verify --json")
    version = document.get("schema_version")
    if version != VERIFY_SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: verify --json schema_version {version}, this sqla-bench reads "
            f"{VERIFY_SCHEMA_VERSION}: run sqla-bench verify --json again"
        )
    return document


VERIFY_FIELDS = {"case", "params", "driver", "observed", "passed"}


def duration(ns: float) -> str:
    """A time in the unit that keeps three significant figures readable."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}" if ns < scale * 1000 else f"{ns / scale:,.0f} {unit}"
    return f"{ns:.0f} ns"


def cell_name(cell: CellRecord) -> str:
    """A cell in one line: case, parameters, target+driver, mode and what it ran
    under."""
    parts = [cell.case, params_text(cell.params)] if cell.params else [cell.case]
    parts += [f"{cell.target}+{cell.driver}", cell.mode]
    if "users" in cell.dataset:
        parts += [f"users={cell.dataset['users']}", f"posts={cell.dataset['posts_per_user']}"]
    else:  # an application's models: generated data's dimensions, or none
        parts += [f"{name}={value}" for name, value in cell.dataset.items()]
    if cell.latency_ms is not None:
        parts.append(f"rtt={cell.latency_ms:g}ms")
    if cell.pgbouncer is not None:
        parts.append(f"pgbouncer={cell.pgbouncer}")
    if cell.concurrency is not None:
        parts.append(f"workers={cell.concurrency}")
    if cell.processes is not None:
        parts.append(f"processes={cell.processes}")
    for name, value in (cell.pool or {}).items():
        parts.append(f"{name}={value}")
    return " ".join(parts)


def _merge(into: dict[str, Any], facts: dict[str, Any]) -> None:
    for key, value in facts.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
