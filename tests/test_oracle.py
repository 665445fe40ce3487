"""The decision guide against an oracle of our own (``tests/oracle.py``): plain
SQLAlchemy on tables of its own, its own clock, order and statistics, nothing imported
from sqla-bench. At a point where the answer is not close, sqla-bench's verdict and the
oracle's must name the same winner, and their ratios must agree."""

from __future__ import annotations

from pathlib import Path

from sqla_bench.reporting.verdicts import points
from sqla_bench.results.files import read_result
from tests import oracle
from tests.helpers import run_as_user

# Where the answer is not close: one post per user, no payload, straight to PostgreSQL.
# joined reads the users and their posts in one statement, selectin in two; the reference
# workload measured selectin 1.3 to 1.7 times as long here.
POINT = {"users": 100, "posts": 1, "payload": 0}
DRIFT = 1.05  # a ratio measured side by side moves this much between passes


def _sqla_bench_verdict(url: str, folder: Path):
    out = folder / "point.json"
    result = run_as_user(
        "postgresql", url, "run", "--target", "postgresql",
        "--scenario", "load.users_with_posts", "--driver", "psycopg2",
        "--strategy", "joined", "--strategy", "selectin",
        "--users", str(POINT["users"]), "--posts", str(POINT["posts"]),
        "--payload", str(POINT["payload"]), "--output", str(out), cwd=folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (point,) = points(read_result(out)[1])
    (verdict,) = point.verdicts.values()
    return verdict, point.ratios["psycopg2 sync"]["selectin"]


def test_the_guide_names_the_winner_an_independent_measurement_finds(servers, tmp_path) -> None:
    target = servers.target("postgresql")
    url = target.url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    verdict, tool = _sqla_bench_verdict(url, tmp_path)
    oracle.seed(url, POINT["users"], POINT["posts"], POINT["payload"])
    try:
        times = oracle.measure(url, ["joined", "selectin"], limit=20, blocks=30, calls=5)
    finally:
        oracle.drop(url)
    (found,) = oracle.ratios(times)
    assert found.low > 1.02, f"the oracle found no clear winner: {found}"
    assert verdict.clear and verdict.best == "joined", verdict
    # The two measure the same work two ways, a minute apart: their intervals of
    # selectin over joined overlap (neither a margin the other rules out), once each is
    # widened by how far such a ratio moves from one pass to the next on these machines
    # (FACTS.md: a median of 0.05; seen here: 1.63 to 1.73 against 1.73 to 1.79).
    assert tool.low / DRIFT <= found.high and found.low <= tool.high * DRIFT, (tool, found)
