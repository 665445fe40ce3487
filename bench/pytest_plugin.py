"""sqla-bench's pytest plugin, active wherever sqla-bench is installed (``pytest11``).

- ``sqla_queries``: a fixture that counts what runs on an engine, a connection or a
  session, sync or async, inside a ``with`` block: statements started and completed, and
  the SQL of each.
- ``@pytest.mark.sqla_max_statements(n)``: fails a test that completes more than ``n``
  statements on any engine, its SQL grouped, a repeated statement named by its lazy
  load.
- ``--sqla-nplusone``: fails a test in which the same lazy load (relationship and call
  site) fires more than ``--sqla-nplusone-threshold`` times, naming the loader option
  that avoids it from the query's root entity (a chain for a nested load, a depth for a
  tree); in async code, any implicit load (which raises MissingGreenlet) fails it.
- ``--sqla-advise``: replays the query under each N+1 with each loader option that
  avoids it (``sqla_bench.plugin.advise``) and prints what each costs, with a
  recommendation.
- ``--sqla-unused-eager``: fails a test in which a relationship loaded eagerly is never
  read (nplusone's other half).
- ``--sqla-counts PATH``: holds each test's statements (exactly, both ways) and Python
  function calls (first-use work left out, so that they do not depend on the tests run
  before) to a committed file (``--sqla-counts-update`` writes it), with the tolerances
  it declares.

Nothing is listened to unless a test asks for one of these: SQLAlchemy is imported only
then, so a suite that uses none of them runs as it did.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sqla_bench.plugin.counts import CountsFile, counting_calls
from sqla_bench.plugin.eager_loads import check_unused, watching_eager_loads
from sqla_bench.plugin.lazy_loads import (
    NPLUSONE_THRESHOLD,
    LazyLoad,
    check_lazy_loads,
    explain_implicit_io,
    repeated_loads,
    watching_lazy_loads,
)
from sqla_bench.plugin.queries import Queries, counting, grouped_statements

MARKER = "sqla_max_statements"


@pytest.fixture
def sqla_queries() -> Callable[[Any], Any]:
    """``with sqla_queries(engine_or_connection_or_session) as queries:`` counts what runs
    there; afterwards ``queries.completed``, ``.started`` and ``.statements`` (the SQL)."""
    return counting


# --- options and markers -----------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqla-bench", "SQLAlchemy statements, lazy loads and counts")
    group.addoption(
        "--sqla-nplusone",
        action="store_true",
        help="fail a test in which one lazy load (relationship and line) fires more than "
        "--sqla-nplusone-threshold times, or any implicit load in async code",
    )
    group.addoption(
        "--sqla-nplusone-threshold",
        type=int,
        default=NPLUSONE_THRESHOLD,
        metavar="N",
        help=f"lazy loads allowed from one line per test (default {NPLUSONE_THRESHOLD})",
    )
    group.addoption(
        "--sqla-advise",
        action="store_true",
        help="replay the query under each N+1 a test shows with each loader option that "
        "avoids it (read-only, rolled back), check they return the same objects, and print "
        "their statements, rows and times with a recommendation",
    )
    group.addoption(
        "--sqla-unused-eager",
        action="store_true",
        help="fail a test in which a relationship loaded eagerly (joinedload, selectinload, "
        "lazy='selectin', ...) is never read: the load was work for nothing",
    )
    group.addoption(
        "--sqla-counts",
        metavar="PATH",
        help="hold each test's statements and function calls to this file's counts",
    )
    group.addoption(
        "--sqla-counts-update",
        action="store_true",
        help="write the counts of the tests that passed into --sqla-counts PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(n): fail the test if it completes more than n SQL statements"
    )
    path = config.getoption("sqla_counts")
    if config.getoption("sqla_counts_update") and not path:
        raise pytest.UsageError("--sqla-counts-update needs --sqla-counts PATH")
    if config.getoption("sqla_nplusone_threshold") < 1:
        raise pytest.UsageError("--sqla-nplusone-threshold must be 1 or more")
    if path:
        config.stash[COUNTS] = CountsFile.open(Path(path), config.getoption("sqla_counts_update"))
    if config.getoption("sqla_advise"):
        config.stash[ADVICE] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    counts = config.stash.get(COUNTS, None)
    if counts is not None and counts.updating:
        counts.write()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    advice = config.stash.get(ADVICE, None)
    if advice is not None:
        terminalreporter.section("sqla-bench advise: each N+1 replayed under each loader option")
        for line in advice or ["no N+1 seen"]:
            terminalreporter.write_line(line)
    counts = config.stash.get(COUNTS, None)
    if counts is not None and counts.note:
        terminalreporter.write_line(f"sqla-bench counts: {counts.note}")
    if counts is not None and counts.missing:
        terminalreporter.write_line(
            f"sqla-bench counts: {len(counts.missing)} test(s) not in {counts.path}, their "
            f"counts not held (--sqla-counts-update records them): {', '.join(counts.missing)}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """The test's own call, observed as it asked: statements on every engine, lazy loads,
    and (for a counts file) Python function calls; its fixtures' set-up is not in it."""
    config = pyfuncitem.config
    limit = _statement_limit(pyfuncitem.get_closest_marker(MARKER))
    counts = config.stash.get(COUNTS, None)
    nplusone = config.getoption("sqla_nplusone")
    unused = config.getoption("sqla_unused_eager")
    advise = config.getoption("sqla_advise")
    if limit is None and counts is None and not (nplusone or unused or advise):
        return (yield)
    from sqlalchemy import Engine

    watch_loads = nplusone or advise or limit is not None  # a limit's failure names them
    with (
        counting(Engine) as queries,
        watching_lazy_loads(watch_loads, roots=advise) as loads,
        watching_eager_loads(unused) as eager,
        counting_calls(counts) as calls,
    ):
        try:
            result = yield
        except Exception as error:
            if nplusone:
                explain_implicit_io(loads, error)
            raise
    if advise:  # before any check can fail the test: the advice is the point
        _advise(config, pyfuncitem.nodeid, loads, config.getoption("sqla_nplusone_threshold"))
    _check_limit(limit, queries, loads)
    if eager is not None:
        check_unused(eager)
    if nplusone:
        check_lazy_loads(loads, config.getoption("sqla_nplusone_threshold"))
    if counts is not None and calls is not None:
        counted = {"statements": queries.completed, "calls": calls.total}
        counts.hold(pyfuncitem.nodeid, counted, queries.statements)
    return result


