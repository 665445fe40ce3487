"""HTTP load from Locust (``--load-generator locust``): a master and two local workers
on 127.0.0.1, read back into the same cell as the built-in client's, which ``report``
and ``compare`` read; nothing of Locust left running afterwards."""

from __future__ import annotations

import psutil
import pytest

from sqla_bench.results import read_result
from tests.test_cli import assert_one_line_error, run

pytestmark = pytest.mark.harness


def _locusts() -> list[str]:
    return [
        " ".join(process.info["cmdline"] or ())
        for process in psutil.process_iter(["cmdline"])
        if "locustfile.py" in " ".join(process.info["cmdline"] or ())
    ]


def _web_load(tmp_path, name: str, *options: str):
    out = tmp_path / f"{name}.json"
    result = run(
        "sqla_bench", "run", "--target", "sqlite", "--mode", "async",
        "--scenario", "web.get_user", "--concurrency", "4", "--load-seconds", "1.5",
        "--output", str(out), *options,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return out


@pytest.mark.slow
def test_a_web_load_from_locust_lands_in_the_same_cell(tmp_path):
    locust = _web_load(tmp_path, "locust", "--load-generator", "locust", "--load-workers", "2")
    header, cells = read_result(locust)
    assert header["run"]["parameters"]["load_generator"] == "locust"
    (cell,) = cells
    load = cell.load
    assert load["generator"] == "locust" and load["load_workers"] == 2
    assert all(load["per_worker"]), load["per_worker"]  # every user was answered
    assert load["completed"] > 0 and len(cell.samples_ns) >= load["completed"]
    assert load["errors"] == {} and cell.matches_expected
    assert load["cpu_seconds"]["client"] > 0  # the Locust processes' own
    assert not _locusts()
    report = run("sqla_bench", "report", str(locust))
    assert report.returncode == 0 and "web.get_user under load" in report.stdout
    aiohttp = _web_load(tmp_path, "aiohttp")
    compared = run("sqla_bench", "compare", str(aiohttp), str(locust))
    assert compared.returncode in (0, 1), compared.stderr  # timings may differ; it reads both
    assert "in both runs" in compared.stdout and "only in" not in compared.stdout.replace(
        "only in base 0, only in new 0", ""
    )


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--load-generator", "locust", "--scenario", "crud"), "sends the web scenarios"),
        (
            ("--load-generator", "locust", "--scenario", "web", "--concurrency", "2",
             "--locust-master", "nowhere"),
            "--locust-master: expected HOST:PORT",
        ),
    ],
)  # fmt: skip
def test_bad_load_generator_options_are_one_line(options, words):
    assert_one_line_error(run("sqla_bench", "run", "--target", "sqlite", *options), words)
