"""Sphinx configuration of the ``batch_processor`` documentation.

Build it with ``tox -e docs`` (warnings are errors, references are checked).
"""
from __future__ import absolute_import, division, print_function

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import batch_processor  # noqa: E402  (after the path is set)

project = "batch_processor"
author = "batch_processor authors"
copyright = "batch_processor authors"
release = batch_processor.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

master_doc = "index"
root_doc = "index"
source_suffix = ".rst"
exclude_patterns = ["_build"]
pygments_style = "sphinx"
html_theme = "alabaster"

# Every reference must resolve: a dangling one is an error (-n -W).
nitpicky = True
# Names from outside the package that docstrings mention; the build has no network,
# so the standard library's inventory is not fetched.
nitpick_ignore = [
]

autodoc_member_order = "bysource"
autodoc_typehints = "none"
autoclass_content = "both"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = False


def _escape_star_args(app, what, name, obj, options, lines):
    """Escape ``*args, **kwargs:`` entries, which napoleon leaves as bare RST stars."""
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith("*args, **kwargs:"):
            lines[index] = (line[:len(line) - len(stripped)] + "\\*args, \\*\\*kwargs:"
                            + stripped[len("*args, **kwargs:"):])


def setup(app):
    app.connect("autodoc-process-docstring", _escape_star_args, priority=400)
