"""How a run stops when asked: Ctrl-C (SIGINT) and SIGTERM both ask it to stop at the
next safe point, clean up (containers, proxies) and keep a valid file of what finished."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop as Ctrl-C does (clean up, keep what finished), but say so."""


def raise_stop(signum: int, frame: object) -> None:
    """A signal handler that stops at once, wherever the interpreter is."""
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def stopped_by(stop: BaseException, signum: int | None = None) -> tuple[str, int]:
    """What stopped us, in words, and the exit status for it (128 + the signal)."""
    if isinstance(stop, Terminated) or signum == signal.SIGTERM:
        return "terminated (SIGTERM)", 128 + signal.SIGTERM
    return "interrupted", 128 + signal.SIGINT


class StopOnInterrupt:
    """Ctrl-C asks the run to stop at the next safe point instead of raising anywhere.

    Python's own handler raises KeyboardInterrupt wherever the interpreter happens to
    be, including inside a garbage collector callback, where it is printed and swallowed
    (seen here: the run then went on to the end). Polling a flag between calls always
    stops. A second Ctrl-C raises at once, for a call that hangs. SIGTERM (what CI
    runners, tox and ``timeout`` send) is the same request, so a terminated run also
    stops its proxy and containers and keeps a valid file of what finished."""

    def __init__(self) -> None:
        self.signal: int | None = None  # the signal that asked to stop

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopOnInterrupt:
        self._previous = {signum: signal.signal(signum, self._request) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _request(self, signum: int, frame: object) -> None:
        self.signal = signum
        signal.signal(signum, raise_stop)


@contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back while the block runs and delivered as it ends, to
    the handlers there were before: a step that must not be cut in two (starting a child
    process, whose handle is what stops it) still stops, just after. Ignoring the signals
    instead would lose one that came in that moment. Main thread only, as
    ``signal.signal`` is."""
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, frame: received.append(signum))
        for signum in STOP_SIGNALS
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])
