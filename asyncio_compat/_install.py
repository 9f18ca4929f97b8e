"""Make ``import asyncore``, ``import asynchat`` and ``import smtpd`` give this package's modules.

Python 3.12 and later need nothing: the distribution installs top-level
``asyncore``, ``asynchat`` and ``smtpd`` modules that resolve to ours.  On
3.11 and older the standard library's copies come first on ``sys.path``;
:func:`install` overrides them through ``sys.modules``, which the import
system consults before it searches any path, and, for ``smtpd``, through a
finder at the head of ``sys.meta_path``.
"""

from __future__ import annotations

import os
import sys
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Optional, Sequence

from . import asynchat, asyncore


class SmtpdFinder(MetaPathFinder, Loader):
    """Resolves ``import smtpd`` to :mod:`asyncio_compat.smtpd` when it happens.

    smtpd is not imported by :func:`install` itself: it brings smtplib and
    the email package, which a program that only wants asyncore should not
    load.  The spec's origin is our file, so ``importlib.util.find_spec``
    (and ``python -m asyncio_compat``) name it without importing it.
    """

    def find_spec(
        self, name: str, path: Optional[Sequence[str]] = None, target: Optional[ModuleType] = None
    ) -> Optional[ModuleSpec]:
        """A spec for ``smtpd``; None for every other name."""
        if name != "smtpd":
            return None
        origin = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smtpd.py")
        return ModuleSpec(name, self, origin=origin)

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        """The package module itself, so that both names give one module object."""
        from . import smtpd

        return smtpd

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported under its own name."""


_SMTPD_FINDER = SmtpdFinder()


def install() -> None:
    """Make later ``import asyncore`` / ``import asynchat`` / ``import smtpd`` use ours.

    Call it once, early (before the legacy code imports ``asyncore``), on any
    Python version; on 3.12+ it only confirms what the installed top-level
    modules already do.  Calling it again does nothing more.

    If the standard library's ``asyncore``, ``asynchat`` or ``smtpd`` was
    already imported, it is replaced in ``sys.modules``: every import after
    the call gets ours.  Modules that imported the old one before the call
    keep their reference to it (Python cannot rebind names it handed out),
    and channels they created stay on the old module's ``socket_map``; so
    call ``install()`` before anything imports ``asyncore``.  Our ``smtpd``
    is imported when something first imports ``smtpd`` (at once if an older
    one was already imported).

    The standard library copies are never imported by this function, so it
    emits no DeprecationWarning.  Raises ImportError only if this package
    itself is broken.
    """
    sys.modules.update({"asyncore": asyncore, "asynchat": asynchat})
    if _SMTPD_FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _SMTPD_FINDER)
    if "smtpd" in sys.modules:
        from . import smtpd

        sys.modules["smtpd"] = smtpd
