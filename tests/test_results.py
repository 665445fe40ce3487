"""Result files: the schema round-trips, every rewrite is valid, secrets stay out."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sqla_bench.base.errors import ConfigError
from sqla_bench.measuring.measure import Policy
from sqla_bench.results.files import (
    CSV_COLUMNS,
    SCHEMA_VERSION,
    CellRecord,
    read_result,
    write_csv,
)
from sqla_bench.results.stats import percentile, summarize
from sqla_bench.run.pipeline import run_to_file
from sqla_bench.run.plan import RunPlan
from sqla_bench.run.runner import Progress
from sqla_bench.servers.targets import resolve, said_by
from tests.helpers import PASSWORD, assert_one_line_error, run_in_process
from tests.helpers import run as cli

QUICK = Policy(warmup=1, min_rounds=3, min_time=0.0)


def _run(tmp_path, on_cell=lambda cell: None, **plan_options):
    target = resolve("sqlite", tmp_path)
    plan = RunPlan(targets=(target,), policy=QUICK, **plan_options)
    path = tmp_path / "run.json"
    results, failures = run_to_file(plan, path, ["sqla-bench", "run"], Progress(on_cell=on_cell))
    return path, results, failures


def test_a_run_round_trips_through_its_schema(tmp_path) -> None:
    path, results, failures = _run(
        tmp_path, scenarios=("crud.get", "load.users_with_posts"), strategies=("joined", "selectin")
    )
    assert failures == []
    header, cells = read_result(path)  # validates against result.schema.json
    assert cells == results.cells
    assert [CellRecord.from_json(json.loads(json.dumps(c.to_json()))) for c in cells] == cells
    assert header["run"]["status"] == "complete" and header["run"]["finished"]
    assert header["targets"]["sqlite"]["server_version"].startswith("sqlite 3.")
    assert set(header["environment"]["drivers"]) == {"sqlite3", "aiosqlite"}
    assert header["run"]["parameters"]["policy"]["min_rounds"] == 3
    ok = [cell for cell in cells if cell.outcome == "ok"]
    assert ok and all(len(cell.samples_ns) >= 3 for cell in ok)
    # crud.get's table also holds the driver baseline, selected with it.
    assert {"crud.get", "baseline.driver_get"} <= {cell.case for cell in cells}
    # Two strategies measured side by side: their blocks and comparison round trip too.
    assert any(cell.comparison and cell.blocks for cell in cells)


def test_the_file_is_valid_after_every_cell(tmp_path) -> None:
    seen = []

    def reread(cell: CellRecord) -> None:
        _, cells = read_result(tmp_path / "run.json")
        seen.append(len(cells))

    _run(tmp_path, on_cell=reread, scenarios=("crud",))
    assert seen == list(range(1, len(seen) + 1)) and len(seen) >= 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(schema_version=99), "schema_version 99"),
        (lambda d: d["cells"][0].update(samples_ns=[]), "cells/0"),
        (lambda d: d["cells"][0].update(outcome="maybe"), "cells/0/outcome"),
        (lambda d: d["run"].pop("command"), "'command' is a required property"),
    ],
)
def test_a_damaged_file_is_refused_in_one_line(tmp_path, change, message) -> None:
    path, _, _ = _run(tmp_path, scenarios=("crud.get",))
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError) as raised:
        read_result(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_file_that_is_not_json_is_refused(tmp_path) -> None:
    (tmp_path / "x.json").write_text("{ not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        read_result(tmp_path / "x.json")


def test_an_error_message_loses_the_password(tmp_path) -> None:
    env = {"SQLA_BENCH_POSTGRESQL_URL": f"postgresql://u:{PASSWORD}@db.example:5432/bench"}
    target = resolve("postgresql", tmp_path, env)
    error = RuntimeError(f'connection to "postgresql://u:{PASSWORD}@db.example" refused\nmore')
    line = said_by(error, target)
    assert PASSWORD not in line and "***" in line and "more" not in line
    assert PASSWORD not in target.safe_url


def test_csv_has_one_row_per_cell_with_its_summary(tmp_path) -> None:
    path, results, _ = _run(tmp_path, scenarios=("crud.get",))
    write_csv(path.with_suffix(".csv"), results.cells)
    with path.with_suffix(".csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(results.cells) and list(rows[0]) == list(CSV_COLUMNS)
    for row, cell in zip(rows, results.cells, strict=True):
        assert float(row["median_us"]) == round(summarize(cell.samples_ns).median_ns / 1000, 3)


def test_percentile_interpolates() -> None:
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7], 95) == 7
    assert summarize([]) is None


@pytest.fixture
def small_disk(tmp_path):
    """Mount a file system of its own in a folder, sized by the test (a tmpfs: needs
    root, as CI has); unmounted after."""
    folder = tmp_path / "disk"
    folder.mkdir()

    def mount(size: int) -> Path:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True, text=True,
        )  # fmt: skip
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
        return folder

    yield mount
    subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.mark.slow  # a run into a small filesystem of its own: 19 s on a slow machine
def test_a_full_disk_ends_the_run_in_one_line_with_the_last_good_file(tmp_path, small_disk):
    options = ("--scenario", "load.users_with_posts", "--min-time", "0", "--min-rounds", "2")
    whole = tmp_path / "whole.json"
    assert cli("sqla_bench", "run", *options, "--output", str(whole)).returncode == 0
    _, all_cells = read_result(whole)
    # Room for the whole file but not for it and the next rewrite beside it: the disk
    # fills about half-way through the run.
    disk = small_disk(-(-whole.stat().st_size // 4096) * 4096)
    out = disk / "r.json"
    result = cli("sqla_bench", "run", *options, "--output", str(out))
    assert_one_line_error(result, f"cannot write {out}: No space left on device")
    held = int(result.stderr.split("it holds the ")[1].split(" cells")[0])
    header, cells = read_result(out)  # the last good write: valid, and what it says
    assert 0 < held == len(cells) < len(all_cells)
    assert header["run"]["status"] == "running"  # its process is gone: interrupted
    assert [p.name for p in disk.iterdir()] == ["r.json"]  # no temporary file left
    assert "lost" not in result.stderr and "sqlite" not in result.stderr


STORED = sorted((Path(__file__).parent / "data").glob("schema-v*.json"))


def test_a_result_file_of_each_older_schema_version_is_stored() -> None:
    versions = {int(path.stem.removeprefix("schema-v")) for path in STORED}
    assert versions == set(range(1, SCHEMA_VERSION)), "store a file of each version upgraded"


@pytest.mark.parametrize("path", STORED, ids=lambda path: path.stem)
def test_every_schema_version_is_read_upgraded_reported_and_compared(path, tmp_path) -> None:
    header, cells = read_result(path)  # upgraded, then validated against the schema
    assert header["schema_version"] == SCHEMA_VERSION and cells
    reported = run_in_process(["report", str(path), "--out", str(tmp_path)])
    assert reported.returncode == 0, reported.stderr
    assert cells[0].case in (tmp_path / "report.md").read_text()
    compared = run_in_process(["compare", str(path), str(path)])
    assert compared.returncode == 0, compared.stderr


# A process that rewrites one result file again and again, as a run does after each cell.
REWRITER = """
import sys
from pathlib import Path
from sqla_bench.results.files import ResultFile
results = ResultFile(Path(sys.argv[1]), {"run": {"writer": sys.argv[2]}})
for _ in range(400):
    results.flush()
"""


def test_two_processes_writing_one_result_file_both_finish_it_whole(tmp_path) -> None:
    """Two runs started in the same second get the same default name: each must write
    whole files, not move or remove the other's temporary one (they shared its name)."""
    path = tmp_path / "run.json"
    writers = [
        subprocess.Popen([sys.executable, "-c", REWRITER, str(path), name], stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    errors = [writer.communicate(timeout=120)[1].decode() for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    assert json.loads(path.read_text())["run"]["writer"] in ("a", "b")
    assert [file.name for file in tmp_path.iterdir()] == ["run.json"]
