"""``pytest --sqla-advise``'s replays (sqla_bench.advise): an option that returns other
objects or collections than the query as written is named and never recommended."""

from __future__ import annotations

import sys

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from sqla_bench import advise
from sqla_bench.pytest_plugin import Hop
from tests.test_pytest_plugin import SHOP


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
