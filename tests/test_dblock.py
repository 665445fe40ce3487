"""One run at a time on a database (``sqla_bench.run.dblock``): a run holds its lock
while it measures; a second run is refused with the holder named, or waits for it."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time

import pytest

from sqla_bench.base.owner import owner_label
from sqla_bench.run.dblock import DatabaseBusy, run_lock
from sqla_bench.servers.targets import URL_VARIABLES
from tests.helpers import assert_one_line_error, run_as_user, user_env

pytestmark = pytest.mark.harness

QUICK = ("--scenario", "crud.get", "--min-time", "0", "--min-rounds", "1", "--users", "20")
SERVERS = ["postgresql", "mysql"]


def named_holder(name: str) -> str:
    """How the holder (this test) is named: ``host:pid:start``, but for MariaDB behind
    Docker's port mapping, where the server sees the mapping's address, not ours."""
    behind_docker = name == "mysql" and not os.environ.get(URL_VARIABLES["mysql"])
    return "a session from " if behind_docker else f"run {owner_label()}"


def sync_driver(servers, name: str):
    return next(d for d in servers.target(name).drivers if d.spec.mode == "sync")


def url_of(servers, name: str) -> str:
    return servers.target(name).url.render_as_string(hide_password=False)


@pytest.mark.parametrize("name", SERVERS)
def test_a_second_run_is_refused_naming_the_holder_or_waits_for_it(servers, name, tmp_path):
    driver, url = sync_driver(servers, name), url_of(servers, name)
    out = tmp_path / "r.json"
    with run_lock(driver):  # another run's lock, as a run takes it
        refused = run_as_user(name, url, "run", "--target", name, *QUICK, "--output", str(out),
                             cwd=tmp_path)  # fmt: skip
        assert_one_line_error(refused, "another sqla-bench run is using this database")
        assert named_holder(name) in refused.stderr
        assert not out.exists()  # nothing measured, nothing written

        waiting = subprocess.Popen(
            [sys.executable, "-m", "sqla_bench", "run", "--target", name, *QUICK,
             "--wait-for-lock", "120", "--output", str(out)],
            cwd=tmp_path, env=user_env(name, url), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(3)
        assert waiting.poll() is None  # still waiting for the lock this test holds
    _, stderr = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, stderr
    assert "waiting for" in stderr and named_holder(name) in stderr
    assert out.exists()


def lock_is_free_of_this_process(driver) -> None:
    """Before a test reads who holds the lock: a run made earlier in this process and
    left unfinished (an interrupted one whose connection only the garbage collector
    closes) still holds it under this process's name; one CI run found such a holder
    among a later run's refusals. Collect it, then the lock must be free."""
    gc.collect()
    with run_lock(driver, wait_seconds=10):
        pass


@pytest.mark.parametrize("name", SERVERS)
def test_a_run_holds_its_lock_until_it_is_done(servers, name, tmp_path) -> None:
    driver, url = sync_driver(servers, name), url_of(servers, name)
    lock_is_free_of_this_process(driver)
    # The run waits for the lock: this test takes it for a moment five times a second,
    # and a run that asks in such a moment would be refused (CI saw it once on MariaDB).
    longer = ("--scenario", "crud.get", "--min-time", "0.5", "--users", "20",
              "--wait-for-lock", "60")  # fmt: skip
    running = subprocess.Popen(
        [sys.executable, "-m", "sqla_bench", "run", "--target", name, *longer,
         "--output", str(tmp_path / "r.json")],
        cwd=tmp_path, env=user_env(name, url), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    refusals = []
    while running.poll() is None:
        try:
            with run_lock(driver):
                pass
        except DatabaseBusy as busy:
            refusals.append(str(busy))
        time.sleep(0.2)
    assert running.wait() == 0, running.stderr.read() if running.stderr else ""
    # While it ran, the lock was its own, named by its process; now it is free.
    assert refusals, "the run never held the lock"
    if named_holder(name).startswith("run "):
        assert all(f":{running.pid}:" in said for said in refusals), refusals[:2]
    with run_lock(driver):
        pass


# Where the test's user may not create the run's tables on MySQL: a database it holds no
# grant on. (PostgreSQL's case, a role without CREATE on schema public, is
# tests/test_cli.py's: a superuser, as in a container, may create anywhere it can.)
NO_RIGHTS_DATABASE = "information_schema"
MYSQL_GRANT = "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP ON `information_schema`.* TO "


def test_a_user_without_the_rights_a_run_needs_is_told_the_grant_before_any_work(servers, tmp_path):
    url = servers.target("mysql").url.set(database=NO_RIGHTS_DATABASE)
    out = tmp_path / "r.json"
    refused = run_as_user("mysql", url.render_as_string(hide_password=False), "run",
                         "--target", "mysql", *QUICK, "--output", str(out),
                         cwd=tmp_path)  # fmt: skip
    assert_one_line_error(refused, MYSQL_GRANT)
    assert not out.exists()  # nothing could have run: nothing written
    # The user's own database: the same check passes.
    with run_lock(sync_driver(servers, "mysql")):
        pass
