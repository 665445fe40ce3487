"""Nonsense in, one clear line and exit status 2 out: never a traceback.

A property test (hypothesis) throws option lists at ``sqla-bench run --dry-run`` and
values at the environment variables, in process; ``--dry-run`` checks everything a run
checks before it starts a container, measures or writes anything.
"""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqla_bench.results.files import read_result
from sqla_bench.scenarios.dataset import TABLES
from tests.helpers import VARIABLES, assert_one_line_error, run, run_in_process

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

RUN_OPTIONS = (
    "--target", "--driver", "--mode", "--scenario", "--strategy", "--users", "--posts",
    "--comments", "--tags", "--payload", "--param", "--latency", "--concurrency",
    "--pool-size", "--max-overflow", "--pool-timeout", "--load-seconds", "--warmup",
    "--min-rounds", "--min-time", "--max-rounds", "--max-time", "--on-error", "--affinity",
)  # fmt: skip
# Values near the edges of what each option takes, and plain junk.
EDGES = (
    "0", "-1", "1", "2", "1,2", "1,,2", "", " ", "abc", "nan", "inf", "-inf", "1e309",
    "0.0001", "99999999999", "sqlite", "postgresql", "mysql", "oracle", "crud", "crud.get",
    "web", "load", "joined", "sync", "async", "all", "auto", "limit=0", "limit=",
    "=5", "user_id=-3", "stop", "continue", "asyncpg", "pysqlite", "\u00e9", "--",
)  # fmt: skip
ENVIRONMENT = (
    "SQLA_BENCH_POSTGRESQL_URL", "SQLA_BENCH_MYSQL_URL", "SQLA_BENCH_REQUIRE",
    "SQLA_BENCH_CONTAINERS", "SQLA_BENCH_POSTGRESQL_SERVER_OPTIONS",
    "SQLA_BENCH_MYSQL_SERVER_OPTIONS",
)  # fmt: skip
URLISH = (
    "postgresql://", "postgresql://u:p@/db", "postgresql://u:p@h", "mysql://u@h:99999/d",
    "sqlite:///x", "postgresql+nope://u:p@127.0.0.1/d", "not a url", "://", "mysql+",
    "fsync=off", "a=b,,c", "=x", "off", "containers", "postgresql,mysql", "nonsense",
)  # fmt: skip

values = st.one_of(st.sampled_from(EDGES), st.text(max_size=6))
# What an environment variable can hold: no NUL character (the OS refuses it before we see
# it), and no lone surrogate (not UTF-8: os.environ refuses it, and st.characters draws it).
environment_values = st.one_of(
    st.sampled_from(EDGES),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6),
)
options = st.lists(st.tuples(st.sampled_from(RUN_OPTIONS), values), max_size=4)


def _outcome(argv: list[str], **env: str) -> tuple[int, str]:
    """``main(argv)`` in process: its exit status and what it wrote to stderr."""
    result = run_in_process(argv, **env)
    return result.returncode, result.stderr


def _assert_clear(status: int, stderr: str, argv: list[str]) -> None:
    assert status in (0, 2), (argv, status, stderr)
    if status == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sqla-bench: error:"), (argv, stderr)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options)
