"""``run --models``: an application's own relationships, measured and verified.

The application is a small shop of this suite's own making (``tests/applications``),
copied into a folder of its own: sqla-bench imports its models from there, as it would a
user's. On SQLite its data is generated; on PostgreSQL it is the shop's own, which the
run must leave exactly as it found it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from sqla_bench.run.application import make_read_only
from sqla_bench.scenarios.dataset import DatasetSize
from sqla_bench.scenarios.strategies import STRATEGIES
from tests.helpers import assert_one_line_error, run

pytestmark = pytest.mark.harness
STRATEGY_NAMES = set(STRATEGIES)

APPLICATION = Path(__file__).parent / "applications"
# Counts and verdicts only: one block of side-by-side sampling is enough.
QUICK = (
    "--min-time",
    "0",
    "--min-rounds",
    "2",
    "--warmup",
    "1",
    "--min-blocks",
    "1",
    "--block-time",
    "0",
)
HANDLED = {
    "models.Address.customer": "many-to-one",
    "models.Customer.orders": "one-to-many",
    "models.Customer.address": "one-to-one",
    "models.Line.order": "many-to-one",
    "models.Order.customer": "many-to-one",
    "models.Order.lines": "one-to-many",
    "models.Order.labels": "many-to-many",
    "models.Customer.big_orders": "one-to-many",
    "models.Employee.manager": "many-to-one",
    "models.Warehouse.stock": "one-to-many",
}
# On the shop's own data (PostgreSQL) one more: the generator has no value for its table.
HANDLED_EXISTING = {**HANDLED, "models.Customer.reviews": "one-to-many"}
LEFT_OUT = {
    "Customer.reviews": ["table shop_reviews: polyfactory has no value for it"],
    "Customer.review_pages": [
        "lazy='dynamic': not an attribute a loader option fills",
        "table shop_reviews: polyfactory has no value for it",
    ],
}


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A folder holding the shop's modules and nothing of sqla-bench's."""
    for name in ("shop_models.py", "shop_data.py"):
        shutil.copy(APPLICATION / name, tmp_path / name)
    return tmp_path


def measure(shop: Path, *options: str, **env: str):
    out = shop / "r.json"
    result = run(
        "sqla_bench", "run", "--models", "shop_models", *QUICK, "--output", str(out), *options,
        PYTHONPATH=str(shop), **env,
    )  # fmt: skip
    return result, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.slow  # every relationship of the shop measured, sync and async: 24 s on a slow machine
def test_every_relationship_is_verified_on_generated_data_and_the_rest_listed(shop) -> None:
    result, data = measure(shop)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    cells = data["cells"]
    assert {cell["case"] for cell in cells} == set(HANDLED)
    assert all(cell["matches_expected"] for cell in cells)
    for case, kind in HANDLED.items():
        mine = [cell for cell in cells if cell["case"] == case]
        assert mine[0]["label"].startswith(kind)
        by = {(c["params"]["strategy"], c["mode"]): c for c in mine}
        assert by["selectin", "sync"]["statements"] == by["selectin", "async"]["statements"] == 2
        assert by["lazy", "async"]["error"] == "MissingGreenlet"
        assert by["lazy", "sync"]["statements"] > 2  # a SELECT per parent or related key
        assert by["raise", "sync"]["error"] == "InvalidRequestError"
        assert by["joined", "async"]["rows"] == 20  # the sampled parents
        assert ("model_selectin", "sync") not in by  # no relationship is declared so
    models = data["run"]["parameters"]["models"]
    assert models["data"] == "generated"
    reasons = {item["name"]: item["reasons"] for item in models["unhandled"]}
    assert set(reasons) == set(LEFT_OUT)
    said = " ".join(result.stdout.split())
    for name, expected in LEFT_OUT.items():
        assert [r[: len(e)] for r, e in zip(reasons[name], expected, strict=True)] == expected
        for reason in expected:  # every reason, not the first
            assert f"left out {name}: {reason}" in said
    assert "next step for one left out: write the query it serves as a scenario" in said
    # The report says what the data was, in the words of the options that shaped it.
    reported = run("sqla_bench", "report", str(shop / "r.json"), "--out", str(shop / "report"))
    assert reported.returncode == 0, reported.stderr
    text = (shop / "report" / "report.md").read_text()
    # A run of models only answers per relationship: no sentence per built-in shape.
    assert "## In short" not in text and "users" not in text
    assert "### one-to-many from Customer to Order (models.Customer.orders), sqlite" in text
    # Per relationship, what to use in sync and in async code; what was left out, and why.
    mine = text.split("## Your models: what to use for each relationship")[1].split("\n## ")[0]
    row = next(line for line in mine.splitlines() if line.startswith("| Customer.orders "))
    sync, async_ = row.split(" | ")[3:5]
    assert {sync.split()[0], async_.split()[0]} <= {"≈", *STRATEGY_NAMES}, row
    assert "sqlite, direct, 2 children/parent | 2.0 per parent (20 parents)" in row
    assert "- **Customer.review_pages**: lazy='dynamic': not an attribute" in mine
    assert "; table shop_reviews: polyfactory has no value for it" in mine


