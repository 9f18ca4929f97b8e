"""asyncio serving a socket map: legacy dispatchers inside an asyncio program.

``attach(map)`` / ``await run_map(map)`` (re-exported by
:mod:`asyncio_compat.asyncio_bridge`) watch each channel's fd with the
running loop's ``add_reader()``/``add_writer()`` (:class:`AsyncioPoller`) and
run the map's passes from asyncio callbacks (:class:`MapBridge`, a
:class:`~asyncio_compat._foreign_driver.ForeignDriver`).
"""


from __future__ import annotations

import asyncio
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    List,
    Optional,
    Tuple,
    cast,
)

from pollers import PRI, READ, WRITE, Poller

from . import _loop, asyncore
from ._config import get_default_poller
from ._foreign_driver import Cancel, ForeignDriver
from ._validation import seconds

_READ_SIDE = READ | PRI
_FATAL = (KeyboardInterrupt, SystemExit)



# Maps that host an asyncio loop (see _asyncio_hosting): id(map) -> that loop.
# Kept here so that a bridge can refuse such a map without a circular import.
HOSTED: Dict[int, asyncio.AbstractEventLoop] = {}


# -- legacy dispatchers inside asyncio -------------------------------------------------


def _ignore() -> None:
    """The ready-callback of a poller that is not bound yet."""


