"""The top-level ``asyncore`` module installed by asyncio-compat.

Python 3.12 removed ``asyncore`` from the standard library; this file keeps
``import asyncore`` and ``from asyncore import dispatcher`` working there.  It
is not a copy of the module: it puts :mod:`asyncio_compat.asyncore` in its own
place in ``sys.modules``, so both names give one and the same module object.
That matters for code that rebinds module globals (``asyncore.socket_map =
{}``): there is only one ``socket_map`` to rebind.

On Python 3.11 and older the standard library's ``asyncore`` comes first on
``sys.path`` and this file is never reached; call ``asyncio_compat.install()``
there to get ours.
"""

import sys

from asyncio_compat import asyncore as _implementation

# The import system hands the importer whatever sys.modules holds under the
# name once this body finishes, so the importer receives the real module.
sys.modules["asyncore"] = _implementation
