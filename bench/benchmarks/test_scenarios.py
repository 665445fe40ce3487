"""Every scenario cell that works, timed by pytest-benchmark.

For teams that keep pytest-benchmark histories: ``pytest bench/benchmarks
--benchmark-only`` (results under results/pytest-benchmark/ with --benchmark-autosave;
--benchmark-compare and --benchmark-compare-fail as pytest-benchmark documents them).
Each round gets a fresh argument (a session, closed after) outside the timer, as in
``sqla-bench run``; an async round is ``run_until_complete`` on the session's one loop,
which adds about 8 us a call that ``sqla-bench run`` (one coroutine per cell) does not.
The statements per operation go into ``extra_info``.
"""

from __future__ import annotations

from sqla_bench.benchmarks.conftest import WARMUP_ROUNDS
from sqla_bench.measuring.measure import subject_for


def test_scenario(benchmark, cell, envs, loop, request) -> None:
    target_name, spec, case, params = cell
    env = envs(target_name, spec)
    subject = subject_for(case, params, env)
    per_cell = subject.arguments()
    per_call = loop.run_until_complete(per_cell.__aenter__())
    open_arguments = []

    def setup():
        context = per_call()
        open_arguments.append(context)
        subject.counter.reset()
        return (loop.run_until_complete(context.__aenter__()),), {}

    def teardown(argument):
        loop.run_until_complete(open_arguments.pop().__aexit__(None, None, None))

    if subject.awaits:

        def target(argument):
            return loop.run_until_complete(subject.call(argument))

    else:
        target = subject.call
    benchmark.group = case.table
    try:
        benchmark.pedantic(
            target,
            setup=setup,
            teardown=teardown,
            rounds=request.config.getoption("--sqla-rounds"),
            warmup_rounds=WARMUP_ROUNDS,
        )
    finally:
        loop.run_until_complete(per_cell.__aexit__(None, None, None))
    benchmark.extra_info.update(
        case=case.id,
        params=params,
        target=target_name,
        driver=spec.name,
        mode=spec.mode,
        statements=subject.counter.completed,
    )
