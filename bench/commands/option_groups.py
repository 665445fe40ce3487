"""The option groups several commands share, each declared once: PgBouncer's routes,
pruning, the target, the CPU affinity, the sampling policy and the workload dimensions.

Apart from ``options`` (the option types with bounds) because these know the harness's
settings (its policy, PgBouncer's pool, the targets): a command that only reads result
files uses the types and loads none of that."""

from __future__ import annotations

import argparse
import itertools
import math

from sqla_bench.base.errors import ConfigError
from sqla_bench.commands.options import (
    MAX_DATASETS,
    MAX_ROUNDS,
    MAX_SECONDS,
    MAX_WORKERS,
    number,
    numbers,
)
from sqla_bench.measuring.measure import Policy
from sqla_bench.scenarios.dataset import MAXIMUM, DatasetSize
from sqla_bench.servers.pgbouncer import DEFAULT_POOL_SIZE as PGBOUNCER_POOL_SIZE
from sqla_bench.servers.targets import TARGETS

PGBOUNCER_ROUTES = ("direct", "session", "transaction")


def pgbouncer_routes(text: str) -> tuple[str, ...]:
    """``transaction,session``: PgBouncer's pool modes to measure through, in order."""
    routes = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    unknown = [route for route in routes if route not in PGBOUNCER_ROUTES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"expected {', '.join(PGBOUNCER_ROUTES)} separated by commas, got {text!r}"
        )
    return routes


def add_pgbouncer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pgbouncer",
        type=pgbouncer_routes,
        metavar="MODE[,MODE...]",
        help="measure through PgBouncer (Debian's pgbouncer, started on 127.0.0.1 in front "
        "of each PostgreSQL target and stopped afterwards) in each pool mode given: "
        "transaction, session, or direct for the same cells without it. Through transaction "
        "pooling the scenarios' engines turn the driver's prepared statements off, as the "
        "drivers document it (asyncpg statement_cache_size=0, psycopg prepare_threshold="
        "None); the pgbouncer.* patterns show what happens when they do not",
    )
    parser.add_argument(
        "--pgbouncer-pool-size",
        type=number(int, 1, MAX_WORKERS),
        default=PGBOUNCER_POOL_SIZE,
        metavar="N",
        help="PgBouncer's default_pool_size: server connections per database and user "
        f"(default: {PGBOUNCER_POOL_SIZE})",
    )


def add_prune(parser: argparse.ArgumentParser, what: str) -> None:
    """``--prune`` and ``--all``: remove what runs that ended left (or all of it)."""
    parser.add_argument(
        "--prune", action="store_true", help=f"remove the {what} whose owner has ended"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"with --prune: remove every sqla-bench {what[:-1]}, even one a live run uses",
    )


def check_prune(args: argparse.Namespace) -> None:
    if args.all and not args.prune:
        raise ConfigError("--all only goes with --prune")


def add_target(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--target",
        action="append",
        metavar="NAME",
        help=f"target, repeatable: {', '.join(TARGETS)} (default: {default})",
    )


def add_affinity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--affinity",
        default="auto",
        metavar="CPUS",
        help="CPUs to run on: auto (one: the least busy this process may use, measured over "
        "0.1 s; repeated runs agree "
        "far better), all (leave it to the OS), or a list such as 0,1 (default: auto)",
    )


# option, Policy field, type, minimum, maximum, metavar, help
POLICY_OPTIONS = (
    (
        "--min-time",
        "min_time",
        float,
        0,
        MAX_SECONDS,
        "SECONDS",
        "sample each cell for at least this long",
    ),
    ("--min-rounds", "min_rounds", int, 1, MAX_ROUNDS, "N", "and at least this many samples"),
    ("--max-rounds", "max_rounds", int, 1, MAX_ROUNDS, "N", "but at most this many"),
    (
        "--max-time",
        "max_time",
        float,
        0.001,
        MAX_SECONDS,
        "SECONDS",
        "and stop a slow cell's warm-up, and its sampling, after this long (keeping at "
        "least one sample); cells compared side by side, after this long per cell",
    ),
    (
        "--block-time",
        "block_time",
        float,
        0,
        MAX_SECONDS,
        "SECONDS",
        "cells a verdict compares (the strategies of one shape on one driver) are sampled "
        "side by side, in turn, in blocks whose order rotates: each cell samples for this "
        "long in a block (at least one call)",
    ),
    (
        "--block-samples",
        "block_samples",
        int,
        1,
        MAX_ROUNDS,
        "N",
        "and at least this many calls, so that a block's median shrugs off one slow call "
        "(a garbage collection)",
    ),
    (
        "--min-blocks",
        "min_blocks",
        int,
        1,
        MAX_ROUNDS,
        "N",
        "and for at least this many blocks (fewer: the report names no winner)",
    ),
    ("--max-blocks", "max_blocks", int, 1, MAX_ROUNDS, "N", "and at most this many"),
    (
        "--precision",
        "precision",
        float,
        0.001,
        1.0,
        "SHARE",
        "and until each cell's time relative to the fastest is known within this share "
        "(0.03: ±3 %%, at 95 %% confidence), or the comparison has had --max-time per cell",
    ),
    (
        "--warmup",
        "warmup",
        int,
        0,
        MAX_ROUNDS,
        "N",
        "discarded calls before sampling: the first is checked against the catalogue, the "
        "second counts Python function calls, the third the memory held; fewer leaves "
        "those figures out",
    ),
)


