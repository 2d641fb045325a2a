"""Sphinx configuration: the user's guide and the API reference built from the docstrings."""

from importlib.metadata import version as _version

project = "dmotif"
author = "dmotif developers"
release = _version("dmotif")
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# The docstrings name arrays and dask/xarray types in prose; cross-links to them are not built.
numpydoc_xref_param_type = False
html_theme = "alabaster"
