"""The decision guide: where each loading strategy wins, computed from result files.

For every relationship shape (a table whose cells vary by loading strategy) and target,
every measured point (a dataset and an added latency) gets a verdict per driver and
mode. The strategies of a point were measured side by side (``measure``: in rotating
blocks), so the unit of evidence is the ratio of two strategies within a block: the
fastest is the one with the lowest block medians, and it wins when the next one's ratio
to it has a 95 % interval (``stats.ratio``) wholly above 1 + ``MIN_EFFECT``, over at
least ``stats.MIN_BLOCKS`` blocks. Otherwise the verdict is "within noise", with the
interval shown; cells measured one after another (result files before schema 5) name no
winner. Measured in several passes (``run --passes``), a verdict is a winner only when
every pass names the same one; passes that differ make it "unstable". The point's
verdict is the majority over the drivers; where it is not clear, the guide says so
instead of naming one.

Reading the points along a workload dimension (posts per user, say) gives crossovers:
where one strategy overtakes another, and at which latency and payload. Everything the
guide says carries the dataset, latency and drivers it was measured on.

The strategies compared are the loader options an application chooses per query (the
query options of ``scenarios.strategies`` that load): the model-level, awaitable_attrs,
run_sync and write_only variants send the SQL of one of them and are in the tables.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqla_bench.reporting.verdicts import Point
from sqla_bench.scenarios.strategies import compared_strategies

# Dataset fields that are workload dimensions, in the order a crossover is read along
# them, with how to say their values.
DIMENSIONS = {
    "posts_per_user": "posts/user",
    "comments_per_post": "comments/post",
    "tags_per_post": "tags/post",
    "payload": "payload B",
    # run --models on generated data (an application's own data has no dimension)
    "children_per_parent": "children/parent",
    "links_per_parent": "links/parent",
}
# Dimensions said but never read along: how many rows stand at the top.
COUNTS = {"users": "users", "rows_per_table": "rows/table"}


# --- reading points along a dimension ------------------------------------------------


@dataclass(frozen=True)
class Series:
    """The points of one shape and target that differ only in ``axis`` (and latency)."""

    table: str
    label: str
    target: str
    axis: str  # the dataset field the points are read along
    fixed: tuple[tuple[str, int], ...]  # the other dataset fields
    latency: float | None
    points: tuple[Point, ...]  # in order of the axis

    def xs(self) -> list[int]:
        return [point.dimension(self.axis) for point in self.points]

    def compared(self) -> list[str]:
        """The strategies timed along this series, in catalogue order."""
        seen = {name for p in self.points for medians in p.medians.values() for name in medians}
        return [name for name in compared_strategies() if name in seen]


def in_mode(point: Point, mode: str) -> Point | None:
    """The point as the drivers of one mode (sync or async code) saw it; None when no
    driver of that mode compared strategies there."""
    mine = [key for key in point.verdicts if key.endswith(f" {mode}")]
    if not mine:
        return None
    return replace(
        point,
        verdicts={key: point.verdicts[key] for key in mine},
        medians={key: point.medians[key] for key in mine if key in point.medians},
        ratios={key: point.ratios[key] for key in mine if key in point.ratios},
    )


def advice(line: Series, mode: str) -> str:
    """What to use in one mode's code along a series, in a few words: "selectin x1.42
    [1.20 to 1.61]" throughout (how much slower the next one was, and the span of the
    drivers' 95 % intervals), or where the answer changes ("joined at 1 children/parent;
    selectin x1.3 [...] at 5, 20"); a tie is said as one ("≈ joined, selectin")."""
    said: list[tuple[str, list[int], list[float], list[tuple]]] = []
    for point in line.points:
        seen = in_mode(point, mode)
        if seen is None:
            continue
        answer, factor, interval = seen.say(), seen.factor(), seen.interval()
        if not said or said[-1][0] != answer:
            said.append((answer, [], [], []))
        said[-1][1].append(point.dimension(line.axis))
        if factor is not None and seen.decided:
            said[-1][2].append(factor)
            said[-1][3].extend([interval] if interval else [])
    if not said:
        return "-"
    if len(said) == 1:
        answer, _, factors, intervals = said[0]
        return _with_factors(answer, factors, intervals)
    unit = DIMENSIONS.get(line.axis, line.axis)
    return "; ".join(
        f"{_with_factors(answer, factors, intervals)} at {', '.join(map(str, xs))} {unit}"
        for answer, xs, factors, intervals in said
    )


