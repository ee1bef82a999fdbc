"""Sphinx configuration of the keras_mtl documentation (see docs/README.md).

Build: ``python -m sphinx -W -b html docs docs/_build/html`` with keras_mtl
installed (``pip install ".[test]"`` brings Sphinx, Furo and MyST-Parser).
The build needs no network: no intersphinx, no remote fonts or scripts.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import keras_mtl  # noqa: E402  (the installed package the API pages document)

project = "keras_mtl"
author = "The keras_mtl developers"
copyright = "The keras_mtl developers; Apache License 2.0"
release = version = keras_mtl.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",      # Google-style docstrings: Args, Returns, Example, References
    "sphinx.ext.viewcode",
    "myst_parser",              # Markdown pages (the topic pages are GitHub-readable Markdown)
    "kmtl_docs",                # guides as Python files; the CLI's help
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}  # kmtl_docs adds .py guides
root_doc = "index"
exclude_patterns = ["_build", "_ext", "conf.py", "README.md", "**/__pycache__"]

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"
# Keras's own docstrings (inherited by get_config, from_config, ...) are not ours to render.
autodoc_inherit_docstrings = False
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# kmtl.kinds.Kind lists the class attributes a subclass sets under this heading.
napoleon_custom_sections = [("Class attributes a subclass sets", "Attributes")]
# Docstrings write ``code`` in double backquotes; single backquotes render as code too.
default_role = "code"

html_theme = "furo"
html_title = f"keras_mtl {release}"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {
    "source_repository": "",
    "navigation_with_keys": True,
}
pygments_style = "friendly"
