"""A socket map hosting asyncio: asyncio code inside a legacy program.

A :class:`HostedEventLoop` lives in a socket map as one channel (its
selector's fd); ``run_coroutine()`` waits for a coroutine while the map's
dispatchers keep being served.  Re-exported by
:mod:`asyncio_compat.asyncio_bridge`.
"""


from __future__ import annotations

import asyncio
import contextvars
import selectors
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Optional,
    TypeVar,
    cast,
)

from . import _loop, asyncore
from ._asyncio_serving import HOSTED, AsyncioPoller
from ._interest import pushes_interest
from ._timers import TimerHandle
from .timers import call_at

T = TypeVar("T")

if TYPE_CHECKING:  # typeshed types call_soon's *args so; 3.9's typing has no TypeVarTuple
    from typing_extensions import TypeVarTuple, Unpack

    Ts = TypeVarTuple("Ts")


# -- asyncio inside legacy code ------------------------------------------------------


def _host_of(socket_map: object) -> Optional[HostedEventLoop]:
    # only this module fills HOSTED, and only with HostedEventLoops
    return cast(Optional[HostedEventLoop], HOSTED.get(id(socket_map)))


def _selector_fd(selector: selectors.BaseSelector) -> int:
    """The fd that becomes readable when ``selector`` has events.

    Raises ValueError for a selector without one (select- and poll-based
    selectors have no fd of their own).
    """
    fileno = getattr(selector, "fileno", None)
    fd = fileno() if fileno is not None else -1
    if not isinstance(fd, int) or fd < 0:
        raise ValueError(
            f"{type(selector).__name__} has no fd to wait on; "
            "use an epoll, kqueue or devpoll selector (selectors.DefaultSelector on Linux and BSD)"
        )
    return fd


class _StepChannel(asyncore.dispatcher):
    """The hosted event loop's seat in the map: its selector's fd, read-only.

    There is no socket: the fd belongs to the selector, which the event loop
    closes itself.
    """

    def __init__(self, host: HostedEventLoop, fd: int, socket_map: Any) -> None:
        super().__init__(map=socket_map)
        self.host = host
        self.connected = True
        self._fileno = fd
        self.add_channel()

    def __repr__(self) -> str:
        return f"<asyncio_bridge step channel fd={self._fileno} for {self.host!r}>"

    @pushes_interest
    def readable(self) -> bool:
        return True

    @pushes_interest
    def writable(self) -> bool:
        return False

    def handle_read_event(self) -> None:
        self.host._step_from_map()

    def handle_expt_event(self) -> None:
        self.host._step_from_map()

    def handle_close(self) -> None:
        # the selector's fd went away behind our back (NVAL): stop hosting
        self.host._unhost()

    def close(self) -> None:
        """Leave the map, and make the host leave it too (``asyncore.close_all()`` calls this).

        The fd is the selector's: the event loop closes it itself.
        """
        self.del_channel()
        self.host._unhost()




class HostedEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop driven by the passes of a socket map's loop.

    Its selector's fd sits in ``map`` as a channel, so the map's poller waits
    for asyncio's I/O too; the map gets a timer for asyncio's next callback
    or timer.  When either is due, the pass runs one iteration of this loop
    (:meth:`step`), which never waits.  So ``asyncore.loop()`` serves both,
    without busy-waiting, and a GUI hook calling ``loop(0, count=1)`` never
    blocks.  While the loop is hosted the map is not empty, so
    ``asyncore.loop()`` keeps running until :meth:`close` is called.

    Tasks are created as usual (``create_task``,
    ``asyncio.run_coroutine_threadsafe`` from other threads).  The loop
    cannot step while another asyncio loop runs in the same thread, so
    there ``asyncore.loop()``, ``poll()`` and ``poll2()`` on the map raise
    RuntimeError (serve the map from that loop with ``attach()`` instead).

    Raises ValueError for a ``selector`` without an fd of its own, and
    RuntimeError when ``map`` already hosts an event loop or is served by an
    asyncio bridge.
    """

    def __new__(cls, map: Any = None, selector: Optional[selectors.BaseSelector] = None) -> HostedEventLoop:
        # checked before any object exists: a half-built event loop would
        # complain from its __del__ that it was never closed
        _check_can_host(asyncore.map_or_default(map))
        if selector is not None:
            _selector_fd(selector)
        elif not hasattr(selectors.DefaultSelector, "fileno"):
            raise ValueError(
                f"this platform's default selector ({selectors.DefaultSelector.__name__}) has no fd "
                "to wait on; pass an epoll, kqueue or devpoll selector"
            )
        return super().__new__(cls)

    def __init__(self, map: Any = None, selector: Optional[selectors.BaseSelector] = None) -> None:
        socket_map = asyncore.map_or_default(map)
        chosen = selectors.DefaultSelector() if selector is None else selector
        fd = _selector_fd(chosen)
        self._in_run = True  # no wake-ups until we are set up
        super().__init__(chosen)
        self.socket_map = socket_map
        self._wake: Optional[TimerHandle] = None  # our timer for asyncio's next due work
        self._channel: Optional[_StepChannel] = _StepChannel(self, fd, socket_map)
        HOSTED[id(socket_map)] = self
        # the map's loop state, made now so that loop() and poll() ask us
        # from the first pass on (later ones: _hold_hosting_map)
        _loop.loop_for(socket_map).hold(self._refuse_inside_another_loop)
        self._in_run = False

    def _refuse_inside_another_loop(self) -> Optional[str]:
        """Why ``loop()``/``poll()`` may not run on the map now (see MapLoop.hold), or None."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if running is self:
            return None  # a nested loop() from one of our own callbacks
        return (
            f"this socket map hosts {self!r}, which cannot step while another asyncio loop "
            f"({running!r}) runs in this thread: serve the map from that loop with "
            "asyncio_bridge.attach() after closing the hosted loop, or drive it from outside that loop"
        )

    # -- being driven ---------------------------------------------------------------

    def step(self) -> None:
        """Run one iteration: the I/O already ready and the callbacks due, without waiting.

        Raises RuntimeError when the loop is closed or running, or when
        another event loop is running in this thread.
        """
        if self.is_running():
            raise RuntimeError("step() called while the loop is running")
        self.stop()  # a loop stopped before it starts runs exactly one iteration
        self.run_forever()

    def run_forever(self) -> None:
        self._in_run = True
        try:
            super().run_forever()
        finally:
            self._in_run = False
            self._plan_wake()

    def _step_from_map(self) -> None:
        # the map's loop may run inside one of our own callbacks: that
        # iteration is in progress and picks up the work itself
        if not self.is_running() and not self.is_closed():
            self.step()

    def _wake_due(self) -> None:
        self._wake = None
        self._step_from_map()

    # -- telling the map when we have work -------------------------------------------

    def call_soon(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: Unpack[Ts],
        context: Optional[contextvars.Context] = None,
    ) -> asyncio.Handle:
        handle = super().call_soon(callback, *args, context=context)
        if not self._in_run:
            self._wake_by(self.time())
        return handle

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: Unpack[Ts],
        context: Optional[contextvars.Context] = None,
    ) -> asyncio.TimerHandle:
        handle = super().call_at(when, callback, *args, context=context)
        if not self._in_run:
            self._wake_by(when)
        return handle

    def _next_due(self) -> Optional[float]:
        # asyncio keeps no public record of its own next deadline: read its
        # ready queue and timer heap (the same attributes in 3.9 to 3.13)
        if self._ready:  # type: ignore[attr-defined]
            return self.time()
        scheduled = self._scheduled  # type: ignore[attr-defined]
        return scheduled[0].when() if scheduled else None

    def _plan_wake(self) -> None:
        when = None if self._channel is None or self.is_closed() else self._next_due()
        wake = self._wake
        if wake is not None and not wake.cancelled and wake.when == when:
            return
        if wake is not None:
            wake.cancel()
        self._wake = None if when is None else call_at(when, self._wake_due, map=self.socket_map)

    def _wake_by(self, when: float) -> None:
        """Make sure the map wakes us no later than ``when``."""
        if self._channel is None:
            return
        wake = self._wake
        if wake is None or wake.cancelled or when < wake.when:
            if wake is not None:
                wake.cancel()
            self._wake = call_at(when, self._wake_due, map=self.socket_map)

    # -- leaving the map --------------------------------------------------------------

    def _unhost(self) -> None:
        """Leave the map (idempotent): no more steps from its passes."""
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.del_channel()
        if HOSTED.get(id(self.socket_map)) is self:
            del HOSTED[id(self.socket_map)]
        map_loop = _loop.existing_loop(self.socket_map)
        if map_loop is not None:
            map_loop.unhold(self._refuse_inside_another_loop)
        if not self.socket_map:
            _loop.forget(self.socket_map)

    @property
    def hosted(self) -> bool:
        """True while the map's passes drive this loop."""
        return self._channel is not None

    def close(self) -> None:
        """Leave the map, then close as any asyncio loop (raises RuntimeError while running)."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        self._unhost()
        super().close()


def _hold_hosting_map(map_loop: _loop.MapLoop) -> None:
    """Give every new MapLoop of a map hosting an asyncio loop its holder."""
    host = _host_of(map_loop.map)
    if host is not None:
        map_loop.hold(host._refuse_inside_another_loop)


_loop.on_new_loop(_hold_hosting_map)


def _check_can_host(socket_map: Any) -> None:
    existing = _host_of(socket_map)
    if existing is not None:
        raise RuntimeError(f"this socket map already hosts {existing!r}; use hosted_event_loop(map)")
    map_loop = _loop.release_abandoned(socket_map)
    if map_loop is not None and isinstance(map_loop.poller, AsyncioPoller):
        raise RuntimeError("this socket map is served by an asyncio bridge: it cannot host an asyncio loop")


def hosted_event_loop(map: Any = None) -> HostedEventLoop:
    """The :class:`HostedEventLoop` of ``map`` (default ``asyncore.socket_map``), made if needed.

    The caller closes it when done with it.
    """
    existing = _host_of(asyncore.map_or_default(map))
    return existing if existing is not None else HostedEventLoop(map)


def run_coroutine(coro: Awaitable[T], map: Any = None) -> T:
    """Run ``coro`` on the map's hosted event loop and return its result.

    Passes of the map's loop run meanwhile, so its dispatchers keep being
    served; the wait is in the poller, never a busy loop.  The coroutine's
    exception (CancelledError included) is raised here.  When the map hosted
    no event loop, one is made for the call and closed afterwards as
    ``asyncio.run()`` does (tasks still pending are cancelled); otherwise
    the existing one is used and stays.  If the wait is interrupted
    (KeyboardInterrupt), the coroutine is cancelled and awaited first.

    Raises RuntimeError when called from a running asyncio loop (await the
    coroutine instead) or when the hosted loop leaves the map before the
    coroutine ends.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        _discard(coro)
        raise RuntimeError("run_coroutine() cannot be called from a running asyncio loop; await it instead")
    socket_map = asyncore.map_or_default(map)
    host = _host_of(socket_map)
    owned = host is None
    if host is None:
        try:
            host = HostedEventLoop(socket_map)
        except BaseException:
            _discard(coro)
            raise
    try:
        task = asyncio.ensure_future(coro, loop=host)
        try:
            _serve_until(task, host)
        finally:
            if not task.done():
                task.cancel()
                _settle(task, host)
        return task.result()
    finally:
        if owned:
            _shut_down(host)