def test_the_dataset_options_set_each_relationships_fan_out(shop) -> None:
    names = ("Customer.orders", "Order.customer", "Order.labels")
    relationships = [part for name in names for part in ("--relationship", name)]
    options = ("--users", "3", "--posts", "5", "--tags", "3", "--param", "limit=7")
    result, data = measure(shop, *relationships, *options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    by = {(c["case"], c["params"]["strategy"], c["mode"]): c for c in data["cells"]}
    assert {case for case, *_ in by} == {f"models.{name}" for name in names}
    # Every order has its 3 labels: the link table fans out under the side loaded from.
    labels = by["models.Order.labels", "joined", "sync"]
    assert labels["rows"] == 7 and labels["rows_fetched"] == 7 * 3
    joined = by["models.Customer.orders", "joined", "sync"]
    assert joined["rows"] == 3 and joined["rows_fetched"] == 3 * 5  # all 3 customers' orders
    # 7 of the 15 orders, spread evenly, belong to the 3 customers: a lazy load per
    # distinct customer, not per order (the session's identity map has the others).
    lazy = by["models.Order.customer", "lazy", "sync"]
    assert lazy["rows"] == 7 and lazy["statements"] == 1 + 3


@pytest.mark.slow  # each a process with a fault planted in SQLAlchemy: 7 s on a slow machine
@pytest.mark.parametrize(
    ("fault", "named"),
    [
        # Both leave every statement count as it was: only the SQL, or the values, tell.
        ("selectin_as_subquery", "orders (in, 20 keys): loads from the first query re-stated"),
        ("rows_reversed", "value[0][0][0]: expected 1, observed "),
    ],
)
def test_a_load_that_sends_other_sql_or_returns_other_rows_differs(shop, fault, named) -> None:
    out = shop / "r.json"
    result = run(
        "tests.sqla_faults", fault, "run", "--models", "shop_models", "--relationship",
        "Customer.orders", *QUICK, "--output", str(out), PYTHONPATH=str(shop),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    differ = [c for c in json.loads(out.read_text())["cells"] if not c["matches_expected"]]
    assert any(named in " ".join(cell["differences"]) for cell in differ), differ


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (("--models", "no_such_shop"), "--models no_such_shop: cannot import it"),
        (("--models", "shop_models:Nothing"), "shop_models has no 'Nothing'"),
        (("--models", "json"), "no mapped class found"),
        (("--models", "shop_models", "--relationship", "Order.nope"), "choose from"),
        (("--models", "shop_models", "--relationship", "Customer.review_pages"), "dynamic"),
        (("--use-existing-data",), "go with --models"),
        (("--models", "shop_models", "--use-existing-data"), "reads the one database you give"),
        (("--models", "shop_models", "--param", "limit=20000"), "at most 10,000 parents"),
        (("--models", "shop_models", "--users", "1000000"), "sqla-bench seeds at most"),
        (("--models", "shop_models", "--scenarios", "shop_data"), "declares no scenario"),
    ],
)
def test_bad_models_options_get_one_line(shop, options, said) -> None:
    result = run("sqla_bench", "run", *options, "--dry-run", PYTHONPATH=str(shop))
    assert_one_line_error(result, said)


# --- the application's own data, on PostgreSQL ------------------------------------------


def table_hashes(url: str) -> dict[str, str]:
    """Every shop table's rows, hashed on the server: the test's own checksum."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            # Each table's rows as text, in order, hashed: the server's own, not sqla-bench's.
            names = connection.scalars(
                text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'shop_%'")
            ).all()
            return {
                name: connection.scalar(
                    text(
                        "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                        f"FROM {name} t"
                    )
                )
                for name in sorted(names)
            }
    finally:
        engine.dispose()


@pytest.fixture
def shop_database(servers, shop):
    """The PostgreSQL target holding the shop's data, dropped afterwards."""
    url = servers.target("postgresql").url.render_as_string(hide_password=False)
    sys.path.insert(0, str(shop))
    try:
        import shop_data

        engine = create_engine(url)
        shop_data.seed(engine)
        yield url
        shop_data.drop(engine)
        engine.dispose()
    finally:
        sys.path.remove(str(shop))
        for name in ("shop_data", "shop_models"):
            sys.modules.pop(name, None)