def _with_factors(answer: str, factors: list[float], intervals: list[tuple]) -> str:
    if not factors:
        return answer
    low, high = min(factors), max(factors)
    span = f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f} to {high:.2f}"
    if not intervals:
        return f"{answer} x{span}"
    bounds = min(i[0] for i in intervals), max(i[1] for i in intervals)
    return f"{answer} x{span} [{bounds[0]:.2f} to {bounds[1]:.2f}]"


def series(all_points: Sequence[Point]) -> list[Series]:
    """The points grouped by shape, target, latency and every dataset field but the
    axis, which is the first workload dimension that varies for that shape and
    target."""
    by_shape: dict[tuple, list[Point]] = {}
    for point in all_points:
        by_shape.setdefault((point.table, point.target), []).append(point)
    found = []
    for (table, target), shape_points in by_shape.items():
        axis = _axis(shape_points)
        groups: dict[tuple, list[Point]] = {}
        for point in shape_points:
            fixed = tuple((k, v) for k, v in point.dataset if k != axis)
            groups.setdefault((fixed, point.latency), []).append(point)
        for (fixed, latency), members in groups.items():
            members.sort(key=lambda p: p.dimension(axis))
            label = members[0].label
            found.append(Series(table, label, target, axis, fixed, latency, tuple(members)))
    return sorted(found, key=_series_order)


def _axis(shape_points: Sequence[Point]) -> str:
    for name in DIMENSIONS:
        if len({point.dimension(name) for point in shape_points}) > 1:
            return name
    held = [name for name in DIMENSIONS if shape_points[0].dimension(name) is not None]
    return held[0] if held else ""


def _series_order(item: Series) -> tuple:
    return (item.table, item.target, item.fixed, latency_order(item.latency))


def latency_order(latency: float | None) -> float:
    """Sort key of an added latency: direct (timed straight to the server, 0 ms
    included) before any, then by milliseconds."""
    return -1.0 if latency is None else latency


def crossovers(line: Series) -> list[str]:
    """Where the leader changes along the axis, between two decided points."""
    found = []
    unit = DIMENSIONS.get(line.axis, line.axis)
    for before, after in itertools.pairwise(line.points):
        if before.leader == after.leader or not (before.decided and after.decided):
            continue
        low, high = before.dimension(line.axis), after.dimension(line.axis)
        found.append(
            f"{after.leader} overtakes {before.leader} between {low} and {high} {unit} "
            f"({conditions(line)})"
        )
    return found


def latency_crossovers(lines: Sequence[Series]) -> list[str]:
    """Along latency, at each value of the axis: where the leader changes."""
    found = []
    by_fixed: dict[tuple, list[Series]] = {}
    for line in lines:
        by_fixed.setdefault((line.table, line.target, line.fixed), []).append(line)
    for group in by_fixed.values():
        group.sort(key=lambda line: latency_order(line.latency))
        for x in sorted({x for line in group for x in line.xs()}):
            found += _along_latency(group, x)
    return found


def _along_latency(group: list[Series], x: int) -> list[str]:
    at_x = [(line, _point_at(line, x)) for line in group]
    at_x = [(line, point) for line, point in at_x if point is not None]
    found = []
    for (_, before), (line, after) in itertools.pairwise(at_x):
        if before.leader != after.leader and before.decided and after.decided:
            unit = DIMENSIONS.get(line.axis, line.axis)
            found.append(
                f"at {x} {unit}, {after.leader} leads from {rtt(after.latency)} "
                f"({before.leader} at {rtt(before.latency)}; {_fixed_words(line.fixed)})"
            )
    return found


def _point_at(line: Series, x: int) -> Point | None:
    return next((p for p in line.points if p.dimension(line.axis) == x), None)


