"""The latency proxy: it counts round trips and bytes, releases chunks on time, and the
runner's figures obey the physics of injected latency on the real servers.

The timing checks have physical bounds the issue sets (a call cannot beat the delays it
crosses; the excess is bounded); performance figures themselves come from selfcheck."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from sqla_bench.measuring.engines import prepare_database
from sqla_bench.measuring.measure import Policy, measure, subject_for
from sqla_bench.measuring.policy import COUNTED_CALLS
from sqla_bench.reporting.plots import write_plots
from sqla_bench.results.stats import summarize
from sqla_bench.run.pipeline import run_to_file
from sqla_bench.run.plan import RunPlan
from sqla_bench.run.runner import driver_env, route_to
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.registry import discover
from sqla_bench.servers.latency import (
    ECHO_MESSAGE,
    EchoServer,
    LatencyProxy,
    connect,
    round_trips_ns,
)
from tests.conftest import SIZE
from tests.helpers import assert_one_line_error, configured_target, run

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

MESSAGE = ECHO_MESSAGE


@pytest.fixture(scope="module")
def echo():
    with EchoServer() as server:
        yield server


def _round_trip_ms(sock: socket.socket, times: int) -> float:
    """The median round trip."""
    return statistics.median(round_trips_ns(sock, times)) / 1e6


def _settled_release(proxy: LatencyProxy, chunks: int) -> dict:
    """The proxy's release figures once it has booked ``chunks`` sends (up to 1 s): its
    writer books a send after ``sendall`` returns, so the client can hold the last echo
    and ask for the report before the proxy has booked it."""
    deadline = time.monotonic() + 1.0
    release = proxy.report()["release"]
    while release["chunks"] < chunks and time.monotonic() < deadline:
        time.sleep(0.01)
        release = proxy.report()["release"]
    return release


@pytest.mark.slow
def test_round_trips_and_bytes_are_counted(echo) -> None:
    with LatencyProxy("127.0.0.1", echo.port) as proxy, connect(proxy.port) as sock:
        before = proxy.totals()
        _round_trip_ms(sock, 25)
        counted = proxy.totals() - before
        assert (counted.round_trips, counted.bytes_up, counted.bytes_down) == (25, 2500, 2500)
        (link,) = proxy.report()["connections"]
        assert link["round_trips"] == 25 and link["open"]
        assert proxy.report()["cpu_seconds"] > 0


# What a delayed round trip may take beyond twice the delay. The proxy's own hops cost
# about 0.2 ms; the rest is the machine's: a send on loopback wakes the receiver's CPU,
# which on this virtual machine takes longer the longer that CPU was idle (a median send
# of 80-130 us at 10 ms one way, about 15 us back to back), and a delayed round trip
# wakes six sleepers (the proxy's reader and timed release each way, the echo server,
# the client), each after a wait as long as the delay. Quiet, the excess was 0.12 ms at
# 0.5 ms one way, 0.33 at 2.5 and 0.41-0.48 at 10; in CI, with containers running
# beside it, up to 0.58 at 2.5 and 0.96 at 10. Bounds made of a direct round trip
# failed there, whether it was taken apart from the delayed ones or in turn with them.
EXCESS_MS = 0.5  # plus EXCESS_SHARE of the delay the round trip crossed
EXCESS_SHARE = 0.05
ATTEMPTS = 3  # a spell of the machine passes; a proxy that adds time fails every one


@pytest.mark.slow
@pytest.mark.parametrize("one_way_ms", [0.5, 2.5, 10])
def test_a_round_trip_gains_twice_the_delay_and_little_more(echo, one_way_ms) -> None:
    times = 60 if one_way_ms < 10 else 30
    allowed_ms = EXCESS_MS + EXCESS_SHARE * 2 * one_way_ms
    seen = []
    for _ in range(ATTEMPTS):
        # The wire beside the delayed round trips, in the same attempt: one taken
        # minutes apart failed in CI by 15 us, the machine slower when it was taken.
        with connect(echo.port) as direct:
            fastest_direct_ms = min(round_trips_ns(direct, 100)) / 1e6
        with LatencyProxy("127.0.0.1", echo.port) as proxy, connect(proxy.port) as sock:
            proxy.set_delay(one_way_ms / 1000)
            through_ms = _round_trip_ms(sock, times)
            release = _settled_release(proxy, chunks=2 * 30)
        where = f"round trip {through_ms:.3f} ms, direct >= {fastest_direct_ms:.3f}, {release}"
        assert release["median_ahead_us"] <= release["median_send_us"], where
        # The proxy's own part: each chunk's send begins within 50 us of its planned time.
        assert release["chunks"] >= 2 * 30 and release["median_late_us"] <= 50, where
        seen.append(where)
        # Never faster than a wire: the proxy begins a send ahead of its due time by what
        # a send costs the sender, never by what waking the receiver costs (which a wire
        # costs too); by the median send it beat this by 18 us at 1 ms one way. And
        # little more than the delays. A proxy that sends early, or adds time, fails
        # every attempt; a spell of the machine passes.
        floor_ms = 2 * one_way_ms + fastest_direct_ms
        if floor_ms <= through_ms <= 2 * one_way_ms + allowed_ms:
            return
    pytest.fail(
        f"not within 2 x {one_way_ms} ms + a direct round trip and + {allowed_ms:.3f} ms in "
        f"{ATTEMPTS} tries: {seen}"
    )


def test_a_delay_set_on_an_open_connection_holds_from_its_next_chunk(echo) -> None:
    """A pooled connection waits in the proxy's read when a run sets the next latency:
    its next chunk must be delayed too, not sent on at once because the wait began at
    zero delay (seen in CI as one undelayed chunk of sixty)."""
    with LatencyProxy("127.0.0.1", echo.port) as proxy, connect(proxy.port) as sock:
        _round_trip_ms(sock, 1)  # both directions' readers now wait at zero delay
        time.sleep(0.05)
        proxy.set_delay(0.05)
        assert _round_trip_ms(sock, 1) >= 100


@pytest.mark.slow
def test_chunks_in_flight_do_not_add_up(echo) -> None:
    """Ten messages sent at once arrive one delay later, not ten delays later."""
    with LatencyProxy("127.0.0.1", echo.port) as proxy, connect(proxy.port) as sock:
        proxy.set_delay(0.02)
        started = time.perf_counter()
        for _ in range(10):
            sock.sendall(MESSAGE)
            time.sleep(0.001)  # separate chunks
        received = b""
        while len(received) < 10 * len(MESSAGE):
            received += sock.recv(65536)
        elapsed = time.perf_counter() - started
    assert 0.04 <= elapsed < 0.08  # one round trip of 40 ms plus the 10 ms of sending


SAMPLES = 200


@pytest.mark.parametrize("round_trip_ms", [0.0, 0.2])
def test_at_0_ms_the_samples_go_past_the_proxy_and_round_trips_are_counted_apart(
    request, round_trip_ms
) -> None:
    """At 0 ms the proxy adds only its own hops, so the samples go straight to the
    server, and the same calls, untimed and fewer, count round trips through it; with a
    delay to add, the samples go through it. What crossed the proxy tells which."""
    target = configured_target(request, "postgresql")
    driver = next(d for d in target.drivers if d.spec.name == "psycopg2")
    request.getfixturevalue("seeds").seeded(driver)  # crud.get reads the seeded users
    case = next(case for case in discover("scenario") if case.id == "crud.get")
    policy = Policy(warmup=2, min_rounds=SAMPLES, min_time=0.0, max_rounds=SAMPLES)
    loop = asyncio.new_event_loop()
    try:
        with route_to(target, through_proxy=True) as route:
            route.set_latency(round_trip_ms)
            env = driver_env(route, driver, SIZE, None)
            before = route.proxy.totals()
            subject = subject_for(case, next(case.cells()), env)
            measurement = loop.run_until_complete(measure(subject, policy))
            crossed = (route.proxy.totals() - before).round_trips
            loop.run_until_complete(env.dispose())
    finally:
        loop.close()
    assert len(measurement.samples_ns) == SAMPLES
    wire = measurement.on_the_wire
    assert set(wire.round_trips) == {2}, wire.round_trips  # psycopg2's BEGIN, the SELECT
    if round_trip_ms:
        assert wire is measurement and crossed >= 2 * SAMPLES, crossed
    else:
        # The counting calls: as many warm-up calls, and COUNTED_CALLS counted.
        assert sum(wire.round_trips.values()) == COUNTED_CALLS
        assert crossed < SAMPLES, crossed  # a connection, 12 calls and their rollbacks


@pytest.mark.slow
@pytest.mark.parametrize("name", ["postgresql", "mysql"])
def test_time_per_operation_follows_round_trips_times_latency(request, tmp_path, name) -> None:
    """Each cell's median within its round trips' delay and 15 % more, plus its time at
    0 ms. Both latencies are measured in one run, minutes apart at most, on a shared
    machine: an attempt passes when every cell is within its bounds, and another is made
    if it was not (CI saw one cell of 18 over by 0.1 ms). A proxy that added a round
    trip too many would add 100 %, in every attempt."""
    target = configured_target(request, name)
    problems: list[str] = []
    for attempt in range(ATTEMPTS):
        results, problems = _latency_attempt(target, tmp_path / f"r{attempt}.json")
        if not problems:
            break
    assert not problems, problems
    (plot,) = write_plots(results.cells, tmp_path, "r")
    assert plot.name == "r-latency-load.users_with_posts.png"
    assert plot.read_bytes().startswith(b"\x89PNG")


def _latency_attempt(target, path: Path) -> tuple[Any, list[str]]:
    """One run at 0 and 20 ms; the cells whose median is outside its bounds, in words."""
    size = DatasetSize(users=10, posts_per_user=2)
    # MariaDB pays about 1 ms per round trip after an idle wait, whatever the delay: at
    # 10 ms that used most of a single round trip's 15 % slack, at 20 ms it leaves 2 ms.
    round_trip_ms = 20.0
    plan = RunPlan(
        targets=(target,),
        scenarios=("load.users_with_posts",),
        strategies=("lazy", "selectin", "joined"),
        datasets=(size,),
        latencies=(0.0, round_trip_ms),
        policy=Policy(warmup=2, min_rounds=15, min_time=0.0),
    )
    try:
        results, failures = run_to_file(plan, path, ["t"])
        assert failures == []
    finally:
        prepare_database(target.drivers[0], SIZE)  # the rest of the suite expects its seed
    timed = [cell for cell in results.cells if cell.samples_ns]
    baseline = {_key(cell): cell for cell in timed if cell.latency_ms == 0}
    checked, problems = 0, []
    for cell in (c for c in timed if c.latency_ms == round_trip_ms):
        zero = summarize(baseline[_key(cell)].samples_ns).median_ns / 1e6
        median = summarize(cell.samples_ns).median_ns / 1e6
        floor = cell.round_trips * round_trip_ms
        where = f"{cell.params} {cell.driver}-{cell.mode}: {cell.round_trips} round trips"
        assert cell.round_trips >= cell.statements, where
        if not floor <= median <= floor * 1.15 + zero:
            problems.append(f"{where}, {median:.1f} ms (at 0 ms {zero:.1f} ms)")
        checked += 1
    assert checked >= 5  # 3 strategies x 2 modes, less lazy loading in async
    return results, problems


def _key(cell) -> tuple:
    return (cell.case, tuple(cell.params.items()), cell.driver, cell.mode)


def test_latency_on_sqlite_is_one_line() -> None:
    result = run("sqla_bench", "run", "--latency", "5")
    assert_one_line_error(result, "--latency needs a network and sqlite has none")


@pytest.mark.parametrize("value", ["-1", "fast", "1,,2", "nan"])
def test_bad_latency_is_one_line(value) -> None:
    assert_one_line_error(run("sqla_bench", "run", "--latency", value), "round-trip milliseconds")


def test_unknown_grid_parameter_is_one_line() -> None:
    result = run("sqla_bench", "run", "--scenario", "crud.list", "--param", "depth=3")
    assert_one_line_error(result, "--param depth: no selected scenario has that parameter")
