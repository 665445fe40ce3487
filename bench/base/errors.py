"""What every part of the harness says when something goes wrong: the exit statuses, the
error that is one line for the user, and the two ways an error is made fit to print
(its first line, and no password in it). Light on purpose: the command line imports it
before it knows which command runs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

EXIT_MISMATCH = 1  # an outcome differs from the catalogue, or a regression
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3  # a target failed part-way; what finished is still reported
EXIT_SLOWER = 4  # compare --gate-timing: slower, with no counted change
EXIT_SOFTWARE = 70  # an internal error: a bug (sysexits' EX_SOFTWARE)


class ConfigError(Exception):
    """Bad configuration: shown to the user as one line, exit status 2."""


class OutputError(Exception):
    """A file the command writes cannot be written (a full disk, a read-only file
    system, a folder removed meanwhile): one line, exit status 2. Not an OSError, so
    that nothing on the way up reads it as the database gone."""


def fail(message: str, status: int) -> NoReturn:
    """End the command: ``message`` as one line on stderr, and exit ``status``."""
    print(message, file=sys.stderr)
    raise SystemExit(status)


def redact(text: str, *urls: URL) -> str:
    """``text`` with every password of ``urls`` replaced by ``***``."""
    for url in urls:
        if url.password:
            text = text.replace(str(url.password), "***")
    return text


def first_line(error: BaseException, limit: int = 300, named: bool = False) -> str:
    """An error's first line, at most ``limit`` characters: its class's name where it
    has no text, and before the text when ``named``."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if named:
        text = f"{type(error).__name__}: {text}"
    return (text or type(error).__name__)[:limit]


def shown(text: str) -> str:
    """``text`` as typed where it is printable, else as Python writes it (``'0\\x1e0'``): a
    value from the environment goes into a one-line message, and a control character in
    it (a line or record separator) would break the line."""
    return text if text.isprintable() else repr(text)
