"""Serving a socket map from another event loop (asyncio, Tk).

A :class:`ForeignDriver` runs the passes of one map's MapLoop from the
foreign loop's callbacks, through the MapLoop's named surface (``pin``,
``run_pass``, ``sync``, ``sync_fds``, ``replace_change_record``...).  The
asyncio bridge and the Tk integration subclass it.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Optional, Set

from ._channel import ChannelMap
from ._loop import MapLoop


class NotifyingChangeRecord(Set[int]):
    """A change record (the set of changed fds of a SocketMap) that calls ``notify(fds)`` when it grows.

    Installed in place of the map's plain change record while a foreign loop
    serves the map, so that a channel added, removed or whose interest
    changed outside that loop's callbacks gets a pass without any polling.
    """

    def __init__(self, fds: Iterable[int], notify: Callable[[Iterable[int]], None]) -> None:
        super().__init__(fds)
        self.notify = notify

    def add(self, fd: int) -> None:
        set.add(self, fd)
        self.notify((fd,))

    def update(self, *others: Iterable[int]) -> None:
        fds = set().union(*others)
        set.update(self, fds)
        self.notify(fds)


Cancel = Callable[[], None]


class ForeignDriver:
    """Runs the passes of one map's MapLoop from another event loop's callbacks.

    A pass never waits: it registers what changed, collects what the poller
    has ready, dispatches, runs the due timers and registers again, so the
    foreign loop watches the right fds when it next waits.  Passes run when
    the foreign loop reports an fd (subclass's business), when the earliest
    timer is due, when the map or a channel's interest changes outside a pass
    (:class:`NotifyingChangeRecord`), and every ``poll_interval`` seconds while some
    channel must be asked every pass (it overrides ``readable()`` or
    ``writable()``, or the map is a plain dict).

    Subclasses provide :meth:`_call_soon`, :meth:`_call_later`,
    :meth:`_failed` and :meth:`_release`.
    """

    def __init__(self, socket_map: ChannelMap, map_loop: MapLoop, poll_interval: float) -> None:
        self.map = socket_map
        self.map_loop = map_loop  # the MapLoop: poller, registrations, timers
        self.poll_interval = poll_interval
        self.attached = True
        self.error: Optional[BaseException] = None  # what ended the driver, if anything did
        self._in_pass = False
        self._pass_queued = False
        self._timer_deadline: Optional[float] = None  # when _cancel_timer's wake-up is due
        self._cancel_timer: Optional[Cancel] = None
        self._cancel_tick: Optional[Cancel] = None
        map_loop.pin()
        self._install_signal()
        map_loop.timers.waker = self._timer_added

    # -- what a subclass provides -------------------------------------------

    def _call_soon(self, callback: Callable[[], None]) -> None:
        raise NotImplementedError

    def _call_later(self, delay: float, callback: Callable[[], None]) -> Cancel:
        raise NotImplementedError

    def _failed(self, exc: BaseException) -> None:
        """A pass raised ``exc`` (ExitNow and the like): the driver is detached."""
        raise exc

    def _release(self) -> None:
        """Stop watching the foreign loop's fds; called once by detach()."""

    def _tick_interval(self) -> Optional[float]:
        """Seconds between unconditional passes, or None for none."""
        if self.map_loop.asks_every_pass():
            return self.poll_interval
        return None

    def _after_pass(self) -> None:
        """Hook run after every successful pass."""

    # -- passes -----------------------------------------------------------------

    def run_pass(self) -> None:
        """One pass that never waits; a no-op once detached.

        ExitNow, KeyboardInterrupt, SystemExit (and a poller error) detach the
        driver and go to :meth:`_failed`.
        """
        self._pass_queued = False
        if not self.attached or self._in_pass:
            return
        self._in_pass = True
        try:
            self.map_loop.run_pass(0.0)
        except BaseException as exc:
            self._in_pass = False
            self.error = exc
            self.detach()
            self._failed(exc)
            return
        self._in_pass = False
        self._reschedule()
        self._after_pass()

    def queue_pass(self) -> None:
        """Ask for a pass soon, once however often it is asked."""
        if self.attached and not self._pass_queued and not self._in_pass:
            self._pass_queued = True
            self._call_soon(self.run_pass)

    def _map_changed(self, fds: Iterable[int]) -> None:
        # An fd that left the map is unregistered at once, while it is still
        # open: its channel closes the socket right after leaving the map, and
        # a foreign loop must not keep watching a number the kernel may hand
        # out again (asyncio would attach the stale watch to the new socket).
        gone = [fd for fd in fds if fd not in self.map and self.map_loop.is_registered(fd)]
        if gone:
            self.map_loop.sync_fds(gone)
        self.queue_pass()

    def _timer_added(self, when: float) -> None:
        if self._in_pass:
            return  # rescheduled when the pass ends
        if self._timer_deadline is None or when < self._timer_deadline:
            self._reschedule()

    def _reschedule(self) -> None:
        if not self.attached:
            return
        deadline = self.map_loop.timers.next_deadline()
        if deadline != self._timer_deadline:
            self._stop_timer()
            if deadline is not None:
                delay = max(0.0, deadline - time.monotonic())
                self._cancel_timer = self._call_later(delay, self._timer_due)
                self._timer_deadline = deadline
        self._reschedule_tick()

    def _reschedule_tick(self) -> None:
        interval = self._tick_interval()
        if interval is None and self._cancel_tick is not None:
            self._cancel_tick()
            self._cancel_tick = None
        elif interval is not None and self._cancel_tick is None:
            self._cancel_tick = self._call_later(interval, self._tick)

    def _timer_due(self) -> None:
        self._cancel_timer = None
        self._timer_deadline = None
        self.run_pass()

    def _tick(self) -> None:
        self._cancel_tick = None
        self.run_pass()

    def _stop_timer(self) -> None:
        if self._cancel_timer is not None:
            self._cancel_timer()
        self._cancel_timer = None
        self._timer_deadline = None

    # -- set-up and tear-down -------------------------------------------------------

    def _install_signal(self) -> None:
        self.map_loop.replace_change_record(lambda fds: NotifyingChangeRecord(fds, self._map_changed))

    def _remove_signal(self) -> None:
        self.map_loop.replace_change_record(set)

    def detach(self) -> None:
        """Stop serving the map; the channels stay in it, untouched.  Idempotent."""
        if not self.attached:
            return
        self.attached = False
        self._stop_timer()
        if self._cancel_tick is not None:
            self._cancel_tick()
            self._cancel_tick = None
        self.map_loop.timers.waker = None
        self._remove_signal()
        self.map_loop.unpin()
        self._release()
