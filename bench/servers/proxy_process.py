"""The latency proxy's own process (``sqla_bench.servers.latency`` starts it): each
chunk received is released to the other side at its due time, one way's delay after it
arrived, by a scheduler that sleeps, then spins the last stretch."""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import random
import socket
import struct
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

ROUND_TRIPS, BYTES_UP, BYTES_DOWN, CONNECTIONS = range(4)
SPIN_SECONDS = 50e-6  # the last stretch before a due time is spun, not slept
CALIBRATION_SLEEPS = 20
FINAL_SLEEP = 0.001  # the length of the last, calibrated sleep before a due time
CALIBRATION_SECONDS = FINAL_SLEEP  # sleeps wake later after longer ones: 72 us at 0.5 ms
CHUNK = 65536
# Kernel receive timestamps: the socket module names them on few platforms; Linux's is 35.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
STAMP_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
LATE_KEPT = 10_000
LATE_WINDOW = 31  # final sleeps whose median lateness sets how early the next one ends
# With many connections, several writers spin at once. A spinning thread keeps the GIL
# for the switch interval (5 ms by default), so the others wake late, measure that as
# sleep lateness, end their sleeps earlier and spin longer: seen here as a proxy using a
# whole core from 20 connections on, and staying so after they closed. A short switch
# interval hands the GIL on within a spin's length, and a cap on how early a sleep ends
# stops lateness caused by contention from feeding more spinning.
SWITCH_INTERVAL = 50e-6
MAX_EARLY = 300e-6
# A send that took long (the receiver's CPU was slow to wake, say) must not make every
# later chunk leave much before its due time.
MAX_AHEAD = 100e-6


