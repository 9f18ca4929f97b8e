"""Which platform's rules the backends follow.

``WINDOWS`` is read at call time, never copied at import: setting it is the
one public way for a test to impose the Windows rules on another platform
(see tests/windows_rules.py).  What it changes is described where it is read:
closed-socket detection in ``_base.fd_is_open`` and the select() quirks in
``_select``.  Which backends exist is not decided here but by what the
``select`` module offers (see ``pollers.available``).
"""

from __future__ import annotations

import sys

#: True on Windows: select() is the only mechanism, for sockets only.
WINDOWS: bool = sys.platform == "win32"
