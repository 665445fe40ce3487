"""Sphinx configuration of sqla-bench's documentation: Markdown pages (MyST), the furo
theme, and a reference read from the code (sphinx-argparse for the commands,
``_ext/sqla_reference.py`` for the result file, the catalogue and the pytest plugin).
Built in CI with warnings as errors: ``sphinx-build -W --keep-going docs OUT``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "sqla-bench"
author = "the sqla-bench developers"
copyright = "2026, the sqla-bench developers"
extensions = ["myst_parser", "sphinxarg.ext", "sqla_reference"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "sqla-bench"
# Headings get anchors a page can link to (page.md#a-heading); a link to a missing one
# is a warning, so an error in CI.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
# No page is left out of the table of contents, and no reference is left unresolved.
nitpicky = True
# The build checks links between pages; it does not fetch the web (CI has no network).
linkcheck_ignore = [r"https?://"]
suppress_warnings = ["myst.domains"]  # sphinx-argparse's domain answers no "any" lookup
smartquotes = False  # "--option" stays two hyphens, as typed
