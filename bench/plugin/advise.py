"""``pytest --sqla-advise``: each N+1 a test showed, replayed under each loader option.

For a lazy load that fired more than once at one line of a test (the plugin's
``--sqla-nplusone`` finds them), the query that loaded its parents is run again, as the
test wrote it and then with each loader option that would load the relationship with
it (the chain from the query's root entity, as the plugin suggests), in sessions of
their own that only read and are rolled back. Each replay walks the same object graph
the test did (the roots, the relationships on the way, the one that lazy-loaded), and
every option must return the same objects and collections as the query as written:
one that does not is named and never recommended. The options are run in turn, in
rounds whose order rotates, so that the machine's drift reaches each alike; each is
reported with its statements, the rows the database returned and its median time, and
the recommendation says under which condition it holds: at this database's latency, and
with an added latency per round trip, modelled as time plus statements times that
latency (no proxy: a statement is one round trip here).

A recommendation is the fastest option and the next one's time over it, paired round by
round (each round is a block of the guide's statistics, ``stats.ratio``: the
Hodges-Lehmann estimate and its 95 % interval). It names a winner only where that
interval lies wholly above 1 + ``MIN_EFFECT`` in each of two passes of the rounds and
both passes name the same option; otherwise it says the two are within noise.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqla_bench.measuring.probes import StatementCounter
from sqla_bench.plugin.lazy_loads import Root
from sqla_bench.reporting.verdicts import MIN_EFFECT
from sqla_bench.results.stats import Ratio, ratio

ROUNDS = 16  # replays of each option, interleaved: two passes of eight
PASSES = 2  # a winner is one both halves of the rounds name, each clearly
ADDED_LATENCY_MS = 1.0  # the added round-trip time the second recommendation is for


@dataclass(frozen=True)
class Site:
    """One N+1: a relationship lazy-loaded repeatedly from one line, below a root query."""

    relationship: str
    call_site: str
    root: Root
    path: tuple[Any, ...]  # plugin Hops from the root entity to the parent
    final: Any  # the Hop that lazy-loaded
    depth: int  # levels read, for a tree
    self_referential: bool


@dataclass
class Replay:
    """One loader option's replays."""

    option: str
    statements: int = 0
    rows: int = 0
    times_ns: list[int] = field(default_factory=list)
    graph: Any = None
    same: bool = True

    def median_ms(self) -> float:
        return statistics.median(self.times_ns) / 1e6


def options_for(site: Site) -> list[tuple[str, Callable[[Any], Any] | None]]:
    """The query as written (None), then each loader option that loads the relationship
    with it, from the root entity: (words, option maker)."""
    from sqlalchemy.orm import immediateload, joinedload, selectinload, subqueryload

    above = [hop for hop in site.path if hop.name != site.relationship]

    def chain(final_loader: Callable, final_words: str, **extra: Any) -> tuple[str, Callable]:
        def make(_: Any) -> Any:
            option = None
            for hop in above:
                loader = selectinload if hop.collection else joinedload
                option = (
                    loader(hop.attribute)
                    if option is None
                    else getattr(option, loader.__name__)(hop.attribute)
                )
            last = site.final.attribute
            if option is None:
                return final_loader(last, **extra)
            return getattr(option, final_loader.__name__)(last, **extra)

        words = ".".join([*(h.loader() for h in above), final_words])
        return words, make

    found: list[tuple[str, Callable | None]] = [("as written", None)]
    name = site.relationship
    if site.self_referential:
        from sqla_bench.plugin.lazy_loads import tree_loader

        deeper = {"recursion_depth": site.depth - 1} if site.depth > 1 else {}
        found.append(chain(selectinload, tree_loader(name, site.depth), **deeper))
        return found
    for loader in (joinedload, selectinload, subqueryload, immediateload):
        found.append(chain(loader, f"{loader.__name__}({name})"))
    return found


def replay(site: Site, rounds: int = ROUNDS) -> list[Replay]:
    """Every option of the site, replayed ``rounds`` times in rotating order."""
    options = options_for(site)
    replays = [Replay(words) for words, _ in options]
    for round_ in range(rounds):
        order = list(range(len(options)))
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for index in order:
            _, make = options[index]
            statement = site.root.statement
            if make is not None:
                statement = statement.options(make(None))
            _run(site, statement, replays[index])
    reference = replays[0].graph
    for each in replays[1:]:
        each.same = each.graph == reference
    return replays


def _run(site: Site, statement: Any, into: Replay) -> None:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    counter = StatementCounter()
    counter.detail = True
    counter.attach(Engine)  # an async replay runs on an engine of its own
    try:
        if site.root.is_async:
            started, graph = asyncio.run(_async_walk(site, statement))
        else:
            with Session(site.root.bind) as session:
                started = time.perf_counter_ns()
                graph = walk(session, statement, site)
                started = time.perf_counter_ns() - started
    finally:
        counter.detach()
    into.times_ns.append(started)
    into.statements = counter.completed
    if not into.rows:  # the same each replay: counted once
        into.rows = _rows(site, counter.executed)
    into.graph = graph


def _rows(site: Site, executed: list[Any]) -> int:
    """Rows the database returned: as each driver reported them, or, where it reported
    -1 (SQLite's), counted by running the SELECT again, as ``run`` does."""
    known = sum(e.rows for e in executed if e.rows is not None and e.rows >= 0)
    unknown = [e for e in executed if e.rows == -1]
    if not unknown:
        return known
    if site.root.is_async:
        return known + asyncio.run(_recount_async(site, unknown))
    with site.root.bind.connect() as connection:
        return known + sum(
            len(connection.exec_driver_sql(e.text, e.parameters).all()) for e in unknown
        )