class _Proxy:
    """State of the proxy process: the delay now in force and every connection's
    counts."""

    def __init__(self, counters: Any) -> None:
        self.counters = counters
        # The final sleep's recent lateness: it is longer after long idle waits (a
        # virtual CPU wakes slower from a longer halt), so it is followed, not fixed.
        self.final_sleep_late = collections.deque(
            [_sleep_lateness()] * LATE_WINDOW, maxlen=LATE_WINDOW
        )
        self.delay = 0.0
        self.jitter = 0.0
        self.refusing = False  # cut: new connections are closed as they arrive
        self.lock = threading.Lock()
        self.links: list[_Link] = []
        # For the report, per delayed chunk (the last LATE_KEPT): how late its send began,
        # how long it took, and how long before the due time it was to begin.
        self.releases: collections.deque[tuple[float, float, float]] = collections.deque(
            maxlen=LATE_KEPT
        )
        # Recent sends' durations: a send begins the shortest before its chunk is due.
        self.sends: collections.deque[float] = collections.deque(maxlen=LATE_WINDOW)

    @property
    def early(self) -> float:
        """How long before a due time the last sleep should end: its usual lateness
        (the median of recent ones) plus a little spin."""
        recent = sorted(self.final_sleep_late)  # copied in C, safe from other writers
        return min(recent[len(recent) // 2] + SPIN_SECONDS, MAX_EARLY)

    @property
    def ahead(self) -> float:
        """How long before its due time a chunk's send begins: the shortest recent send
        (none before the first)."""
        return min(min(self.sends, default=0.0), MAX_AHEAD)  # read in C: safe from writers

    def due(self, arrived: float) -> float:
        jitter = random.uniform(0, self.jitter) if self.jitter else 0.0
        return arrived + self.delay + jitter

    def add(self, index: int, amount: int) -> None:
        with self.lock:
            self.counters[index] += amount


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: _Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.round_trips = 0
        self.bytes = {"up": 0, "down": 0}
        self.last = "down"  # the direction of the last chunk seen
        self.open = True
        self.sockets = (client, upstream)
        for source, target, direction in ((client, upstream, "up"), (upstream, client, "down")):
            _Direction(self, source, target, direction).start()

    def arrived(self, direction: str, size: int) -> None:
        proxy = self.proxy
        counters = proxy.counters
        with proxy.lock:
            self.bytes[direction] += size
            if direction == "up":
                counters[BYTES_UP] += size
            else:
                counters[BYTES_DOWN] += size
                if self.last == "up":
                    self.round_trips += 1
                    counters[ROUND_TRIPS] += 1
            self.last = direction


class _Direction:
    """One direction of a link: a reader that stamps chunks, a writer that releases
    them."""

    def __init__(self, link: _Link, source: socket.socket, target: socket.socket, name: str):
        self.link, self.source, self.target, self.name = link, source, target, name
        self.chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
        self.pending = 0  # chunks queued and not yet sent (changed under the proxy's lock)

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        # The hot path of every proxied statement: names are bound once, and a chunk
        # that needs no delay is sent from here, without waking the writer thread.
        proxy, link, name = self.link.proxy, self.link, self.name
        recv, sendall, arrived = self.source.recv, self.target.sendall, link.arrived
        last_due = 0.0
        while True:
            delayed = proxy.delay or proxy.jitter
            try:
                data, now = _received(self.source) if delayed else (recv(CHUNK), None)
            except OSError:
                data, now = b"", None
            # A delay set while this thread waited in recv holds for this chunk too (it
            # then has no kernel stamp: it is delayed from now).
            delayed = delayed or proxy.delay or proxy.jitter
            if data and not (delayed or self.pending):
                arrived(name, len(data))
                try:
                    sendall(data)
                except OSError:
                    link.open = False
                    return
                continue
            now = now or time.perf_counter()
            if data:
                arrived(name, len(data))
            # Jitter must not reorder a byte stream: a chunk is never due before the last.
            last_due = max(proxy.due(now), last_due)
            with proxy.lock:
                self.pending += 1
            self.chunks.put((last_due, data))
            if not data:
                return

    def _write(self) -> None:
        while True:
            due, data = self.chunks.get()
            proxy = self.link.proxy
            ahead = proxy.ahead
            late = _wait_until(due - ahead, proxy.early)
            if late is not None:
                proxy.final_sleep_late.append(late)
            released = time.perf_counter()
            sent = self._send(data)
            took = time.perf_counter() - released
            proxy.sends.append(took)
            proxy.releases.append((released - (due - ahead), took, ahead))
            with self.link.proxy.lock:
                self.pending -= 1
            if not sent or not data:
                return

    def _send(self, data: bytes) -> bool:
        """Send ``data`` (end of stream when empty); False once the peer is gone."""
        try:
            if data == b"":
                self.target.shutdown(socket.SHUT_WR)
            else:
                self.target.sendall(data)
        except OSError:
            self.link.open = False
            return False
        return True


def _received(sock: socket.socket) -> tuple[bytes, float]:
    """A chunk and when the kernel received it, on the ``perf_counter`` clock.

    A reader blocked for a delay's length wakes a median 39 us (up to 158 us) after its
    data arrived; counting the delay from the kernel's stamp keeps that wake-up out of
    it."""
    data, ancillary, _, _ = sock.recvmsg(CHUNK, STAMP_SPACE)
    wall, clock = time.time(), time.perf_counter()
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack("qq", raw[:16])
            return data, clock - (wall - seconds - nanoseconds * 1e-9)
    return data, clock


def _stamp_arrivals(sock: socket.socket) -> None:
    if SO_TIMESTAMPNS is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def _wait_until(due: float, early: float) -> float | None:
    """Return at ``due``. A long sleep's lateness varies (0.26 ms once at 10 ms), so a
    coarse sleep ends about ``FINAL_SLEEP`` before the due time, then a short sleep ends
    ``early`` before it (its usual lateness and a little spin), and the rest is spun:
    the last wake-up is the same whatever the delay. Returns how late that short sleep
    woke, if there was one, so that ``early`` can follow it."""
    remaining = due - time.perf_counter()
    if remaining > early + FINAL_SLEEP:
        time.sleep(remaining - early - FINAL_SLEEP)
    late = None
    remaining = due - time.perf_counter()
    if remaining > early:
        asked = remaining - early
        started = time.perf_counter()
        time.sleep(asked)
        late = time.perf_counter() - started - asked
    while time.perf_counter() < due:
        pass
    return late


def _sleep_lateness() -> float:
    """How late ``time.sleep`` wakes on this machine (the median of a few short
    sleeps)."""
    late = []
    for _ in range(CALIBRATION_SLEEPS):
        started = time.perf_counter()
        time.sleep(CALIBRATION_SECONDS)
        late.append(time.perf_counter() - started - CALIBRATION_SECONDS)
    return sorted(late)[len(late) // 2]


def leave_the_clients_cpus(client_cpus: set[int] | None) -> None:
    """Run on the CPUs the measuring process does not use: a child inherits its parent's
    CPU affinity, and a proxy pinned to the client's one core starved both under
    load."""
    if client_cpus is None or not hasattr(os, "sched_setaffinity"):
        return
    others = set(range(os.cpu_count() or 1)) - client_cpus
    with contextlib.suppress(OSError):  # a cpuset may forbid some: then stay as we are
        os.sched_setaffinity(0, others or client_cpus)


def serve_proxy(
    control: Connection, host: str, port: int, counters: Any, client_cpus: set[int] | None
) -> None:
    leave_the_clients_cpus(client_cpus)
    sys.setswitchinterval(SWITCH_INTERVAL)
    proxy = _Proxy(counters)
    listener = _listening(control, "the latency proxy")
    if listener is None:
        return
    threading.Thread(target=_accept, args=(proxy, listener, host, port), daemon=True).start()
    _obey(proxy, control)


def _listening(control: Connection, what: str) -> socket.socket | None:
    """A listener on a free loopback port, its port sent to the measuring process; or
    None, and why sent instead."""
    try:
        listener = socket.create_server(("127.0.0.1", 0))
    except OSError as error:
        control.send(f"{what} cannot listen: {error}")
        return None
    control.send(listener.getsockname()[1])
    return listener


def _accept(proxy: _Proxy, listener: socket.socket, host: str, port: int) -> None:
    while True:
        client, _ = listener.accept()
        if proxy.refusing:
            client.close()
            continue
        try:
            upstream = socket.create_connection((host, port), timeout=5)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _stamp_arrivals(sock)
        proxy.add(CONNECTIONS, 1)
        proxy.links.append(_Link(proxy, client, upstream))


def _obey(proxy: _Proxy, control: Connection) -> None:
    """Answer the measuring process until it says stop (or goes away)."""
    while True:
        try:
            command, *arguments = control.recv()
        except EOFError:
            return
        if command == "stop":
            return
        if command == "delay":
            proxy.delay, proxy.jitter = arguments
            control.send(None)
        elif command in ("cut", "restore"):
            proxy.refusing = command == "cut"
            if proxy.refusing:
                _close_links(proxy)
            control.send(None)
        elif command == "report":
            control.send(_report(proxy))


def _close_links(proxy: _Proxy) -> None:
    """Close both ends of every connection: its readers see end-of-stream or an
    error."""
    with proxy.lock:
        links = list(proxy.links)
    for link in links:
        link.open = False
        for sock in link.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _median(ordered: list[float]) -> float:
    return ordered[len(ordered) // 2]


def _report(proxy: _Proxy) -> dict[str, Any]:
    with proxy.lock:
        links = [
            {"round_trips": link.round_trips, "bytes_up": link.bytes["up"],
             "bytes_down": link.bytes["down"], "open": link.open}
            for link in proxy.links
        ]  # fmt: skip
    releases = list(proxy.releases)  # one C-level copy: writers append as we read
    late = sorted(late for late, _, _ in releases)
    sending = sorted(took for _, took, _ in releases)
    ahead = sorted(ahead for _, _, ahead in releases)
    release = {
        "chunks": len(late),
        "median_late_us": _median(late) * 1e6 if late else None,
        "max_late_us": late[-1] * 1e6 if late else None,
        # On loopback the send also wakes the receiver: slow when its CPU was idle.
        "median_send_us": _median(sending) * 1e6 if sending else None,
        "median_ahead_us": _median(ahead) * 1e6 if ahead else None,
    }
    return {"cpu_seconds": time.process_time(), "connections": links, "release": release}
