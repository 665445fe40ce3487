"""The decision guide names a winner only beyond noise, finds crossovers where the data
has them, and says under which conditions each holds."""

from __future__ import annotations

import random

import pytest

from sqla_bench.reporting.guide import ranges, series, summary
from sqla_bench.reporting.verdicts import points
from sqla_bench.results.files import CellRecord

pytestmark = pytest.mark.harness

DRIVERS = (("psycopg2", "sync"), ("asyncpg", "async"))


def _cell(strategy: str, posts: int, latency: float | None, median_ms: float, **fields):
    """A cell measured side by side with the other strategies of its point and driver:
    ``blocks`` blocks of three samples, each within 1 % of ``median_ms``."""
    rng = random.Random(f"{strategy} {posts} {latency} {fields.get('driver')}")
    blocks = fields.pop("blocks", 10)
    samples = [int(median_ms * 1e6 * rng.uniform(0.99, 1.01)) for _ in range(3 * blocks)]
    dataset = {"users": 100, "posts_per_user": posts, "comments_per_post": 2, "tags": 8}
    dataset |= {"tags_per_post": 2, "payload": fields.pop("payload", 0)}
    driver, mode = fields.pop("driver", DRIVERS[0])
    return CellRecord(
        case="load.users_with_posts", table="load.users_with_posts",
        label="Users with their posts (one-to-many).", baseline=None,
        params={"strategy": strategy, "limit": 20}, dataset=dataset, target="postgresql",
        driver=driver, mode=mode, outcome="ok", error=None, wrapped_in=None, message=None,
        expected="works", matches_expected=True, statements=2, statements_started=2,
        statements_seen=[2], rows=20, warmup=3, samples_ns=samples, latency_ms=latency,
        timed_through_proxy=None if latency is None else latency > 0,
        blocks=[3] * blocks, slots=[0] * blocks,
        comparison={"group": f"{posts} {latency} {driver}", "cells": 3, "blocks": blocks,
                    "block_time": 0.02, "order": "rotating",
                    "machine": {"load_average": [0.5, 0.5], "steal": 0.0, "cpus": 2,
                                "busy": fields.pop("busy", False)}},
    )  # fmt: skip


def _sweep(times: dict[tuple[int, float | None], dict[str, float]], **fields) -> list:
    return [
        _cell(strategy, posts, latency, median, driver=driver, **fields)
        for (posts, latency), medians in times.items()
        for strategy, median in medians.items()
        for driver in DRIVERS
    ]


# joined leads at low fan-out, selectin at high; with latency joined leads again.
CROSSING = {
    (2, 0.0): {"joined": 1.0, "selectin": 1.5, "subquery": 1.7},
    (20, 0.0): {"joined": 3.0, "selectin": 2.0, "subquery": 2.4},
    (100, 0.0): {"joined": 9.0, "selectin": 6.0, "subquery": 7.0},
    (2, 5.0): {"joined": 11.0, "selectin": 16.0, "subquery": 17.0},
    (20, 5.0): {"joined": 13.0, "selectin": 17.0, "subquery": 18.0},
    (100, 5.0): {"joined": 20.0, "selectin": 24.0, "subquery": 25.0},
}


def test_a_crossover_is_found_between_the_points_that_show_it() -> None:
    lines = series(points(_sweep(CROSSING)))
    direct = next(line for line in lines if line.latency is None)  # 0 ms: timed direct
    assert [p.leader for p in direct.points] == ["joined", "selectin", "selectin"]
    assert ranges(direct) == "joined up to 2, selectin from 20 posts/user"
    slow = next(line for line in lines if line.latency == 5.0)
    assert ranges(slow) == "joined throughout (2 to 100 posts/user)"


def test_the_summary_states_the_conditions() -> None:
    sentence = "\n".join(summary(series(points(_sweep(CROSSING)))))
    assert "direct: joined up to 2, selectin from 20 posts/user" in sentence
    assert "+5 ms: joined throughout (2 to 100 posts/user)" in sentence
    for condition in ("2 drivers and modes", "20 parents per load", "100 users", "payload 0 B"):
        assert condition in sentence


def test_the_summary_says_where_fewer_strategies_were_timed() -> None:
    times = dict(CROSSING)
    times[(2, 5.0)] = {"joined": 11.0, "selectin": 16.0}  # subquery not timed at 5 ms
    times[(20, 5.0)] = {"joined": 13.0, "selectin": 17.0}
    times[(100, 5.0)] = {"joined": 20.0, "selectin": 24.0}
    sentence = "\n".join(summary(series(points(_sweep(times)))))
    assert "at +5 ms only joined, selectin timed" in sentence


def test_a_difference_within_noise_names_no_winner() -> None:
    close = {(20, 0.0): {"joined": 2.0, "selectin": 2.03, "subquery": 3.0}}
    (point,) = points(_sweep(close))
    assert not point.decided
    assert point.say() == "≈ joined, selectin"


def test_a_difference_beyond_noise_names_the_winner_and_its_margin() -> None:
    (point,) = points(_sweep({(20, 0.0): {"joined": 2.0, "selectin": 2.4}}))
    assert point.decided and point.say() == "joined"
    assert point.factor() == pytest.approx(1.2, rel=0.02)


def test_few_blocks_name_no_winner_however_wide_the_margin() -> None:
    (few,) = points(_sweep({(20, 0.0): {"joined": 2.0, "selectin": 4.0}}, blocks=6))
    (enough,) = points(_sweep({(20, 0.0): {"joined": 2.0, "selectin": 4.0}}, blocks=8))
    assert not few.decided and enough.decided
    assert {v.why for v in few.verdicts.values()} == {"few blocks"}


def test_the_margin_comes_with_its_interval() -> None:
    (point,) = points(_sweep({(20, 0.0): {"joined": 2.0, "selectin": 2.4}}))
    low, high = point.interval()
    assert 1.17 < low < 1.2 < high < 1.23


def test_drivers_that_disagree_are_counted() -> None:
    cells = [
        _cell("joined", 20, 0.0, 1.0, driver=DRIVERS[0]),
        _cell("selectin", 20, 0.0, 2.0, driver=DRIVERS[0]),
        _cell("joined", 20, 0.0, 2.0, driver=DRIVERS[1]),
        _cell("selectin", 20, 0.0, 1.0, driver=DRIVERS[1]),
    ]
    (point,) = points(cells)
    assert point.say() == "joined (1 of 2)"


def test_strategies_that_send_the_same_sql_as_another_are_not_compared() -> None:
    same_sql = {(20, 0.0): {"joined": 2.0, "selectin": 3.0, "model_selectin": 1.0}}
    (point,) = points(_sweep(same_sql))
    assert point.leader == "joined"
