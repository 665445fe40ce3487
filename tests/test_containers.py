"""Servers in containers: settings, provisioning through testcontainers, clean-up.

The tests marked by the ``docker`` fixture start containers of their own and need a
Docker engine: without one they skip, unless ``SQLA_BENCH_REQUIRE`` names
``containers``. The images are the ones the environment names (CI builds local stand-ins
for the official images, which it cannot pull; see .ci/images).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from sqla_bench.base.owner import owner_alive, owner_label
from sqla_bench.results.files import read_result
from sqla_bench.servers.containers import (
    DEFAULT_IMAGES,
    ContainerError,
    ServerSettings,
    containers,
    docker_problem,
    server_settings,
)
from sqla_bench.servers.targets import CONTAINERS, required_targets
from tests.helpers import VARIABLES, assert_one_line_error, run

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
QUICK = ("--min-time", "0", "--min-rounds", "3", "--warmup", "1")
BOUNDED_SECONDS = 240  # no subprocess here may run longer


@pytest.fixture(scope="session")
def docker() -> None:
    problem = docker_problem()
    if problem is not None:
        if CONTAINERS in required_targets():
            pytest.fail(f"SQLA_BENCH_REQUIRE names {CONTAINERS}, but {problem}")
        pytest.skip(problem)


def assert_one_error_line(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2 and one error line, the last; progress lines may come before it."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("sqla-bench: error:")]
    assert errors == lines[-1:], result.stderr
    for needle in needles:
        assert needle in errors[0]


def owned_by(pid: int) -> list:
    """The sqla-bench containers that process ``pid`` started and that still exist."""
    return [c for c in containers() if c.owner.split(":")[1:2] == [str(pid)]]


def without_urls(**extra: str) -> dict[str, str]:
    """This environment without the server URLs, and with its Docker engine (which
    ``run`` otherwise hides): server targets then come from containers."""
    docker_host = {"DOCKER_HOST": os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_HOST)}
    return {k: v for k, v in os.environ.items() if k not in VARIABLES} | docker_host | extra


# --- settings (no Docker needed) ---------------------------------------------------------


def test_images_default_to_the_official_ones_and_options_become_server_arguments() -> None:
    assert server_settings("postgresql", {}).image == DEFAULT_IMAGES["postgresql"]
    env = {
        "SQLA_BENCH_POSTGRESQL_IMAGE": "example/pg:1",
        "SQLA_BENCH_POSTGRESQL_SERVER_OPTIONS": "fsync=off, max_connections=300",
        "SQLA_BENCH_MYSQL_SERVER_OPTIONS": "max-connections=500 innodb_flush_log_at_trx_commit=0",
    }
    postgresql = server_settings("postgresql", env)
    assert postgresql.image == "example/pg:1"
    assert postgresql.command() == ["-c", "fsync=off", "-c", "max_connections=300"]
    assert postgresql.describe() == {
        "image": "example/pg:1",
        "server_options": {"fsync": "off", "max_connections": "300"},
    }
    assert server_settings("mysql", env).command() == [
        "--max-connections=500",
        "--innodb_flush_log_at_trx_commit=0",
    ]
    assert ServerSettings("mysql", "m").command() == []


@pytest.mark.parametrize("value", ["fsync", "=off", "fsync=", "a b=c", "x;rm=1"])
def test_a_malformed_server_option_is_refused(value) -> None:
    pattern = r"SQLA_BENCH_POSTGRESQL_SERVER_OPTIONS: .* name=value"
    with pytest.raises(ContainerError, match=pattern):
        server_settings("postgresql", {"SQLA_BENCH_POSTGRESQL_SERVER_OPTIONS": value})


def test_a_malformed_server_option_on_the_command_line_is_one_line() -> None:
    result = run(
        "sqla_bench", "run", "--target", "mysql", SQLA_BENCH_MYSQL_SERVER_OPTIONS="max-connections"
    )
    assert_one_line_error(result, "SQLA_BENCH_MYSQL_SERVER_OPTIONS", "name=value")


def test_an_owner_is_alive_until_its_process_ends() -> None:
    assert owner_alive(owner_label()) is True
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    label = owner_label(process.pid)
    process.wait()
    assert owner_alive(label) is False
    assert owner_alive("some-other-host:1:0") is None


def test_without_url_or_docker_a_server_target_is_one_line_naming_both() -> None:
    result = run("sqla_bench", "run", "--target", "postgresql")
    assert_one_line_error(result, "SQLA_BENCH_POSTGRESQL_URL", "Docker engine", "nonexistent")


@pytest.mark.parametrize("setting", ["off", "postgresql"])
def test_containers_can_be_turned_off_even_with_docker(setting) -> None:
    env = without_urls(SQLA_BENCH_CONTAINERS=setting)
    result = run("sqla_bench", "run", "--target", "mysql", **env)
    assert_one_line_error(result, "SQLA_BENCH_MYSQL_URL", f"SQLA_BENCH_CONTAINERS={setting}")


def test_without_docker_listing_containers_is_one_line() -> None:
    assert_one_line_error(run("sqla_bench", "containers"), "no Docker engine answers")


def test_pytest_fails_instead_of_skipping_when_containers_are_required() -> None:
    result = run(
        "pytest",
        "tests/test_containers.py",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        "leaves_none_behind",
        SQLA_BENCH_REQUIRE=CONTAINERS,
    )
    assert result.returncode == 1, result.stdout
    assert "SQLA_BENCH_REQUIRE names containers, but no Docker engine answers" in result.stdout


# --- with a Docker engine ------------------------------------------------------------------


def test_a_run_with_containers_leaves_none_behind(docker, tmp_path) -> None:
    out = tmp_path / "containers.json"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "sqla_bench", "run",
            "--target", "postgresql", "--target", "mysql", "--scenario", "crud.get", *QUICK,
            "--output", str(out),
        ],
        env=without_urls(SQLA_BENCH_POSTGRESQL_SERVER_OPTIONS="fsync=off"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _, stderr = process.communicate(timeout=BOUNDED_SECONDS)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "postgresql container ready in" in stderr and "mysql container ready in" in stderr
    assert owned_by(process.pid) == []
    header, cells = read_result(out)
    postgresql, mysql = header["targets"]["postgresql"], header["targets"]["mysql"]
    assert postgresql["source"] == f"container ({postgresql['container']['image']})"
    assert postgresql["container"]["server_options"] == {"fsync": "off"}
    assert mysql["container"] == {"image": server_settings("mysql").image, "server_options": {}}
    assert postgresql["url"].count("***") == 1 and postgresql["server_version"]
    assert {cell.driver for cell in cells} == {
        "psycopg2", "asyncpg", "psycopg", "pymysql", "aiomysql"
    }  # fmt: skip
    assert all(cell.matches_expected for cell in cells)


def test_a_server_that_exits_at_start_is_one_line_at_once(docker) -> None:
    started = time.monotonic()
    result = run(
        "sqla_bench", "run", "--target", "postgresql",
        **without_urls(SQLA_BENCH_POSTGRESQL_SERVER_OPTIONS="no_such_setting=1"),
    )  # fmt: skip
    assert_one_error_line(result, "cannot start a postgresql container", "no_such_setting")
    assert time.monotonic() - started < 60  # not testcontainers' two-minute wait


def test_bad_options_stop_a_run_before_any_container_starts(docker) -> None:
    result = run(
        "sqla_bench", "run", "--target", "postgresql", "--scenario", "no.such.scenario",
        **without_urls(),
    )  # fmt: skip
    assert_one_line_error(result, "unknown scenario 'no.such.scenario'")
    assert "starting" not in result.stderr


# Named with a registry on loopback: Docker's pull then fails at 127.0.0.1:1 instead of
# looking a registry's name up through the machine's resolver.
ABSENT_IMAGE = "127.0.0.1:1/sqla-bench-missing:0"


def test_an_image_that_is_not_here_is_one_line(docker) -> None:
    result = run(
        "sqla_bench", "run", "--target", "postgresql",
        **without_urls(SQLA_BENCH_POSTGRESQL_IMAGE=ABSENT_IMAGE),
    )  # fmt: skip
    assert_one_error_line(result, ABSENT_IMAGE, "SQLA_BENCH_POSTGRESQL_IMAGE")


def test_prune_removes_what_a_killed_run_left_behind(docker) -> None:
    script = (
        "import time\n"
        "from sqla_bench.servers.containers import ServerContainer, server_settings\n"
        "ServerContainer(server_settings('postgresql')).start()\n"
        "print('up', flush=True)\n"
        "time.sleep(120)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], env=without_urls(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "up"
    finally:
        process.kill()  # as a killed run dies: no clean-up of its own
        process.wait()
    (left,) = owned_by(process.pid)
    assert left.orphaned
    listed = run("sqla_bench", "containers", **without_urls())
    assert left.id in listed.stdout and "ended" in listed.stdout
    pruned = run("sqla_bench", "containers", "--prune", **without_urls())
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed {left.id}" in pruned.stdout
    assert owned_by(process.pid) == []


@pytest.mark.parametrize("ending", ["end", "ctrl-c"])
def test_a_test_session_removes_its_containers(docker, ending) -> None:
    """A pytest session's container goes when the session ends, and after Ctrl-C."""
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/test_catalogue.py", "-k", "postgresql-psycopg2-sync",
    ]  # fmt: skip
    env = without_urls(SQLA_BENCH_REQUIRE="postgresql") | {"PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        if ending == "ctrl-c":
            _wait_for_a_container(process.pid, seconds=120)
            process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=BOUNDED_SECONDS)
    finally:
        process.kill()
    if ending == "end":
        assert process.returncode == 0, stdout
        assert "postgresql container ready in" in stdout
    else:
        assert "KeyboardInterrupt" in stdout
    assert owned_by(process.pid) == []


