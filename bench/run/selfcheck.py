"""``sqla-bench selfcheck``: benchmarks of the harness itself, each against a goal.

1. overhead: the time the harness adds to a sample, from the harness baseline (an
   operation that does nothing) in both modes, beside what one ``asyncio.run`` and one
   ``loop.run_until_complete`` per call would cost, measured in the same run;
2. driver: raw psycopg2 primary-key selects per second, measured by the harness, over
   what ``pgbench -S -c 1`` reaches on the same server in the same run;
3. proxy: the time the latency proxy adds per round trip beyond its delay, at 1 ms one
   way, and the cost of ``--latency 0`` (timed straight to the server) over none;
4. cv: the coefficient of variation of each cell's median over repeated runs of the
   default matrix, each in a process of its own, for cells slower than 1 ms.

Every figure comes from result files written under the output folder, which are kept.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqla_bench.base.errors import ConfigError
from sqla_bench.measuring.kernel import call_ns
from sqla_bench.measuring.measure import Policy
from sqla_bench.results.files import CellRecord, read_result
from sqla_bench.results.stats import coefficient_of_variation, summarize
from sqla_bench.run.pipeline import run_to_file
from sqla_bench.run.plan import RunPlan
from sqla_bench.scenarios.registry import discover
from sqla_bench.servers.latency import EchoServer, LatencyProxy, connect, round_trips_ns
from sqla_bench.servers.targets import Target

CHECKS = ("overhead", "driver", "proxy", "cv")
SLOW_CELL_NS = 1_000_000  # the CV goal concerns cells slower than 1 ms
GOALS = {  # figure: (relation, limit, the limit as people read it)
    "overhead sync": ("below", 1_000.0, "1 µs"),  # ns per sample
    "overhead async": ("below", 5_000.0, "5 µs"),
    "driver ratio": ("at least", 0.95, "0.95"),
    "proxy added per round trip": ("below", 25_000.0, "25 µs"),  # ns
    "0 ms over no --latency": ("at most", 1.10, "1.10"),
    "cv": ("below", 0.05, "5 %"),
}


@dataclass
class Figure:
    """One measured figure, its goal, and how it was obtained."""

    name: str
    value: float | None
    shown: str
    how: str

    @property
    def met(self) -> bool | None:
        if self.value is None or self.name not in GOALS:
            return None
        relation, limit, _ = GOALS[self.name]
        if relation == "below":
            return self.value < limit
        return self.value <= limit if relation == "at most" else self.value >= limit

    @property
    def goal(self) -> str:
        if self.name not in GOALS:
            return ""
        relation, _, shown = GOALS[self.name]
        return f"{relation} {shown}"


Say = Callable[[str], None]


def _measure(plan: RunPlan, path: Path, command: Sequence[str]) -> list[CellRecord]:
    results, failures = run_to_file(plan, path, command)
    if failures:
        raise ConfigError(failures[0])
    return results.cells


def _cases_with(baseline: str) -> tuple[str, ...]:
    return tuple(case.id for case in discover("scenario") if case.baseline == baseline)


# --- 1. harness overhead ----------------------------------------------------------------


def overhead(sqlite: Target, folder: Path, say: Say) -> list[Figure]:
    say("overhead: sampling the operation that does nothing, sync and async")
    policy = Policy(warmup=1_000, min_rounds=100_000, min_time=1.0, max_rounds=100_000)
    plan = RunPlan(targets=(sqlite,), scenarios=_cases_with("harness"), policy=policy)
    cells = _measure(plan, folder / "overhead.json", ["selfcheck", "overhead"])
    figures = []
    for cell in cells:
        median = summarize(cell.samples_ns).median_ns
        how = f"median of {len(cell.samples_ns):,} samples of {cell.case} ({cell.driver})"
        figures.append(Figure(f"overhead {cell.mode}", median, f"{median:,.0f} ns", how))
    for name, per_call in _loop_alternatives().items():
        how = "median of 2,000 calls of an empty coroutine, for comparison"
        figures.append(Figure(name, per_call, f"{per_call:,.0f} ns", how))
    return figures


async def _nothing() -> None:
    return None


def _loop_alternatives() -> dict[str, float]:
    """What a harness that started the event loop per sample would add."""
    loop = asyncio.new_event_loop()
    try:
        per_run = _median_call_ns(lambda: asyncio.run(_nothing()), 2_000)
        per_run_until = _median_call_ns(lambda: loop.run_until_complete(_nothing()), 2_000)
    finally:
        loop.close()
    return {"asyncio.run per call": per_run, "run_until_complete per call": per_run_until}


def _median_call_ns(call: Callable[[], Any], times: int) -> float:
    return statistics.median(call_ns(call) for _ in range(times))


# --- 2. raw driver against pgbench ------------------------------------------------------


def driver_against_pgbench(
    postgresql: Target, seconds: float, folder: Path, say: Say
) -> list[Figure]:
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise ConfigError("pgbench is not installed (it comes with the PostgreSQL client)")
    say(f"driver: pgbench -S -c 1 for {seconds:g} s")
    pgbench_tps = _pgbench_select_tps(pgbench, postgresql, seconds)
    say(f"driver: raw psycopg2 primary-key selects for {seconds:g} s")
    rate, calls = _raw_select_rate(postgresql, seconds, folder / "driver.json")
    return [
        Figure("pgbench -S -c 1", pgbench_tps, f"{pgbench_tps:,.0f} tps", "pgbench's own report"),
        Figure(
            "psycopg2 raw select",
            rate,
            f"{rate:,.0f} /s",
            f"{calls:,} calls over their timed sum (untimed set-up excluded)",
        ),
        Figure("driver ratio", rate / pgbench_tps, f"{rate / pgbench_tps:.3f}", "raw / pgbench"),
    ]


def _raw_select_rate(postgresql: Target, seconds: float, path: Path) -> tuple[float, int]:
    """Raw psycopg2 primary-key selects per second of timed calls, and how many calls."""
    (raw,) = _raw_selects(postgresql, seconds, path)
    return len(raw.samples_ns) / (sum(raw.samples_ns) / 1e9), len(raw.samples_ns)


def _raw_selects(
    postgresql: Target, seconds: float, path: Path, latencies: tuple[float, ...] | None = None
) -> list[CellRecord]:
    """The raw psycopg2 primary-key select cell, sampled for ``seconds`` at each latency."""
    plan = RunPlan(
        targets=(postgresql,),
        modes=("sync",),
        drivers=("psycopg2",),
        scenarios=_cases_with("driver"),
        latencies=latencies,
        policy=Policy(
            warmup=100, min_rounds=100, min_time=seconds, max_rounds=10_000_000, max_time=seconds
        ),
    )
    cells = _measure(plan, path, ["selfcheck", path.stem])
    return [cell for cell in cells if cell.baseline == "driver"]


def _pgbench_select_tps(pgbench: str, target: Target, seconds: float) -> float:
    # The password goes in the environment, never on a command line others can read.
    url = target.url
    env = os.environ | {
        "PGHOST": url.host or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "",
        "PGDATABASE": url.database or "",
        "PGPASSWORD": url.password or "",
    }
    _pgbench(pgbench, ["-i", "-s", "1", "-q"], env, target)
    try:
        output = _pgbench(
            pgbench, ["-S", "-c", "1", "-j", "1", "-n", "-T", f"{seconds:g}"], env, target
        )
    finally:
        _pgbench(pgbench, ["-i", "-I", "d"], env, target)  # drop pgbench's tables again
    match = re.search(r"tps = ([\d.]+)", output)
    if match is None:
        raise ConfigError("pgbench printed no tps figure")
    return float(match.group(1))


def _pgbench(pgbench: str, arguments: list[str], env: dict, target: Target) -> str:
    done = subprocess.run([pgbench, *arguments], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigError(f"pgbench {arguments[0]} failed: {lines[-1] if lines else '?'}")
    return done.stdout + done.stderr


# --- 3. the latency proxy's own cost -----------------------------------------------------

PROXY_ONE_WAY_MS = 1.0
PROXY_ROUNDS = 3  # the machine drifts between cells: each round times all three in turn
ECHO_BLOCK = 25  # delayed round trips in a row, between blocks of four times as many direct


def proxy_cost(postgresql: Target, seconds: float, folder: Path, say: Say) -> list[Figure]:
    """What the proxy adds per round trip beyond a 1 ms one-way delay: on a round trip
    with no work in it (to an echo server), and on a raw psycopg2 select as a cell sees
    it; and whether ``--latency 0`` (timed straight to the server) costs anything."""
    round_trip_ms = 2 * PROXY_ONE_WAY_MS
    say(
        f"proxy: 100-byte round trips to an echo server, direct and at +{round_trip_ms:g} ms "
        f"through the proxy, in turn, {seconds / 2:g} s"
    )
    direct_ns, delayed_ns = _echo_round_trips(PROXY_ONE_WAY_MS / 1000, seconds / 2)
    each = seconds / 3
    say(
        f"proxy: raw psycopg2 selects without --latency, at 0 ms and at +{round_trip_ms:g} ms, "
        f"{each:.3g} s each, {PROXY_ROUNDS} rounds"
    )
    rounds = []
    for index in range(1, PROXY_ROUNDS + 1):
        (plain,) = _raw_selects(postgresql, each, folder / f"proxy-{index}-none.json")
        path = folder / f"proxy-{index}.json"
        zero, delayed = sorted(
            _raw_selects(postgresql, each, path, (0.0, round_trip_ms)),
            key=lambda cell: cell.latency_ms,
        )
        rounds.append(_proxy_round(plain, zero, delayed, round_trip_ms))
    added = delayed_ns - direct_ns - round_trip_ms * 1e6
    echo = Figure(
        "proxy added per round trip",
        added,
        f"{added / 1e3:,.1f} µs",
        f"{PROXY_ONE_WAY_MS:g} ms one way, less {round_trip_ms:g} ms and a direct round trip: "
        f"echo server, {delayed_ns / 1e3:,.1f} µs via the proxy, {direct_ns / 1e3:,.1f} direct",
    )
    return [echo, *_proxy_figures(rounds, round_trip_ms), _work_after_a_wait(round_trip_ms)]


IDLE_WORK_STEPS = 3_000  # a loop of about 100 us of Python here
IDLE_WORK_TIMES = 500


def _work_after_a_wait(round_trip_ms: float) -> Figure:
    """The same Python work timed back to back and right after sleeping as long as a
    delayed round trip: what a wait costs the client's own work, with no proxy at all."""
    busy = statistics.median(_steps_ns(0.0) for _ in range(IDLE_WORK_TIMES))
    rested = statistics.median(_steps_ns(round_trip_ms / 1000) for _ in range(IDLE_WORK_TIMES))
    ratio = rested / busy
    return Figure(
        "python work after a wait",
        ratio,
        f"{ratio:.2f}x",
        f"a {IDLE_WORK_STEPS:,}-step loop, {busy / 1e3:,.0f} µs back to back, {rested / 1e3:,.0f} "
        f"µs right after a {round_trip_ms:g} ms sleep (no proxy: a wire's wait costs it too)",
    )


