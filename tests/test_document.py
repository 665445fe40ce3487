"""The report document: Markdown and self-contained HTML, and a decision guide that
agrees with the tables it is computed from."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from sqla_bench.reporting.document import STEM, markdown_report, read_runs
from sqla_bench.reporting.report import async_cost, count, describe_dataset, size
from sqla_bench.reporting.sections import verification_matrix
from tests.helpers import run

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

FASTEST, NEXT = "selectin", "joined"
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def loading_run(tmp_path_factory) -> Path:
    """A stored run of one loading scenario on SQLite, its timings replaced by seeded ones
    in which ``FASTEST`` is 1.5 times faster than ``NEXT`` and the rest slower still."""
    folder = tmp_path_factory.mktemp("document")
    out = folder / "loading.json"
    document = json.loads((DATA / "users-with-posts.json").read_text())  # a stored run
    rng = random.Random(3)
    for cell in document["cells"]:
        if cell["samples_ns"]:
            scale = {FASTEST: 1.0, NEXT: 1.5}.get(cell["params"]["strategy"], 3.0)
            cell["samples_ns"] = [int(1e6 * scale * rng.uniform(0.98, 1.02)) for _ in range(20)]
            cell["blocks"] = [2] * 10  # as measured side by side, in ten blocks
    out.write_text(json.dumps(document))
    return out


@pytest.fixture(scope="module")
def report(loading_run, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    result = run("sqla_bench", "report", str(loading_run), "--out", str(folder))
    assert result.returncode == 0, result.stderr
    return folder


def test_the_report_has_markdown_html_and_plots(report) -> None:
    names = {path.name for path in report.iterdir()}
    assert {"report.md", "report.html", "report-statements.png"} <= names
    text = (report / "report.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## In short", "## Decision guide", "## Outcomes", "## Plots", "## Tables",
        "## Where the numbers come from",
    ]  # fmt: skip
    assert "![report-statements.png](report-statements.png)" in text
    assert "sqla-bench run --scenario load.users_with_posts" in text  # the command


def test_the_html_needs_nothing_beside_it(report) -> None:
    page = (report / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert "http://" not in page and "https://" not in page
    assert "<table>" in page


def test_the_decision_guide_agrees_with_the_tables(report) -> None:
    text = (report / "report.md").read_text()
    guide = text.split("## Decision guide")[1].split("## Outcomes")[0]
    (row,) = [line for line in guide.splitlines() if line.startswith("| 2 |")]
    _, verdict = [cell.strip() for cell in row.strip("|").split("|")]
    # A comparison measured on a busy machine carries the report's mark (a dagger).
    winner, factor = verdict.removesuffix("†").strip().split(" x")
    assert winner == FASTEST  # on both drivers, so no count is given
    factor, low, _, high = factor.strip("]").replace("[", "").split()
    assert float(factor) == pytest.approx(1.5, rel=0.03)  # NEXT over FASTEST, within blocks
    assert float(low) < float(factor) < float(high)
    short = text.split("## In short")[1].split("## Decision guide")[0]
    assert f"direct: {FASTEST} throughout (2 posts/user)" in short
    assert "2 drivers and modes; 20 parents per load" in short


def test_the_outcome_matrix_shows_what_raised(report) -> None:
    text = (report / "report.md").read_text()
    (lazy,) = [
        line for line in text.splitlines() if line.startswith("| load.users_with_posts lazy")
    ]
    assert "MissingGreenlet" in lazy and "21 stmts" in lazy


def test_a_missing_result_is_one_line(tmp_path) -> None:
    result = run("sqla_bench", "report", str(tmp_path / "absent.json"), "--out", str(tmp_path))
    assert result.returncode == 2 and "does not exist" in result.stderr


@pytest.mark.slow
def test_the_committed_reference_guide_is_what_its_results_give() -> None:
    # In process and without drawing: the plots take a minute here, and the guide reads
    # only their names (those committed beside the report).
    reference = Path(__file__).resolve().parent.parent / "results" / "reference"
    runs = [path for path in sorted(reference.glob("*.json")) if path.stem != "verify"]
    plots = sorted(path.name for path in reference.glob(f"{STEM}-*.png"))
    headers, cells = read_runs(runs)

    def guide(text: str) -> str:
        """The report from its answers to the end of the decision guide."""
        text = text.split("## In short")[1]
        short, detail = text.split("## Decision guide")
        return short + detail.split("\n## ")[0]

    committed = guide((reference / "report.md").read_text())
    assert guide(markdown_report(headers, cells, plots)) == committed
    assert "Crossovers found:" in committed


def test_the_verification_catalogue_joins_the_report(loading_run, tmp_path) -> None:
    matrix = tmp_path / "matrix.json"
    verified = run(
        "sqla_bench", "verify", "--target", "sqlite", "--only", "patterns", "--json", str(matrix)
    )
    assert verified.returncode == 0, verified.stdout
    out = tmp_path / "report"
    result = run(
        "sqla_bench", "report", str(loading_run), "--out", str(out), "--verification", str(matrix)
    )
    assert result.returncode == 0, result.stderr
    text = (out / "report.md").read_text()
    section = text.split("## Verification catalogue")[1].split("## Outcomes")[0]
    (lazy,) = [line for line in section.splitlines() if line.startswith("| lazy_load ")]
    assert "works, 2 statements" in lazy and "MissingGreenlet" in lazy


def test_each_pgbouncer_mode_is_a_row_of_its_own_in_the_verification_matrix() -> None:
    def check(mode: str, observed: str) -> dict:
        return {
            "case": "pgbouncer.client_processes",
            "params": {"prepared": "default", "processes": "two"},
            "driver": "postgresql-asyncpg-async", "pgbouncer": mode,
            "expected": observed, "observed": observed, "passed": True,
        }  # fmt: skip

    wrong = "returns wrong results from value[12], 14 statements"
    document = {"checks": [check("transaction", wrong), check("session", "works, 14 statements")]}
    rows = [
        line
        for line in verification_matrix(document).to_markdown().splitlines()
        if line.startswith("| pgbouncer.client_processes")
    ]
    assert len(rows) == 2, rows  # the session row once hid the transaction row's outcome
    assert "via PgBouncer transaction" in rows[0] and wrong in rows[0]
    assert "via PgBouncer session" in rows[1] and "works, 14 statements" in rows[1]


def test_a_file_that_is_not_a_verification_matrix_is_one_line(loading_run, tmp_path) -> None:
    result = run(
        "sqla_bench", "report", str(loading_run), "--out", str(tmp_path),
        "--verification", str(loading_run),
    )  # fmt: skip
    assert result.returncode == 2
    assert "is not the output of sqla-bench verify --json" in result.stderr


def test_async_over_sync_sets_each_case_against_its_twin_in_function_calls() -> None:
    upgrade = Path(__file__).resolve().parent.parent / "results" / "upgrade"
    _, cells = read_runs([upgrade / "sqlalchemy-2.1.9.json"])
    table = async_cost(cells)
    columns = [name for name, _ in table.columns]
    assert columns == ["case", "sqlite pysqlite → aiosqlite", "postgresql psycopg"]
    rows = {row[0]: dict(zip(columns, row, strict=True)) for row in table.rows}
    get = rows["crud.get user_id=1"]["postgresql psycopg"]
    sync, async_ = (c.calls for c in cells if c.case == "crud.get" and c.driver == "psycopg")
    assert get == f"{async_ / sync:.2f}x ({sync} → {async_})" and async_ > sync
    lazy = rows["load.users_with_posts lazy limit=20"]["sqlite pysqlite → aiosqlite"]
    assert lazy == "async raises StatementError(MissingGreenlet)"
    assert rows["load.users_with_posts raise limit=20"]["postgresql psycopg"].startswith(
        "both raise"
    )
    # One dataset in that file, and no latency: the title says so.
    assert table.title.endswith(f"({describe_dataset(cells[0].dataset)}; direct)")


@pytest.mark.parametrize(
    ("shown", "number", "text"),
    [
        (size, 999, "999 B"), (size, 999_499, "999 KB"), (size, 999_999, "1 MB"),
        (size, 1_400_000, "1.4 MB"), (count, 9_999, "9,999"), (count, 24_212, "24.2k"),
        (count, 999_999, "1M"), (count, 1_314_000, "1.31M"), (count, None, "-"),
    ],
)  # fmt: skip
def test_sizes_and_counts_stay_short_across_their_units(shown, number, text) -> None:
    assert shown(number) == text