def _wait_for_a_container(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not any(c.status == "running" for c in owned_by(pid)):
        assert time.monotonic() < deadline, "the test session started no container"
        time.sleep(0.5)


def _container_password(container_id: str) -> str:
    import docker as docker_sdk

    client = docker_sdk.from_env()
    try:
        variables = client.containers.get(container_id).attrs["Config"]["Env"]
    finally:
        client.close()
    return next(v.split("=", 1)[1] for v in variables if v.startswith("POSTGRES_PASSWORD="))


def test_a_terminated_run_removes_its_container_and_never_writes_its_password(
    docker, tmp_path
) -> None:
    """SIGTERM mid-run: the container goes, the finished cells stay, and the container's
    (random) password is nowhere in what the run wrote."""
    path = tmp_path / "terminated.json"
    command = [
        sys.executable, "-m", "sqla_bench", "run", "--target", "postgresql", "--scenario", "crud",
        "--scenario", "load", *QUICK, "--output", str(path),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=without_urls(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_a_container(process.pid, seconds=120)
        (container,) = owned_by(process.pid)
        password = _container_password(container.id)
        deadline = time.monotonic() + 120
        while not path.exists() or len(read_result(path)[1]) < 1:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=BOUNDED_SECONDS)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert owned_by(process.pid) == []
    header, cells = read_result(path)
    assert header["run"]["status"] == "interrupted" and cells
    assert len(password) >= 8
    assert password not in stdout + stderr + path.read_text()