def _steps_ns(sleep_seconds: float) -> int:
    if sleep_seconds:
        time.sleep(sleep_seconds)
    started = time.perf_counter_ns()
    total = 0
    for step in range(IDLE_WORK_STEPS):
        total += step
    return time.perf_counter_ns() - started


def _echo_round_trips(one_way_seconds: float, seconds: float) -> tuple[float, float]:
    """Median round trips (ns) to an echo server in a process of its own, straight and
    through the proxy at ``one_way_seconds``: in turn, in blocks, for ``seconds``."""
    direct, delayed = [], []
    with EchoServer() as echo, LatencyProxy("127.0.0.1", echo.port) as proxy:
        proxy.set_delay(one_way_seconds)
        with connect(echo.port) as straight, connect(proxy.port) as through:
            for sock in (straight, through):
                round_trips_ns(sock, ECHO_BLOCK)  # warm: the first crossings are slower
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                direct += round_trips_ns(straight, 4 * ECHO_BLOCK)
                delayed += round_trips_ns(through, ECHO_BLOCK)
    return statistics.median(direct), statistics.median(delayed)


@dataclass(frozen=True)
class ProxyRound:
    """One round's medians (ns), and the round trips the proxy counted per select."""

    plain_ns: float
    zero_ns: float
    delayed_ns: float
    round_trips: int

    def added_ns(self, round_trip_ms: float) -> float:
        """The proxy's time per round trip beyond the delay: the delayed select over
        the one timed straight to the server at 0 ms, less the delay it crossed."""
        beyond = self.delayed_ns - self.zero_ns - self.round_trips * round_trip_ms * 1e6
        return beyond / self.round_trips