def _discard(awaitable: Awaitable[Any]) -> None:
    """Close a coroutine that will never run, so Python does not warn it was never awaited."""
    close = getattr(awaitable, "close", None)
    if asyncio.iscoroutine(awaitable) and close is not None:
        close()


def _serve_until(future: asyncio.Future[Any], host: HostedEventLoop) -> None:
    """Run passes of the host's map until ``future`` is done.

    No timeout is needed: the future can only finish during a step, and the
    map's loop wakes for every step.
    """
    while not future.done():
        if not host.hosted:
            raise RuntimeError("the asyncio loop left the socket map before the coroutine finished")
        _loop.loop_for(host.socket_map).run_pass(None)


def _settle(task: asyncio.Future[Any], host: HostedEventLoop) -> None:
    """Let a cancelled task finish: through the map's passes while the loop
    is hosted, else (it left the map) on the event loop alone."""
    if host.hosted:
        _serve_until(task, host)
    elif not host.is_closed():
        host.run_until_complete(asyncio.wait([task]))


def _shut_down(host: HostedEventLoop) -> None:
    """What asyncio.run() does at the end: cancel what is left, then close."""
    try:
        if host.hosted:
            pending = asyncio.all_tasks(host)
            for task in pending:
                task.cancel()
            if pending:
                _serve_until(asyncio.gather(*pending, return_exceptions=True), host)
            _serve_until(asyncio.ensure_future(host.shutdown_asyncgens(), loop=host), host)
            _serve_until(asyncio.ensure_future(host.shutdown_default_executor(), loop=host), host)
    finally:
        host.close()
