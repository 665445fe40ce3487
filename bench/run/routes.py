"""How drivers reach a target (``Route``): directly, through PgBouncer, through the
latency proxy, or through both; each started for the route and stopped with it, and the
drivers as the route's timed calls reach the server (``driver_env``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy.engine import URL

from sqla_bench.measuring.engines import DriverEnv
from sqla_bench.measuring.probes import RoundTripCounter
from sqla_bench.measuring.watch import Watched
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.servers.containers import PORTS
from sqla_bench.servers.latency import LatencyProxy
from sqla_bench.servers.pgbouncer import PgBouncer
from sqla_bench.servers.targets import Driver, Target


def driver_env(
    route: Route, driver: Driver, size: DatasetSize, pool: dict[str, Any] | None
) -> DriverEnv:
    """The driver as the route's timed calls reach the server, and, when they do not go
    through the proxy but the run has one, the same driver through it for counting."""
    fresh = None if route.bouncer is None else route.bouncer.fresh_servers

    def on(routed: Driver, counted: bool, counting: DriverEnv | None = None) -> DriverEnv:
        counter = route.round_trip_counter() if counted else None
        return DriverEnv(
            routed, size, counter, pool, route.pgbouncer, server=driver, fresh_servers=fresh,
            counting=counting,
        )  # fmt: skip

    if route.delays:
        return on(route.through_proxy(driver), counted=True)
    counting = None if route.proxy is None else on(route.through_proxy(driver), counted=True)
    return on(route.past_proxy(driver), counted=False, counting=counting)


class Route:
    """How drivers reach a target: directly, through PgBouncer, through a latency proxy,
    or through both (the proxy in front of PgBouncer: the delay is the application's
    network, PgBouncer sits beside the server)."""

    def __init__(self, proxy: LatencyProxy | None = None, bouncer: PgBouncer | None = None) -> None:
        self.proxy = proxy
        self.bouncer = bouncer
        self.latency_ms: float | None = None

    @property
    def pgbouncer(self) -> str | None:
        """PgBouncer's pool mode on this route; None when there is no PgBouncer."""
        return None if self.bouncer is None else self.bouncer.mode

    def set_latency(self, round_trip_ms: float | None) -> None:
        self.latency_ms = round_trip_ms
        if self.proxy is not None and round_trip_ms is not None:
            self.proxy.set_delay(round_trip_ms / 2000)  # one way, in seconds

    @property
    def delays(self) -> bool:
        """Whether timed calls and loads go through the proxy: only to add latency. At
        0 ms it would add nothing but its own hops, so they go past it."""
        return self.proxy is not None and bool(self.latency_ms)

    def through_proxy(self, driver: Driver) -> Driver:
        """The driver through the proxy (then PgBouncer, if any): where round trips are
        counted."""
        return _entering(driver, self.proxy or self.bouncer)

    def past_proxy(self, driver: Driver) -> Driver:
        """The driver straight to PgBouncer or the server."""
        return _entering(driver, self.bouncer)

    def round_trip_counter(self) -> RoundTripCounter | None:
        return None if self.proxy is None else RoundTripCounter(self.proxy.totals)

    def proxy_cpu(self) -> Callable[[], float] | None:
        """The proxy's CPU seconds, when loads go through it."""
        if not self.delays:
            return None
        proxy = self.proxy
        return lambda: proxy.report()["cpu_seconds"]

    def before_load(self) -> None:
        """Through PgBouncer, a load starts with its server pool empty, as a load
        straight to the server starts with an empty engine pool."""
        if self.bouncer is not None:
            self.bouncer.close_servers()

    def clients_left(self) -> Callable[[], int] | None:
        """Through PgBouncer, how a load's leftover connections are counted (at
        PgBouncer, which keeps its server connections); None: at the server."""
        return None if self.bouncer is None else self.bouncer.clients_left

    def watched(self, target: str, direct_url: URL) -> Watched:
        """What a load on this route is watched through (``direct_url`` goes straight to
        the server, for the connection poller)."""
        return Watched(target, direct_url, self.proxy_cpu(), self.clients_left())

    def describe(self) -> str:
        words = ""
        if self.bouncer is not None:
            words += (
                f", through PgBouncer ({self.bouncer.mode} pooling, "
                f"{self.bouncer.pool_size} server connections)"
            )
        if self.delays:
            words += f", +{self.latency_ms:g} ms per round trip"
        elif self.latency_ms is not None:
            words += ", 0 ms: timed direct, round trips counted through the proxy"
        return words


def _entering(driver: Driver, entry: LatencyProxy | PgBouncer | None) -> Driver:
    if entry is None:
        return driver
    return replace(driver, url=driver.url.set(host="127.0.0.1", port=entry.port))


@contextmanager
def route_to(
    target: Target,
    through_proxy: bool,
    pgbouncer: str | None = None,
    pgbouncer_pool: int = 0,
    say: Callable[[str], None] = lambda _: None,
) -> Iterator[Route]:
    """A route to ``target``: through PgBouncer in ``pgbouncer`` mode and a proxy
    process, when asked; each started here and stopped on leaving, whatever ends the
    block."""
    with ExitStack() as stack:
        bouncer, proxy = None, None
        if pgbouncer is not None:
            bouncer = stack.enter_context(PgBouncer(target.url, pgbouncer, pgbouncer_pool, say))
        if through_proxy:  # never for SQLite (the plan refuses it): a server has a port
            url = target.url
            host, port = url.host or "127.0.0.1", url.port or PORTS[target.name]
            if bouncer is not None:
                host, port = "127.0.0.1", bouncer.port
            proxy = stack.enter_context(LatencyProxy(host, port))
        yield Route(proxy, bouncer)