async def _recount_async(site: Site, unknown: list[Any]) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(site.root.bind.url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            total = 0
            for each in unknown:
                result = await connection.exec_driver_sql(each.text, each.parameters)
                total += len(result.all())
            return total
    finally:
        await engine.dispose()


async def _async_walk(site: Site, statement: Any) -> tuple[int, Any]:
    """The walk in async code: on a new engine for the same database (the test's pool
    belongs to the test's event loop, which has ended), its sync part in run_sync."""
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(site.root.bind.url, poolclass=NullPool)
    try:
        async with AsyncSession(engine) as session:
            started = time.perf_counter_ns()
            graph = await session.run_sync(walk, statement, site)
            return time.perf_counter_ns() - started, graph
    finally:
        await engine.dispose()


def walk(session: Any, statement: Any, site: Site) -> Any:
    """The root objects and, along the site's path, the relationships the test read,
    as identities: what each option must return alike."""
    from sqlalchemy import inspect

    roots = session.scalars(statement).unique().all()
    hops = [hop for hop in site.path if hop.name != site.relationship]
    levels = site.depth if site.self_referential else 1

    def identity(obj: Any) -> Any:
        return None if obj is None else inspect(obj).identity

    def down(obj: Any, remaining: list[Any], level: int) -> Any:
        if obj is None:
            return None
        if remaining:
            hop, rest = remaining[0], remaining[1:]
            return (identity(obj), _each(getattr(obj, hop.key), lambda o: down(o, rest, level)))
        if level > levels:
            return identity(obj)
        related = getattr(obj, site.final.key)
        return (identity(obj), _each(related, lambda o: down(o, [], level + 1)))

    return [down(obj, hops, 1) for obj in roots]


def _each(value: Any, visit: Callable[[Any], Any]) -> Any:
    if isinstance(value, list | tuple | set):
        return tuple(sorted((visit(item) for item in value), key=repr))
    return visit(value)


def advice(site: Site, replays: Sequence[Replay]) -> list[str]:
    """The site's replays and the recommendation, in lines for the terminal."""
    written = replays[0]
    lines = [
        f"{site.relationship} at {site.call_site} (an N+1 below "
        f"{_root_words(site.root.statement)}; {len(written.times_ns)} replays of each, "
        f"in turn, in {PASSES} passes):"
    ]
    width = max(len(r.option) for r in replays)
    for each in replays:
        note = "" if each.same else "  RETURNED ANOTHER GRAPH: not recommended"
        lines.append(
            f"  {each.option:<{width}}  {each.statements:>3} statements  {each.rows:>6} rows  "
            f"{each.median_ms():8.2f} ms{note}"
        )
    usable = [r for r in replays if r.same]
    if len(usable) < 2:
        return [*lines, "  no option returned the same objects and collections"]
    here = _best(usable, lambda r: [t / 1e6 for t in r.times_ns])
    far = _best(usable, lambda r: [t / 1e6 + r.statements * ADDED_LATENCY_MS for t in r.times_ns])
    lines.append(f"  fastest here ({_conditions(site)}): {here}")
    lines.append(
        f"  fastest at +{ADDED_LATENCY_MS:g} ms per round trip (modelled: time + statements "
        f"x {ADDED_LATENCY_MS:g} ms): {far}"
    )
    lines.append(
        f"  every option returned the same objects and collections as written: "
        f"{'yes' if all(r.same for r in replays) else 'no'}"
    )
    return lines


def _best(replays: Sequence[Replay], costs: Callable[[Replay], list[float]]) -> str:
    """The cheapest option by the median of its ``costs`` (one a round), and the next
    one's cost over it, paired by round: a winner where each pass of the rounds says so
    clearly and names the same one, otherwise a tie within noise."""
    ranked = sorted(replays, key=lambda r: statistics.median(costs(r)))
    first, second = ranked[0], ranked[1]
    whole = ratio(costs(second), costs(first))
    if whole is None:
        return f"{first.option} ≈ {second.option} (too few rounds to tell them apart)"
    said = f"{whole.estimate:.2f}x [{whole.low:.2f} to {whole.high:.2f}]"
    if not all(_clearly_faster(first, second, costs, part) for part in range(PASSES)):
        return f"{first.option} ≈ {second.option} (within noise: the next took {said})"
    return f"{first.option}: the next, {second.option}, took {said} as long"


def _clearly_faster(
    first: Replay, second: Replay, costs: Callable[[Replay], list[float]], part: int
) -> bool:
    """Whether ``first`` was clearly cheaper than ``second`` in one pass of the rounds."""
    mine, theirs = _pass(costs(first), part), _pass(costs(second), part)
    found: Ratio | None = ratio(theirs, mine)
    return found is not None and found.excludes(MIN_EFFECT)


def _pass(values: list[float], part: int) -> list[float]:
    size = len(values) // PASSES
    return values[part * size : (part + 1) * size]


def _conditions(site: Site) -> str:
    bind = site.root.bind
    return f"{bind.dialect.name}, this test's data, this machine"


def _root_words(statement: Any) -> str:
    entity = (
        statement.column_descriptions[0].get("entity") if statement.column_descriptions else None
    )
    return f"select({entity.__name__})" if entity is not None else "its query"
