"""Counts held to a committed file (``--sqla-counts``): each test's statements, exactly,
and its Python function calls with first-use work left out, within the file's
tolerances."""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# What a counts file holds a test to unless it declares otherwise: statements exactly,
# function calls within 5 % (SQLAlchemy's own profiles.txt allows as much).
DEFAULT_TOLERANCE = {"statements": 0.0, "calls": 0.05}
COUNTS_VERSION = 2  # 2: calls leave first-use work out, and each test's SQL is kept
CALLS_METHOD = "first use left out"


class _Calls:
    """Function calls (Python and built-in, as cProfile counts them) made in this
    thread, but for work done once per process that lands in whichever test needs it
    first: a SQL statement's compilation (cached after), an import, the configuration of
    mappers, a memoized attribute's first computation, a loader strategy set up on first
    use. Without it a test's count depends on the tests that ran before it."""

    def __init__(self) -> None:
        self.total = 0
        self._first_use = _first_use_code()
        self._inside: Any = None  # the frame of first-use work being left out

    def __call__(self, frame: Any, event: str, _: Any) -> None:
        if self._inside is not None:
            if event == "return" and frame is self._inside:
                self._inside = None
            return
        if event == "call":
            if frame.f_code in self._first_use:
                self._inside = frame
            else:
                self.total += 1
        elif event == "c_call":
            self.total += 1


def _first_use_code() -> frozenset[Any]:
    """The code of the functions whose calls are first-use work (see ``_Calls``)."""
    import importlib
    import importlib._bootstrap as bootstrap

    from sqlalchemy.orm import interfaces
    from sqlalchemy.sql import cache_key, compiler, visitors
    from sqlalchemy.util import langhelpers

    mapper = importlib.import_module("sqlalchemy.orm.mapper")  # the package's is a function

    functions = [
        compiler.Compiled.__init__,
        bootstrap._find_and_load,
        mapper._configure_registries,
        langhelpers.memoized_property.__get__,
        langhelpers.HasMemoized.memoized_attribute.__get__,
        # A construct's cache-key structure and its visitors' dispatch, made per class
        cache_key.HasCacheKey._generate_cache_attrs.__func__,
        visitors.HasTraversalDispatch.generate_dispatch,
    ]
    strategies = _subclasses(interfaces.LoaderStrategy)
    functions += [cls.__dict__["__init__"] for cls in strategies if "__init__" in cls.__dict__]
    return frozenset(f.__code__ for f in functions if hasattr(f, "__code__"))


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@contextmanager
def counting_calls(counts: CountsFile | None) -> Iterator[_Calls | None]:
    """Function calls of the block, when counts are held. The collector is held off so
    that no finalizer of earlier work lands in it."""
    if counts is None:
        yield None
        return
    calls = _Calls()
    collecting, previous = gc.isenabled(), sys.getprofile()
    gc.disable()
    sys.setprofile(calls)
    try:
        yield calls
    finally:
        sys.setprofile(previous)
        if collecting:
            gc.enable()


def _environment() -> dict[str, str]:
    """What function calls depend on besides the code under test."""
    import sqlalchemy

    return {"python": platform.python_version(), "sqlalchemy": sqlalchemy.__version__}


@dataclass
class CountsFile:
    """Per-test counts, committed beside the tests, and the tolerances they are held
    to."""

    path: Path
    updating: bool
    tolerance: dict[str, float]
    environment: dict[str, str]
    tests: dict[str, dict[str, int]]
    method: str = CALLS_METHOD  # how the file's calls were counted
    held_sql: dict[str, dict[str, int]] = field(default_factory=dict)  # the file's SQL
    measured: dict[str, dict[str, int]] = field(default_factory=dict)
    sql: dict[str, dict[str, int]] = field(default_factory=dict)  # this run's, per test
    missing: list[str] = field(default_factory=list)  # tests run that the file lacks
    note: str = ""

    @classmethod
    def open(cls, path: Path, updating: bool) -> CountsFile:
        """The file at ``path`` (none yet is an empty one when updating); one UsageError
        for a file that cannot be read or written."""
        if updating and not os.access(path.parent if path.parent.parts else ".", os.W_OK):
            raise pytest.UsageError(f"--sqla-counts {path}: cannot write in {path.parent}")
        if not path.exists():
            if not updating:
                raise pytest.UsageError(
                    f"--sqla-counts {path}: no such file (write it with --sqla-counts-update)"
                )
            return cls(path, True, dict(DEFAULT_TOLERANCE), _environment(), {})
        try:
            data = json.loads(path.read_text())
            return cls(
                path,
                updating,
                {**DEFAULT_TOLERANCE, **data.get("tolerance", {})},
                data["environment"],
                data["tests"],
                data.get("calls_method", "cProfile, first use included"),
                data.get("sql", {}),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise pytest.UsageError(f"--sqla-counts {path}: cannot read it: {error}") from None

    def hold(self, test: str, counts: dict[str, int], statements: list[str]) -> None:
        """Fail ``test`` if its statements changed (either way: a decrease asks for the
        file to be updated, so that it is held to the new number) or its calls grew
        beyond the tolerance; a test the file does not know is recorded and reported."""
        self.measured[test] = counts
        self.sql[test] = dict(Counter(" ".join(text.split()) for text in statements))
        held = self.tests.get(test)
        if self.updating:
            return
        if held is None:
            self.missing.append(test)
            return
        names = ["statements"]
        if self.environment == _environment() and self.method == CALLS_METHOD:
            names.append("calls")
        else:
            self.note = (
                f"function calls not held: the file's were counted on {self.environment} "
                f"({self.method}), this run is on {_environment()} ({CALLS_METHOD})"
            )
        changed = [self._change(name, held[name], counts[name]) for name in names if name in held]
        changed = [text for text in changed if text]
        if changed:
            added = self._sql_added(test)
            pytest.fail(
                f"counts differ from {self.path}'s: {'; '.join(changed)} "
                f"(--sqla-counts-update records the new ones){added}",
                pytrace=False,
            )

    def _change(self, name: str, held: int, counted: int) -> str | None:
        tolerance = self.tolerance[name]
        grew = counted > held * (1 + tolerance)
        fell = name == "statements" and counted < held
        if not (grew or fell):
            return None
        allowed = "held exactly" if tolerance == 0 else f"{tolerance:.0%} allowed"
        return f"{name} {held:,} -> {counted:,} ({(counted - held) / max(held, 1):+.1%}, {allowed})"

    def _sql_added(self, test: str) -> str:
        """The statements this run sent more often than the file's run did, and those it
        sent less often, by their SQL."""
        before = self.held_sql.get(test)
        if before is None:
            return ""
        now = self.sql[test]
        more = [(text, now[text] - before.get(text, 0)) for text in now]
        fewer = [(text, before[text] - now.get(text, 0)) for text in before]
        lines = [f"\n  + {text} ({n} more)" for text, n in more if n > 0]
        lines += [f"\n  - {text} ({n} fewer)" for text, n in fewer if n > 0]
        return "".join(lines)

    def write(self) -> None:
        """The file with this run's counts beside those of the tests it did not run."""
        data = {
            "version": COUNTS_VERSION,
            "tolerance": self.tolerance,
            "environment": _environment(),
            "calls_method": CALLS_METHOD,
            "tests": dict(sorted({**self.tests, **self.measured}.items())),
            "sql": dict(sorted({**self.held_sql, **self.sql}.items())),
        }
        self.path.write_text(json.dumps(data, indent=1) + "\n")
