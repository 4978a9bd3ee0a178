"""Sphinx configuration of the lrwa_fast documentation (MyST Markdown pages; the reference pages are generated
from the code by ``_ext/lrwa_reference.py`` and autodoc). Build: ``sphinx-build -W -b html docs docs/_build/html``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import lrwa_fast

project = "lrwa_fast"
author = "the lrwa_fast developers"
copyright = "2026, the lrwa_fast developers"
version = release = lrwa_fast.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "lrwa_reference"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "results/*.md"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
html_theme = "furo"
html_title = f"lrwa_fast {release}"
html_static_path = ["_static"]
html_css_files = ["tables.css"]
smartquotes = False  # "--sweep" stays two hyphens, as users type it