def test_no_run_options_produce_a_traceback(chosen: list[tuple[str, str]]) -> None:
    argv = ["run", "--dry-run", *(part for pair in chosen for part in pair)]
    # Dry runs see no server and no Docker: a server target is then a clear "unavailable".
    status, stderr = _outcome(argv, **{name: "" for name in VARIABLES})
    _assert_clear(status, stderr, argv)


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(ENVIRONMENT), st.one_of(st.sampled_from(URLISH), environment_values)
    )
)
def test_no_environment_values_produce_a_traceback(environment: dict[str, str]) -> None:
    argv = ["run", "--dry-run", "--target", "sqlite", "--target", "postgresql"]
    status, stderr = _outcome(argv, **environment)
    _assert_clear(status, stderr, argv)


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--pool-size", "0"], ["--pool-size", "0"]),
        (["--users", "-5"], ["--users"]),
        (["--concurrency", "1,,2"], ["--concurrency"]),
        (["--load-seconds", "nan"], ["--load-seconds"]),
        (["--target", "sqlite", "--latency", "5"], ["--latency", "sqlite"]),
        (["--scenario", "nope"], ["unknown scenario", "nope"]),
        (["--driver", "nope"], ["unknown driver", "nope"]),
        (["--affinity", "-3"], ["--affinity"]),
        (["--on-error", "ignore"], ["--on-error"]),
        (["--scenario", "web"], ["--concurrency"]),
        (["--payload", "-1"], ["--payload", "whole numbers >= 0"]),
        (["--payload", "70000"], ["--payload is at most 65,535"]),
        (["--comments", "0"], ["--comments"]),
        (["--tags", "abc"], ["--tags"]),
        (["--tags", "9", "--users", "1"], []),  # fine: more tags than posts is allowed
        (["--max-time", "0"], ["--max-time"]),
        (["--min-time", "5", "--max-time", "1"], ["--max-time must be at least --min-time"]),
        (["--posts", "1,2,3,4,5,6,7,8,9", "--payload", "0,1,2,3,4,5,6,7,8"], ["81 datasets"]),
        (["--users", "100000", "--posts", "100"], ["at most 2,000,000"]),
        (["--param", "strategy=bogus"], ["--param", "strategy: expected one of", "'bogus'"]),
        (["--param", "limit=abc"], ["--param", "limit: expected a whole number", "'abc'"]),
        (["--param", "limit=-5"], ["--param", "from 0 to 1,000,000", "'-5'"]),
        (["--param", "user_id=" + "9" * 30], ["--param", "user_id", "2,147,483,647"]),
        (["--param", "limit=\u00b2"], ["--param", "limit"]),  # a digit to str.isdigit
        (["--param", "pre_ping=true"], ["--param pre_ping: no selected scenario has"]),
        (["--concurrency", "100000"], ["--concurrency", "from 1 to 1,000"]),
        (["--users", "9" * 20], ["--users is at most 1,000,000"]),
        (["--pool-size", "5000"], ["--pool-size", "from 1 to 1,000"]),
        (["--max-overflow", "1001"], ["--max-overflow", "from 0 to 1,000"]),
        (["--latency", "1e9", "--target", "postgresql"], ["--latency", "to 10,000"]),
        (["--max-rounds", "99999999999"], ["--max-rounds", "to 1,000,000"]),
        (["--load-seconds", "1e6"], ["--load-seconds", "to 3,600"]),
        (["--min-time", "3601"], ["--min-time", "to 3,600"]),
        (["--warmup", "1" + "0" * 7], ["--warmup", "to 1,000,000"]),
        (["--output", "/"], ["cannot write results to /: it is a directory"]),
        (["--output", "/tmp/x.csv", "--csv"], ["--csv writes /tmp/x.csv itself"]),
    ],
)
def test_nonsense_run_options_are_one_line(argv, needles) -> None:
    result = run("sqla_bench", "run", "--dry-run", *argv)
    if not needles:  # an edge that is no error
        assert result.returncode == 0, result.stderr
        return
    assert_one_line_error(result, *needles)


