"""No password in anything sqla-bench writes: output, errors, result files, CSV, plots,
reports, comparisons, help.

The whole path runs on the configured PostgreSQL with its real password (CI sets a new
random one each run), then with wrong passwords that must not be echoed back, and every
byte written is searched for each of them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from sqla_bench.servers.targets import URL_VARIABLES
from tests.helpers import run

# The harness itself, not SQLAlchemy: CI runs these on one SQLAlchemy version only.
pytestmark = pytest.mark.harness

WRONG = "Wr0ng-Recognisable-Secret-7"


def _forms(password: str) -> list[bytes]:
    """The password as it could be written: plain or URL-encoded."""
    return sorted({password.encode(), quote_plus(password).encode()})


def _everything_written(folder: Path, results: list[subprocess.CompletedProcess]) -> dict:
    written = {str(path): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    for number, result in enumerate(results):
        written[f"command {number}: {result.args[2:5]}"] = (result.stdout + result.stderr).encode()
    return written


def test_no_password_appears_in_anything_written(request, tmp_path) -> None:
    target = request.getfixturevalue("servers").target("postgresql")
    password = target.url.password
    if not password or len(password) < 6:
        pytest.skip("the configured URL's password is too short to search for")
    variable = URL_VARIABLES["postgresql"]
    url = target.url.render_as_string(hide_password=False)
    env = {variable: url}
    folder = tmp_path / "out"
    result = folder / "run.json"
    commands = [
        ("run", "--target", "postgresql", "--scenario", "crud.get", "--latency", "1",
         "--csv", "--plot", "--output", str(result)),
        ("run", "--target", "postgresql", "--scenario", "web.get_user", "--mode", "async",
         "--concurrency", "2", "--load-seconds", "0.3", "--output", str(folder / "web.json")),
        ("verify", "--target", "postgresql", "--only", "scenarios",
         "--json", str(folder / "verify.json")),
        ("report", str(result), "--out", str(folder / "report"),
         "--verification", str(folder / "verify.json")),
        ("compare", str(result), str(result), "--format", "markdown"),
        ("list",),
        ("run", "--help"),
    ]  # fmt: skip
    results = [run("sqla_bench", *command, **env) for command in commands]
    for command, outcome in zip(commands, results, strict=True):
        assert outcome.returncode == 0, (command, outcome.stderr[-1500:])
    # Another password (refused, or accepted where the server trusts local connections,
    # as this machine's does) and a port where nothing listens (refused in one line).
    for number, bad in enumerate([target.url.set(password=WRONG), target.url.set(port=1)]):
        outcome = run(
            "sqla_bench", "run", "--target", "postgresql", "--scenario", "crud.get",
            "--output", str(folder / f"other-{number}.json"),
            **{variable: bad.render_as_string(hide_password=False)},
        )  # fmt: skip
        assert outcome.returncode in (0, 2) and "Traceback" not in outcome.stderr
        results.append(outcome)
    assert results[-1].returncode == 2, results[-1].stderr
    written = _everything_written(folder, results)
    assert any(name.endswith("report.html") for name in written)  # the search covers it
    assert any(name.endswith(".csv") for name in written)
    for secret in (password, WRONG):
        for form in _forms(secret):
            found = [name for name, data in written.items() if form in data]
            assert not found, f"a password appears in {found}"