class AsyncioPoller(Poller):
    """A poller whose kernel is an asyncio event loop.

    Registering an fd calls ``add_reader()`` and/or ``add_writer()``; the
    callbacks record the fd as ready and call the bound ``on_ready``.
    :meth:`poll` never waits: it hands over what asyncio reported since the
    last call, minus what is no longer wanted.  asyncio cannot watch for
    urgent data, so PRI is watched as READ and never reported.  A hang-up
    shows as READ (asyncio wakes readers on it) and ``recv()`` finds the end.
    An fd that the event loop refuses with EPERM (epoll and a regular file)
    is always ready, as the epoll backend treats it: it is reported on every
    iteration of the event loop while it is wanted.
    """

    name: ClassVar[str] = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self._event_loop: Optional[asyncio.AbstractEventLoop] = None
        self._on_ready: Callable[[], None] = _ignore
        self._ready: Dict[int, int] = {}  # fd -> READ/WRITE reported since the last poll()
        # fd -> the READ/WRITE watches placed on the event loop (close() needs
        # them after the base class has cleared its own table)
        self._watching: Dict[int, int] = {}
        self._always_ready: Dict[int, int] = {}  # fd -> READ/WRITE, for regular files
        self._spin_queued = False

    def bind(self, event_loop: asyncio.AbstractEventLoop, on_ready: Callable[[], None]) -> None:
        """Watch fds on ``event_loop``; ``on_ready()`` runs after each report."""
        self._event_loop = event_loop
        self._on_ready = on_ready

    def _kernel_register(self, fd: int, events: int) -> None:
        self._watch(fd, events)

    def _kernel_modify(self, fd: int, old: int, events: int) -> None:
        self._watch(fd, events)

    def _kernel_unregister(self, fd: int, old: int) -> None:
        self._ready.pop(fd, None)
        self._watch(fd, 0)

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self._event_loop is None:
            raise RuntimeError("AsyncioPoller is not bound to an asyncio event loop")
        return self._event_loop

    def _watch(self, fd: int, events: int) -> None:
        """Make the event loop's watches on ``fd`` match ``events``.

        Raises RuntimeError when unbound and what the event loop raises (an
        OSError for a closed fd); a failed change leaves the watches as they were.
        """
        now = (READ if events & _READ_SIDE else 0) | (events & WRITE)
        if fd in self._always_ready:
            self._keep_ready(fd, now)
            return
        was = self._watching.get(fd, 0)
        try:
            self._change_watches(fd, was, now)
        except PermissionError:
            if was:
                raise
            self._keep_ready(fd, now)
            return
        if now:
            self._watching[fd] = now
        else:
            self._watching.pop(fd, None)

    def _change_watches(self, fd: int, was: int, now: int) -> None:
        event_loop = self._loop()
        added = now & ~was
        if added & READ:
            event_loop.add_reader(fd, self._report, fd, READ)
        if added & WRITE:
            try:
                event_loop.add_writer(fd, self._report, fd, WRITE)
            except BaseException:
                if added & READ:  # roll back: all or nothing
                    event_loop.remove_reader(fd)
                raise
        removed = was & ~now
        if removed & READ:
            event_loop.remove_reader(fd)
        if removed & WRITE:
            event_loop.remove_writer(fd)

    def _report(self, fd: int, flag: int) -> None:
        self._ready[fd] = self._ready.get(fd, 0) | flag
        self._on_ready()

    # -- fds that are always ready ------------------------------------------------

    def _keep_ready(self, fd: int, events: int) -> None:
        if not events:
            self._always_ready.pop(fd, None)
            return
        self._always_ready[fd] = events
        if not self._spin_queued:
            self._spin_queued = True
            self._loop().call_soon(self._spin)

    def _spin(self) -> None:
        self._spin_queued = False
        event_loop = self._event_loop
        if not self._always_ready or event_loop is None or event_loop.is_closed():
            return
        for fd, events in self._always_ready.items():
            self._ready[fd] = self._ready.get(fd, 0) | events
        self._on_ready()
        if self._always_ready and not self._spin_queued and not event_loop.is_closed():
            self._spin_queued = True
            event_loop.call_soon(self._spin)

    # -- the rest of the Poller interface -------------------------------------------

    def _kernel_poll(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        if not self._ready:
            return []
        ready = []
        for fd, flags in self._ready.items():
            # interest may have changed since the event loop reported it
            flags &= self._watching.get(fd, 0) | self._always_ready.get(fd, 0)
            if flags:
                ready.append((fd, flags))
        self._ready.clear()
        return ready

    def _kernel_close(self) -> None:
        watching, self._watching = self._watching, {}
        self._ready.clear()
        self._always_ready.clear()
        event_loop = self._event_loop
        if event_loop is None or event_loop.is_closed():
            return
        for fd, watches in watching.items():
            if watches & READ:
                event_loop.remove_reader(fd)
            if watches & WRITE:
                event_loop.remove_writer(fd)


class MapBridge(ForeignDriver):
    """A socket map served by an asyncio event loop; made by :func:`attach`.

    ``detach()`` stops serving the map and leaves its channels in it, so that
    ``asyncore.loop()`` (or another bridge) can take over.  While attached,
    ``asyncore.loop()``, ``asyncore.poll()`` and ``asyncore.poll2()`` on the
    map raise RuntimeError: they would wait on a poller that never waits,
    while the event loop that delivers its events cannot run.  Once the
    event loop is closed the bridge detaches itself the next time anything
    (one of those, another bridge, Tk, a hosted loop, a channel joining the
    map) looks at the map, which goes back to an ordinary poller.
    """

    def __init__(self, socket_map: Any, event_loop: asyncio.AbstractEventLoop, poll_interval: float) -> None:
        if id(socket_map) in HOSTED:
            raise RuntimeError("this socket map hosts an asyncio event loop: it cannot also be served by one")
        current = _loop.release_abandoned(socket_map)
        if current is not None and current.pinned:
            raise RuntimeError(
                f"this socket map is already served by another event loop ({current.poller!r})"
            )
        map_loop = _loop.loop_for(socket_map, AsyncioPoller)
        self.loop = event_loop
        self._waiters: List[asyncio.Future[None]] = []
        cast(AsyncioPoller, map_loop.poller).bind(event_loop, self.run_pass)
        super().__init__(socket_map, map_loop, poll_interval)
        map_loop.hold(self._refuse_other_loops)
        self.queue_pass()  # registers the channels already in the map

    def _refuse_other_loops(self) -> Optional[str]:
        """Why ``loop()``/``poll()`` may not run on the map (see MapLoop.hold), or None
        once the event loop is closed: the map is then handed back."""
        if self.loop.is_closed():
            self.detach()
            return None
        return (
            f"this socket map is served by another event loop (an asyncio bridge on {self.loop!r}): "
            "asyncore.loop(), poll() and poll2() cannot run on it; call detach() on the MapBridge "
            "returned by attach() (or cancel the run_map() task) first"
        )

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"<MapBridge {state} {len(self.map)} channels on {self.loop!r}>"

    def _call_soon(self, callback: Callable[[], None]) -> None:
        if self.loop.is_closed():
            # the event loop went away without detaching us: hand the map back
            # rather than fail the channel operation that asked for a pass
            self.detach()
            return
        self.loop.call_soon(callback)

    def _call_later(self, delay: float, callback: Callable[[], None]) -> Cancel:
        if self.loop.is_closed():
            self.detach()  # as in _call_soon: a timer added after the event loop went
            return _ignore
        return self.loop.call_later(delay, callback).cancel

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, _FATAL):
            raise exc  # asyncio lets these through run_forever()
        if not self._waiters:
            self.loop.call_exception_handler(
                {"message": "a pass of the asyncio bridge failed; the map was detached", "exception": exc}
            )

    def _after_pass(self) -> None:
        if self._waiters and not self.map_loop.pending():
            self._wake_waiters()

    def _release(self) -> None:
        self.map_loop.unhold(self._refuse_other_loops)
        # the poller goes with its MapLoop: closing it removes the watches
        if self.map_loop.timers.keeps_loop_running():
            _loop.loop_for(self.map, get_default_poller())  # timers pass to a regular loop
        else:
            _loop.forget(self.map)

    def detach(self) -> None:
        """Stop serving the map (idempotent).  Pending timers are kept for the next loop."""
        super().detach()
        if self._waiters:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        error = self.error
        if isinstance(error, _FATAL):
            return  # on its way out of run_forever(); the waiting task will be cancelled
        for waiter in self._waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    async def _until_idle(self) -> None:
        """Return once the map is empty with no timer pending; raise what ended the bridge."""
        if not self.map_loop.pending():
            return
        waiter = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)