def ranges(line: Series) -> str:
    """The verdicts along the axis in words: "joined up to 5, selectin from 20"."""
    runs: list[tuple[str, list[int]]] = []
    for point in line.points:
        name = point.leader if point.decided else f"within noise ({point.tie()})"
        if runs and runs[-1][0] == name:
            runs[-1][1].append(point.dimension(line.axis))
        else:
            runs.append((name, [point.dimension(line.axis)]))
    unit = DIMENSIONS.get(line.axis, line.axis)
    if len(runs) == 1:
        xs = runs[0][1]
        if not line.axis:  # data with no dimension: one point
            return runs[0][0]
        span = f"{xs[0]}" if len(xs) == 1 else f"{xs[0]} to {xs[-1]}"
        return f"{runs[0][0]} throughout ({span} {unit})"
    parts = []
    for index, (name, xs) in enumerate(runs):
        if index == 0:
            parts.append(f"{name} up to {xs[-1]}")
        elif index == len(runs) - 1:
            parts.append(f"{name} from {xs[0]}")
        else:
            parts.append(f"{name} at {xs[0]}" + (f" to {xs[-1]}" if len(xs) > 1 else ""))
    return ", ".join(parts) + f" {unit}"


def summary(lines: Sequence[Series]) -> list[str]:
    """Per shape and target: a line with the conditions, then what wins where, one line
    per value of what varies besides the axis (payload, say) and per group of latencies
    with the same answer. Markdown list items."""
    said = []
    by_shape: dict[tuple, list[Series]] = {}
    for line in lines:
        by_shape.setdefault((line.table, line.target), []).append(line)
    for (table, target), shape_lines in by_shape.items():
        first = shape_lines[0]
        drivers = sorted({d for line in shape_lines for p in line.points for d in p.verdicts})
        by_fixed: dict[tuple, list[Series]] = {}
        for line in shape_lines:
            by_fixed.setdefault(line.fixed, []).append(line)
        conditions_ = _fixed_words(first.fixed, skip=_varies(by_fixed))
        said.append(
            f"- **{first.label.rstrip('.')}** on **{target}** _({len(drivers)} drivers and "
            f"modes; {first.points[0].limit} parents per load; {conditions_}{_timed(shape_lines)}"
            f"; {table})_:"
        )
        for fixed, fixed_lines in by_fixed.items():
            answers: dict[str, list[float | None]] = {}
            for line in fixed_lines:
                answers.setdefault(ranges(line), []).append(line.latency)
            parts = [f"{latencies(lats)}: {text}" for text, lats in answers.items()]
            said.append(f"    - {_varying_fixed(fixed, by_fixed)}{'; '.join(parts)}")
    return said


def _timed(lines: Sequence[Series]) -> str:
    """Where fewer strategies were timed than at other latencies, which ones."""
    by_latency: dict[float | None, set[str]] = {}
    for line in lines:
        by_latency.setdefault(line.latency, set()).update(line.compared())
    if len({frozenset(names) for names in by_latency.values()}) < 2:
        return ""
    fewest = min(by_latency.values(), key=len)
    where = [latency for latency, names in by_latency.items() if names == fewest]
    named = [name for name in compared_strategies() if name in fewest]
    return f"; at {latencies(where)} only {', '.join(named)} timed"


def _varies(by_fixed: dict[tuple, list[Series]]) -> set[str]:
    values: dict[str, set[int]] = {}
    for fixed in by_fixed:
        for name, value in fixed:
            values.setdefault(name, set()).add(value)
    return {name for name, seen in values.items() if len(seen) > 1}


def _varying_fixed(fixed: tuple, by_fixed: dict[tuple, list[Series]]) -> str:
    varying = _varies(by_fixed)
    words = [dimension_words(name, value) for name, value in fixed if name in varying]
    return (", ".join(words) + " — ") if words else ""


def dimension_words(name: str, value: int) -> str:
    if name == "payload":
        return f"payload {value} B"
    if name in COUNTS:
        return f"{value} {COUNTS[name]}"
    return f"{value} {DIMENSIONS.get(name, name)}" if name in DIMENSIONS else f"{name}={value}"


# The count of distinct tags sets no workload a reader chose (--tags sets tags per post).
UNSAID = ("tags",)


def _fixed_words(fixed: tuple, skip: set[str] = frozenset()) -> str:
    if not fixed:  # run --models on an application's own data
        return "the data in the database"
    return ", ".join(
        dimension_words(name, value)
        for name, value in fixed
        if name not in skip and name not in UNSAID
    )


def conditions(line: Series) -> str:
    return f"{rtt(line.latency)}, {_fixed_words(line.fixed)}"


def rtt(latency: float | None) -> str:
    return "direct" if latency is None else f"+{latency:g} ms"


def latencies(values: Sequence[float | None]) -> str:
    said = [rtt(value) for value in values]
    return said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]
