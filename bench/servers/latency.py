"""A TCP proxy that adds round-trip latency and counts round trips, in a process of its
own.

``LatencyProxy(host, port)`` starts the proxy in a child process (never a thread of the
measured process: a proxy thread competes with the client for the GIL and caps its
throughput) listening on 127.0.0.1. Each chunk read from one side is released to the
other ``delay`` seconds after it arrived, measured from its own arrival, so chunks in
flight do not add up (as Toxiproxy's latency toxic does); a round trip gains 2 x delay.
Release times are kept to well under a millisecond by sleeping until just before the
due time and spinning the rest, which ``asyncio.sleep`` (about 0.6 ms late) cannot do.
A send on loopback takes time of its own, which a wire would not add: a chunk's send
begins the shortest of the recent sends' durations (MAX_AHEAD at most) before its due
time. Only the shortest, the sender's own floor: the rest of a slower send is waking a
receiver whose CPU was idle, which a wire costs as well, and starting earlier by that
made a round trip through the proxy beat a direct one plus the delay. At 1 ms one way
the proxy then added 13 to 21 us per round trip beyond the delay to an echo server's,
instead of about 46 (``selfcheck --only proxy``).
``time.sleep`` wakes late too (70-100 us here, more after long sleeps), so the proxy
measures by how much when it starts and ends every wait with a sleep of that length:
a spin of 150 us instead cost more than a CPU core at 1,300 operations per second with
three round trips each.

A round trip is a burst from the client answered by a burst from the server: counted
when the first server chunk arrives after client chunks. Round trips and bytes each
way are kept in shared memory, so the measuring process reads them around a single call
with no message to the proxy; per-connection figures and the proxy's CPU time come on
request over a pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from sqla_bench.servers.children import Child
from sqla_bench.servers.proxy_process import (
    BYTES_DOWN,
    BYTES_UP,
    CHUNK,
    CONNECTIONS,
    ROUND_TRIPS,
    _listening,
    leave_the_clients_cpus,
    serve_proxy,
)

START_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Totals:
    """Counts since the proxy started; subtract two readings for an interval."""

    round_trips: int
    bytes_up: int
    bytes_down: int
    connections: int

    def __sub__(self, other: Totals) -> Totals:
        return Totals(
            self.round_trips - other.round_trips,
            self.bytes_up - other.bytes_up,
            self.bytes_down - other.bytes_down,
            self.connections - other.connections,
        )


class LatencyProxy(Child):
    """The measuring process's handle on a proxy process in front of ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no engines
        self._counters = context.RawArray(ctypes.c_longlong, 4)
        super().__init__(context, serve_proxy, host, port, self._counters, daemon=True)
        reply = self._first_reply(START_TIMEOUT_SECONDS, "the latency proxy")
        if isinstance(reply, str):
            self.close()
            raise OSError(reply)
        self.port: int = reply

    def set_delay(self, one_way_seconds: float, jitter_seconds: float = 0.0) -> None:
        """Delay each chunk by ``one_way_seconds`` (+ uniform jitter up to the
        given)."""
        self._ask("delay", one_way_seconds, jitter_seconds)

    def cut(self) -> None:
        """The server goes away, as far as the client can tell: every open connection is
        closed and new ones are refused (accepted and closed at once) until
        ``restore``."""
        self._ask("cut")

    def restore(self) -> None:
        """The server is back: new connections reach it again."""
        self._ask("restore")

    def round_trips(self) -> int:
        """The running count of round trips (one shared-memory read)."""
        return self._counters[ROUND_TRIPS]

    def totals(self) -> Totals:
        """A reading of the shared counters: cheap enough to take around every call."""
        counters = self._counters
        return Totals(
            counters[ROUND_TRIPS], counters[BYTES_UP], counters[BYTES_DOWN], counters[CONNECTIONS]
        )

    def report(self) -> dict[str, Any]:
        """Per-connection counts, the proxy process's CPU seconds, and for the last
        10,000 delayed chunks how late their send began (median and worst), how long it
        took (median) and how long before the due time it was to begin (median), in
        microseconds."""
        return self._ask("report")


class EchoServer(Child):
    """A server that sends back whatever it receives, in a process of its own, on
    127.0.0.1: the yardstick of the proxy's own cost (a round trip with no work in it)
    and of its tests."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        super().__init__(context, _echo_serve, daemon=True)
        reply = self._first_reply(START_TIMEOUT_SECONDS, "the echo server")
        if isinstance(reply, str):
            self.close()
            raise OSError(reply)
        self.port: int = reply


ECHO_MESSAGE = b"x" * 100


def connect(port: int) -> socket.socket:
    """A client connection to 127.0.0.1:``port`` that sends small writes at once."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trips_ns(sock: socket.socket, times: int, message: bytes = ECHO_MESSAGE) -> list[int]:
    """``times`` round trips of ``message`` to an echo server, each timed."""
    taken = []
    for _ in range(times):
        started = time.perf_counter_ns()
        sock.sendall(message)
        received = 0
        while received < len(message):
            received += len(sock.recv(CHUNK))
        taken.append(time.perf_counter_ns() - started)
    return taken


def _echo_serve(control: Connection, client_cpus: set[int] | None) -> None:
    leave_the_clients_cpus(client_cpus)
    listener = _listening(control, "the echo server")
    if listener is None:
        return
    threading.Thread(target=_echo_accept, args=(listener,), daemon=True).start()
    with contextlib.suppress(EOFError, OSError):
        control.recv()  # ("stop",), or the pipe closing


def _echo_accept(listener: socket.socket) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_echo, args=(client,), daemon=True).start()


def _echo(client: socket.socket) -> None:
    # Without NODELAY, Nagle holds each small echo until the last is acknowledged.
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with client, contextlib.suppress(OSError):
        while data := client.recv(CHUNK):
            client.sendall(data)
