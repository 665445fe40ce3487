"""The command line's option types, each declared once: numbers with bounds, lists of
them, ``NAME=V,...`` parameter values, and the bounds themselves. The option groups
several commands share are in ``option_groups``; the commands declare the rest."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from sqla_bench.scenarios.registry import PARAMETERS

# Upper bounds of the numeric options, sized for one measuring process on one machine:
# beyond them a run measures the client's own limits (one process drives a few hundred
# workers at most) or does not end in a working day. Datasets are bounded by
# scenarios.dataset.MAXIMUM.
MAX_WORKERS = 1_000  # --concurrency, --pool-size, --max-overflow
MAX_PROCESSES = 64  # --processes: each an interpreter with its own engine
MAX_SECONDS = 3_600.0  # every duration
MAX_LATENCY_MS = 10_000.0
MAX_ROUNDS = 1_000_000
MAX_DATASETS = 64


def _finite(kind: type, text: str, low: float, high: float) -> Any:
    """``text`` as a finite ``kind`` from ``low`` to ``high``, or None ("nan" and "inf"
    are numbers to Python, but an infinite load or an unreachable time never ends)."""
    try:
        value = kind(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and low <= value <= high else None


def _range(low: float, high: float) -> str:
    return f"from {_plain(low)} to {_plain(high)}" if math.isfinite(high) else f">= {low:g}"


def _plain(number: float) -> str:
    """1,000,000 rather than 1e+06; 0.001 as it is."""
    return f"{int(number):,}" if float(number).is_integer() else f"{number:g}"


def number(kind: type, low: float, high: float) -> Callable[[str], Any]:
    """A parser of one number from ``low`` to ``high``."""

    def parse(text: str) -> Any:
        value = _finite(kind, text, low, high)
        if value is None:
            raise argparse.ArgumentTypeError(f"expected a number {_range(low, high)}, got {text!r}")
        return value

    return parse


def numbers(kind: type, low: float, high: float, what: str) -> Callable[[str], tuple[Any, ...]]:
    """A parser of comma-separated numbers, e.g. ``--users 10,100,1000``."""

    def parse(text: str) -> tuple[Any, ...]:
        values = tuple(_finite(kind, part, low, high) for part in text.split(","))
        if None in values:
            raise argparse.ArgumentTypeError(
                f"expected {what} {_range(low, high)} separated by commas, got {text!r}"
            )
        return values

    return parse


workers = numbers(int, 1, MAX_WORKERS, "whole numbers")
latencies = numbers(float, 0, MAX_LATENCY_MS, "round-trip milliseconds")


def grid_values(text: str) -> tuple[str, tuple[Any, ...]]:
    """``NAME=V[,V...]``, each value read as the parameter's declaration says; a name no
    case declares is kept as text, for the plan to say which names the scenarios
    have."""
    name, _, values = text.partition("=")
    if not name or not values:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE[,VALUE...], got {text!r}")
    parameter = PARAMETERS.get(name)
    if parameter is None:
        return name, tuple(values.split(","))
    try:
        return name, tuple(parameter.parse(value) for value in values.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{name}: {error}") from None
