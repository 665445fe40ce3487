"""``pytest --sqla-advise``'s replays (sqla_bench.plugin.advise): an option that returns
other objects or collections than the query as written is named and never
recommended."""

from __future__ import annotations

import sys

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from sqla_bench.plugin import advise
from sqla_bench.plugin.lazy_loads import Hop
from tests.helpers import SHOP


def test_an_option_that_returns_another_graph_is_named_and_never_recommended(
    tmp_path, monkeypatch
) -> None:
    (tmp_path / "shop.py").write_text(SHOP)
    monkeypatch.syspath_prepend(str(tmp_path))
    import shop

    try:
        engine = shop.seeded(tmp_path / "shop.db")
        final = Hop("Customer.orders", True, shop.Customer.orders)
        root = advise.Root(select(shop.Customer), engine, is_async=False)
        site = advise.Site("Customer.orders", "here:1", root, (), final, 1, False)
        honest = advise.replay(site, rounds=2)
        assert len(honest) == 5 and all(each.same for each in honest)
        assert honest[0].graph == [((1,), ((1,), (2,))), ((2,), ((3,), (4,))), ((3,), ((5,), (6,)))]

        def some_orders(_: object) -> object:  # a criterion: not the relationship's rows
            return selectinload(shop.Customer.orders.and_(shop.Order.id > 2))

        planted = [("as written", None), ("selectinload, some orders", some_orders)]
        monkeypatch.setattr(advise, "options_for", lambda _: planted)
        replays = advise.replay(site, rounds=2)
        assert [each.same for each in replays] == [True, False]
        said = "\n".join(advise.advice(site, replays))
        assert "selectinload, some orders" in said and "RETURNED ANOTHER GRAPH" in said
        assert "no option returned the same objects and collections" in said
        engine.dispose()
    finally:
        sys.modules.pop("shop", None)


def replays_costing(*per_option: list[float]) -> list[advise.Replay]:
    """Replays whose rounds took the given milliseconds, option by option."""
    return [
        advise.Replay(f"option {index}", times_ns=[int(ms * 1e6) for ms in costs])
        for index, costs in enumerate(per_option)
    ]


def test_a_recommendation_names_a_winner_only_where_both_passes_say_so_clearly() -> None:
    def milliseconds(replay: advise.Replay) -> list[float]:
        return [t / 1e6 for t in replay.times_ns]

    wobble = [1.00, 1.01, 0.99, 1.02, 1.00, 0.98, 1.01, 1.00]
    clear = replays_costing([2 * w for w in wobble * 2], wobble * 2)
    said = advise._best(clear, milliseconds)
    assert said.startswith("option 1: the next, option 0, took 2.00x [")
    # Option 1 is twice as fast in the first pass and in the second now 1.5 times, now
    # no faster: all the rounds together say "faster" (their interval is wholly above
    # 1.02), the second pass does not, so no winner is named.
    second = [1.5, 1.0] * 4
    halved = replays_costing(
        [2 * w for w in wobble] + [s * w for s, w in zip(second, wobble, strict=True)],
        wobble * 2,
    )
    whole = advise.ratio(*(milliseconds(r) for r in halved))
    assert whole is not None and whole.excludes(advise.MIN_EFFECT)
    assert advise._best(halved, milliseconds).startswith("option 1 ≈ option 0 (within noise:")
    # Within 2 %: no winner either.
    close = replays_costing([1.01 * w for w in wobble * 2], wobble * 2)
    assert "within noise" in advise._best(close, milliseconds)
    assert "too few rounds" in advise._best(replays_costing([2, 2], [1, 1]), milliseconds)
