"""The pytest plugin (sqla_bench.pytest_plugin), run by pytest's own ``pytester`` on a
small shop application of its own (customers and their orders, not sqla-bench's models):
each feature passes where it should and fails, saying why, where it should."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest

from tests.helpers import SHOP

pytest_plugins = ["pytester"]


CONFTEST = """
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

import shop


@pytest.fixture
def engine(tmp_path):
    engine = shop.seeded(tmp_path / "shop.db")
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    with Session(engine) as session:
        yield session


@pytest_asyncio.fixture
async def async_session(engine, tmp_path):
    engine = shop.async_engine(tmp_path / "shop.db")
    async with AsyncSession(engine) as session:
        yield session
    await engine.dispose()
"""

HEADER = """
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import selectinload

from shop import Category, Customer, Order
"""


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(shop=SHOP, conftest=CONFTEST)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function")
    return pytester


def run(shop: pytest.Pytester, tests: str, *args: str) -> pytest.RunResult:
    """pytest on ``tests``, in this process: a process of its own took seconds to start
    (pytest rewrites the asserts of every plugin's modules, sqla-bench's and
    Hypothesis's among them), and pytester restores ``sys.modules`` after each run, so
    each imports its own ``shop``."""
    shop.makepyfile(test_shop=HEADER + tests)
    return shop.runpytest_inprocess("-p", "no:cacheprovider", *args)


def line_of(shop: pytest.Pytester, text: str) -> str:
    """``test_shop.py:N``, where the test file written last holds ``text``."""
    lines = (shop.path / "test_shop.py").read_text().splitlines()
    return f"test_shop.py:{next(n for n, line in enumerate(lines, 1) if text in line)}"


def test_installing_sqla_bench_registers_the_plugin_with_pytest(shop) -> None:
    assert [e.value for e in entry_points(group="pytest11") if e.name == "sqla_bench"] == [
        "sqla_bench.pytest_plugin"
    ]
    result = shop.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--sqla-nplusone*", "*--sqla-counts=PATH*"])


QUERIES = """
async def test_async_session(async_session, sqla_queries):
    with sqla_queries(async_session) as queries:
        await async_session.scalars(select(Customer))
        await async_session.scalars(select(Order).where(Order.customer_id == 1))
    assert (queries.started, queries.completed) == ({n}, {n})
    assert "FROM orders" in queries.statements[1]


def test_sync_connection(engine, sqla_queries):
    with engine.connect() as connection, sqla_queries(connection) as queries:
        connection.execute(text("SELECT 1"))
    assert queries.statements == ["SELECT 1"] * {n_sync}


def test_nothing_outside_the_block(session, sqla_queries):
    with sqla_queries(session) as queries:
        pass
    session.scalars(select(Customer)).all()
    assert len(queries) == 0
"""


def test_sqla_queries_counts_on_a_session_or_connection_sync_or_async(shop) -> None:
    run(shop, QUERIES.format(n=2, n_sync=1)).assert_outcomes(passed=3)


def test_sqla_queries_gives_counts_a_wrong_assertion_fails_on(shop) -> None:
    run(shop, QUERIES.format(n=3, n_sync=2)).assert_outcomes(passed=1, failed=2)


LIMITED = """
@pytest.mark.sqla_max_statements({limit})
def test_two_statements(session):
    session.scalars(select(Customer)).all()
    session.scalars(select(Order)).all()
"""


def test_a_test_over_its_statement_limit_fails_listing_the_sql(shop) -> None:
    run(shop, LIMITED.format(limit=2)).assert_outcomes(passed=1)
    result = run(shop, LIMITED.format(limit=1))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*2 SQL statements, over the 1 allowed by sqla_max_statements*", "*2. SELECT*FROM orders*"]
    )
    refused = run(shop, LIMITED.format(limit="'two'"))
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(["*sqla_max_statements takes a whole number*not 'two'*"])


LAZY = """
def test_orders_of_every_customer(session):
    customers = session.scalars(select(Customer){options}).all()
    assert sum(len(customer.orders) for customer in customers) == 6
"""


def test_nplusone_fails_a_lazy_load_in_a_loop_naming_it_and_a_loader(shop) -> None:
    run(shop, LAZY.format(options="")).assert_outcomes(passed=1)  # only when asked
    eager = ".options(selectinload(Customer.orders))"
    run(shop, LAZY.format(options=eager), "--sqla-nplusone").assert_outcomes(passed=1)
    result = run(shop, LAZY.format(options=""), "--sqla-nplusone")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*Customer.orders loaded lazily 3 times at {line_of(shop, 'customer.orders')} "
            "(N+1; 1 allowed): "
            "load it with the query: .options(selectinload(Customer.orders))*"
        ]
    )
    for threshold, outcome in ((2, {"failed": 1}), (3, {"passed": 1})):  # it fires 3 times
        allowed = run(
            shop,
            LAZY.format(options=""),
            "--sqla-nplusone",
            f"--sqla-nplusone-threshold={threshold}",
        )
        allowed.assert_outcomes(**outcome)


IMPLICIT = """
async def test_orders_of_the_first_customer(async_session):
    customer = (await async_session.scalars(select(Customer))).first()
    {access}
"""


def test_nplusone_names_the_implicit_io_that_raises_missing_greenlet_in_async(shop) -> None:
    touched = "assert len(customer.orders) == 2"
    result = run(shop, IMPLICIT.format(access=touched), "--sqla-nplusone")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*Customer.orders loaded lazily at {line_of(shop, 'customer.orders')} in async code: "
            "implicit IO, "
            "which raises MissingGreenlet*awaitable_attrs.orders*",
            "*(the test raised *MissingGreenlet*",
        ]
    )
    # Caught by the code under test, it would still have raised: it still fails.
    caught = "with pytest.raises(Exception):\n        customer.orders"
    run(shop, IMPLICIT.format(access=caught), "--sqla-nplusone").assert_outcomes(failed=1)
    awaited = "assert len(await customer.awaitable_attrs.orders) == 2"
    run(shop, IMPLICIT.format(access=awaited), "--sqla-nplusone").assert_outcomes(passed=1)


COUNTED = """
def test_customers(session):
    assert len(session.scalars(select(Customer)).all()) == 3
    {more}


async def test_orders(async_session):
    assert len((await async_session.scalars(select(Order))).all()) == 6
"""


UPDATE = "--sqla-counts-update"


def test_counts_are_written_the_same_twice_and_hold_growth_to_the_tolerance(shop) -> None:
    counts = shop.path / "counts.json"
    written = []
    for _ in range(2):
        update = run(
            shop, COUNTED.format(more=""), f"--sqla-counts={counts}", "--sqla-counts-update"
        )
        update.assert_outcomes(passed=2)
        written.append(json.loads(counts.read_text()))
    # Statements the same; calls within 0.5 % (CI saw 1,097 then 1,098 on SQLAlchemy 2.0.58,
    # the same here on 2.1.9): far inside the 5 % a file holds them to.
    first, second = written[0]["tests"], written[1]["tests"]
    assert first.keys() == second.keys()
    for test, counted in first.items():
        assert counted["statements"] == second[test]["statements"], test
        assert abs(counted["calls"] - second[test]["calls"]) <= counted["calls"] * 0.005, test
    customers = written[0]["tests"]["test_shop.py::test_customers"]
    assert customers["statements"] == 1 and customers["calls"] > 100
    run(shop, COUNTED.format(more=""), f"--sqla-counts={counts}").assert_outcomes(passed=2)

    grown = run(shop, COUNTED.format(more="session.get(Order, 1)"), f"--sqla-counts={counts}")
    grown.assert_outcomes(passed=1, failed=1)
    grown.stdout.fnmatch_lines(
        [
            "*counts differ from*statements 1 -> 2 (+100.0%, held exactly)*",
            # SQLAlchemy 2.0 labels each column (orders.id AS orders_id), 2.1 does not.
            "*+ SELECT orders.id*FROM orders WHERE orders.id = ? (1 more)*",
        ]
    )

    def held_to(calls: int) -> pytest.RunResult:
        written[0]["tests"]["test_shop.py::test_customers"]["calls"] = calls
        counts.write_text(json.dumps(written[0]))
        return run(shop, COUNTED.format(more=""), f"--sqla-counts={counts}")

    held_to(int(customers["calls"] * 0.97)).assert_outcomes(passed=2)  # 3 % more: within 5 %
    over = held_to(int(customers["calls"] * 0.90))
    over.assert_outcomes(passed=1, failed=1)
    over.stdout.fnmatch_lines(["*counts differ from*calls*5% allowed*"])

    # Counted on another SQLAlchemy, calls are not held, and the run says so.
    written[0]["environment"]["sqlalchemy"] = "0.0"
    other = held_to(int(customers["calls"] * 0.90))
    other.assert_outcomes(passed=2)
    other.stdout.fnmatch_lines(["*sqla-bench counts: function calls not held*"])


def test_counts_options_that_cannot_work_are_usage_errors(shop) -> None:
    absent = run(shop, COUNTED.format(more=""), "--sqla-counts=absent.json")
    absent.stderr.fnmatch_lines(["*--sqla-counts absent.json: no such file*"])
    assert absent.ret == pytest.ExitCode.USAGE_ERROR
    alone = run(shop, COUNTED.format(more=""), "--sqla-counts-update")
    alone.stderr.fnmatch_lines(["*--sqla-counts-update needs --sqla-counts PATH*"])


def test_counts_hold_statements_both_ways_and_report_tests_the_file_lacks(shop) -> None:
    counts = shop.path / "counts.json"
    more = "session.get(Order, 1)"
    written = run(shop, COUNTED.format(more=more), f"--sqla-counts={counts}", UPDATE)
    written.assert_outcomes(passed=2)
    fewer = run(shop, COUNTED.format(more=""), f"--sqla-counts={counts}")
    fewer.assert_outcomes(passed=1, failed=1)
    fewer.stdout.fnmatch_lines(
        ["*statements 2 -> 1 (-50.0%, held exactly)*", "*- SELECT orders.id*(1 fewer)*"]
    )
    added = COUNTED.format(more=more) + "\n\ndef test_new(session):\n    session.get(Order, 2)\n"
    reported = run(shop, added, f"--sqla-counts={counts}")
    reported.assert_outcomes(passed=3)
    reported.stdout.fnmatch_lines(
        ["*sqla-bench counts: 1 test(s) not in *counts.json*not held*test_shop.py::test_new*"]
    )


ORDERED = """
def test_first(session):
    assert session.get(Customer, 1).name == "c1"


def test_second(session):
    orders = session.scalars(select(Order).options(selectinload(Order.customer))).all()
    assert {order.customer.name for order in orders} == {"c1", "c2", "c3"}
"""


def test_counted_calls_do_not_depend_on_the_tests_run_before(shop) -> None:
    # Alone, test_second compiles its statements, sets up its loaders and computes what
    # SQLAlchemy memoizes; after test_first, some of that is done: neither is counted.
    counts = shop.path / "counts.json"
    run(shop, ORDERED, f"--sqla-counts={counts}", UPDATE).assert_outcomes(passed=2)
    together = json.loads(counts.read_text())["tests"]["test_shop.py::test_second"]["calls"]
    run(shop, ORDERED, f"--sqla-counts={counts}", UPDATE, "-k", "second")
    alone = json.loads(counts.read_text())["tests"]["test_shop.py::test_second"]["calls"]
    # Here 1,145 alone and 1,125 after test_first; with first use counted, 1,659 and 1,343.
    assert abs(alone - together) <= together * 0.03, (alone, together)
    run(shop, ORDERED, f"--sqla-counts={counts}", "-k", "second").assert_outcomes(passed=1)


NESTED = """
def test_products_of_every_order(session):
    customers = session.scalars(select(Customer){options}).all()
    assert len({{order.product.name for c in customers for order in c.orders}}) == 6
"""


def test_nplusone_suggests_the_option_chain_from_the_root_and_it_works(shop) -> None:
    first = ".options(selectinload(Customer.orders))"
    result = run(shop, NESTED.format(options=first), "--sqla-nplusone")
    result.assert_outcomes(failed=1)
    chain = "selectinload(Customer.orders).joinedload(Order.product)"
    result.stdout.fnmatch_lines([f"*Order.product loaded lazily 6 times at *: .options({chain})"])
    applied = run(shop, NESTED.format(options=f".options({chain})"), "--sqla-nplusone")
    applied.assert_outcomes(passed=1)


TREE = """
def names(category):
    return [category.id, [names(child) for child in category.children]]


def test_the_category_tree(session):
    top = session.scalars(select(Category).where(Category.id == 1){options}).one()
    assert names(top) == [1, [[2, [[4, []], [5, []]]], [3, [[6, []], [7, []]]]]]
"""


def test_nplusone_suggests_a_depth_for_a_tree_and_it_works(shop) -> None:
    one_level = ".options(selectinload(Category.children))"
    result = run(shop, TREE.format(options=one_level), "--sqla-nplusone")
    result.assert_outcomes(failed=1)  # one level loaded, the next ones lazily
    result.stdout.fnmatch_lines(
        ["*Category.children loaded lazily 6 times at *"
         ": .options(selectinload(Category.children, recursion_depth=2))*"]
    )  # fmt: skip
    # Three levels read: selectinload loads one, recursion_depth=2 the two below it.
    deep = ".options(selectinload(Category.children, recursion_depth=2))"
    run(shop, TREE.format(options=deep), "--sqla-nplusone").assert_outcomes(passed=1)


AWAITED = """
async def test_orders_awaited(async_session):
    customers = (await async_session.scalars(select(Customer))).all()
    for customer in customers:
        assert len(await customer.awaitable_attrs.orders) == 2
"""


def test_nplusone_names_the_line_of_an_awaited_lazy_load(shop) -> None:
    result = run(shop, AWAITED, "--sqla-nplusone")
    result.assert_outcomes(failed=1)
    site = line_of(shop, "awaitable_attrs.orders")
    result.stdout.fnmatch_lines([f"*Customer.orders loaded lazily 3 times at {site} (N+1*"])


def test_a_test_over_its_limit_groups_repeated_statements_and_names_their_load(shop) -> None:
    limited = "@pytest.mark.sqla_max_statements(2)\n" + LAZY.format(options="")
    result = run(shop, limited)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*4 SQL statements, over the 2 allowed*",
            "*2. SELECT orders.id*FROM orders WHERE ? = orders.customer_id (3 times) <- "
            f"Customer.orders loaded lazily at {line_of(shop, 'customer.orders')}*",
        ]
    )


EAGER = """
def test_customer_names(session):
    customers = session.scalars(select(Customer){options}).all()
    assert sorted(c.name for c in customers) == ["c1", "c2", "c3"]
    {more}
"""


def test_unused_eager_fails_an_eager_load_never_read_naming_its_query(shop) -> None:
    eager = ".options(selectinload(Customer.orders))"
    run(shop, EAGER.format(options=eager, more="")).assert_outcomes(passed=1)  # when asked
    result = run(shop, EAGER.format(options=eager, more=""), "--sqla-unused-eager")
    result.assert_outcomes(failed=1)
    query = line_of(shop, "session.scalars(select(Customer)")
    result.stdout.fnmatch_lines(
        [f"*Customer.orders loaded eagerly for 3 objects by the query at {query} and never read*"]
    )
    read = "assert sum(len(c.orders) for c in customers) == 6"
    run(shop, EAGER.format(options=eager, more=read), "--sqla-unused-eager").assert_outcomes(
        passed=1
    )
    # Nothing eager, nothing to say; a lazy load is a read, not an eager load.
    run(shop, EAGER.format(options="", more=read), "--sqla-unused-eager").assert_outcomes(passed=1)
    # A nested chain read whole, in async code too, is used throughout.
    chain = ".options(selectinload(Customer.orders).joinedload(Order.product))"
    run(shop, NESTED.format(options=chain), "--sqla-unused-eager").assert_outcomes(passed=1)


ADVISED = """
def test_products_of_every_order(session):
    customers = session.scalars(select(Customer).options(selectinload(Customer.orders))).all()
    assert len({order.product.name for c in customers for order in c.orders}) == 6


async def test_orders_awaited(async_session):
    customers = (await async_session.scalars(select(Customer))).all()
    for customer in customers:
        assert len(await customer.awaitable_attrs.orders) == 2
"""


def test_advise_replays_each_n_plus_one_under_each_option_sync_and_async(shop) -> None:
    result = run(shop, ADVISED, "--sqla-advise")
    result.assert_outcomes(passed=2)  # advice, not a verdict: the tests pass
    chain = "selectinload(Customer.orders).joinedload(Order.product)"
    result.stdout.fnmatch_lines(
        [
            "*sqla-bench advise: each N+1 replayed under each loader option*",
            "test_shop.py::test_products_of_every_order:",
            f"Order.product at {line_of(shop, 'order.product.name')} (an N+1 below "
            "select(Customer); 16 replays of each, in turn, in 2 passes):",
            "  as written * 8 statements * 15 rows *ms",
            f"  {chain} * 2 statements * 9 rows *ms",
            "  fastest here (sqlite, this test's data, this machine): *",
            "  fastest at +1 ms per round trip (modelled: time + statements x 1 ms): *",
            "  every option returned the same objects and collections as written: yes",
            "test_shop.py::test_orders_awaited:",
            f"Customer.orders at {line_of(shop, 'awaitable_attrs.orders')} (an N+1 below *",
            "  as written * 4 statements *",
            "  joinedload(Customer.orders) * 1 statements *",
            "  every option returned the same objects and collections as written: yes",
        ]
    )
