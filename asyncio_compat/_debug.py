"""Debug mode: the switch, and the unclosed-dispatcher checks.

Off by default; on with ``ASYNCIO_COMPAT_DEBUG=1`` in the environment or
:func:`set_debug`.  This module is all that is loaded while it is off, and
it costs nothing on the loop's hot path: a ``MapLoop`` reads :data:`enabled`
once per pass, and only while it is true takes its debug pass, whose
:class:`~asyncio_compat._debug_monitor.LoopMonitor` (imported on first use,
with ``logging``) times handlers and watches for spinning channels.
"""

from __future__ import annotations

import atexit
import os
import warnings
from typing import Callable, Dict, Iterable, Mapping, Optional

from ._validation import seconds

#: the environment variable that turns debug mode on (any value but "" and "0")
ENV_VAR = "ASYNCIO_COMPAT_DEBUG"

#: True while debug mode is on; read by the loop once per pass
enabled: bool = os.environ.get(ENV_VAR, "") not in ("", "0")

#: seconds a handler may take before it is logged as slow
slow_handler_seconds: float = 0.1


def set_debug(on: bool, *, slow_handler: float = 0.1) -> None:
    """Turn debug mode on or off for the whole process.

    ``slow_handler`` is the number of seconds above which a handler call is
    logged as slow.  Loops pick the change up at their next pass.  Raises
    TypeError or ValueError for a ``slow_handler`` that is not a finite
    number of seconds >= 0.
    """
    global enabled, slow_handler_seconds
    slow_handler_seconds = seconds(slow_handler, "slow_handler")
    enabled = bool(on)


def get_debug() -> bool:
    """True while debug mode is on."""
    return enabled


def describe(obj: object) -> str:
    """``repr(obj)``, or a placeholder if that raises (a half-built channel)."""
    try:
        return repr(obj)
    except Exception:
        return f"<{type(obj).__qualname__} at {id(obj):#x} (repr failed)>"


# -- unclosed dispatchers ----------------------------------------------------------

_reported_unclosed: Dict[int, None] = {}  # ids already reported at exit


def socket_is_open(sock: object) -> bool:
    """True if ``sock`` (a socket or file_wrapper) still holds an open fd."""
    if sock is None:
        return False
    try:
        return int(sock.fileno()) >= 0  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return False


def warn_unclosed(obj: object, where: str = "") -> None:
    """Issue asyncio's kind of ResourceWarning for a dispatcher whose socket is open."""
    warnings.warn(f"unclosed dispatcher {describe(obj)}{where}", ResourceWarning, stacklevel=2, source=obj)


def _no_maps() -> Iterable[Mapping[int, object]]:
    return ()


# the socket maps to look in (see report_unclosed_at_exit)
_socket_maps: Callable[[], Iterable[Mapping[int, object]]] = _no_maps


def _handed_over(obj: object, sock: object, home: Optional[Mapping[int, object]]) -> bool:
    """True if another channel in ``home`` or a served socket map now serves ``sock``."""
    try:
        fd = int(sock.fileno())  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return False
    maps = list(_socket_maps())
    if home is not None:
        maps.append(home)
    for socket_map in maps:
        holder = socket_map.get(fd)
        if holder is not None and holder is not obj and getattr(holder, "socket", None) is sock:
            return True
    return False


def collected(obj: object, home: Optional[Mapping[int, object]] = None) -> None:
    """Called as a dispatcher is garbage-collected: warn if its socket is open.

    No warning when another channel now serves the same socket object (it
    was handed over) in ``home`` (the dispatcher's map) or in a map that has
    a loop.  The socket is left alone (it may have been handed to other
    code); it gives its own ResourceWarning if nothing else holds it.
    """
    sock = getattr(obj, "socket", None)
    if id(obj) not in _reported_unclosed and socket_is_open(sock) and not _handed_over(obj, sock, home):
        warn_unclosed(obj)


def report_unclosed_at_exit(socket_maps: Callable[[], Iterable[Mapping[int, object]]]) -> None:
    """Register a check, run at interpreter exit while debug mode is on, for
    channels with open sockets still in the maps ``socket_maps()`` names.

    :func:`collected` looks in the same maps for a socket handed over."""
    global _socket_maps
    _socket_maps = socket_maps

    def check() -> None:
        if not enabled:
            return
        for socket_map in socket_maps():
            for obj in list(socket_map.values()):
                if id(obj) not in _reported_unclosed and socket_is_open(getattr(obj, "socket", None)):
                    _reported_unclosed[id(obj)] = None
                    warn_unclosed(obj, " still in a socket map at exit")

    atexit.register(check)
