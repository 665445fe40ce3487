"""A cell's loads (``run --concurrency``): the load generator each case gets (C workers
in process, or HTTP clients against the served app: aiohttp or Locust), after the cell
measured alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL

from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.load import Load
from sqla_bench.measuring.locust_load import LocustWorkers
from sqla_bench.measuring.measure import Measurement, measure
from sqla_bench.measuring.observe import subject_for
from sqla_bench.measuring.policy import ONE_WARM_CALL
from sqla_bench.measuring.processes import worker_specs
from sqla_bench.measuring.workers import run_load
from sqla_bench.run.routes import Route
from sqla_bench.scenarios.registry import Case

# A cell's loads: the cell measured alone (its outcome and counts, from a warm call), and
# a function that runs it under load with N workers.
Loads = Iterator[tuple[Measurement, Callable[[int], Load]]]


@dataclass(frozen=True)
class LoadPlace:
    """Where a cell's loads run: its driver's engine, the route to the server, the run's
    loop, a direct URL for the connection poller, and how long each load lasts."""

    env: DriverEnv
    route: Route
    loop: asyncio.AbstractEventLoop
    direct: URL
    seconds: float
    modules: tuple[str, ...] = ()  # an application's twins, for worker processes to import
    locust: LocustWorkers | None = None  # Locust's workers for HTTP loads; None: aiohttp


@contextmanager
def in_process_loads(case: Case, params: dict[str, Any], where: LoadPlace) -> Loads:
    """Workers in this process, sharing the place's engine."""
    env, loop = where.env, where.loop
    alone = loop.run_until_complete(measure(subject_for(case, params, env), ONE_WARM_CALL))

    def load(workers: int, processes: int | None) -> Load:
        where.route.before_load()
        specs = ()
        if processes is not None:
            specs = worker_specs(env, case.id, params, workers, processes, where.modules)
        watched = where.route.watched(env.setting.target, where.direct)
        done = run_load(env, case, params, workers, where.seconds, loop, watched, specs)
        done.processes = processes
        return done

    yield alone, load


@contextmanager
def served_loads(case: Case, params: dict[str, Any], where: LoadPlace) -> Loads:
    """The case's app served in a process of its own (on ``env``'s driver, through the
    route, with the plan's pool), and HTTP clients in this one. Each load gets an app of
    its own, so it starts with an empty pool, as in-process loads do: the connection
    poller's count at the start is then other clients' only."""
    from sqla_bench.measuring.web import AppServer, measure_once, run_web_load

    env, route, loop = where.env, where.route, where.loop
    request = case.function(env.mode)(**params)

    def serve(on: DriverEnv = env, listen: tuple[str, int] = ("127.0.0.1", 0)) -> AppServer:
        options = {**on.pool, "connect_args": on.connect_args}
        return AppServer(case, request, on.mode, on.url, options, listen)

    # Alone, the app is served through the proxy, when the run has one, for the round trips.
    counting = env.counting
    with serve(counting or env) as server:
        counter = None if counting is None else counting.round_trips
        alone = loop.run_until_complete(measure_once(server, request, counter))

    def load(workers: int, processes: int | None) -> Load:
        route.before_load()  # a served load runs in the app's one process
        watched = route.watched(env.setting.target, where.direct)
        locust = where.locust
        listen = (locust.serve_host, locust.serve_port) if locust else ("127.0.0.1", 0)
        with serve(listen=listen) as server:
            if locust:  # Locust's master and workers, in processes of their own
                from sqla_bench.measuring.locust_load import run_locust_load

                return run_locust_load(server, request, workers, where.seconds, locust, watched)
            return run_web_load(server, request, workers, where.seconds, loop, watched)

    yield alone, load
