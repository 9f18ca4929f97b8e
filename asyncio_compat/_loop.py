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
import threading
import time
from errno import EBADF, ENOENT
from typing import (
    TYPE_CHECKING,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Set,
    Tuple,
    Type,
)

import pollers
from pollers import NVAL, READ, WRITE, Poller, fd_of

from . import _debug, _timers
from ._channel import Channel, ChannelMap
from ._config import PollerSpec, get_default_poller, resolve_poller
from ._delivery import DISCONNECTED, RERAISED, deliver_poll, deliver_select, report_error
from ._interest import interest_function, wanted_events
from ._registrations import ByFd, Registration, Registrations

if TYPE_CHECKING:
    from ._debug_monitor import LoopMonitor
    from ._loop_stats import LoopStats

# errnos that mean "this fd is no longer open": the channel is told NVAL
_FD_GONE = frozenset({EBADF, ENOENT})
# select() on Windows takes sockets only: no pipe can end its wait (see MapLoop.wake)
_NO_SELECTABLE_PIPES = os.name == "nt"

class MapLoop:
    """One socket map's poller and registrations, kept across ``loop()`` calls.

    Its named surface, for the modules that drive or feed it (the asyncio
    bridge, Tk, TLS, timers): :meth:`run_pass`, :meth:`sync`,
    :meth:`sync_fds`, :meth:`inject`, :meth:`pin`/:meth:`unpin`/:attr:`pinned`,
    :meth:`hold`/:meth:`unhold`,
    :meth:`replace_change_record`, :attr:`tracks_changes`,
    :meth:`asks_every_pass`, :meth:`is_registered`, :attr:`timers`,
    :meth:`release_fd`, and for signals and fork
    :meth:`watch_fd`/:meth:`unwatch_fd`, :meth:`wake`,
    :meth:`renew_after_fork`.  The bookkeeping attributes below are this
    module's alone.
    """

    def __init__(
        self, socket_map: ChannelMap, poller_cls: Type[Poller], serves: Optional[ChannelMap] = None
    ) -> None:
        self.map = socket_map
        # the user's map whose channels this loop serves: ``map`` itself, or
        # the map behind a view (a one-pass loop of poll()/poll2())
        self.serves = socket_map if serves is None else serves
        self.poller = poller_cls()
        # one record per registered fd (see _registrations)
        self._registered = Registrations()
        changed: Optional[Set[int]] = getattr(socket_map, "_changed", None)
        self._tracked = changed is not None
        # fds to look at on the next pass: shared with the SocketMap's record
        self._changed: Set[int] = changed if changed is not None else set()
        self._changed.update(socket_map)
        # events made up by us or injected (an fd the kernel refused as closed)
        self._injected: List[Tuple[int, int]] = []
        self.timers = _timers.TimerQueue()
        # foreign event loops serving this map (asyncio bridge, Tk): while
        # any is, forget() keeps this MapLoop and loop_for() will not replace it
        self.pins = 0
        # set by a foreign driver whose poller cannot wait (see hold())
        self._holder: Optional[Callable[[], Optional[str]]] = None
        # always counted (one add per pass, one per batch): see stats()
        self.passes = 0
        self.events = 0
        self._monitor: Optional[LoopMonitor] = None  # debug mode's timings, made on first use
        # fd -> callback: fds watched for READ that are not channels (see watch_fd)
        self.watched: Dict[int, Callable[[], None]] = {}
        self._watches_to_register: Set[int] = set()  # see watch_fd
        # passes in progress (nested loop() calls make it more than one):
        # forget() must not close the poller under a pass, where a handler,
        # a timer or a signal handler may empty the map and fill it again
        self._passes_running = 0
        # inside the poller's wait, where a signal handler may run: a channel
        # added or removed there calls wake(), so the wait ends and sees it
        self._waiting = False
        # a channel joined or left the map since this pass began (see run_pass)
        self._late_change = False
        self._wake_pipe: Optional[Tuple[int, int]] = None  # see wake()
        # held while the wake pipe or the poller is set up or torn down: a
        # thread closing a channel wakes the loop while the loop's own thread
        # may be closing this MapLoop (reentrant: a signal handler may land
        # inside either)
        self._wake_lock = threading.RLock()
        # close() was called (forget()): a pass that still runs on this
        # MapLoop (a signal handler emptied the map between two passes and
        # filled it again) takes a fresh poller (see sync)
        self._released = False
        # what delivery reads to check that a channel still owns its fd:
        # the map itself, or a view by fd while some key is not an int
        self._by_fd: Mapping[int, object] = socket_map
        self._run_new_loop_hooks()

    def _run_new_loop_hooks(self) -> None:
        for hook in _NEW_LOOP_HOOKS:
            hook(self)

    # -- the named surface ------------------------------------------------

    def pin(self) -> None:
        """A foreign event loop starts serving this map: keep this MapLoop
        (``forget()`` will not drop it, ``loop_for()`` will not replace it)."""
        self.pins += 1

    def unpin(self) -> None:
        """Undo one :meth:`pin`."""
        self.pins -= 1

    @property
    def pinned(self) -> bool:
        """True while some foreign event loop serves this map."""
        return self.pins > 0

    def hold(self, holder: Optional[Callable[[], Optional[str]]]) -> None:
        """Let ``holder`` decide whether ``loop()``, ``poll()`` and ``poll2()`` may run on this map.

        For a foreign driver whose poller cannot wait (the asyncio bridge)
        or a service that cannot run in every context (a hosted asyncio
        loop): :func:`claim` calls ``holder()``, which returns why the map
        cannot be served now (RuntimeError's message), or None when it can
        (after letting the map go, if the driver's event loop is gone).
        None removes the holder.
        """
        self._holder = holder

    def unhold(self, holder: Callable[[], Optional[str]]) -> None:
        """Remove ``holder`` if it is the one :meth:`hold` set (a no-op otherwise)."""
        if self._holder == holder:
            self._holder = None

    def inject(self, fd: int, flags: int) -> None:
        """Deliver ``flags`` for ``fd`` on the next pass, which then does not wait.

        For events the kernel will not report (TLS plaintext already
        decrypted into a buffer).  The event goes to whichever channel owns
        ``fd`` at that pass.
        """
        self._injected.append((fd, flags))

    @property
    def tracks_changes(self) -> bool:
        """True when the map records its changes (a :class:`SocketMap`)."""
        return self._tracked

    def asks_every_pass(self) -> bool:
        """True when some channel must be asked its interest on every pass
        (it overrides a predicate, or the map is a plain dict)."""
        return not self._tracked or bool(self._registered.asked_every_pass)

    def is_registered(self, fd: int) -> bool:
        """True while ``fd`` is registered for some channel."""
        return fd in self._registered

    def replace_change_record(self, convert: Callable[[Set[int]], Set[int]]) -> None:
        """Replace the set of changed fds shared with the SocketMap by ``convert(current)``.

        A foreign loop installs a set that wakes it when it grows, and puts
        a plain copy back when it leaves.  A no-op for an untracked map.
        """
        if self._tracked:
            record = convert(self._changed)
            self.map.replace_change_record(record)  # type: ignore[attr-defined]
            self._changed = record

    # -- registration ----------------------------------------------------

    def sync(self) -> None:
        """Bring the poller in line with the map and the channels' interest.

        Each channel is asked its interest at most once (3.11 asked once per
        pass; a predicate with a side effect must not see a second call).
        """
        if self._released:
            self._reopen()
        if self._tracked:
            # Both tests skip the work in the usual pass, where nothing
            # changed and no channel is asked every pass.
            if self._changed:
                self._sync_some(self._changed, asked_later=True)
            asked = self._registered.asked_every_pass
            if asked:
                for fd, obj in list(asked.items()):
                    self._register(fd, obj)
        else:
            self._sync_all()

    def _sync_all(self) -> None:
        # copies of the tables (list() is one C call): a signal handler or
        # another thread closing a channel changes them under the loop
        socket_map = self.map
        registered = self._registered
        if registered.has_keys():
            gone = [fd for fd in list(registered.by_fd) if registered.key_of(fd) not in socket_map]
        else:
            gone = [fd for fd in list(registered.by_fd) if fd not in socket_map]
        for fd in gone:
            self._drop(fd)
        self._changed.clear()
        for key, obj in list(socket_map.items()):
            if type(key) is int:
                self._register(key, obj)
            else:
                self._register_by_key(key, obj)

    def sync_fds(self, fds: Iterable[int]) -> None:
        """Bring the poller in line with the map for these fds only, now (even mid-pass)."""
        self._sync_some(set(fds), asked_later=False)

    def _sync_some(self, fds: Set[int], asked_later: bool) -> None:
        # Take a snapshot and remove it rather than pop(): set.pop() scans the
        # hash table from a moving finger, and a set that once held many
        # fds keeps a table that size, so each pop scans a mostly empty table;
        # difference_update() resizes the table when it leaves it mostly
        # empty.  Not clear(): a signal handler may add an fd after list().
        socket_map = self.map
        asked_every_pass = self._registered.asked_every_pass
        while fds:
            batch = list(fds)
            fds.difference_update(batch)
            for fd in batch:
                obj = socket_map.get(fd)
                if type(fd) is not int:
                    self._sync_key(fd, obj)
                    continue
                if obj is None:
                    self._drop(fd)
                    continue
                self._match_record(fd, obj)
                if not (asked_later and fd in asked_every_pass):
                    self._ask_interest(fd, obj)

    # -- maps keyed by objects with fileno() --------------------------------

    def _sync_key(self, key: object, obj: Optional[Channel]) -> None:
        if obj is None:
            fd = self._registered.fd_for_key.get(key)
            # the fd may belong to a newcomer already, keyed otherwise
            if fd is not None and self._registered.key_of(fd) is key:
                self._drop(fd)
        else:
            self._register_by_key(key, obj)

    def _register_by_key(self, key: object, obj: Channel) -> None:
        """:meth:`_register` for a map key that is not an int (a socket, as 3.11's select() took)."""
        try:
            fd = fd_of(key)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"socket map key {key!r} is neither an fd number nor an object with fileno()"
            ) from None
        except ValueError:
            # closed (fileno() is -1): its old fd, if any, reports NVAL by itself
            if key not in self._registered.fd_for_key:
                report_error(obj)
            return
        self._register(fd, obj)
        record = self._registered.by_fd.get(fd)
        if record is not None and record.channel is obj and record.key is not key:
            self._registered.set_key(fd, key)
            self._by_fd = ByFd(self.map, self._registered)

    def _register(self, fd: int, obj: Channel) -> None:
        self._match_record(fd, obj)
        self._ask_interest(fd, obj)

    def _match_record(self, fd: int, obj: Channel) -> None:
        # A new socket under a known fd number (a channel that closed and
        # reconnected inside a handler) is a new registration: the kernel
        # forgot the old socket when it was closed (epoll, kqueue).
        record = self._registered.by_fd.get(fd)
        if record is None or record.channel is not obj or record.socket is not getattr(obj, "socket", None):
            self._record_anew(fd, obj)

    def _ask_interest(self, fd: int, obj: Channel) -> None:
        """Ask ``obj`` what it wants and tell the poller (a no-op if unchanged)."""
        record = self._registered.by_fd.get(fd)
        interest = wanted_events if record is None or record.interest is None else record.interest
        try:
            events = interest(obj)
        except RERAISED:
            raise
        except BaseException:
            report_error(obj)
            return
        try:
            self.poller.set_mask(fd, events)
        except OSError as exc:
            if exc.errno not in _FD_GONE:
                raise
            self._injected.append((fd, NVAL))
        except KeyError:
            # another thread unregistered it meanwhile (release_fd): look again next pass
            self._changed.add(fd)
        except ValueError:
            # e.g. an fd past select()'s FD_SETSIZE: this channel's problem only
            report_error(obj)

    def _record_anew(self, fd: int, obj: Channel) -> None:
        if fd in self._registered:
            self._drop(fd)
        self._registered.add(fd, obj, interest_function(obj))

    def _drop(self, fd: int) -> None:
        self.poller.discard(fd)
        record = self._registered.drop(fd)
        if record is not None and record.key is not None and not self._registered.has_keys():
            self._by_fd = self.map

    def release_fd(self, fd: int) -> None:
        """Unregister ``fd`` now: its channel left the map and is about to close it.

        Done before the close because epoll keeps the registration of a
        closed socket that a forked child (or a dup) still holds, and would
        report that socket's events under the number of whoever gets it
        next.  The bookkeeping is left to the next pass, which sees the map
        changed: a signal handler may call this in the middle of the
        registration of that very fd.  Never raises: what cannot be undone
        now (a closed poller, another thread at work on it) is done by the
        next pass.
        """
        try:
            self.poller.discard(fd)
        except (OSError, ValueError, KeyError):
            pass

    def _reopen(self) -> None:
        """A fresh poller for a MapLoop that ``forget()`` closed under a pass."""
        with self._wake_lock:
            self._released = False
            self.poller = type(self.poller)()
            self._changed.update(self.map)
            _LOOPS.setdefault(id(self.map), self)
            self._run_new_loop_hooks()

    # -- one pass ----------------------------------------------------------

    def run_pass(self, timeout: Optional[float], poll_semantics: bool = True) -> None:
        """One pass: register what changed, wait up to ``timeout``, dispatch, run due timers.

        The only pass there is: ``loop()``, ``poll()``/``poll2()``, debug
        mode and every foreign driver (the asyncio bridge, Tk, a hosted
        asyncio loop) run these steps.  In debug mode a monitor is consulted
        at named points: around the wait, around each handler and each
        timer.  While a foreign loop serves the map (:attr:`pinned`) the
        pass ends with the registrations in line with the map, since that
        loop waits on them between passes.

        ``poll_semantics`` picks how events reach the channels: as 3.11's
        ``poll2()`` did (hang-ups call ``handle_close``) or as its select
        ``poll()`` did (see :func:`~asyncio_compat._delivery.deliver_select`).
        """
        # Counted for forget(): a handler, timer or signal handler may empty
        # the map (close_all()) and then add channels again within the pass,
        # which must go on with this poller.
        self._passes_running += 1
        try:
            monitor = self._debug_monitor() if _debug.enabled else None
            self.passes += 1
            # A signal handler may add or close channels at any point.  Up to
            # the end of sync() they are seen; outside the wait, the change
            # is a late change (see channel_moved) and the pass does not
            # wait.  It may have been made after loop() decided to run this
            # pass (the map emptied), so ``_late_change`` is cleared when a
            # pass ends and when a run claims the map, not here.  In the wait
            # (which PEP 475 resumes on the old set) the change calls wake().
            if self._changed or self._registered.asked_every_pass or not self._tracked:
                self.sync()
            # a pass that cannot wait (the foreign drivers' zero timeout) needs no wake
            self._waiting = timeout != 0.0
            poller = self.poller
            if self._injected or self._late_change:
                ready, self._injected = self._injected, []
                ready += poller.poll(0.0) if monitor is None else monitor.wait(poller.poll, 0.0)
            else:
                timers = self.timers
                wait = timers.clip(timeout) if timers.live else timeout
                ready = poller.poll(wait) if monitor is None else monitor.wait(poller.poll, wait)
            self._waiting = False
            if self.watched:  # signal pipes, a wake pipe: empty in most programs
                ready = self._serve_watched(ready)
            self.events += len(ready)
            by_fd = self._registered.by_fd
            # bind each event to its registration now: handlers may close and reuse fds
            events: List[Tuple[int, Registration, int]] = []
            # a loop, not a comprehension: no comprehension frame per pass
            for fd, flags in ready:
                record = by_fd.get(fd)
                if record is not None:
                    events.append((fd, record, flags))
            if events:
                self._deliver(events, poll_semantics, monitor)
            if self.timers.live:
                self.timers.run_due(time.monotonic(), None if monitor is None else monitor.run_timer)
            if self.pins:
                self.sync()
        finally:
            self._passes_running -= 1
            self._waiting = False
            self._late_change = False

    def _deliver(
        self,
        events: List[Tuple[int, Registration, int]],
        poll_semantics: bool,
        monitor: Optional[LoopMonitor],
    ) -> None:
        """Deliver a pass's events, each to the channel it was bound to.

        An event whose fd no longer belongs to its channel (closed, or
        reused by another channel during the pass) is dropped.  READ alone,
        the common case, is delivered here; the rest by ``_delivery``'s
        per-channel functions, with the same outcomes.  Then a channel that
        reports its interest changes (on a tracked map) is asked for its
        mask at once, since it may want something else now; when the asking
        raises, ``handle_error()`` follows that one call.
        """
        owner_now = self._by_fd.get
        poller = self.poller
        registered = poller.masks
        tracked = self._tracked
        for fd, record, flags in events:
            obj = record.channel
            if owner_now(fd) is not obj:
                continue
            if monitor is not None:
                monitor.deliver(fd, obj, flags, self._by_fd, poller, poll_semantics)
            elif flags == READ:
                try:
                    obj.handle_read_event()
                except RERAISED:
                    raise
                except OSError as exc:
                    if poll_semantics and exc.errno in DISCONNECTED:
                        obj.handle_close()
                    else:
                        obj.handle_error()
                except BaseException:
                    obj.handle_error()
            elif poll_semantics:
                deliver_poll(obj, flags, fd, self._by_fd)
            else:
                deliver_select(obj, flags, fd, self._by_fd, poller)
            interest = record.interest
            if interest is not None and tracked and owner_now(fd) is obj:
                try:
                    wanted = interest(obj)
                except RERAISED:
                    raise
                except BaseException:
                    report_error(obj)
                    continue
                if wanted != registered.get(fd):
                    try:
                        poller.set_mask(fd, wanted)
                    except Exception:
                        # the socket may have changed under the same fd (a
                        # reconnect inside the handler), or the fd be gone
                        self._register(fd, obj)

    def _debug_monitor(self) -> LoopMonitor:
        """This loop's debug-mode monitor, made on the first pass that needs it."""
        if self._monitor is None:
            # `import asyncio_compat` does not load debug mode's code (and logging)
            from ._debug_monitor import LoopMonitor

            self._monitor = LoopMonitor()
        return self._monitor

    def stats(self) -> LoopStats:
        """This loop's :class:`~asyncio_compat.LoopStats` (see ``loop_stats()``)."""
        from ._loop_stats import LoopStats  # `import asyncio_compat` does not load dataclasses

        timings: Tuple[Optional[float], Optional[float]] = (None, None)
        if _debug.enabled:
            timings = self._monitor.totals() if self._monitor is not None else (0.0, 0.0)
        polled = len(self._registered.asked_every_pass) if self._tracked else len(self.map)
        return LoopStats(self.poller.name, len(self.map), polled, len(self.timers),
                         self.passes, self.events, *timings)

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
        if fd in self.watched or fd in self._registered:
            raise KeyError(f"fd {fd} is already watched by this loop")
        try:
            self.poller.register(fd, READ)
        except RuntimeError:
            # the asyncio bridge's poller before it is bound to its event
            # loop: registered after the bridge's first pass (_serve_watched)
            self._watches_to_register.add(fd)
        self.watched[fd] = on_ready

    def _register_watches(self) -> None:
        fds, self._watches_to_register = self._watches_to_register, set()
        for fd in fds:
            if fd in self.watched and fd not in self.poller:
                self.poller.register(fd, READ)

    def unwatch_fd(self, fd: int) -> None:
        """Stop watching an fd given to :meth:`watch_fd`; an unknown fd is ignored."""
        self._watches_to_register.discard(fd)
        if self.watched.pop(fd, None) is not None and fd in self.poller:
            self.poller.unregister(fd)

    def _serve_watched(self, ready: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
        # here rather than in sync(): run_pass checks self.watched anyway
        if self._watches_to_register:
            self._register_watches()
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

        For a signal handler or another thread that added or removed a
        channel during the wait: PEP 475 resumes the wait on the old set,
        without the new channel, and epoll and kqueue drop a closed fd
        without a word (the sweep would notice it within ``sweep_interval``).
        An always-writable pipe end is registered.  A poller with a kernel
        object (epoll, kqueue, /dev/poll) takes it at once and the wait
        returns.  select and poll wait on arrays built when the system call
        starts: the pipe ends a wait that has not started yet (the change
        came after ``waiting`` was set, before the call), and a wait under
        way ends by itself when a closed fd is in its array (EBADF or
        POLLNVAL).  Outside a wait it does nothing, and on Windows too
        (only select there, which takes sockets only).

        Never raises (it runs inside ``close()``, maybe on another thread
        than the loop's): a wake that cannot be made leaves the wait to its
        timeout.
        """
        if not self._waiting or self._wake_pipe is not None:
            return
        # not blocking: the holder is closing this MapLoop or making the same wake
        if not self._wake_lock.acquire(blocking=False):
            return
        try:
            if self._waiting and self._wake_pipe is None and not self._released:
                self._add_wake_pipe()
        except (OSError, ValueError):
            pass  # no fd left for the pipe, or the poller closed by another path
        finally:
            self._wake_lock.release()

    def _add_wake_pipe(self) -> None:
        if self.poller.closed or _NO_SELECTABLE_PIPES:
            return
        read_fd, write_fd = os.pipe()
        if self._wake_pipe is not None:  # a signal handler made one meanwhile
            os.close(read_fd)
            os.close(write_fd)
            return
        self._wake_pipe = (read_fd, write_fd)
        # served as a watched fd, so run_pass pays nothing for it between wakes
        self.watched[write_fd] = self._end_wake
        try:
            if write_fd in self.poller:
                # the number of a channel closed behind our back since sync():
                # its registration is stale, the next pass would drop it anyway
                self._drop(write_fd)
            self.poller.register(write_fd, WRITE)
        except (OSError, ValueError, KeyError):
            self.poller.discard(write_fd)
            self._drop_wake_pipe()
            raise OSError("the wake pipe could not be registered") from None

    def _end_wake(self) -> None:
        with self._wake_lock:
            if self._wake_pipe is not None:
                # unregistered before it is closed (see release_fd)
                self.poller.discard(self._wake_pipe[1])
            self._drop_wake_pipe()

    def _drop_wake_pipe(self) -> None:
        """Close the wake pipe (leaving the poller alone)."""
        if self._wake_pipe is None:
            return
        read_fd, write_fd = self._wake_pipe
        self._wake_pipe = None
        self.watched.pop(write_fd, None)
        os.close(read_fd)
        os.close(write_fd)

    # -- fork ------------------------------------------------------------------

    def renew_after_fork(self) -> None:
        """In a forked child: a poller of its own, every channel registered afresh.

        The inherited poller shares its kernel object (epoll, /dev/poll) with
        the parent, or holds a dead one (kqueue on the BSDs): its fd is closed
        without a single change to the kernel's interest set, which is the
        parent's too.  A poller served by a foreign event loop is left alone.
        """
        if self.pinned:
            return
        # a fresh lock: another thread of the parent may have held this one
        # at the fork, and that thread does not exist here to release it
        self._wake_lock = threading.RLock()
        self._drop_wake_pipe()  # a fork from a signal handler during the wait
        old = self.poller
        self.poller = type(old)()
        try:
            old.close()  # only closes the fd: no epoll_ctl, no kevent
        except OSError:
            pass  # a kqueue fd is not inherited on the BSDs
        self._registered.clear()
        self._by_fd = self.map
        self._injected.clear()
        self._changed.update(self.map)
        self._watches_to_register.clear()
        for fd in self.watched:
            self.poller.register(fd, READ)

    def close(self) -> None:
        """Release the poller, the wake pipe and the timers (see forget())."""
        with self._wake_lock:  # not while another thread registers the wake pipe
            self._released = True
            self.timers.clear()
            self.poller.close()
            self._registered.clear()
            self._by_fd = self.map
            self._drop_wake_pipe()  # left by a wait that ended by an exception
            self.watched.clear()
            self._watches_to_register.clear()


# id(map) -> MapLoop; the MapLoop holds the map, so the id is not reused
_LOOPS: Dict[int, MapLoop] = {}
# called with every new MapLoop (see on_new_loop)
_NEW_LOOP_HOOKS: List[Callable[[MapLoop], None]] = []


def on_new_loop(hook: Callable[[MapLoop], None]) -> None:
    """Call ``hook(map_loop)`` for every MapLoop made from now on, as it is made.

    For services that live beside a map's channels (signal handlers) and
    must follow its loop when it is released and made again.
    """
    _NEW_LOOP_HOOKS.append(hook)


def all_loops() -> List[MapLoop]:
    """Every MapLoop kept for a map (a snapshot)."""
    return list(_LOOPS.values())


def loop_for(socket_map: ChannelMap, poller_cls: Optional[Type[Poller]] = None) -> MapLoop:
    """The MapLoop serving ``socket_map``, created (or re-created on another
    backend) as needed.  ``None`` keeps the existing one whatever its backend.

    Raises RuntimeError when another backend is asked for while a foreign
    event loop serves the map (:meth:`MapLoop.pin`).
    """
    map_loop = _LOOPS.get(id(socket_map))
    if map_loop is not None and (poller_cls is None or type(map_loop.poller) is poller_cls):
        return map_loop
    if map_loop is not None and map_loop.pinned:
        raise RuntimeError(
            f"this socket map is served by another event loop (through {map_loop.poller!r}); "
            "detach it before running loop() on it with another poller"
        )
    new = MapLoop(socket_map, get_default_poller() if poller_cls is None else poller_cls)
    if map_loop is not None:
        new.timers = map_loop.timers
        map_loop.timers = _timers.TimerQueue()
        map_loop.close()
    _LOOPS[id(socket_map)] = new
    return new


def release_abandoned(socket_map: ChannelMap) -> Optional[MapLoop]:
    """The MapLoop serving ``socket_map`` (or None), once a holder whose
    event loop is gone has let the map go (see :meth:`MapLoop.hold`)."""
    map_loop = _LOOPS.get(id(socket_map))
    if map_loop is not None and map_loop._holder is not None:
        map_loop._holder()  # its refusal, if any, is for loop() and poll() (see claim)
        map_loop = _LOOPS.get(id(socket_map))
    return map_loop


def claim(socket_map: ChannelMap) -> Optional[MapLoop]:
    """The MapLoop serving ``socket_map`` (or None) for a pass of ``loop()``, ``poll()`` or ``poll2()``.

    Changes made to the map before the run are registered by its first
    pass, which waits as usual: only a change made after this call (a signal
    handler, another thread) is a late change: it makes a pass skip its wait.
    Raises RuntimeError, with the holder's reason, while the map's holder
    refuses them (see :meth:`MapLoop.hold`).
    """
    map_loop = _LOOPS.get(id(socket_map))
    if map_loop is not None and map_loop._holder is not None:
        refusal = map_loop._holder()
        if refusal is not None:
            raise RuntimeError(refusal)
        map_loop = _LOOPS.get(id(socket_map))
    if map_loop is not None:
        map_loop._late_change = False
    return map_loop


def channel_moved(socket_map: ChannelMap, left: Optional[int] = None) -> None:
    """Tell the loop of ``socket_map`` that a channel joined or left it.

    ``left`` is the fd of a channel that left, about to close its socket: it
    is unregistered now (:meth:`MapLoop.release_fd`).  The rest only matters
    during the loop's wait (a signal handler, another thread): see
    :meth:`MapLoop.wake`.  Never raises.
    """
    map_loop = _LOOPS.get(id(socket_map))
    if map_loop is not None:
        if left is not None:
            map_loop.release_fd(left)
        if map_loop._waiting:
            map_loop.wake()
        else:
            map_loop._late_change = True


def existing_loop(socket_map: ChannelMap) -> Optional[MapLoop]:
    """The MapLoop serving ``socket_map``, or None if it has none now."""
    return _LOOPS.get(id(socket_map))


def served_maps() -> List[ChannelMap]:
    """The socket maps that have a MapLoop now."""
    return [map_loop.map for map_loop in _LOOPS.values()]


def forget(socket_map: ChannelMap) -> None:
    """Close and drop the MapLoop of a map that emptied (keeps pending timers).

    Called during a pass of that MapLoop (by a handler, a timer or a signal
    handler in the wait), it does nothing: the pass goes on with its poller,
    which the map may need again before the pass ends (a handler that calls
    ``close_all()`` and then opens new channels), and ``loop()`` calls it
    again once its passes are over if the map is still empty.
    """
    map_loop = _LOOPS.get(id(socket_map))
    if map_loop is None or map_loop._passes_running:
        return
    # pop, not del: a signal handler may forget() this map meanwhile
    if (
        not map_loop.timers.keeps_loop_running()
        and not map_loop.pinned
        and _LOOPS.pop(id(socket_map), None) is map_loop
    ):
        map_loop.close()


def run_once(socket_map: ChannelMap, poller_cls: Type[Poller], timeout: Optional[float]) -> None:
    """One 3.11-style pass on a throwaway poller (the standalone poll()/poll2()).

    The map's timers are served as in a pass of ``loop()`` (the wait ends
    at the earliest deadline, due timers run), so that code driving a map
    with its own ``while ...: poll()`` gets what 3.11's ``loop()``, a
    repetition of ``poll()``, gave it.  Raises RuntimeError while a foreign
    driver holds the map (see :func:`claim`).
    """
    kept = claim(socket_map)
    map_loop = MapLoop(_Untracked(socket_map), poller_cls, serves=socket_map)
    if kept is not None:
        map_loop.timers = kept.timers
    try:
        map_loop.run_pass(timeout, poll_semantics=poller_cls.name != "select")
    finally:
        map_loop.timers = _timers.TimerQueue()  # close() clears its queue: not the map's
        map_loop.close()


class _Untracked(Mapping[int, Channel]):
    """A view of a map that hides its change record, forcing a full pass."""

    __slots__ = ("_map",)

    def __init__(self, socket_map: ChannelMap) -> None:
        self._map = socket_map

    def __iter__(self) -> Iterator[int]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __getitem__(self, fd: int) -> Channel:
        return self._map[fd]


def poller_class_for(use_poll: bool, poller: PollerSpec) -> Type[Poller]:
    """The backend for a ``loop()`` call.

    An explicit ``poller`` (a name or class) wins.  Otherwise the process
    default is used; when that default is select, ``use_poll=True`` still
    upgrades to poll, as in 3.11.
    """
    if poller is not None:
        return resolve_poller(poller)
    cls = get_default_poller()
    if use_poll and cls.name == "select" and "poll" in pollers.available():
        return pollers.get("poll")
    return cls