def test_existing_data_is_verified_and_left_exactly_as_it_was(shop, shop_database) -> None:
    before = table_hashes(shop_database)
    result, data = measure(
        shop,
        "--target",
        "postgresql",
        "--use-existing-data",
        SQLA_BENCH_POSTGRESQL_URL=shop_database,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert table_hashes(shop_database) == before and len(before) == 10
    cells = data["cells"]
    assert {cell["case"] for cell in cells} == set(HANDLED_EXISTING)
    assert all(cell["matches_expected"] for cell in cells)
    assert {cell["driver"] for cell in cells} >= {"psycopg2", "asyncpg"}
    checksums = data["targets"]["postgresql"]["checksums"]
    assert checksums["before"] == checksums["after"]
    assert checksums["before"]["shop_customers"].startswith("30 rows")
    assert data["run"]["parameters"]["models"]["data"] == "existing"
    assert all(cell["dataset"] == {} for cell in cells)
    reported = run("sqla_bench", "report", str(shop / "r.json"), "--out", str(shop / "report"))
    assert reported.returncode == 0, reported.stderr
    text = (shop / "report" / "report.md").read_text()
    # The answer per relationship says the data was the database's own.
    assert "| Customer.orders (one-to-many) | postgresql, direct, your data |" in text


def test_a_run_on_existing_data_cannot_write(servers, tmp_path) -> None:
    url = servers.target("postgresql").url
    try:
        for engine in (create_engine(url), create_engine(f"sqlite:///{tmp_path / 'ro.db'}")):
            make_read_only(engine)
            refused = pytest.raises((OperationalError, ProgrammingError, SQLAlchemyError))
            with refused as raised, engine.begin() as connection:
                connection.execute(text("CREATE TABLE shop_never (x INTEGER)"))
            assert "read" in str(raised.value).lower()
            engine.dispose()
    finally:  # had it been written, it would not stay
        cleanup = create_engine(url)
        with cleanup.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS shop_never"))
        cleanup.dispose()


def shop_tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            query = text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'shop_%'")
            return sorted(connection.scalars(query))
    finally:
        engine.dispose()


def test_generated_data_holds_the_servers_constraints_and_is_dropped_after(servers, shop) -> None:
    # PostgreSQL enforces what SQLite lets pass: foreign keys, NOT NULL, lengths, UNIQUE.
    url = servers.target("postgresql").url.render_as_string(hide_password=False)
    assert shop_tables(url) == []
    options = ("--target", "postgresql", "--driver", "psycopg2", "--driver", "asyncpg")
    result, data = measure(shop, *options, SQLA_BENCH_POSTGRESQL_URL=url)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert all(cell["matches_expected"] for cell in data["cells"])
    assert {cell["case"] for cell in data["cells"]} == set(HANDLED)
    assert shop_tables(url) == []


def test_a_change_to_existing_data_during_the_run_fails_the_target(servers, shop_database):
    from sqla_bench.run.application import Workload

    target = servers.target("postgresql")
    workload = Workload("shop_models", ("Customer.orders",), existing=True)
    workload.prepare(target.drivers[0], DatasetSize())
    engine = create_engine(shop_database)
    with engine.begin() as connection:  # another client, while the run measures
        connection.execute(text("UPDATE shop_customers SET name = 'renamed' WHERE id = 3"))
    engine.dispose()
    assert workload.finish("postgresql") == "the data changed during the run, in shop_customers"


def test_tables_that_do_not_suit_the_data_are_refused_before_any_work(servers, shop) -> None:
    url = servers.target("postgresql").url.render_as_string(hide_password=False)
    options = ("--target", "postgresql", "--dry-run")
    result, _ = measure(shop, *options, "--use-existing-data", SQLA_BENCH_POSTGRESQL_URL=url)
    assert_one_line_error(result, "--use-existing-data: the database has no table shop_")


def test_generated_data_never_goes_into_tables_that_exist(shop, shop_database) -> None:
    before = table_hashes(shop_database)
    options = ("--target", "postgresql")
    result, _ = measure(shop, *options, SQLA_BENCH_POSTGRESQL_URL=shop_database)
    assert_one_line_error(result, "exists and sqla-bench did not create it", "shop_")
    assert table_hashes(shop_database) == before
