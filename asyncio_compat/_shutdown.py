"""The graceful stop of a socket map: :func:`shutdown` (exported as ``asyncio_compat.shutdown``).

What each channel of the map gets, at the call:

* a listening dispatcher (``accepting``) is closed at once, so new
  connections are refused; a socketserver server attached to the map
  (``socketserver.attach(server)``) is detached and its ``server_close()`` runs;
* an ``async_chat`` gets ``close_when_done()``: what it queued is sent, then
  it closes;
* a ``dispatcher_with_send`` closes once its ``out_buffer`` has drained
  (checked every :data:`CHECK_INTERVAL` seconds), at once if it is empty;
* any other channel is left alone until the deadline.

``grace`` seconds after the call, every channel still in the map is closed.
The timers doing this are background timers: they never keep ``loop()``
running, so ``loop()`` returns as soon as the map is empty.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

from . import _loop, _validation, asyncore
from ._delivery import call_reported
from ._timers import TimerHandle
from .asynchat import async_chat
from .asyncore import dispatcher_with_send

__all__ = ["CHECK_INTERVAL", "shutdown"]

#: Seconds between two checks of the ``dispatcher_with_send`` buffers.
CHECK_INTERVAL = 0.05


def _close(channel: Any) -> None:
    """Close ``channel``; an error is printed (ExitNow & co propagate), the stop goes on."""
    call_reported(channel.close, (), "shutdown")


class _Stop:
    """One map's stop in progress: its deadline and the channels it waits for."""

    def __init__(self, socket_map: Any, deadline: float) -> None:
        self.map = socket_map
        self.deadline = deadline
        # (fd, channel) closed once its out_buffer is empty
        self.draining: List[Tuple[int, dispatcher_with_send]] = []
        queue = _loop.loop_for(socket_map).timers
        self.deadline_timer = queue.schedule(deadline, self.finish, background=True)
        self.check_timer: Optional[TimerHandle] = None

    @property
    def active(self) -> bool:
        """False once finished, or once the map's loop was released (the timers went with it)."""
        return not self.deadline_timer.cancelled

    def sort(self, channels: List[Tuple[int, Any]]) -> None:
        """Act on each ``(fd, channel)`` of the map as the module docstring says."""
        # not at the top: `import asyncio_compat` does not load socketserver
        from .socketserver import ServerChannel

        for fd, channel in channels:
            if isinstance(channel, ServerChannel):
                server = channel.server
                channel.detach()
                call_reported(server.server_close, (), "shutdown")
            elif getattr(channel, "accepting", False):
                _close(channel)
            elif isinstance(channel, async_chat):
                channel.close_when_done()
            elif isinstance(channel, dispatcher_with_send):
                self.draining.append((fd, channel))
        self.check()

    def check(self) -> None:
        """Close the ``dispatcher_with_send`` channels whose buffer has drained."""
        waiting = []
        for fd, channel in self.draining:
            if self.map.get(fd) is not channel:
                continue  # closed already
            if channel.out_buffer:
                waiting.append((fd, channel))
            else:
                _close(channel)
        self.draining = waiting
        if not waiting and self.check_timer is not None:
            self.check_timer.cancel()
            self.check_timer = None
        elif waiting and self.check_timer is None:
            queue = _loop.loop_for(self.map).timers
            self.check_timer = queue.schedule(
                time.monotonic() + CHECK_INTERVAL, self.check, interval=CHECK_INTERVAL, background=True
            )

    def move_deadline(self, deadline: float) -> None:
        """Bring the deadline forward to ``deadline`` (never later)."""
        if deadline < self.deadline:
            self.deadline = deadline
            self.deadline_timer.cancel()
            queue = _loop.loop_for(self.map).timers
            self.deadline_timer = queue.schedule(deadline, self.finish, background=True)

    def finish(self) -> None:
        """The deadline: close every channel still in the map."""
        if self.check_timer is not None:
            self.check_timer.cancel()
            self.check_timer = None
        self.deadline_timer.cancel()
        self.draining = []
        for channel in list(self.map.values()):
            _close(channel)
        _ACTIVE.pop(id(self.map), None)


# id(map) -> its stop in progress (the _Stop holds the map: the id is not reused)
_ACTIVE: Dict[int, _Stop] = {}


def shutdown(map: Any = None, *, grace: float = 5.0) -> None:
    """Stop serving ``map`` (default ``asyncore.socket_map``) gracefully.

    Listening dispatchers close at once, attached socketserver servers are
    detached and closed, ``async_chat`` channels get ``close_when_done()``,
    ``dispatcher_with_send`` channels close once their buffer has drained,
    and whatever is still in the map ``grace`` seconds later is closed.  It
    returns at once: the loop serving the map does the rest, and
    ``loop()`` returns as soon as the map is empty (the shutdown's own
    timers do not keep it running; the program's own timers still do).
    Safe to call from a callback of :func:`add_signal_handler` or from a
    handler.  A second call while a stop is in progress only brings the
    deadline forward (``grace=0`` closes everything at once).

    Raises TypeError for a ``grace`` that is not a number (a bool included),
    ValueError for a negative, NaN or infinite one.
    """
    seconds = _validation.seconds(grace, "grace")
    map = asyncore.map_or_default(map)
    deadline = time.monotonic() + seconds
    current = _ACTIVE.get(id(map))
    if current is not None and current.active:
        current.move_deadline(deadline)
        if seconds == 0:
            current.finish()
        return
    if seconds == 0:
        for channel in list(map.values()):
            _close(channel)
        return
    stop = _Stop(map, deadline)
    _ACTIVE[id(map)] = stop
    stop.sort(list(map.items()))
    if not map:
        stop.finish()
