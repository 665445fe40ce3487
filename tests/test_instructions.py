"""``run --instructions``: instructions per operation, counted under valgrind's callgrind
in a process of their own, and held by the gate where timings cannot be (issue 29).

The plant is the study's (``tests.gate_study``): a loop of ``+=`` at the top of
``Session.get``, which adds work and no function call, so the count that sees it is the
instructions' alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sqla_bench.base.stopping import Terminated, raise_stop
from sqla_bench.measuring.callgrind import read_window
from sqla_bench.results.compare import Gate, compare, load_run
from sqla_bench.run import instructions
from sqla_bench.servers.targets import VALGRIND, required_targets
from tests.gate_study import planted_source
from tests.helpers import VARIABLES, assert_one_line_error, run

pytestmark = pytest.mark.harness

# A short run: crud.get (which calls Session.get) beside the driver baseline (which does
# not), sync only, with as few timed calls as a run takes.
RUN = (
    *("run", "--scenario", "crud.get", "--mode", "sync", "--min-time", "0"),
    *("--min-rounds", "1", "--warmup", "2", "--instructions", "3"),
)
PLANTED_LOOP = 3_000  # iterations: about a third more instructions in crud.get


@pytest.fixture(scope="module")
def valgrind() -> None:
    if shutil.which("valgrind") is None:
        reason = "valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)"
        if VALGRIND in required_targets():
            pytest.fail(f"SQLA_BENCH_REQUIRE names valgrind, but {reason}")
        pytest.skip(reason)


def counted_run(folder: Path, **env: str) -> dict:
    out = folder / "run.json"
    result = run("sqla_bench", *RUN, "--output", str(out), **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "instructions counted for 2 of 2 cells" in result.stdout, result.stdout
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def counted(valgrind, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("counted")
    counted_run(folder)
    return folder / "run.json"


# Allocates a few hundred strings before anything else is imported, and changes nothing
# that runs: where every later string lies in memory moves (see ``read_window``).
PADDING = "_padding = [str(i) * 3 for i in range(300)]\n"


@pytest.fixture(scope="module")
def padded(valgrind, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("padded")
    (folder / "pad").mkdir()
    (folder / "pad" / "sitecustomize.py").write_text(PADDING)
    counted_run(folder, PYTHONPATH=str(folder / "pad"))
    return folder / "run.json"


@pytest.fixture(scope="module")
def planted(valgrind, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("planted")
    (folder / "plant").mkdir()
    (folder / "plant" / "sitecustomize.py").write_text(planted_source("Session.get", PLANTED_LOOP))
    counted_run(folder, PYTHONPATH=str(folder / "plant"))
    return folder / "run.json"


def by_case(path: Path) -> dict:
    _, cells = load_run(path)  # validated against the schema as it is read
    return {cell.case: cell for cell in cells}


@pytest.mark.slow  # each runs sqla-bench under valgrind: about 30 s
def test_each_cell_gets_its_instructions_per_operation(counted) -> None:
    cells = by_case(counted)
    assert set(cells) == {"crud.get", "baseline.driver_get"}
    driver, orm = cells["baseline.driver_get"].instructions, cells["crud.get"].instructions
    # The ORM's get does far more than the driver's own query: a session, an identity
    # map, a compiled statement, an object.
    assert driver and orm and 5 * driver < orm, (driver, orm)
    header = json.loads(counted.read_text())
    assert header["run"]["parameters"]["instructions"] == 3


@pytest.mark.slow  # each runs sqla-bench under valgrind: about 30 s
def test_a_loop_planted_in_session_get_fails_the_gate_in_crud_get_alone(counted, planted) -> None:
    comparison = compare(load_run(counted), load_run(planted), Gate())
    regressed = {cell.new.case: cell.changed for cell in comparison.cells if cell.regressed}
    assert list(regressed) == ["crud.get"], regressed
    (change,) = regressed["crud.get"]
    assert change.startswith("instructions "), change
    # No function call was added: the calls cannot see it.
    base, new = by_case(counted)["crud.get"], by_case(planted)["crud.get"]
    assert abs(new.calls - base.calls) <= 0.02 * base.calls, (base.calls, new.calls)
    result = run("sqla_bench", "compare", str(counted), str(planted))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "instructions" in result.stdout


@pytest.mark.slow  # each runs sqla-bench under valgrind: about 30 s
def test_a_change_of_memory_layout_alone_moves_no_count_beyond_half_a_percent(
    counted, padded
) -> None:
    # Without the type cache's misses cut, this padding moved the driver baseline by
    # 1.7 % and crud.get by 0.5 % here (crud.list by 3.3 % in a run of all of crud).
    base, new = by_case(counted), by_case(padded)
    moved = {case: new[case].instructions / base[case].instructions - 1 for case in base}
    assert all(abs(change) < 0.005 for change in moved.values()), moved
    comparison = compare(load_run(counted), load_run(padded), Gate())
    assert not [cell for cell in comparison.cells if cell.regressed]


def test_the_type_cache_misses_are_read_from_the_calls_the_lookup_makes(tmp_path) -> None:
    # A dump in callgrind's format, as callgrind 3.19 writes it: compressed names, a
    # call's inclusive cost on the line after ``calls=``, two position columns.
    dump = tmp_path / "callgrind.out.2"
    dump.write_text(
        "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\n"
        "desc: Trigger: --dump-before=os_getppid\n"
        "positions: instr line\nevents: Ir\nsummary: 1000\n\n"
        "ob=(1) libpython\nfl=(1) typeobject.c\n"
        "fn=(1) _PyType_Lookup\n0x10 5 40\n"
        "cfn=(2) find_name_in_mro\ncalls=3 0x20 9\n0x11 6 300\n"
        "cfn=(3) assign_version_tag\ncalls=1 0x30 9\n+1 +1 20\n"
        "cfn=(5) _PyType_LookupRef\ncalls=2 0x50 9\n+1 0 60\n"
        "fn=(4) slot_tp_getattr_hook\n0x40 1 100\n"
        "cfn=(1)\ncalls=5 0x10 5\n* * 500\n"
        "fn=(2)\n0x20 9 300\n"
        "totals: 1000\n"
    )
    window = read_window(dump)
    # Only what the lookup calls: not the lookup's own 40, not the call into it, not
    # the lookup's other half (Python 3.13's _PyType_Lookup calls _PyType_LookupRef).
    assert (window.trigger, window.total, window.cut) == ("os_getppid", 1000, 320)


@pytest.mark.slow  # a run under valgrind, signalled: 4 s each on a slow machine
@pytest.mark.parametrize(
    ("signum", "status", "words"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_while_counting_keeps_the_timed_run_and_leaves_nothing(
    valgrind, tmp_path, signum, status, words
) -> None:
    """Ctrl-C from a terminal reaches the whole process group, the counting child too;
    a CI runner's SIGTERM as well. Either way the timed run is kept whole, the child
    stops, and nothing is left in the temporary folder (valgrind's gdbserver left three
    pipes there before --vgdb=no)."""
    temporary, out = tmp_path / "tmp", tmp_path / "run.json"
    temporary.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES} | {"TMPDIR": str(temporary)}
    command = [sys.executable, "-m", "sqla_bench", *RUN[:-1], "1000", "--output", str(out)]
    with subprocess.Popen(
        command,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal gives a command
    ) as process:
        deadline = time.monotonic() + 120
        for line in process.stdout:
            if "counting instructions" in line or time.monotonic() > deadline:
                break
        # Signalled as soon as the counting child runs: on a quiet machine it counted
        # both cells within two seconds, and a signal after that found nothing to stop.
        children = _children_within(process.pid, seconds=30)
        assert children, "no counting child"
        os.killpg(process.pid, signum)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # nothing left behind, and say what was seen
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            process.kill()
            stdout, stderr = process.communicate()
            pytest.fail(f"the run or its child did not stop: {stdout[-1000:]}{stderr[-2000:]}")
    assert process.returncode == status, stdout + stderr
    assert f"{words} while counting instructions" in stderr and "Traceback" not in stderr
    _, gone = psutil.wait_procs(children, timeout=10)
    assert not gone, gone
    assert list(temporary.iterdir()) == []
    header, cells = load_run(out)
    assert header[0]["run"]["status"] == "complete" and len(cells) == 2
    assert all(cell.instructions is None for cell in cells)


@pytest.mark.parametrize(
    ("signum", "stop"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)]
)
def test_a_stop_while_the_child_starts_is_taken_once_it_can_be_killed(
    monkeypatch, signum, stop
) -> None:
    """The signal the test above sends as soon as the child exists may land while
    ``subprocess.Popen`` has forked and not yet returned: it is held back until the
    child's handle is there, and then the child is killed, not left running alone. Made
    certain here: the signal is sent inside Popen, after the start."""
    started: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def popen_then_signal(*args, **kwargs) -> subprocess.Popen:
        started.append(popen(*args, **kwargs))
        os.kill(os.getpid(), signum)
        return started[0]

    monkeypatch.setattr(subprocess, "Popen", popen_then_signal)
    # Both handlers set here: a pytest started in the background by a script inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt for it.
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, raise_stop),
    }
    try:
        with pytest.raises(stop):
            instructions._run_child([sys.executable, "-c", "import time; time.sleep(60)"], "")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert started[0].poll() is not None, "the child was left running"


def _children_within(pid: int, seconds: float) -> list[psutil.Process]:
    """The processes ``pid`` started, as soon as there is one (none after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        children = psutil.Process(pid).children(recursive=True)
        if children:
            return children
        time.sleep(0.05)
    return []


def test_without_valgrind_the_option_is_one_line_before_anything_runs(tmp_path) -> None:
    out = tmp_path / "never.json"
    result = run("sqla_bench", *RUN, "--output", str(out), PATH=str(tmp_path))
    assert_one_line_error(result, "--instructions", "valgrind", "apt-get install valgrind")
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "1001", "many"])
def test_a_count_out_of_bounds_is_one_line(tmp_path, value) -> None:
    result = run("sqla_bench", "run", "--instructions", value, "--dry-run")
    assert_one_line_error(result, "--instructions")