# --- the statement limit -------------------------------------------------------------------


def _statement_limit(marker: pytest.Mark | None) -> int | None:
    """The marker's limit, checked before the test runs."""
    if marker is None:
        return None
    limit = marker.args[0] if marker.args else marker.kwargs.get("n")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        pytest.fail(f"{MARKER} takes a whole number of statements, not {limit!r}", pytrace=False)
    return limit


def _check_limit(limit: int | None, queries: Queries, loads: list[LazyLoad]) -> None:
    if limit is not None and queries.completed > limit:
        shown = "\n".join(grouped_statements(queries.statements, loads))
        pytest.fail(
            f"{queries.completed} SQL statements, over the {limit} allowed by {MARKER}:\n{shown}",
            pytrace=False,
        )


# --- lazy loads ----------------------------------------------------------------------------


def _advise(config: pytest.Config, test: str, loads: list[LazyLoad], threshold: int) -> None:
    """Replay each N+1 of the test under each loader option
    (``sqla_bench.plugin.advise``) and keep the advice for the end of the session."""
    from sqla_bench.plugin import advise

    said = config.stash[ADVICE]
    for load, _, depth in repeated_loads(loads, threshold):
        first = next(each for each in loads if each == load)
        if first.root is None or first.final is None:
            said.append(f"{test}: {load.relationship} at {load.call_site}: no query to replay")
            continue
        site = advise.Site(
            load.relationship, load.call_site, first.root, first.path, first.final, depth,
            first.self_referential,
        )  # fmt: skip
        try:
            said += [f"{test}:", *advise.advice(site, advise.replay(site))]
        except Exception as error:  # the test's data or connection: say so, do not fail it
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            said.append(f"{test}: {load.relationship} at {load.call_site}: not replayed ({reason})")


# --- eager loads never read -----------------------------------------------------------------


# --- counts held to a file -----------------------------------------------------------------


COUNTS = pytest.StashKey[CountsFile]()
ADVICE = pytest.StashKey[list[str]]()
