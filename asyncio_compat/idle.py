"""Idle timeouts: close a connection that has been silent for too long.

Put :class:`IdleTimeoutMixin` first in the bases of a dispatcher (or
``async_chat``) and set :attr:`~IdleTimeoutMixin.idle_timeout`::

    class Handler(IdleTimeoutMixin, asynchat.async_chat):
        idle_timeout = 300.0  # seconds

A connection is idle while the loop delivers it no read event (the peer sent
nothing, not even its end of stream) and no write event (the socket took none
of our output).  After ``idle_timeout`` seconds of that,
:meth:`~IdleTimeoutMixin.handle_idle_timeout` is called; by default it
treats the silence as the end of the connection (``handle_close()``).

The cost per event is one clock read.  Each channel has one timer on its
map's loop: when it fires it looks at the time of the last event and, if
there was one since, sleeps again for the time that is left, so busy
connections never touch the timer heap per read or write.  The check is
therefore lazy by at most the time it takes to run the pass.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

from ._delivery import call_guarded
from ._timers import TimerHandle
from ._validation import seconds
from .timers import call_later

__all__ = ["IdleTimeoutMixin"]


def _check_timeout(allowed: Optional[float]) -> Optional[float]:
    if allowed is None:
        return None
    return seconds(allowed, "idle_timeout", positive=True, accepted="a number of seconds or None")


class IdleTimeoutMixin:
    """Closes a connection silent for longer than :attr:`idle_timeout` seconds.

    Put it before the dispatcher class in the bases.  The clock starts when
    the channel gets its socket (``__init__`` with a socket, or
    ``create_socket``/``set_socket``) and restarts on every read or write
    event.  ``close()`` stops it.
    """

    #: Seconds of silence allowed; None (the default) turns the check off.
    idle_timeout: Optional[float] = None

    _idle_timer: Optional[TimerHandle] = None  # the pending check, if any
    _idle_since = 0.0  # time.monotonic() of the last read or write event
    _idle_map: Any = None  # the map whose loop runs the check

    if TYPE_CHECKING:  # provided by the dispatcher class that follows in the bases
        _fileno: Optional[int]
        _map: Any

        def handle_close(self) -> None: ...
        def handle_error(self) -> None: ...

    def set_socket(self, sock: Any, map: Any = None) -> None:
        super().set_socket(sock, map)  # type: ignore[misc]
        self._idle_map = self._map if map is None else map
        self._idle_since = time.monotonic()
        self._idle_arm(self.idle_timeout)

    def set_idle_timeout(self, seconds: Optional[float]) -> None:
        """Change the allowed silence (None turns the check off); the clock restarts.

        Raises TypeError for a value that is not a number, ValueError for a
        value that is not positive and finite.
        """
        self.idle_timeout = _check_timeout(seconds)
        self._idle_since = time.monotonic()
        self._idle_arm(self.idle_timeout)

    def handle_idle_timeout(self) -> None:
        """Called after :attr:`idle_timeout` seconds without a read or write event.

        The default calls ``handle_close()``.  Override it to send a goodbye
        first, or to keep the connection (then call :meth:`set_idle_timeout`
        to start a new period).  An exception raised here goes to
        ``handle_error``.
        """
        self.handle_close()

    # -- the dispatcher's methods --------------------------------------------------

    def handle_read_event(self) -> None:
        self._idle_since = time.monotonic()
        super().handle_read_event()  # type: ignore[misc]

    def handle_write_event(self) -> None:
        self._idle_since = time.monotonic()
        super().handle_write_event()  # type: ignore[misc]

    def close(self) -> None:
        self._idle_cancel()
        super().close()  # type: ignore[misc]

    # -- internals -----------------------------------------------------------------

    def _idle_arm(self, delay: Optional[float]) -> None:
        self._idle_cancel()
        if delay is None or self._fileno is None:
            return
        _check_timeout(delay)
        self._idle_timer = call_later(delay, self._idle_check, map=self._idle_map)

    def _idle_cancel(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_check(self) -> None:
        self._idle_timer = None
        allowed = self.idle_timeout
        if allowed is None or self._fileno is None:
            return
        remaining = self._idle_since + allowed - time.monotonic()
        if remaining > 0:
            self._idle_timer = call_later(remaining, self._idle_check, map=self._idle_map)
            return
        call_guarded(self, "handle_idle_timeout")
