"""A socketserver server as one channel of an asyncore socket map.

:func:`socketserver.attach` creates a :class:`ServerChannel`, so
that one ``asyncore.loop()`` call serves a ``TCPServer`` (or any server) and
ordinary dispatchers together.  The channel is readable while attached and
never writable; each read event is one ``_handle_request_noblock()`` of the
server, in the loop's thread, unless a mix-in hands the request to a thread
or a process.

The server's socket is left exactly as the server made it (blocking): the
request sockets it accepts, and the handlers reading them, behave as under
``serve_forever()``.  A handler that blocks therefore blocks the whole loop;
that is the price of the synchronous framework, and the mix-ins are the cure.
"""

# dispatcher's lower-case name is CPython's public API (compatibility).
# ruff: noqa: N801

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable, Optional

from .. import timers
from .._delivery import call_guarded
from .._interest import pushes_interest
from .._validation import seconds
from ..asyncore import dispatcher


class ServerChannel(dispatcher):
    """The dispatcher that stands for an attached server in a socket map.

    Created by ``socketserver.attach(server)``; ``detach()`` (or ``close()``, which
    ``asyncore.close_all()`` calls) takes it out of the map and leaves the
    server's socket open: the server owns it.  A hang-up, an error or a
    socket closed behind the loop's back detaches the server.  An exception
    escaping the server's request hooks is printed to stderr and the server
    stays attached: one bad request does not stop the service.
    """

    __module__ = "socketserver"

    def __init__(
        self,
        server: Any,
        map: Any = None,
        service_interval: Optional[float] = None,
        on_detach: Optional[Callable[[], None]] = None,
    ) -> None:
        """Put ``server`` in ``map`` (default: asyncore's ``socket_map``).

        With ``service_interval`` (seconds), the server's
        ``service_actions()`` also runs on the map loop's timers at that
        period.  ``on_detach`` is called once, when the channel leaves the
        map.  Raises ValueError when the server's socket is closed, and
        TypeError/ValueError when ``service_interval`` is not a positive
        number of seconds.
        """
        if service_interval is not None:
            service_interval = seconds(service_interval, "service_interval", positive=True)
        fd = server.fileno()
        if fd < 0:
            raise ValueError(f"cannot attach {server!r}: its socket is closed")
        super().__init__(None, map)
        self.server = server
        self._on_detach = on_detach
        # kept for repr() and for code that looks at channel.socket; never
        # made non-blocking, never closed by us
        self.socket = getattr(server, "socket", None)
        self.addr = getattr(server, "server_address", None)
        self.accepting = True
        self._fileno = fd
        self.add_channel()
        self._service_timer = self._schedule_service(service_interval)

    def _schedule_service(self, interval: Optional[float]) -> Any:
        if interval is None:
            return None
        return timers.call_every(interval, self._run_service_actions, map=self._map)

    def _run_service_actions(self) -> None:
        self.server.service_actions()

    # -- what the loop asks --------------------------------------------------

    @pushes_interest
    def readable(self) -> bool:
        """True while attached: a readable server socket means a request waits."""
        return self.accepting

    @pushes_interest
    def writable(self) -> bool:
        """Never: the server writes through its request sockets, not this one."""
        return False

    # -- events from the loop ----------------------------------------------------

    def handle_read_event(self) -> None:
        """Handle the waiting request, then run ``service_actions()``.

        ExitNow, KeyboardInterrupt and SystemExit leave the loop; any other
        exception goes to :meth:`handle_error`.
        """
        call_guarded(self, "_serve_one")

    def _serve_one(self) -> None:
        self.server._handle_request_noblock()
        self.server.service_actions()

    def handle_write_event(self) -> None:
        """Ignored: never asked for."""

    def handle_expt_event(self) -> None:
        """Ignored: urgent data has no meaning on a server's own socket."""

    def handle_error(self) -> None:
        """Print the exception being handled to stderr; the server stays attached."""
        sys.stderr.write(f"error: {self!r} failed to serve a request; it stays attached\n")
        traceback.print_exc()

    def handle_close(self) -> None:
        """The server's socket hung up, failed or was closed: detach."""
        self.detach()

    # -- leaving the map --------------------------------------------------------

    def detach(self) -> None:
        """Leave the map and stop the periodic ``service_actions()``.

        The server's socket stays open, and the channel lets go of it
        (``socket`` becomes None): debug mode then does not take the
        collected channel for one that leaked it.  Calling it again does
        nothing.
        """
        if self._fileno is None:
            return
        self.accepting = False
        if self._service_timer is not None:
            self._service_timer.cancel()
            self._service_timer = None
        self.del_channel()
        self.socket = None
        if self._on_detach is not None:
            self._on_detach()
            self._on_detach = None

    def close(self) -> None:
        """Same as :meth:`detach`: the server, not the map, owns the socket."""
        self.detach()

    @property
    def attached(self) -> bool:
        """True while the channel is in its map."""
        return self._fileno is not None