def _proxy_round(
    plain: CellRecord, zero: CellRecord, delayed: CellRecord, round_trip_ms: float
) -> ProxyRound:
    if not zero.round_trips or zero.timed_through_proxy or not delayed.timed_through_proxy:
        raise ConfigError("the proxy check's cells were not routed as it expects")
    return ProxyRound(
        summarize(plain.samples_ns).median_ns,
        summarize(zero.samples_ns).median_ns,
        summarize(delayed.samples_ns).median_ns,
        zero.round_trips,
    )


def _proxy_figures(rounds: list[ProxyRound], round_trip_ms: float) -> list[Figure]:
    added = sorted(r.added_ns(round_trip_ms) for r in rounds)
    median_added = statistics.median(added)
    ratios = sorted(r.zero_ns / r.plain_ns for r in rounds)
    median_ratio = statistics.median(ratios)
    delayed = statistics.median(r.delayed_ns for r in rounds)
    trips = rounds[0].round_trips
    share = median_added * trips / delayed
    one_way = f"{round_trip_ms / 2:g} ms one way"
    span = f"{len(rounds)} rounds: {added[0] / 1e3:,.1f} to {added[-1] / 1e3:,.1f} µs"
    return [
        Figure(
            "raw select: added per round trip",
            median_added,
            f"{median_added / 1e3:,.1f} µs",
            f"the same for a raw select as a cell sees it, {span} (its Python after the "
            "wait runs slower: see below)",
        ),
        Figure(
            "raw select: share of its time",
            share,
            f"{share:.1%}",
            f"of a raw select's {delayed / 1e6:.2f} ms at {one_way} ({trips} round "
            f"trip{'s' * (trips != 1)})",
        ),
        Figure(
            "0 ms over no --latency",
            median_ratio,
            f"{median_ratio:.3f}",
            f"raw select medians, {len(rounds)} rounds: {ratios[0]:.3f} to {ratios[-1]:.3f} "
            "(0 ms is timed straight to the server)",
        ),
    ]


