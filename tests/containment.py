"""Issue 28's acceptance, both halves from the same runs: the reference's PostgreSQL
loading workload run point by point, with the oracle (``tests/oracle.py``) measuring
selectin against joined just before and just after sqla-bench measures the chosen
points, so that the two measure the machine in the same window.

    python tests/containment.py run RUN_DIR      # once per run; about 14 minutes here
    python tests/containment.py check RUN_DIR... # the oracle's ratio in the tool's interval?
    python tests/agreement.py RUN_DIR...         # the verdicts' agreement across runs

``run`` needs SQLA_BENCH_POSTGRESQL_URL and writes one result file per point (and
latency group) into RUN_DIR, plus ``oracle.jsonl``. sqla-bench is started as
``python -m sqla_bench`` with this interpreter, so a copy of the package set on
PYTHONPATH is what runs.

Why bracket: the ratio of two strategies moves with the machine's state (on this
machine by up to 11 % between windows minutes apart), more than either measurement's
interval is wide. An oracle measured a quarter of an hour after the tool checks the
machine's drift, not the tool. The geometric mean of the measurements just before and
just after stands for the tool's window; both are printed as well.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from tests import oracle
from tests.agreement import pair_ratios, read_runs

POSTS = (1, 5, 20, 100)
PAYLOADS = (0, 1000)
DRIVERS = ("psycopg2", "asyncpg")
# Where the oracle brackets the tool: both ends, a payload case, and the crossover
# (selectin overtakes joined between 5 and 20 posts/user at 1,000 B).
CHOSEN = ((1, 0), (5, 1000), (20, 1000), (100, 0))
COMMON = ["--target", "postgresql", "--scenario", "load.users_with_posts", "--users", "100",
          "--max-time", "3", "--precision", "0.03", "--passes", "2"]  # fmt: skip
DIRECT = ["--latency", "0"] + [
    arg for name in ("lazy", "joined", "selectin", "subquery", "immediate")
    for arg in ("--strategy", name)
]  # fmt: skip
LATENCY = ["--latency", "1,5,20"] + [
    arg for name in ("joined", "selectin", "subquery") for arg in ("--strategy", name)
]


def _tool(folder: Path, name: str, posts: int, payload: int, drivers, extra) -> None:
    out = folder / f"{name}.json"
    command = [sys.executable, "-m", "sqla_bench", "run", *COMMON, "--posts", str(posts),
               "--payload", str(payload), *[a for d in drivers for a in ("--driver", d)],
               *extra, "--output", str(out)]  # fmt: skip
    print(f"  sqla-bench {name}", flush=True)
    with (folder / f"{name}.log").open("w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)


def _oracle(url: str, driver: str, posts: int, payload: int, blocks: int) -> dict:
    address = make_url(url).set(drivername=f"postgresql+{driver}")
    sync = address.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    oracle.seed(sync, 100, posts, payload)
    try:
        times = oracle.measure(
            address.render_as_string(hide_password=False), ["joined", "selectin"], 20, blocks, 5
        )
    finally:
        oracle.drop(sync)
    (found,) = oracle.ratios(times)
    return {"ratio": found.ratio, "low": found.low, "high": found.high}


def run(folder: Path, chosen_only: bool, blocks: int) -> None:
    """The whole workload (or the chosen points alone, direct), the oracle bracketing the
    chosen points with ``blocks`` blocks of five calls per strategy."""
    url = os.environ["SQLA_BENCH_POSTGRESQL_URL"]
    folder.mkdir(parents=True, exist_ok=False)
    with (folder / "oracle.jsonl").open("w") as log:
        for posts in POSTS:
            for payload in PAYLOADS:
                if chosen_only and (posts, payload) not in CHOSEN:
                    continue
                print(f"{posts} posts/user, {payload} B", flush=True)
                point = f"{posts}-{payload}"
                if (posts, payload) in CHOSEN:
                    for driver in DRIVERS:
                        before = _oracle(url, driver, posts, payload, blocks)
                        _tool(folder, f"{point}-0ms-{driver}", posts, payload, [driver], DIRECT)
                        after = _oracle(url, driver, posts, payload, blocks)
                        record = {"posts": posts, "payload": payload, "driver": driver,
                                  "before": before, "after": after}  # fmt: skip
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                else:
                    _tool(folder, f"{point}-0ms", posts, payload, DRIVERS, DIRECT)
                if not chosen_only:
                    _tool(folder, f"{point}-latency", posts, payload, DRIVERS, LATENCY)


def _standard_error(low: float, high: float) -> float:
    """A 95 % interval's standard error in logs."""
    return (math.log(high) - math.log(low)) / (2 * 1.96)


def check(folders: list[Path]) -> None:
    """For every bracketed point: the tool's interval of selectin over joined against
    the oracle's ratio in the same window, and whether the two measurements differ by
    more than their uncertainties allow (|z| > 1.96)."""
    tool = pair_ratios(read_runs(folders), "selectin", "joined")
    inside = either = consistent = total = 0
    for index, folder in enumerate(folders):
        for line in (folder / "oracle.jsonl").read_text().splitlines():
            found = json.loads(line)
            mode = "async" if found["driver"] == "asyncpg" else "sync"
            key = (found["posts"], found["payload"], None, f"{found['driver']} {mode}")
            interval = tool[key][index]
            before, after = found["before"], found["after"]
            window = math.sqrt(before["ratio"] * after["ratio"])
            window_error = (
                math.hypot(
                    _standard_error(before["low"], before["high"]),
                    _standard_error(after["low"], after["high"]),
                )
                / 2
            )
            z = math.log(interval.estimate / window) / math.hypot(
                _standard_error(interval.low, interval.high), window_error
            )
            holds = interval.low <= window <= interval.high
            total += 1
            inside += holds
            either += any(interval.low <= r["ratio"] <= interval.high for r in (before, after))
            consistent += abs(z) <= 1.96
            print(
                f"{folder.name} {found['posts']}/{found['payload']} {found['driver']}: tool "
                f"x{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]; oracle "
                f"before x{before['ratio']:.3f}, after x{after['ratio']:.3f}, window "
                f"x{window:.3f}: {'inside' if holds else 'OUTSIDE'}, z {z:+.2f}"
            )
    print(f"the tool's interval holds the oracle's window ratio in {inside} of {total}")
    print(f"... the oracle's ratio before or after in {either} of {total}")
    print(f"the two differ by no more than their uncertainties (|z| <= 1.96) in {consistent}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "check"))
    parser.add_argument("folders", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument(
        "--chosen-only", action="store_true", help="the chosen points alone, direct"
    )
    parser.add_argument("--oracle-blocks", type=int, default=40, metavar="N")
    args = parser.parse_args()
    if args.command == "run":
        (folder,) = args.folders
        run(folder, args.chosen_only, args.oracle_blocks)
    else:
        check(args.folders)


if __name__ == "__main__":
    main()
