"""An application's own modules (``run --models``, ``run --scenarios``), imported from
the current directory as ``python -m`` would find them.

Its own module so that the plan (which checks ``--scenarios``) and the application's
workload (which reads ``--models``) both use it without importing each other."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from sqla_bench.base.errors import ConfigError, first_line, shown


def import_application(option: str, name: str) -> ModuleType:
    """An application's module, found from the current directory as ``python -m`` would
    find it; one ConfigError, in the words of ``option``, when it does not import."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except Exception as error:  # an application's import may raise anything
        raise ConfigError(
            f"{option} {shown(name)}: cannot import it: {first_line(error, named=True)}"
        ) from None
