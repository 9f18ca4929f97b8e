"""Exceptions shared by the loop, the timers and the compatibility modules."""

from __future__ import annotations


class ExitNow(Exception):
    """Raise from a handler or timer to leave ``loop()``; the loop never catches it."""

