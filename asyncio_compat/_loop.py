"""The engine behind ``asyncore.loop()``: stateful registration per socket map.

CPython 3.11's asyncore rebuilt the whole fd set on every pass and asked
every channel ``readable()`` and ``writable()``.  Here each socket map gets a
:class:`MapLoop` that keeps one poller across passes and only touches:

* fds whose map entry changed (a :class:`SocketMap` records them; a plain
  dict is compared in full on every pass, as 3.11 did);
* channels that just handled an event, or said their interest changed
  (:meth:`dispatcher.interest_changed`);
* channels whose class overrides ``readable()``/``writable()`` with its own
  code: those are asked every pass, because only they know when their answer
  changes.

Events are bound to the object that owned the fd when the kernel reported
them: a channel closed during a pass whose fd is reused by a new channel in
the same pass never sees the old channel's event.
"""

from __future__ import annotations

import os
import time
from errno import EBADF, ECONNABORTED, ECONNRESET, ENOENT, ENOTCONN, EPIPE, ESHUTDOWN
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple, Type, TypeVar

import pollers
from pollers import ERR, HUP, NVAL, PRI, READ, WRITE, Poller

from . import _timers
from ._errors import _reraised_exceptions

_DISCONNECTED: FrozenSet[int] = frozenset(
    {ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE, EBADF}
)

# errnos that mean "this fd is no longer open": the channel is told NVAL
_FD_GONE = frozenset({EBADF, ENOENT})

_CLOSE_FLAGS = HUP | ERR | NVAL

F = TypeVar("F", bound=Callable[..., Any])

# readable()/writable() implementations whose answers only change when the
# channel says so (or handles an event); see pushes_interest().
_PUSHED_PREDICATES: Set[Any] = set()
# (readable, writable) -> a function computing the same mask in one call
_FAST_INTEREST: Dict[Tuple[Any, Any], Callable[[Any], int]] = {}
# class -> how to compute its mask without asking every pass (None: polled)
_interest_cache: Dict[type, Optional[Callable[[Any], int]]] = {}


def pushes_interest(func: F) -> F:
    """Mark a ``readable``/``writable`` implementation as one that reports changes.

    A class whose two predicates are both marked is not asked every pass: its
    instances call :meth:`interest_changed` whenever an answer may change
    outside an event handler.  Subclasses that override a predicate with an
    unmarked function are asked every pass, as in CPython 3.11.
    """
    _PUSHED_PREDICATES.add(func)
    return func


def register_fast_interest(readable: Any, writable: Any, interest: Callable[[Any], int]) -> None:
    """Declare that ``interest(obj)`` equals :func:`wanted_events` for any
    class whose predicates are exactly ``readable`` and ``writable``.

    The loop then computes such a channel's mask with one call instead of
    three.  tests/test_loop.py checks each registered pair in every state.
    """
    _FAST_INTEREST[(readable, writable)] = interest
    _interest_cache.clear()


def _interest_function(obj: Any) -> Optional[Callable[[Any], int]]:
    """How the loop learns ``obj``'s mask when it looks, or None if it must ask every pass."""
    cls = type(obj)
    try:
        found = _interest_cache[cls]
    except KeyError:
        readable = getattr(cls, "readable", None)
        writable = getattr(cls, "writable", None)
        found = _FAST_INTEREST.get((readable, writable))
        if found is None and readable in _PUSHED_PREDICATES and writable in _PUSHED_PREDICATES:
            found = wanted_events
        _interest_cache[cls] = found
    if found is not None and not _predicates_are_the_class_ones(obj, cls):
        return None  # predicates patched onto the instance: ask every pass
    return found


def _predicates_are_the_class_ones(obj: Any, cls: type) -> bool:
    # Compares bound methods instead of looking into obj.__dict__: touching
    # __dict__ materialises it, and CPython then stops specialising attribute
    # access on the instance (measured: ~30% more instructions per event).
    return (
        getattr(obj.readable, "__func__", None) is getattr(cls, "readable", None)
        and getattr(obj.writable, "__func__", None) is getattr(cls, "writable", None)
    )