def attach(
    map: Any = None,
    *,
    loop: Optional[asyncio.AbstractEventLoop] = None,
    poll_interval: float = 0.1,
) -> MapBridge:
    """Serve ``map`` (default ``asyncore.socket_map``) from an asyncio event loop.

    ``loop`` defaults to the running loop.  The bridge stays until its
    ``detach()`` is called, whether or not the map has channels.  An
    exception that would leave ``asyncore.loop()`` (ExitNow) detaches the
    bridge and goes to the event loop's exception handler.

    Raises RuntimeError without a running loop (and no ``loop``) or when the
    map is already served by another event loop; TypeError/ValueError for a
    ``poll_interval`` that is not a positive number.
    """
    interval = seconds(poll_interval, "poll_interval", positive=True)
    event_loop = asyncio.get_running_loop() if loop is None else loop
    return MapBridge(asyncore.map_or_default(map), event_loop, interval)


async def run_map(map: Any = None, *, poll_interval: float = 0.1) -> None:
    """Serve ``map`` from the running asyncio loop until it is empty and no timer is pending.

    Returns at once for an empty map without timers.  Cancelling the task
    detaches the map and leaves its channels open, ready for another loop.
    An ExitNow (or any error of the pass itself) raised by a handler or a
    timer is raised here; KeyboardInterrupt and SystemExit go through the
    event loop as asyncio lets them.

    Raises RuntimeError when the map is already served by another event loop.
    """
    bridge = attach(map, poll_interval=poll_interval)
    try:
        await bridge._until_idle()
    finally:
        bridge.detach()
