"""Sphinx configuration of skembed's documentation; build it with `make docs`.

Everything is local: the Markdown guides (myst-parser), the API reference from the numpydoc
docstrings (autosummary, autodoc, numpydoc), the examples gallery (sphinx-gallery, running
only the examples that draw a plot, on the installed default model) and the theme. No
intersphinx, nothing fetched.
"""

from __future__ import annotations

import sys
from pathlib import Path

import skembed

# the gallery's hooks are named by dotted path, so that Sphinx can pickle its configuration
sys.path.insert(0, str(Path(__file__).parent / "sphinxext"))

project = "skembed"
author = "the skembed developers"
copyright = "the skembed developers"
version = release = skembed.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path = ["_templates"]

# API reference: one page per public name, generated into generated/ by autosummary
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False  # the class template lists the methods itself

# Markdown guides: headings up to ### get anchors, so that links to page.md#heading work
myst_heading_anchors = 3

# Run only the examples that draw a plot; the others are shown, not run. paraphrase_mrpc
# reads MRPC, which skembed does not ship: from shared/data beside the repository, as in CI
# and the tests. Without it, the example is shown and not run, as its tests are skipped.
MRPC = Path(__file__).resolve().parents[2] / "shared/data/mrpc/msr_paraphrase_train.txt"
EXECUTED = [
    "cluster_banking77",
    "tables_skrub",
    *(["paraphrase_mrpc"] if MRPC.is_file() else []),
]

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": rf"/({'|'.join(EXECUTED)})\.py$",
    "reset_argv": "gallery_hooks.example_arguments",
    # the examples save their figure to a PNG and close it: pick the file up
    "image_scrapers": ("matplotlib", "gallery_hooks.png_files"),
    "abort_on_example_error": True,
    "download_all_examples": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skembed {release}"
