"""How many calls a cell gets (``Policy``): warm-up, samples until a count and a time
are both reached, the blocks cells compared side by side take turns in, and the calls of
the warm-up that carry what samples cannot (checked, counted, traced;
``sqla_bench.measuring .measure`` says what each holds).

Its own module so that the commands that build a policy, and the baselines that name
theirs, import no measuring code."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqla_bench.results.stats import MIN_BLOCKS


@dataclass(frozen=True)
class Policy:
    """How long a cell is sampled: after ``warmup`` discarded calls, until at least
    ``min_rounds`` samples and ``min_time`` seconds of sampling (wall clock, untimed
    set-up included, so fast cells end in bounded time), or ``max_rounds`` samples.

    ``max_time`` bounds a slow cell (a thousand lazy loads at 20 ms each): warm-up ends
    once it has taken that long (after the calls with a role), and sampling ends
    once it has, with at least one sample. Such a cell has few samples; the report and
    the gate say so rather than draw a verdict from them.

    Cells compared with each other (``measure_side_by_side``: the strategies of one
    shape on one driver) are sampled in turn, in blocks: each takes samples for
    ``block_time`` seconds and at least ``block_samples`` (so that a block's median
    shrugs off one slow call: 12 to 18 % of the calls loading 2,000 posts took three to
    five times the median here, and with a call per block they dragged the ratio
    towards 1 by 0.05 and more), in an order that rotates from block to
    block, so drift on the machine reaches every cell alike. They go on until at least
    ``min_blocks`` blocks, and the rounds and time above per cell, have been sampled and
    each cell's ratio to the fastest is settled (``precise``: known within
    ``precision``, 0.05 being ±5 % at ``stats.CONFIDENCE``, or clearly slower); or until
    the group has had ``max_time`` per cell, or ``max_blocks`` blocks."""

    warmup: int = 3
    min_rounds: int = 10
    min_time: float = 0.2
    max_rounds: int = 10_000
    max_time: float = 10.0
    block_time: float = 0.02
    block_samples: int = 3
    min_blocks: int = MIN_BLOCKS
    max_blocks: int = 1_000
    precision: float = 0.05
    # Calls per cell counted in instructions, after the warm-up (``sqla_bench.run.instructions``,
    # in a child process under callgrind only); 0: none.
    instruction_calls: int = 0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_rounds < 1 or self.min_time < 0:
            raise ValueError("warm-up must be >= 0, rounds >= 1 and time >= 0")
        if self.max_rounds < self.min_rounds:
            raise ValueError("max rounds must be at least min rounds")
        if self.max_time < self.min_time:
            raise ValueError("--max-time must be at least --min-time")
        if self.block_time < 0 or self.min_blocks < 1 or self.precision <= 0:
            raise ValueError("block time must be >= 0, blocks >= 1 and precision > 0")
        if self.max_blocks < self.min_blocks:
            raise ValueError("--max-blocks must be at least --min-blocks")
        if self.instruction_calls < 0:
            raise ValueError("instruction calls must be >= 0")

    def enough(self, samples: int, seconds: float) -> bool:
        """A cell sampled alone: whether it has been sampled enough."""
        if samples >= self.max_rounds or (samples and seconds >= self.max_time):
            return True
        return samples >= self.min_rounds and seconds >= self.min_time

    def enough_blocks(
        self, blocks: int, seconds: float, samples: tuple[int, int], cells: int, precise: bool
    ) -> bool:
        """Cells sampled side by side, after ``blocks`` blocks and ``seconds`` of
        sampling, with ``samples`` the fewest and the most any of the ``cells`` took."""
        fewest, most = samples
        if blocks >= self.max_blocks or most >= self.max_rounds:
            return True
        if blocks and seconds >= self.max_time * cells:
            return True
        enough_time = fewest >= self.min_rounds and seconds >= self.min_time * cells
        return blocks >= self.min_blocks and enough_time and precise

    def warm_calls(self, calls: int, seconds: float, planned: int) -> int:
        """How many warm-up calls, after ``calls`` that took ``seconds``: ``planned``,
        or, once warming has taken ``max_time``, just those with a role (``ROLES``)."""
        if seconds >= self.max_time:
            return min(planned, max(calls, len(ROLES)))
        return planned


ONCE = Policy(warmup=0, min_rounds=1, min_time=0.0, max_rounds=1)
# Calls counted through the proxy when the samples went past it: enough for the usual
# count to be the steady one (psycopg 3 prepares a statement on its sixth execution),
# for at most COUNTING_SECONDS once warm (at least one): a count needs no more, and a
# slow cell's counting, as long as its sampling, doubled a --max-time 3 run's length.
COUNTED_CALLS = 10
COUNTING_SECONDS = 1.0


def counting_policy(policy: Policy) -> Policy:
    """The calls that count round trips apart: the same warm-up, then up to
    ``COUNTED_CALLS`` with no minimum time, for at most ``COUNTING_SECONDS``."""
    rounds = min(policy.min_rounds, COUNTED_CALLS)
    seconds = min(policy.max_time, COUNTING_SECONDS)
    return replace(policy, min_rounds=rounds, min_time=0.0, max_rounds=rounds, max_time=seconds)


# What the first warm-up calls of a cell are for, in order (see the module's docstring).
ROLES = ("checked", "counted", "traced")


def role_of(calls: int, warmup: int) -> str | None:
    """The role of the call after ``calls`` others: the first is always checked."""
    if calls == 0:
        return "checked"
    return ROLES[calls] if calls < min(warmup, len(ROLES)) else None


# One warm-up call (which opens the connection), then the one that counts.
ONE_WARM_CALL = Policy(warmup=1, min_rounds=1, min_time=0.0, max_rounds=1)