def _pushes(obj: Any) -> bool:
    return _interest_function(obj) is not None


class SocketMap(Dict[int, Any]):
    """A socket map (fd -> channel) that records which fds changed.

    It behaves as a dict.  The loop reads the record to touch only what
    changed, so a pass over a ``SocketMap`` costs O(active channels); a plain
    dict works too but is compared in full on every pass.
    """

    # no instance __dict__: keeps method lookups on the hot path cheap
    __slots__ = ("_changed",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._changed: Set[int] = set()  # fds to look at on the next pass
        self.update(*args, **kwargs)

    def __setitem__(self, fd: int, channel: Any) -> None:
        dict.__setitem__(self, fd, channel)
        self._changed.add(fd)

    def __delitem__(self, fd: int) -> None:
        dict.__delitem__(self, fd)
        self._changed.add(fd)

    def pop(self, fd: int, *default: Any) -> Any:
        value = dict.pop(self, fd, *default)
        self._changed.add(fd)
        return value

    def popitem(self) -> Tuple[int, Any]:
        item = dict.popitem(self)
        self._changed.add(item[0])
        return item

    def clear(self) -> None:
        self._changed.update(self)
        dict.clear(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for fd, channel in dict(*args, **kwargs).items():
            self[fd] = channel

    def setdefault(self, fd: int, default: Any = None) -> Any:
        if fd not in self:
            self[fd] = default
        return dict.__getitem__(self, fd)

    def __ior__(self, other: Any) -> SocketMap:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __reduce__(self) -> Any:
        return (type(self), (dict(self),))


def wanted_events(obj: Any) -> int:
    """The mask a channel asks for, by the 3.11 rules.

    ``readable()`` asks for READ and PRI; ``writable()`` asks for WRITE
    unless the channel is ``accepting`` (a listening socket is never put in
    the write set).  A listener pausing after an accept() failure
    (``_accept_paused``, see ``dispatcher.handle_accept_error``) asks for
    nothing, whatever its ``readable()`` says: its fd stays ready, so
    watching it would spin.
    """
    if getattr(obj, "_accept_paused", False):
        return 0
    events = READ | PRI if obj.readable() else 0
    if obj.writable() and not getattr(obj, "accepting", False):
        events |= WRITE
    return events


def dispatch(obj: Any, flags: int, fd: int, socket_map: Any) -> None:
    """Deliver one fd's events with poll2() semantics (3.11's ``readwrite``).

    Read first (so data that came with a hang-up is not lost), then write,
    urgent data, and ``handle_close`` for HUP, ERR or NVAL.  A channel that
    leaves the map while handling one event gets none of the rest.
    Disconnection errors close the channel; other exceptions go to
    ``handle_error``; ExitNow, KeyboardInterrupt and SystemExit propagate.
    """
    try:
        if flags & READ:
            obj.handle_read_event()
        if flags & WRITE and socket_map.get(fd) is obj:
            obj.handle_write_event()
        if flags & PRI and socket_map.get(fd) is obj:
            obj.handle_expt_event()
        if flags & _CLOSE_FLAGS and socket_map.get(fd) is obj:
            obj.handle_close()
    except OSError as exc:
        if exc.errno in _DISCONNECTED:
            obj.handle_close()
        else:
            obj.handle_error()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def _guarded(obj: Any, handler: Callable[[], Any]) -> None:
    try:
        handler()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def dispatch_select_style(obj: Any, flags: int, fd: int, socket_map: Any, poller: Poller) -> None:
    """Deliver one fd's events with 3.11 ``poll()`` (select) semantics.

    select() has no hang-up flag: a socket with an error or a hang-up is
    simply readable and writable, so HUP and ERR are delivered as the READ
    and WRITE events the channel asked for, and its own ``recv()`` finds the
    end.  Every exception goes to ``handle_error``.  An fd closed behind our
    back (NVAL; select() raised EBADF in 3.11) closes the channel.
    """
    if flags & (HUP | ERR):
        flags |= poller.get_mask(fd) & (READ | WRITE) if fd in poller else 0
    if flags & READ:
        try:
            obj.handle_read_event()
        except _reraised_exceptions:
            raise
        except BaseException:
            obj.handle_error()
    if flags & WRITE and socket_map.get(fd) is obj:
        _guarded(obj, obj.handle_write_event)
    if flags & PRI and socket_map.get(fd) is obj:
        _guarded(obj, obj.handle_expt_event)
    if flags & NVAL and socket_map.get(fd) is obj:
        dispatch(obj, NVAL, fd, socket_map)


def report_error(obj: Any) -> None:
    """Call ``obj.handle_error()`` for the exception being handled."""
    try:
        obj.handle_error()
    except _reraised_exceptions:
        raise
    except BaseException:
        # a handle_error that itself fails must not take the loop down
        import traceback

        traceback.print_exc()


class MapLoop:
    """One socket map's poller and registrations, kept across ``loop()`` calls."""

    def __init__(self, socket_map: Any, poller_cls: Type[Poller]) -> None:
        self.map = socket_map
        self.poller = poller_cls()
        self.owners: Dict[int, Any] = {}  # fd -> channel registered for it
        self.polled: Dict[int, Any] = {}  # fd -> channel asked every pass
        # fd -> mask function of a channel that reports its changes
        self.interest_of: Dict[int, Callable[[Any], int]] = {}
        changed = getattr(socket_map, "_changed", None)
        self.tracked = changed is not None
        # fds to look at on the next pass: shared with the SocketMap's record
        self.dirty: Set[int] = changed if changed is not None else set()
        self.dirty.update(socket_map)
        # events made up by us (an fd the kernel refused as closed)
        self.synthetic: List[Tuple[int, int]] = []
        self.timers = _timers.TimerQueue()
        # foreign event loops serving this map (asyncio bridge, Tk): while
        # any is, forget() keeps this MapLoop and loop_for() will not replace it
        self.pins = 0
        # passes in progress (a handler may run a nested one): while any is,
        # forget() only asks for the release, done when the pass ends, so a
        # signal handler that empties the map during the wait cannot close
        # the poller that PEP 475 is about to wait on again (issue 14)
        self.passes = 0
        self.release_wanted = False
        # fd -> callback: fds watched for READ that are not channels (see watch_fd)
        self.watched: Dict[int, Callable[[], None]] = {}
        self.watches_to_register: Set[int] = set()  # registered by the next sync()
        self.waiting = False  # inside the poller's wait (a signal handler may run there)
        self.wake_pipe: Optional[Tuple[int, int]] = None  # see wake()
        for hook in _NEW_LOOP_HOOKS:
            hook(self)

    # -- registration ----------------------------------------------------

    def sync(self) -> None:
        """Bring the poller in line with the map and the channels' interest."""
        if self.watches_to_register:
            self._register_watches()
        if self.tracked:
            self._sync_fds(self.dirty)
            for fd, obj in list(self.polled.items()):
                self._refresh(fd, obj)
        else:
            for fd in [fd for fd in self.owners if fd not in self.map]:
                self._drop(fd)
            self.dirty.clear()
            for fd, obj in list(self.map.items()):
                self._refresh(fd, obj)

    def _sync_fds(self, fds: Set[int]) -> None:
        # Take a snapshot and clear() rather than pop(): set.pop() scans the
        # hash table from a moving finger, and a set that once held 10,000
        # fds keeps a table that size, making each pop cost ~20 us.
        socket_map = self.map
        while fds:
            batch = list(fds)
            fds.clear()
            for fd in batch:
                obj = socket_map.get(fd)
                if obj is None:
                    self._drop(fd)
                else:
                    self._refresh(fd, obj)

    def _refresh(self, fd: int, obj: Any) -> None:
        if self.owners.get(fd) is not obj:
            self._adopt(fd, obj)
        self._apply_interest(fd, obj)

    def _apply_interest(self, fd: int, obj: Any) -> None:
        """Ask ``obj`` what it wants and tell the poller (a no-op if unchanged)."""
        try:
            events = self.interest_of.get(fd, wanted_events)(obj)
        except _reraised_exceptions:
            raise
        except BaseException:
            report_error(obj)
            return
        try:
            self.poller.set_mask(fd, events)
        except OSError as exc:
            if exc.errno not in _FD_GONE:
                raise
            self.synthetic.append((fd, NVAL))
        except ValueError:
            # e.g. an fd past select()'s FD_SETSIZE: this channel's problem only
            report_error(obj)

    def _adopt(self, fd: int, obj: Any) -> None:
        if fd in self.owners:
            self._drop(fd)
        self.owners[fd] = obj
        interest = _interest_function(obj)
        if interest is None:
            self.polled[fd] = obj
        else:
            self.interest_of[fd] = interest

    def _drop(self, fd: int) -> None:
        self.owners.pop(fd, None)
        self.polled.pop(fd, None)
        self.interest_of.pop(fd, None)
        if fd in self.poller:
            self.poller.unregister(fd)

    # -- one pass ----------------------------------------------------------

    def run_pass(self, timeout: Optional[float], poll_semantics: bool = True) -> None:
        """Register what changed, wait up to ``timeout`` and dispatch.

        ``poll_semantics`` picks how events reach the channels: as 3.11's
        ``poll2()`` did (hang-ups call ``handle_close``) or as its select
        ``poll()`` did (see :func:`dispatch_select_style`).
        """
        self.passes += 1
        try:
            self.sync()
            if self.synthetic:
                ready, self.synthetic = self.synthetic, []
                ready += self.poller.poll(0)
            else:
                self.waiting = True
                try:
                    ready = self.poller.poll(self.timers.clip(timeout))
                finally:
                    self.waiting = False
            if self.wake_pipe is not None:
                ready = self._end_wake(ready)
            if self.watched:
                ready = self._serve_watched(ready)
            self._deliver(ready, poll_semantics)
            if self.timers:
                self.timers.run_due(time.monotonic())
        finally:
            self.passes -= 1
            if self.release_wanted and not self.passes:
                self.release_wanted = False
                if not self.map:
                    forget(self.map)

    def _deliver(self, ready: List[Tuple[int, int]], poll_semantics: bool) -> None:
        owners = self.owners
        socket_map = self.map
        owner_now = socket_map.get
        poller = self.poller
        # A channel that just handled an event may want something else now:
        # look at once.  (Polled channels are asked next pass anyway, and an
        # untracked map is compared in full.)
        interest_of = self.interest_of if self.tracked else {}
        registered = poller.masks
        # bind each event to its owner now: handlers may close and reuse fds
        for fd, obj, flags in [(fd, owners.get(fd), flags) for fd, flags in ready]:
            if obj is None or owner_now(fd) is not obj:
                continue
            if flags == READ:
                # the common case, inline: same outcome as either dispatch
                try:
                    obj.handle_read_event()
                except _reraised_exceptions:
                    raise
                except OSError as exc:
                    if poll_semantics and exc.errno in _DISCONNECTED:
                        obj.handle_close()
                    else:
                        obj.handle_error()
                except BaseException:
                    obj.handle_error()
            elif poll_semantics:
                dispatch(obj, flags, fd, socket_map)
            else:
                dispatch_select_style(obj, flags, fd, socket_map, poller)
            interest = interest_of.get(fd)
            if interest is not None and owner_now(fd) is obj:
                try:
                    events = interest(obj)
                    if events != registered.get(fd):
                        poller.set_mask(fd, events)
                except Exception:
                    self._apply_interest(fd, obj)  # the slow path sorts errors out

    def pending(self) -> bool:
        """True while a ``loop(count=None)`` should go on: channels or timers."""
        return bool(self.map) or self.timers.keeps_loop_running()

    # -- fds that are not channels -------------------------------------------

    def watch_fd(self, fd: int, on_ready: Callable[[], None]) -> None:
        """Watch ``fd`` for READ beside the map's channels.

        ``on_ready()`` runs in the pass that reports it, before the channels'
        events; it must consume what made the fd readable.  A watched fd is
        not a channel: it does not keep ``loop()`` running and
        ``close_all()`` does not touch it.  It goes with this MapLoop (see
        :func:`on_new_loop` to watch again on the next one).  Raises
        KeyError for an fd that is a channel's or already watched.
        """
        if fd in self.watched or fd in self.owners:
            raise KeyError(f"fd {fd} is already watched by this loop")
        self.watched[fd] = on_ready
        # registered by the next sync(): a foreign loop's poller may not be
        # bound to its event loop yet
        self.watches_to_register.add(fd)

    def _register_watches(self) -> None:
        fds, self.watches_to_register = self.watches_to_register, set()
        for fd in fds:
            if fd in self.watched and fd not in self.poller:
                self.poller.register(fd, READ)

    def unwatch_fd(self, fd: int) -> None:
        """Stop watching an fd given to :meth:`watch_fd`; an unknown fd is ignored."""
        self.watches_to_register.discard(fd)
        if self.watched.pop(fd, None) is not None and fd in self.poller:
            self.poller.unregister(fd)

    def _serve_watched(self, ready: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
        watched = self.watched
        rest = []
        for fd, flags in ready:
            on_ready = watched.get(fd)
            if on_ready is None:
                rest.append((fd, flags))
            else:
                on_ready()
        return rest

    def wake(self) -> None:
        """Make the wait in progress return now, where the kernel allows it.

        For a signal handler that added or removed a channel during the
        wait: PEP 475 resumes the wait on the old set, without the new
        channel, and epoll and kqueue drop a closed fd without a word (the
        sweep would notice it within ``sweep_interval``).  A poller
        with a kernel object (epoll, kqueue, /dev/poll) takes a new fd at once,
        so an always-writable pipe end is added and the wait returns.  select
        and poll wait on arrays built before the wait: nothing to do there (a
        closed fd ends their wait by itself: EBADF or POLLNVAL).
        """
        if not self.waiting or self.wake_pipe is not None or self.poller.fileno() < 0:
            return
        read_fd, write_fd = os.pipe()
        self.wake_pipe = (read_fd, write_fd)
        self.poller.register(write_fd, WRITE)

    def _end_wake(self, ready: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
        read_fd, write_fd = self.wake_pipe  # type: ignore[misc]
        self.wake_pipe = None
        if write_fd in self.poller:
            self.poller.unregister(write_fd)
        os.close(read_fd)
        os.close(write_fd)
        return [(fd, flags) for fd, flags in ready if fd != write_fd]

    # -- fork ------------------------------------------------------------------

    def renew_after_fork(self) -> None:
        """In a forked child: a poller of its own, every channel registered afresh.

        The inherited poller shares its kernel object (epoll, /dev/poll) with
        the parent, or holds a dead one (kqueue on the BSDs): its fd is closed
        without a single change to the kernel's interest set, which is the
        parent's too.  A poller served by a foreign event loop is left alone.
        """
        if self.pins:
            return
        old = self.poller
        self.poller = type(old)()
        try:
            old.close()  # only closes the fd: no epoll_ctl, no kevent
        except OSError:
            pass  # a kqueue fd is not inherited on the BSDs
        self.owners.clear()
        self.polled.clear()
        self.interest_of.clear()
        self.synthetic.clear()
        self.dirty.update(self.map)
        self.watches_to_register.update(self.watched)

    def close(self) -> None:
        self.timers.clear()
        self.poller.close()
        self.owners.clear()
        self.polled.clear()
        self.interest_of.clear()
        self.watched.clear()
        self.watches_to_register.clear()
        if self.wake_pipe is not None:  # a wait that ended by an exception
            for fd in self.wake_pipe:
                os.close(fd)
            self.wake_pipe = None


# id(map) -> MapLoop; the MapLoop holds the map, so the id is not reused
_LOOPS: Dict[int, MapLoop] = {}
# called with every new MapLoop (see on_new_loop)
_NEW_LOOP_HOOKS: List[Callable[[MapLoop], None]] = []


def on_new_loop(hook: Callable[[MapLoop], None]) -> None:
    """Call ``hook(state)`` for every MapLoop made from now on, as it is made.

    For services that live beside a map's channels (signal handlers) and
    must follow its loop when it is released and made again.
    """
    _NEW_LOOP_HOOKS.append(hook)


def all_loops() -> List[MapLoop]:
    """Every MapLoop kept for a map (a snapshot)."""
    return list(_LOOPS.values())


def loop_for(socket_map: Any, poller_cls: Optional[Type[Poller]] = None) -> MapLoop:
    """The MapLoop serving ``socket_map``, created (or re-created on another
    backend) as needed.  ``None`` keeps the existing one whatever its backend."""
    state = _LOOPS.get(id(socket_map))
    if state is not None and (poller_cls is None or type(state.poller) is poller_cls):
        return state
    if state is not None and state.pins:
        raise RuntimeError(
            f"this socket map is served by another event loop (through {state.poller!r}); "
            "detach it before running loop() on it with another poller"
        )
    if poller_cls is None:
        from ._config import get_default_poller

        poller_cls = get_default_poller()
    new = MapLoop(socket_map, poller_cls)
    if state is not None:
        new.timers = state.timers
        state.timers = _timers.TimerQueue()
        state.close()
    _LOOPS[id(socket_map)] = new
    return new


def channel_moved(socket_map: Any) -> None:
    """Tell the loop of ``socket_map`` that a channel joined or left it.

    Only matters during the loop's wait (a signal handler): see :meth:`MapLoop.wake`.
    """
    state = _LOOPS.get(id(socket_map))
    if state is not None and state.waiting:
        state.wake()


def existing_loop(socket_map: Any) -> Optional[MapLoop]:
    return _LOOPS.get(id(socket_map))


def forget(socket_map: Any) -> None:
    """Close and drop the MapLoop of a map that emptied (keeps pending timers).

    Called during a pass of that MapLoop (a handler, or a signal handler
    while the pass waits), the release waits for the end of the pass, and
    happens only if the map is still empty then.
    """
    state = _LOOPS.get(id(socket_map))
    if state is not None and state.passes:
        state.release_wanted = True
        return
    if state is not None and not state.timers.keeps_loop_running() and not state.pins:
        del _LOOPS[id(socket_map)]
        state.close()


def run_once(socket_map: Any, poller_cls: Type[Poller], timeout: Optional[float]) -> None:
    """One 3.11-style pass on a throwaway poller (the standalone poll()/poll2())."""
    state = MapLoop(_Untracked(socket_map), poller_cls)
    try:
        state.run_pass(timeout, poll_semantics=poller_cls.name != "select")
    finally:
        state.close()


class _Untracked:
    """A view of a map that hides its change record, forcing a full pass."""

    __slots__ = ("_map",)

    def __init__(self, socket_map: Any) -> None:
        self._map = socket_map

    def __iter__(self) -> Any:
        return iter(self._map)

    def __contains__(self, fd: object) -> bool:
        return fd in self._map

    def __len__(self) -> int:
        return len(self._map)

    def get(self, fd: int) -> Any:
        return self._map.get(fd)

    def items(self) -> Iterable[Tuple[int, Any]]:
        items: Iterable[Tuple[int, Any]] = self._map.items()
        return items


def poller_class_for(use_poll: bool, poller: Any) -> Type[Poller]:
    """The backend for a ``loop()`` call.

    An explicit ``poller`` wins.  Otherwise the process default is used; when
    that default is select, ``use_poll=True`` still upgrades to poll, as in 3.11.
    """
    from ._config import get_default_poller, resolve_poller

    if poller is not None:
        return resolve_poller(poller)
    cls = get_default_poller()
    if use_poll and cls.name == "select" and "poll" in pollers.available():
        return pollers.get("poll")
    return cls
