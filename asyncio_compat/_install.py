"""Make ``import asyncore`` and ``import asynchat`` give this package's modules.

Python 3.12 and later need nothing: the distribution installs top-level
``asyncore`` and ``asynchat`` modules that resolve to ours.  On 3.11 and older
the standard library's copies come first on ``sys.path``; :func:`install`
overrides them through ``sys.modules``, which the import system consults
before it searches any path.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Dict


def _our_modules() -> Dict[str, ModuleType]:
    # imported here, not at package import: most users of the package never
    # call install() and should not pay for asynchat
    from . import asynchat, asyncore

    return {"asyncore": asyncore, "asynchat": asynchat}


def install() -> None:
    """Make later ``import asyncore`` / ``import asynchat`` statements use ours.

    Call it once, early (before the legacy code imports ``asyncore``), on any
    Python version; on 3.12+ it only confirms what the installed top-level
    modules already do.  Calling it again does nothing more.

    If the standard library's ``asyncore`` or ``asynchat`` was already
    imported, it is replaced in ``sys.modules``: every import after the call
    gets ours.  Modules that imported the old one before the call keep their
    reference to it (Python cannot rebind names it handed out), and channels
    they created stay on the old module's ``socket_map``; so call
    ``install()`` before anything imports ``asyncore``.

    The standard library copy is never imported by this function, so it emits
    no DeprecationWarning.  Raises ImportError only if this package itself is
    broken.
    """
    sys.modules.update(_our_modules())