def test_a_dry_run_measures_and_writes_nothing_but_plans_what_a_run_measures(tmp_path) -> None:
    output = tmp_path / "never" / "written.json"
    options = ("--scenario", "crud", "--min-time", "0", "--min-rounds", "1", "--warmup", "0")
    result = run("sqla_bench", "run", "--dry-run", *options, "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert not output.parent.exists()
    measured = run("sqla_bench", "run", *options, "--output", str(output))
    assert measured.returncode == 0, measured.stderr
    per_driver = Counter(
        f"{cell.target}-{cell.driver}-{cell.mode}" for cell in read_result(output)[1]
    )
    assert len(per_driver) == 2
    for driver, cells in per_driver.items():
        assert f"{driver}: {cells} cells per setting" in result.stdout
    assert f"dropped when done: {', '.join(TABLES)}" in result.stdout.replace("\n", " ")


@pytest.mark.slow  # waits out a connect timeout: 10 s
def test_a_url_whose_host_does_not_answer_times_out_in_one_line() -> None:
    # A listening socket on loopback that never accepts: the kernel completes the TCP
    # handshake, and the client waits for a server greeting that never comes, until its
    # connect timeout. (Nothing leaves this machine.)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"postgresql://u:Never-Shown-9@127.0.0.1:{silent.getsockname()[1]}/db"
        result = run("sqla_bench", "run", "--target", "postgresql", SQLA_BENCH_POSTGRESQL_URL=url)
    assert_one_line_error(result, "postgresql")
    assert "Never-Shown-9" not in result.stderr + result.stdout


@pytest.mark.parametrize("command", ["report", "compare"])
@pytest.mark.parametrize(
    ("content", "needle"),
    [("{not json", "is not JSON"), ('{"schema_version": 99}', "schema_version 99")],
)
def test_a_corrupt_or_wrong_version_result_file_is_one_line(tmp_path, command, content, needle):
    damaged = tmp_path / "damaged.json"
    damaged.write_text(content)
    files = [str(damaged)] * (2 if command == "compare" else 1)
    assert_one_line_error(run("sqla_bench", command, *files), "damaged.json", needle)


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["run", "--output", "/"], ["cannot write results to /: it is a directory"]),
        (["verify", "--json", "/proc/nowhere/x.json"], ["cannot write results to /proc/nowhere"]),
        (["verify", "--json", "/"], ["it is a directory"]),
        (["baseline", "--folder", "/proc/nope"], ["no baseline of sqlite in /proc/nope"]),
        (["baseline", "--folder", "/proc/nope", "--update"], ["cannot write results to /proc"]),
        (["selfcheck", "--only", "cv", "--output", "/proc/nope"], ["cannot write results to"]),
    ],
)
def test_an_output_that_cannot_be_written_stops_before_any_work(argv, needles) -> None:
    result = run("sqla_bench", *argv)
    assert_one_line_error(result, *needles)
    assert not result.stdout.strip(), "work was done before the output was checked"


def test_report_outputs_are_checked_before_anything_is_read(tmp_path) -> None:
    never_read = tmp_path / "absent.json"  # reading it would fail with another message
    for option in (["--out", "/proc/nope"], ["--plot", "--output", "/proc/nope"]):
        result = run("sqla_bench", "report", str(never_read), *option)
        assert_one_line_error(result, "cannot write results to /proc/nope")


@pytest.mark.parametrize("command", ["report", "compare"])
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (bytes(range(128, 256)), "is not UTF-8 text (byte 0)"),
        (b"[" * 100_000, "nested too deep"),
        (b'{"checks": []}', "schema_version None"),  # a verify --json file
    ],
)
def test_a_file_of_another_kind_is_one_line(tmp_path, command, content, needle) -> None:
    other = tmp_path / "other.json"
    other.write_bytes(content)
    files = [str(other)] * (2 if command == "compare" else 1)
    assert_one_line_error(run("sqla_bench", command, *files), "other.json", needle)


def test_an_error_no_check_foresaw_is_one_line_a_traceback_file_and_kept_cells(
    tmp_path, monkeypatch
) -> None:
    """The last-resort handler: a bug mid-run (planted: the progress callback raises at
    the third cell) exits 70 with one line naming a traceback file, and the result file
    keeps the cells that finished, marked failed."""
    import sqla_bench.commands.run_console as run_console
    from sqla_bench.run.runner import Progress

    def failing_progress(console, progress, task, stop_requested) -> Progress:
        finished = []

        def on_cell(record) -> None:
            finished.append(record)
            if len(finished) == 3:
                raise RuntimeError("planted by the test\nsecond line")

        return Progress(on_cell=on_cell, stop_requested=stop_requested)

    monkeypatch.setattr(run_console, "run_progress", failing_progress)
    output = tmp_path / "run.json"
    argv = ["run", "--scenario", "crud", "--min-rounds", "1", "--min-time", "0"]
    status, stderr = _outcome([*argv, "--warmup", "0", "--output", str(output)])
    assert status == 70, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("sqla-bench: internal error: RuntimeError: planted by the test;")
    assert "Traceback" not in stderr and "second line" not in stderr
    traceback_file = Path(last.rsplit(" ", 1)[-1])
    try:
        assert "Traceback" in traceback_file.read_text()
        assert "planted by the test" in traceback_file.read_text()
    finally:
        traceback_file.unlink()
    header, cells = read_result(output)
    assert header["run"]["status"] == "failed" and len(cells) == 3
