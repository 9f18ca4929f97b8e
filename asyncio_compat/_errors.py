"""Exceptions shared by the loop, the timers and the compatibility modules."""

from __future__ import annotations

from typing import Tuple, Type


class ExitNow(Exception):
    """Raise from a handler or timer to leave ``loop()``; the loop never catches it."""


# Exceptions that a handler may raise through the loop to its caller.
_reraised_exceptions: Tuple[Type[BaseException], ...] = (ExitNow, KeyboardInterrupt, SystemExit)