# --- 4. stability of medians over repeated runs -----------------------------------------


def repeat_variation(repeats: int, affinity: str, folder: Path, say: Say) -> list[Figure]:
    medians: dict[tuple, list[float]] = {}
    for index in range(1, repeats + 1):
        say(f"cv: default matrix, run {index} of {repeats} (a process of its own)")
        path = folder / f"default-{index}.json"
        command = [sys.executable, "-m", "sqla_bench", "run", "--output", str(path)]
        command += ["--affinity", affinity]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode not in (0, 1):
            raise ConfigError(f"run {index} failed: {done.stderr.strip()[-300:]}")
        for cell in read_result(path)[1]:
            summary = summarize(cell.samples_ns)
            if summary is not None:
                medians.setdefault(cell.key, []).append(summary.median_ns)
    return _variation_figures(medians, repeats)


def _variation_figures(medians: dict[tuple, list[float]], repeats: int) -> list[Figure]:
    slow = {
        key: coefficient_of_variation(values)
        for key, values in medians.items()
        if len(values) == repeats and statistics.fmean(values) > SLOW_CELL_NS
    }
    every = {key: coefficient_of_variation(v) for key, v in medians.items() if len(v) == repeats}
    if not slow:
        return [Figure("cv", None, "-", "no cell slower than 1 ms")]
    worst_key = max(slow, key=slow.get)
    worst = f"{worst_key[0]} {dict(worst_key[1])} {worst_key[4]}-{worst_key[5]}"
    under = sum(value < GOALS["cv"][1] for value in slow.values())
    return [
        Figure("cv", max(slow.values()), f"{max(slow.values()):.1%}", f"worst: {worst}"),
        Figure(
            "cv median (cells > 1 ms)",
            statistics.median(slow.values()),
            f"{statistics.median(slow.values()):.1%}",
            f"{under} of {len(slow)} cells under 5 %",
        ),
        Figure(
            "cv median (all cells)",
            statistics.median(every.values()),
            f"{statistics.median(every.values()):.1%}",
            f"{len(every)} cells, {repeats} runs",
        ),
    ]