def add_policy(parser: argparse.ArgumentParser) -> None:
    defaults = Policy()
    for option, field, kind, minimum, maximum, metavar, text in POLICY_OPTIONS:
        default = getattr(defaults, field)
        parser.add_argument(
            option,
            dest=field,
            type=number(kind, minimum, maximum),
            default=default,
            metavar=metavar,
            help=f"{text} (default: {default})",
        )


def policy_from(args: argparse.Namespace) -> Policy:
    """The sampling policy the options give; ValueError when they contradict each
    other."""
    return Policy(**{field: getattr(args, field) for _, field, *_ in POLICY_OPTIONS})


# The run options that set a workload dimension: option, DatasetSize field, what it sets.
DATASET_OPTIONS = (
    ("--users", "users", "users in the dataset; with --models, rows per table without a parent"),
    ("--posts", "posts_per_user", "posts per user; with --models, children per parent"),
    ("--comments", "comments_per_post", "comments per post"),
    ("--tags", "tags_per_post", "tags per post; with --models, links per parent"),
    (
        "--payload",
        "payload",
        "bytes of text in a payload column of every row, so a row is as wide as yours and "
        "a JOIN that repeats a parent row pays for it",
    ),
)


class DefaultSizes(tuple):
    """A dataset option's values when the user gave none: ``run --models`` may take
    fewer rows per table, so that deep fan-outs fit the seeding bound."""

    __slots__ = ()


# The same options under names that say what they set on any application's models
# (run --models), not on the built-in users and posts.
MODELS_NAMES = {
    "--users": ("--rows-per-table",),
    "--posts": ("--children-per-parent",),
    "--tags": ("--links-per-parent",),
}


def add_datasets(parser: argparse.ArgumentParser) -> None:
    """Each a list: every combination of the values is seeded and measured."""
    default_size = DatasetSize()
    for option, field, text in DATASET_OPTIONS:
        low = 0 if field == "payload" else 1
        default = getattr(default_size, field)
        parser.add_argument(
            option,
            *MODELS_NAMES.get(option, ()),
            dest=field,
            type=numbers(int, low, math.inf, "whole numbers"),
            default=DefaultSizes((default,)),
            metavar="N[,N...]",
            help=f"{text} (default: {default}; at most {MAXIMUM[field]:,}); every combination "
            "of the dataset options is seeded and measured",
        )


def datasets_from(args: argparse.Namespace) -> tuple[DatasetSize, ...]:
    """Every combination of the dataset options' values (each a workload dimension);
    ValueError, in the options' words, for too many or a size out of bounds."""
    lists = [dict.fromkeys(getattr(args, field)) for _, field, _ in DATASET_OPTIONS]
    combinations = math.prod(len(values) for values in lists)
    if combinations > MAX_DATASETS:
        raise ValueError(
            f"the dataset options make {combinations} datasets, each seeded and measured; "
            f"at most {MAX_DATASETS} in one run: split it into several runs"
        )
    try:
        return tuple(DatasetSize.of(*values) for values in itertools.product(*lists))
    except ValueError as error:
        raise ValueError(_in_option_names(str(error))) from None


def _in_option_names(message: str) -> str:
    """A dataset's complaint about one of its fields, in the words of the run option."""
    for option, field, _ in DATASET_OPTIONS:
        message = message.replace(f"dataset {field} ", f"{option} ")
    return message
