"""How far the decision guide's verdicts repeat across runs of one workload: the figure
issue 28's acceptance asks for, computed with the guide itself from result files.

    python tests/agreement.py RUN1_DIR RUN2_DIR RUN3_DIR
    python tests/agreement.py --pair selectin/joined RUN1_DIR RUN2_DIR RUN3_DIR

Each folder holds one run's result files. For every point (a shape, dataset and latency)
and driver and mode, the verdict is the winner or "≈" (within noise, unstable or too few
blocks); the verdicts agree when every run gives the same one. Printed for each pass on
its own and for the passes together (the guide's verdict). With ``--pair
SLOWER/FASTER``, each run's ratio of the two strategies at every point and driver
instead, with its 95 % interval (every pass's blocks), to set beside the oracle's
(``tests/oracle.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

from sqla_bench.reporting.verdicts import points
from sqla_bench.results.files import CellRecord, read_result
from sqla_bench.results.stats import Ratio, block_medians, ratio


def verdicts(cells: list[CellRecord]) -> dict[tuple, str]:
    found = {}
    for point in points(cells):
        for driver, verdict in point.verdicts.items():
            found[(point.table, point.target, point.dataset, point.latency, driver)] = (
                verdict.said()
            )
    return found


def agreement(runs: list[list[CellRecord]]) -> tuple[int, int, int, list[str]]:
    """Cells where every run gave the same verdict, cells seen in all, and of the
    agreeing cells those that name a winner; the disagreements in words."""
    each = [verdicts(cells) for cells in runs]
    common = set.intersection(*(set(found) for found in each))
    agreed = [key for key in common if len({found[key] for found in each}) == 1]
    winners = sum(each[0][key] != "≈" for key in agreed)
    differing = [
        f"{dict(key[2]).get('posts_per_user')} posts/user, payload {dict(key[2]).get('payload')}"
        f" B, {'direct' if key[3] is None else f'+{key[3]:g} ms'}, {key[4]}: "
        + " / ".join(found[key] for found in each)
        for key in sorted(set(common) - set(agreed), key=str)
    ]
    return len(agreed), len(common), winners, differing


def read_runs(folders: list[Path]) -> list[list[CellRecord]]:
    """Every cell of each folder's result files, one list per folder."""
    return [[cell for path in sorted(f.glob("*.json")) for cell in read_result(path)[1]]
            for f in folders]  # fmt: skip


def pair_ratios(
    runs: list[list[CellRecord]], slower: str, faster: str
) -> dict[tuple, list[Ratio | None]]:
    """Each run's ratio of ``slower`` over ``faster`` (every pass's blocks), by (posts,
    payload, timed latency, driver and mode); None where a run has too few blocks."""
    found: dict[tuple, list[Ratio | None]] = {}
    for index, cells in enumerate(runs):
        blocks: dict[tuple, dict[str, list]] = {}
        for cell in cells:
            strategy = cell.params.get("strategy")
            if strategy not in (slower, faster) or not cell.blocks:
                continue
            key = (cell.dataset["posts_per_user"], cell.dataset["payload"],
                   cell.timed_latency, f"{cell.driver} {cell.mode}")  # fmt: skip
            mine = blocks.setdefault(key, {}).setdefault(strategy, [])
            mine.append(block_medians(cell.samples_ns, cell.blocks))
        for key, by_strategy in blocks.items():
            # Pass by pass, so that blocks stay paired.
            pairs = zip(by_strategy.get(slower, []), by_strategy.get(faster, []), strict=False)
            a, b = [], []
            for one, other in pairs:
                length = min(len(one), len(other))
                a += one[:length]
                b += other[:length]
            found.setdefault(key, [None] * len(runs))[index] = ratio(a, b)
    return found


def pair(runs: list[list[CellRecord]], slower: str, faster: str) -> None:
    """Print each run's ratio of ``slower`` over ``faster``, per point and driver."""
    found = pair_ratios(runs, slower, faster)
    for (posts, payload, latency, driver), ratios in sorted(found.items(), key=str):
        where = "direct" if latency is None else f"+{latency:g} ms"
        texts = ["-" if r is None else f"x{r.estimate:.3f} [{r.low:.3f}, {r.high:.3f}]"
                 for r in ratios]  # fmt: skip
        print(f"{posts} posts/user, {payload} B, {where}, {driver}: " + " | ".join(texts))


def main() -> None:
    arguments = sys.argv[1:]
    wanted = None
    if arguments[:1] == ["--pair"]:
        wanted, arguments = arguments[1].split("/"), arguments[2:]
    runs = read_runs([Path(name) for name in arguments])
    if wanted is not None:
        pair(runs, *wanted)
        return
    passes = sorted({cell.run_pass for cells in runs for cell in cells})
    for run_pass in passes:
        chosen = [[c for c in cells if c.run_pass == run_pass] for cells in runs]
        agreed, total, winners, _ = agreement(chosen)
        print(f"pass {run_pass} alone: {agreed} of {total} verdicts agree ({winners} winners)")
    agreed, total, winners, differing = agreement(runs)
    print(f"passes together: {agreed} of {total} verdicts agree ({winners} winners)")
    for line in differing:
        print(f"  differs: {line}")


if __name__ == "__main__":
    main()
