"""The top-level ``smtpd`` module installed by asyncio-compat.

Python 3.12 removed ``smtpd`` from the standard library; this file keeps
``import smtpd`` and ``python -m smtpd`` working there.  Imported, it puts
:mod:`asyncio_compat.smtpd` in its own place in ``sys.modules``, so both
names give one and the same module object (``smtpd.DEBUGSTREAM = ...``
changes the stream the server uses).  Run with ``-m``, it runs
``asyncio_compat.smtpd`` as the main module, as 3.11 ran its own file.

On Python 3.11 and older the standard library's ``smtpd`` comes first on
``sys.path`` and this file is never reached; call ``asyncio_compat.install()``
there to get ours.
"""

import sys

if __name__ == "__main__":
    import runpy

    # the implementation is not imported first: runpy would warn that it
    # already sits in sys.modules
    runpy.run_module("asyncio_compat.smtpd", run_name="__main__", alter_sys=True)
else:
    from asyncio_compat import smtpd as _implementation

    # The import system hands the importer whatever sys.modules holds under
    # the name once this body finishes, so the importer receives the real module.
    sys.modules["smtpd"] = _implementation
