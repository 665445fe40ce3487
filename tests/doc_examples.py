"""The console examples of the docs, as ``tests/test_docs.py`` runs them.

A page shows a command and what it prints in a ``console`` block::

    <!-- docs-test: needs postgresql -->
    ```console
    $ sqla-bench run --scenario crud.get
    ...
    ```

Each ``$`` line is a command, run by bash in a folder of the page's own (every block of
a page in turn, so a later step sees what an earlier one wrote); the lines after it are
what it printed. A page may show only some of the lines: the shown lines must appear in
the output in that order. The tolerances, declared here once: in a table row, the
columns that time or weigh a call (``VARYING_COLUMNS``) may hold any value, every other
cell must be equal; in any other line, a number with a unit of time, size or share, and a
result file's time stamp, may differ. The comment before a block may say ``needs
TARGET`` (run only where that server is configured, with its URL) or ``output varies``
(it must succeed; what it prints depends on the machine, as a winner does).

The ``sh`` blocks of a page show commands to adapt rather than output: each ``sqla-bench
run`` among them (``run_commands``) is run with ``--dry-run``, which checks every option
and builds the plan, and must succeed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")
VARYING_COLUMNS = frozenset({"mem", "calls", "median", "p95", "ops/s", "x fastest", "instr"})
MEASURED = re.compile(
    r"\d[\d.,]*\s?(?:ns|µs|ms|s|KB|MB|GB|B|k|%)(?![\w])|\b\d{8}-\d{6}\b|\bx\d+\.\d+"
)


@dataclass
class Example:
    """One ``$`` command of a page and the output shown under it."""

    page: str
    line: int
    command: str
    shown: list[str]
    needs: str | None = None
    output_varies: bool = False


@dataclass
class Page:
    path: Path
    examples: list[Example] = field(default_factory=list)


def read_page(path: Path, root: Path) -> Page:
    page = Page(path)
    lines = path.read_text().splitlines()
    directive = ""
    inside = False
    for number, line in enumerate(lines, start=1):
        if not inside:
            found = DIRECTIVE.fullmatch(line.strip())
            if found:
                directive = found.group(1)
                continue
            if line.strip() == "```console":
                inside, current = True, None
                continue
            if line.strip():
                directive = ""
            continue
        if line.strip() == "```":
            inside, directive = False, ""
            continue
        if line.startswith("$ "):
            current = Example(str(path.relative_to(root)), number, line[2:], [])
            current.needs = _needs(directive)
            current.output_varies = "output varies" in directive
            page.examples.append(current)
        elif current is not None and line.strip():
            current.shown.append(line)
    return page


def _needs(directive: str) -> str | None:
    found = re.search(r"needs (\w+)", directive)
    return found.group(1) if found else None


def mismatch(shown: list[str], printed: str) -> str | None:
    """None when every shown line appears in ``printed``, in order, within the
    tolerances; else the first shown line that does not."""
    lines = printed.splitlines()
    position, header = 0, None
    for wanted in shown:
        while position < len(lines):
            line = lines[position]
            position += 1
            if "┃" in line:
                header = _cells(line, "┃")
            if _same(wanted, line, header):
                break
        else:
            return wanted
    return None


def _same(wanted: str, line: str, header: list[str] | None) -> bool:
    if "│" in wanted and header is not None:
        want, got = _cells(wanted, "│"), _cells(line, "│")
        return len(want) == len(got) == len(header) and all(
            w == g or name in VARYING_COLUMNS for name, w, g in zip(header, want, got, strict=True)
        )
    return _masked(wanted) == _masked(line)


def _cells(line: str, bar: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip(bar).split(bar)]


def _masked(line: str) -> str:
    return " ".join(MEASURED.sub("#", line).split())


SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
RUN_COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*sqla-bench run\b")


def run_commands(path: Path) -> list[str]:
    """The ``sqla-bench run`` commands of a page's ``sh`` blocks, continued lines joined
    and comments left out."""
    commands = []
    for block in SH_BLOCK.findall(path.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(line.split("  #", 1)[0].split())
            if RUN_COMMAND.match(line):
                commands.append(line)
    return commands
