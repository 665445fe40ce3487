"""How the regression gate does on planted regressions (issue 29).

A study, not a test: it runs ``sqla-bench run`` in pairs, BASE and NEW, and compares
each NEW with its BASE with ``sqla-bench compare --format json``, as a CI job would. A
plant is a ``sitecustomize`` on NEW's ``PYTHONPATH`` only: a pure-Python loop (``while``
and ``+=``, no function call) at the top of a function's body (``--function``,
repeatable: each gets a NEW run of its own against the same BASE), sized to
``--percent`` of the median time of the cell that calls it most directly, measured on
this machine just before the study (the loop's own speed too), or as ``--iterations``
gives it.

Which cells a plant touches is found, not assumed: one NEW run with the loop a hundred
times larger, whose instructions must grow by more than half in the cells it reaches.
Counts do not mind a busy machine, so a pair's runs go two at a time.

    python -m tests.gate_study --pairs 20 --function Session.get \\
        --function AsyncSession.get --out /tmp/study -- --scenario crud --instructions 2
    python -m tests.gate_study --analyse --out /tmp/study

Everything after ``--`` is passed to every run. Each pair is a line on stdout, and the
study goes to OUT/study.json; ``--analyse`` prints, per plant and cell, how much the
plant grew it and how often compare named it, and how far the BASE runs moved it.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import subprocess
import sys
import textwrap
import timeit
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from pathlib import Path
from statistics import median

FUNCTIONS = {
    "Session.get": ("sqlalchemy.orm.session", "Session", "get"),
    "AsyncSession.get": ("sqlalchemy.ext.asyncio.session", "AsyncSession", "get"),
}
TOUCHED_FACTOR = 100  # the loop that finds the touched cells, times the planted one
TOUCHED_GROWTH = 0.5  # what "touched" means: instructions more than half up


def loop_seconds(iterations: int = 100_000) -> float:
    """Seconds one iteration of the planted loop takes here (best of five)."""
    code = "i = 0\nwhile i < n:\n    i += 1"
    best = min(timeit.repeat(code, globals={"n": iterations}, number=1, repeat=5))
    return best / iterations


def planted_source(function: str, iterations: int) -> str:
    """A sitecustomize that replaces ``function`` with the same code and, at the top of
    its body, a loop of ``iterations`` that calls nothing."""
    module_name, owner, name = FUNCTIONS[function]
    original = getattr(getattr(import_module(module_name), owner), name)
    tree = ast.parse(textwrap.dedent(inspect.getsource(original)))
    definition = tree.body[0]
    definition.decorator_list = []
    loop = ast.parse(f"_plant = 0\nwhile _plant < {iterations}:\n    _plant += 1").body
    has_doc = isinstance(definition.body[0], ast.Expr) and isinstance(
        definition.body[0].value, ast.Constant
    )
    definition.body[int(has_doc) : int(has_doc)] = loop
    # SQLAlchemy's annotations name what only type checkers import: left unevaluated.
    source = "from __future__ import annotations\n" + ast.unparse(tree)
    return textwrap.dedent(
        f"""\
        # Planted by tests/gate_study.py: {function} with a {iterations}-iteration loop.
        import {module_name} as _module
        _source = {source!r}
        _namespace = dict(vars(_module))
        exec(compile(_source, _module.__file__, "exec"), _namespace)
        _planted = _namespace[{name!r}]
        _planted.__qualname__ = "{owner}.{name}"
        setattr(_module.{owner}, {name!r}, _planted)
        """
    )


def write_plant(folder: Path, source: str | None) -> Path | None:
    if source is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(source)
    return folder


def run_side(output: Path, plant: Path | None, run_args: list[str]) -> Path:
    env = dict(os.environ)
    if plant is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plant), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "sqla_bench", "run", *run_args, "--output", str(output)]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if finished.returncode not in (0, 1):
        raise SystemExit(f"run failed ({finished.returncode}): {finished.stderr[-2000:]}")
    return output


def compared(base: Path, new: Path) -> tuple[int, dict]:
    command = [
        sys.executable,
        "-m",
        "sqla_bench",
        "compare",
        str(base),
        str(new),
        "--format",
        "json",
    ]
    finished = subprocess.run(
        [*command, "--format", "json"], capture_output=True, text=True, check=False
    )
    if finished.returncode not in (0, 1):
        raise SystemExit(f"compare failed ({finished.returncode}): {finished.stderr[-2000:]}")
    return finished.returncode, json.loads(finished.stdout)


def touched(base: Path, new: Path) -> set[str]:
    """Cells whose instructions grew by more than ``TOUCHED_GROWTH``."""
    _, document = compared(base, new)
    grown = set()
    for cell in document["cells"]:
        was, now = cell["base"].get("instructions"), cell["new"].get("instructions")
        if was and now and now > was * (1 + TOUCHED_GROWTH):
            grown.add(cell["name"])
    return grown


def cell_median_ns(result: Path, name: str) -> float:
    from sqla_bench.results.compare import load_run
    from sqla_bench.results.files import cell_name
    from sqla_bench.results.stats import summarize

    _, cells = load_run(result)
    (cell,) = [c for c in cells if cell_name(c) == name]
    return summarize(cell.samples_ns).median_ns


def analyse(folder: Path) -> dict:
    """Per plant and cell, over the study's pairs: how much the plant grew the cell's
    instructions and how often compare named it; and how far the A/A runs (BASE's)
    moved each cell."""
    from sqla_bench.results.compare import load_run
    from sqla_bench.results.files import cell_name

    study = json.loads((folder / "study.json").read_text())
    result = {"pairs": len(study["pairs"]), "plants": {}}
    bases = {
        pair["pair"]: {cell_name(c): c for c in load_run(folder / f"base-{pair['pair']}.json")[1]}
        for pair in study["pairs"]
    }
    for function, plant in study["plants"].items():
        growth: dict[str, list[float]] = {}
        named: dict[str, int] = {}
        for pair in study["pairs"]:
            new = load_run(folder / f"new-{plant['slug']}-{pair['pair']}.json")[1]
            for cell in new:
                was = bases[pair["pair"]].get(cell_name(cell))
                if was and was.instructions and cell.instructions:
                    growth.setdefault(cell_name(cell), []).append(
                        cell.instructions / was.instructions - 1
                    )
            for name in pair["plants"][function]["named"]:
                named[name] = named.get(name, 0) + 1
        result["plants"][function] = {
            name: {
                "touched": name in plant["touched"],
                "median_growth": median(values),
                "smallest_growth": min(values),
                "largest_growth": max(values),
                "named_in_pairs": named.get(name, 0),
            }
            for name, values in growth.items()
        }
    counts: dict[str, list[int]] = {}
    for cells in bases.values():
        for name, cell in cells.items():
            if cell.instructions:
                counts.setdefault(name, []).append(cell.instructions)
    result["aa_spread"] = {name: (max(v) - min(v)) / min(v) for name, v in counts.items()}
    return result


def print_analysis(result: dict) -> None:
    print(f"{result['pairs']} pairs")
    for function, cells in result["plants"].items():
        print(f"\nplant in {function}")
        print(f"{'cell':<70} {'touched':>7} {'growth (min..max)':>22} {'named':>6} {'A/A':>6}")
        for name, cell in sorted(cells.items(), key=lambda item: -item[1]["median_growth"]):
            spread = f"{cell['smallest_growth']:+.1%}..{cell['largest_growth']:+.1%}"
            print(
                f"{name:<70} {'yes' if cell['touched'] else '':>7} {spread:>22} "
                f"{cell['named_in_pairs']:>6} {result['aa_spread'].get(name, 0):>6.2%}"
            )


SIZED_BY = {
    "Session.get": "crud.get user_id=1 sqlite+pysqlite sync users=1200 posts=2",
    "AsyncSession.get": "crud.get user_id=1 sqlite+aiosqlite async users=1200 posts=2",
}


def prepare_plants(args: argparse.Namespace, run_args: list[str]) -> dict[str, dict]:
    """Each plant's loop, sized (or as ``--iterations`` gives it), its sitecustomize,
    and the cells it touches (found with the loop a hundred times larger)."""
    plants: dict[str, dict] = {}
    sizing = run_side(args.out / "sizing.json", None, run_args)
    per_iteration = loop_seconds()
    given = dict(zip(args.function, args.iterations or [], strict=False))
    for function in args.function:
        slug = function.replace(".", "-").lower()
        cell_ns = cell_median_ns(sizing, SIZED_BY[function])
        sized = max(1, round(args.percent / 100 * cell_ns / 1e9 / per_iteration))
        iterations = given.get(function, sized)
        large = write_plant(
            args.out / f"plant-{slug}-large", planted_source(function, iterations * TOUCHED_FACTOR)
        )
        found = touched(sizing, run_side(args.out / f"touched-{slug}.json", large, run_args))
        plants[function] = {
            "slug": slug,
            "iterations": iterations,
            "sized_iterations": sized,
            "loop_ns": per_iteration * 1e9,
            "cell_median_ns": cell_ns,
            "touched": sorted(found),
            "folder": str(
                write_plant(args.out / f"plant-{slug}", planted_source(function, iterations))
            ),
        }
        print(
            f"plant: {function} + {iterations} loop iterations ({per_iteration * 1e9:.1f} ns each; "
            f"{args.percent:g} % of {SIZED_BY[function]}'s median {cell_ns / 1e3:.0f} us is "
            f"{sized}); touched: {sorted(found)}",
            flush=True,
        )
    return plants


def one_pair(args: argparse.Namespace, index: int, plants: dict, run_args: list[str]) -> dict:
    """BASE and each plant's NEW, two at a time (counts do not mind a busy machine),
    each NEW compared with BASE."""
    jobs = {"base": (args.out / f"base-{index}.json", None)}
    for function, plant in plants.items():
        jobs[function] = (args.out / f"new-{plant['slug']}-{index}.json", Path(plant["folder"]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = {
            name: pool.submit(run_side, out, folder, run_args)
            for name, (out, folder) in jobs.items()
        }
        paths = {name: future.result() for name, future in done.items()}
    pair: dict = {"pair": index, "plants": {}}
    for function, plant in plants.items():
        status, document = compared(paths["base"], paths[function])
        named = {cell["name"] for cell in document["cells"] if cell["regressed"]}
        expected = set(plant["touched"])
        pair["plants"][function] = {
            "exit": status,
            "named": sorted(named),
            "false_alarms": sorted(named - expected),
            "missed": sorted(expected - named),
        }
    return pair


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m tests.gate_study")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument(
        "--function", action="append", choices=sorted(FUNCTIONS), help="a plant, repeatable"
    )
    parser.add_argument("--iterations", type=int, action="append", help="per --function")
    parser.add_argument("--percent", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--analyse", action="store_true", help="only analyse the pairs already in --out"
    )
    args = parser.parse_args(own)
    if args.analyse:
        result = analyse(args.out)
        (args.out / "analysis.json").write_text(json.dumps(result, indent=2))
        print_analysis(result)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    args.function = args.function or ["Session.get"]
    plants = prepare_plants(args, run_args)
    study: dict = {"run_args": run_args, "plants": plants, "pairs": []}
    for index in range(1, args.pairs + 1):
        pair = one_pair(args, index, plants, run_args)
        study["pairs"].append(pair)
        print(json.dumps(pair), flush=True)
        (args.out / "study.json").write_text(json.dumps(study, indent=2))
    for function in plants:
        results = [pair["plants"][function] for pair in study["pairs"]]
        exact = sum(not r["false_alarms"] and not r["missed"] for r in results)
        failed = sum(r["exit"] != 0 for r in results)
        alarms = sum(bool(r["false_alarms"]) for r in results)
        print(
            f"{function}: {len(results)} pairs, {failed} failed the gate, {exact} named exactly "
            f"the touched cells, {alarms} named an untouched one"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
