"""Sphinx configuration for the asyncio-compat documentation.

Build with ``tox -e docs`` or ``sphinx-build -W -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os
import sys

# Document the source tree next to this folder, whether or not it is installed.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import asyncio_compat  # noqa: E402  (needs the path above)

# The compatibility classes say __module__ == "asyncore" so that their reprs
# read as in 3.11.  autodoc looks their source up under that name; install()
# makes the name ours, or on 3.11 and older it would read the stdlib's file.
asyncio_compat.install()

project = "asyncio-compat"
author = "asyncio-compat contributors"
copyright = "asyncio-compat contributors"
release = asyncio_compat.__version__
version = ".".join(release.split(".")[:2])

# docs/_ext: diagnose_samples (the ``diagnose-output`` directive of debugging.rst)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "diagnose_samples",
]

# _generated: files that pages include (benchmark tables), not pages of their own
exclude_patterns = ["_build", "_generated"]

# Debian ships tkinter apart (python3-tk): without it, autodoc of
# asyncio_compat.tk still documents the module against a stand-in.
try:
    import tkinter  # noqa: F401
except ImportError:
    autodoc_mock_imports = ["tkinter"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# furo: maintained, readable on a phone, light and dark; a wide table scrolls
# inside its own box instead of pushing the page sideways.
html_theme = "furo"
html_title = f"asyncio-compat {release}"
html_static_path = ["_static"]
html_css_files = ["benchmarks.css", "layout.css"]

# Our compatibility classes say __module__ = "asyncore", "asynchat" or
# "socketserver", so viewcode would otherwise show the standard library's
# module of that name as their "[source]".  Point it at ours.
_OUR_MODULES = {
    "asyncore": "asyncio_compat.asyncore",
    "asynchat": "asyncio_compat.asynchat",
    "socketserver": "asyncio_compat.socketserver",
}


def _our_source(app: object, modname: str) -> object:
    target = _OUR_MODULES.get(modname)
    if target is None:
        return None
    from sphinx.pycode import ModuleAnalyzer

    analyzer = ModuleAnalyzer.for_module(target)
    analyzer.find_tags()
    return analyzer.code, analyzer.tags


def setup(app: object) -> None:
    app.connect("viewcode-find-source", _our_source)  # type: ignore[attr-defined]
