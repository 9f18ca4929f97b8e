"""Timers served by the loop of a socket map: ``call_later``, ``call_at``, ``call_every``.

A timer belongs to the loop that serves its map (``asyncore.socket_map`` when
no map is given).  ``asyncore.loop()`` wakes up for the earliest one instead
of sleeping its whole ``timeout``, and keeps running while timers are
pending even when the map has no channel.  The same timers run when the map
is served by asyncio (:mod:`asyncio_compat.asyncio_bridge`) or by Tk
(:mod:`asyncio_compat.tk`).

Callbacks run in the loop's thread, after the pass's I/O events, earliest
deadline first and in scheduling order for equal deadlines.  A callback that
raises is reported on stderr and stops neither the loop nor the other timers;
``ExitNow``, ``KeyboardInterrupt`` and ``SystemExit`` leave ``loop()`` as they
do from a handler.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from . import _loop, asyncore
from ._timers import TimerHandle, TimerQueue
from ._validation import finite_number, seconds

__all__ = ["TimerHandle", "call_at", "call_every", "call_later"]


def _check_callable(callback: Any) -> None:
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")


def _queue(socket_map: Any) -> TimerQueue:
    return _loop.loop_for(asyncore.map_or_default(socket_map)).timers


def call_at(when: float, callback: Callable[..., Any], *args: Any, map: Any = None) -> TimerHandle:
    """Call ``callback(*args)`` once ``time.monotonic()`` reaches ``when``.

    A ``when`` already past runs on the next pass.  Returns a
    :class:`TimerHandle`; its ``cancel()`` stops the call.

    Raises TypeError when ``callback`` is not callable or ``when`` is not a
    number, ValueError when ``when`` is NaN or infinite.
    """
    deadline = finite_number(when, "when")
    _check_callable(callback)
    return _queue(map).schedule(deadline, callback, args)


def call_later(delay: float, callback: Callable[..., Any], *args: Any, map: Any = None) -> TimerHandle:
    """Call ``callback(*args)`` in ``delay`` seconds (0 means on the next pass).

    Returns a :class:`TimerHandle`.  Raises TypeError when ``callback`` is not
    callable or ``delay`` is not a number, ValueError when ``delay`` is
    negative, NaN or infinite.
    """
    wait = seconds(delay, "delay")
    _check_callable(callback)
    return _queue(map).schedule(time.monotonic() + wait, callback, args)


def call_every(
    interval: float,
    callback: Callable[..., Any],
    *args: Any,
    map: Any = None,
    first: Optional[float] = None,
) -> TimerHandle:
    """Call ``callback(*args)`` every ``interval`` seconds until cancelled.

    The first call comes after ``first`` seconds (default: ``interval``).
    Runs are counted from their planned times, so the period does not drift;
    a run that is late (a slow pass) is not repeated to catch up.  The
    handle's ``when`` is the next planned run; ``cancel()`` (also from inside
    the callback) stops it.  A periodic timer keeps ``loop()`` running until
    it is cancelled.

    Raises TypeError when ``callback`` is not callable or a time is not a
    number, ValueError when ``interval`` is not positive or ``first`` is
    negative, or either is NaN or infinite.
    """
    period = seconds(interval, "interval", positive=True)
    delay = period if first is None else seconds(first, "first")
    _check_callable(callback)
    return _queue(map).schedule(time.monotonic() + delay, callback, args, period)
