"""asyncio and asyncore in one thread, in both directions.

**Legacy dispatchers inside asyncio.**  ``await run_map(map)`` (or the
long-lived ``attach(map)``) serves a socket map from the running asyncio
loop: each channel's fd is watched with ``add_reader()``/``add_writer()``,
interest changes are pushed as the channels make them, and the map's timers
become asyncio timers.  It works on any asyncio loop with ``add_reader``
(the default loops, uvloop).

**asyncio inside legacy code.**  A :class:`HostedEventLoop` is an asyncio
event loop that lives in a socket map: the fd of its selector is a channel of
the map, and the map's loop wakes for its timers and callbacks.  Each time it
has work, one pass of ``asyncore.loop()`` (or of a GUI hook calling
``loop(0, count=1)``) runs one iteration of it without waiting.
:func:`run_coroutine` waits for a coroutine from synchronous code while the
map's dispatchers keep being served.

Neither direction polls on a timer unless a channel overrides ``readable()``
or ``writable()`` (or the map is a plain dict): those are asked every
``poll_interval`` seconds, since only they know when their answer changes.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import selectors
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    ClassVar,
    Dict,
    List,
    Optional,
    Tuple,
    TypeVar,
    cast,
)

from pollers import PRI, READ, WRITE, Poller

from . import _loop, asyncore
from ._config import get_default_poller
from ._loop import pushes_interest
from ._timers import Cancel, ForeignDriver, TimerHandle
from .timers import call_at

__all__ = [
    "AsyncioPoller", "HostedEventLoop", "MapBridge", "attach", "hosted_event_loop",
    "run_coroutine", "run_map",
]

T = TypeVar("T")

if TYPE_CHECKING:  # typeshed types call_soon's *args so; 3.9's typing has no TypeVarTuple
    from typing_extensions import TypeVarTuple, Unpack

    Ts = TypeVarTuple("Ts")

_READ_SIDE = READ | PRI
_FATAL = (KeyboardInterrupt, SystemExit)


def _map_or_default(socket_map: Any) -> Any:
    # looked up at call time: programs rebind asyncore.socket_map
    return asyncore.socket_map if socket_map is None else socket_map


def _check_interval(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")
    return float(value)


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
    ``asyncore.loop()`` on the map raises RuntimeError.
    """

    def __init__(self, socket_map: Any, event_loop: asyncio.AbstractEventLoop, poll_interval: float) -> None:
        if id(socket_map) in _HOSTED:
            raise RuntimeError("this socket map hosts an asyncio event loop: it cannot also be served by one")
        current = _loop.existing_loop(socket_map)
        if current is not None and current.pins:
            raise RuntimeError(
                f"this socket map is already served by another event loop ({current.poller!r})"
            )
        state = _loop.loop_for(socket_map, AsyncioPoller)
        self.loop = event_loop
        self._waiters: List[asyncio.Future[None]] = []
        cast(AsyncioPoller, state.poller).bind(event_loop, self.run_pass)
        super().__init__(socket_map, state, poll_interval)
        self.queue_pass()  # registers the channels already in the map

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
        return self.loop.call_later(delay, callback).cancel

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, _FATAL):
            raise exc  # asyncio lets these through run_forever()
        if not self._waiters:
            self.loop.call_exception_handler(
                {"message": "a pass of the asyncio bridge failed; the map was detached", "exception": exc}
            )

    def _after_pass(self) -> None:
        if self._waiters and not self.state.pending():
            self._wake_waiters()

    def _release(self) -> None:
        # the poller goes with its MapLoop: closing it removes the watches
        if self.state.timers.keeps_loop_running():
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
        if not self.state.pending():
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
    interval = _check_interval(poll_interval, "poll_interval")
    event_loop = asyncio.get_running_loop() if loop is None else loop
    return MapBridge(_map_or_default(map), event_loop, interval)


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


# -- asyncio inside legacy code ------------------------------------------------------


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


# The hosted event loop of each map: id(map) -> loop (the loop holds the map)
_HOSTED: Dict[int, HostedEventLoop] = {}


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
    cannot step while another asyncio loop runs in the same thread.

    Raises ValueError for a ``selector`` without an fd of its own, and
    RuntimeError when ``map`` already hosts an event loop or is served by an
    asyncio bridge.
    """

    def __new__(cls, map: Any = None, selector: Optional[selectors.BaseSelector] = None) -> HostedEventLoop:
        # checked before any object exists: a half-built event loop would
        # complain from its __del__ that it was never closed
        _check_can_host(_map_or_default(map))
        if selector is not None:
            _selector_fd(selector)
        elif not hasattr(selectors.DefaultSelector, "fileno"):
            raise ValueError(
                f"this platform's default selector ({selectors.DefaultSelector.__name__}) has no fd "
                "to wait on; pass an epoll, kqueue or devpoll selector"
            )
        return super().__new__(cls)

    def __init__(self, map: Any = None, selector: Optional[selectors.BaseSelector] = None) -> None:
        socket_map = _map_or_default(map)
        chosen = selectors.DefaultSelector() if selector is None else selector
        fd = _selector_fd(chosen)
        self._in_run = True  # no wake-ups until we are set up
        super().__init__(chosen)
        self.socket_map = socket_map
        self._wake: Optional[TimerHandle] = None  # our timer for asyncio's next due work
        self._channel: Optional[_StepChannel] = _StepChannel(self, fd, socket_map)
        _HOSTED[id(socket_map)] = self
        self._in_run = False

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
            channel.close()  # no socket: only leaves the map
        if _HOSTED.get(id(self.socket_map)) is self:
            del _HOSTED[id(self.socket_map)]
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


def _check_can_host(socket_map: Any) -> None:
    existing = _HOSTED.get(id(socket_map))
    if existing is not None:
        raise RuntimeError(f"this socket map already hosts {existing!r}; use hosted_event_loop(map)")
    state = _loop.existing_loop(socket_map)
    if state is not None and isinstance(state.poller, AsyncioPoller):
        raise RuntimeError("this socket map is served by an asyncio bridge: it cannot host an asyncio loop")


def hosted_event_loop(map: Any = None) -> HostedEventLoop:
    """The :class:`HostedEventLoop` of ``map`` (default ``asyncore.socket_map``), made if needed.

    The caller closes it when done with it.
    """
    existing = _HOSTED.get(id(_map_or_default(map)))
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
    socket_map = _map_or_default(map)
    host = _HOSTED.get(id(socket_map))
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
                _serve_until(task, host)
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
