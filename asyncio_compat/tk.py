"""Serve a socket map from Tk's own event loop: ``attach(root, map)``.

Where Tk can watch a file (``createfilehandler``, on every Unix) and the
map's poller has an fd of its own (epoll, kqueue, devpoll), Tk watches that
one fd: when any channel is ready it becomes readable and Tk runs a pass
that does not wait.  With a poller that has no fd (select, poll) or a Tk
without file handlers, a short ``after()`` tick runs the passes instead.
Timers of the map (:mod:`asyncio_compat.timers`) become ``after()`` calls;
channels added or changed from Tk callbacks are picked up at the next idle
moment, without polling.

The map stays attached until ``detach()`` or until the root widget is
destroyed.  Meanwhile ``mainloop()`` serves it: no ``asyncore.loop()`` call
is needed, and none may run on the map with another poller.
"""

from __future__ import annotations

import math
import tkinter
from typing import Any, Callable, Optional

from . import _loop, asyncore
from ._config import resolve_poller
from ._foreign_driver import Cancel, ForeignDriver
from ._validation import seconds

__all__ = ["TkAttachment", "attach"]


class TkAttachment(ForeignDriver):
    """A socket map served by a Tk event loop; made by :func:`attach`.

    ``uses_file_handler`` says whether Tk watches the poller's fd (True) or
    a tick of ``tick`` seconds runs the passes (False).  A pass that raises
    ExitNow (or KeyboardInterrupt, SystemExit) detaches the map and the
    exception goes to Tk, which reports it (SystemExit ends ``mainloop()``).
    """

    def __init__(
        self, root: tkinter.Misc, socket_map: Any, map_loop: Any, poll_interval: float, tick: float
    ) -> None:
        self.root = root
        self.tick = tick
        self._fd = -1
        self._how = f"tick {tick}s"
        super().__init__(socket_map, map_loop, poll_interval)
        fd = map_loop.poller.fileno()
        create = getattr(root.tk, "createfilehandler", None)
        if fd >= 0 and create is not None:
            create(fd, tkinter.READABLE, self._fd_ready)
            self._fd = fd
            self._how = f"file handler on fd {fd}"
        # a hidden child is destroyed with the root: detach then, without
        # touching the application's own <Destroy> bindings on the root
        self._sentinel: Optional[tkinter.Frame] = tkinter.Frame(root)
        self._sentinel.bind("<Destroy>", self._root_destroyed)
        self.queue_pass()

    @property
    def uses_file_handler(self) -> bool:
        """True while Tk watches the poller's fd; False with the ``after()`` tick (or detached)."""
        return self._fd >= 0

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"<TkAttachment {state} ({self._how}), {len(self.map)} channels>"

    def _fd_ready(self, fd: int, mask: int) -> None:
        self.run_pass()

    def _root_destroyed(self, event: Any) -> None:
        self.detach()

    def _tick_interval(self) -> Optional[float]:
        if self._fd < 0:
            return self.tick
        return super()._tick_interval()

    def _call_soon(self, callback: Callable[[], None]) -> None:
        self.root.after_idle(callback)

    def _call_later(self, delay: float, callback: Callable[[], None]) -> Cancel:
        # whole milliseconds, rounded up: a wake-up just before a deadline
        # would find nothing due and have to come back
        ident = self.root.after(int(math.ceil(delay * 1000.0)), callback)

        def cancel() -> None:
            try:
                self.root.after_cancel(ident)
            except tkinter.TclError:
                pass  # the application is being destroyed

        return cancel

    def _release(self) -> None:
        if self._fd >= 0:
            self.root.tk.deletefilehandler(self._fd)
            self._fd = -1
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:
            try:
                sentinel.destroy()
            except tkinter.TclError:
                pass  # already gone with its root
        if not self.map:
            _loop.forget(self.map)


def attach(
    root: tkinter.Misc,
    map: Any = None,
    *,
    poller: Any = None,
    tick: float = 0.02,
    poll_interval: float = 0.1,
) -> TkAttachment:
    """Serve ``map`` (default ``asyncore.socket_map``) from the event loop of ``root``.

    ``poller`` (a backend name or class) picks the map's poller when the map
    has no loop yet or is to switch; by default the map keeps the one it has
    (or gets the process default).  ``tick`` is the pass interval used when
    Tk cannot watch the poller's fd; ``poll_interval`` is how often channels
    that override ``readable()``/``writable()`` are asked.

    Raises RuntimeError when the map is already served by another event
    loop, TypeError/ValueError for a bad ``tick`` or ``poll_interval``, and
    pollers.UnknownPollerError for an unknown poller name.
    """
    tick = seconds(tick, "tick", positive=True)
    poll_interval = seconds(poll_interval, "poll_interval", positive=True)
    socket_map = asyncore.map_or_default(map)
    current = _loop.release_abandoned(socket_map)
    if current is not None and current.pinned:
        raise RuntimeError(
            f"this socket map is already served by another event loop ({current.poller!r})"
        )
    map_loop = _loop.loop_for(socket_map, None if poller is None else resolve_poller(poller))
    return TkAttachment(root, socket_map, map_loop, poll_interval, tick)
