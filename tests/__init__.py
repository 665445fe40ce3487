"""The suite. Imported before its conftest, so that under mutmut the package names are
settled before anything imports sqla_bench.

mutmut copies bench/ and scenarios/ into its mutants/ folder and runs the tests there,
switching each mutated function on by its module's name as the folder makes it
(``bench.measuring.verify``). Installed, those modules are
``sqla_bench.measuring.verify``: the tests would import the unmutated installed copy,
and no mutant would ever be switched on. So, under mutmut only, ``sqla_bench[.x]`` is
the module ``bench[.x]`` and ``sqla_bench.scenarios[.x]`` the module ``scenarios[.x]``,
both from mutants/, one module object under two names. (pyproject.toml's mutmut settings
keep the plugin off: it would import sqla_bench first.)"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

# The installed package's names, longest first, and the checkout's folder each comes from
# (pyproject.toml's package-dir; the conftest's check of the installed copy reads it too).
FOLDERS = (("sqla_bench.scenarios", "scenarios"), ("sqla_bench", "bench"))


def _folder_module(name: str) -> str | None:
    """``bench.measuring.verify`` for ``sqla_bench.measuring.verify``; None for a name
    outside the package."""
    for package, folder in FOLDERS:
        if name == package or name.startswith(package + "."):
            return folder + name[len(package) :]
    return None


class _FolderModule(importlib.abc.Loader):
    """Gives the module imported under its folder's name (executed once, there)."""

    def __init__(self, folder_name: str) -> None:
        self.folder_name = folder_name

    def create_module(self, spec: Any) -> ModuleType:
        return importlib.import_module(self.folder_name)

    def exec_module(self, module: ModuleType) -> None:
        pass  # importing it under the folder's name ran it


class _FolderNames(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        folder_name = _folder_module(name)
        if folder_name is None:
            return None
        return importlib.util.spec_from_loader(name, _FolderModule(folder_name))


if "MUTANT_UNDER_TEST" in os.environ:
    sys.meta_path.insert(0, _FolderNames())
