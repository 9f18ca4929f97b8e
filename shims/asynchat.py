"""The top-level ``asynchat`` module installed by asyncio-compat.

Python 3.12 removed ``asynchat`` from the standard library; this file keeps
``import asynchat`` and ``from asynchat import async_chat`` working there.  It
puts :mod:`asyncio_compat.asynchat` in its own place in ``sys.modules``, so
both names give one and the same module object (and the ``asyncore`` it
builds on is :mod:`asyncio_compat.asyncore`, not a second copy).

On Python 3.11 and older the standard library's ``asynchat`` comes first on
``sys.path`` and this file is never reached; call ``asyncio_compat.install()``
there to get ours.
"""

import sys

from asyncio_compat import asynchat as _implementation

# The import system hands the importer whatever sys.modules holds under the
# name once this body finishes, so the importer receives the real module.
sys.modules["asynchat"] = _implementation
