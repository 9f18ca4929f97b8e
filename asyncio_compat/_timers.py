"""Deadline-ordered timers for one socket map's loop, and the wake-up
machinery that lets another event loop (asyncio, Tk) run that loop's passes.

The queue is a heap of ``(when, sequence, handle)``: ties fire in scheduling
order.  A cancelled handle stays in the heap (marked) and is skipped when it
comes up, so cancel() is O(1), even from inside a callback.
"""

from __future__ import annotations

import heapq
import itertools
import sys
import time
import traceback
from typing import Any, Callable, Iterable, List, Optional, Set, Tuple

from ._errors import _reraised_exceptions

_sequence = itertools.count()

# A wait that ends this close to a deadline counts as having reached it: the
# kernel may round a timeout to its own clock ticks (asyncio does the same).
_CLOCK_SLACK = max(time.get_clock_info("monotonic").resolution, 1e-6)


class TimerHandle:
    """A scheduled call, as returned by ``call_later``, ``call_at`` and ``call_every``.

    ``when`` is the next deadline on the ``time.monotonic()`` clock (for a
    periodic timer it moves on after each run); ``interval`` is None for a
    one-shot timer.  ``cancelled`` is true once the timer will not run again:
    after :meth:`cancel`, and for a one-shot timer once it has run.
    """

    __slots__ = ("when", "callback", "args", "interval", "cancelled", "background", "_queue")

    def __init__(
        self,
        when: float,
        callback: Callable[..., Any],
        args: Tuple[Any, ...],
        interval: Optional[float],
        queue: TimerQueue,
    ) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.interval = interval  # seconds between runs of a periodic timer
        self.cancelled = False
        self.background = False  # see TimerQueue.schedule
        self._queue = queue

    def cancel(self) -> None:
        """Stop the timer; a periodic timer does not run again.

        Safe to call at any time: twice, after the timer ran, or from inside
        its own callback.
        """
        if not self.cancelled:
            self.cancelled = True
            self._queue._live -= 1
            if self.background:
                self._queue._background -= 1

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        every = "" if self.interval is None else f" every {self.interval}s"
        return f"<TimerHandle when={self.when:.6f}{every} {self.callback!r}{state}>"


class TimerQueue:
    """The timers of one loop.

    ``waker``, when set, is called with the deadline of every timer scheduled
    from now on: a foreign event loop serving the map uses it to wake up in
    time for a timer added from outside its own callbacks.
    """

    def __init__(self) -> None:
        self._heap: List[Tuple[float, int, TimerHandle]] = []
        self._live = 0  # handles scheduled and not cancelled
        self._background = 0  # how many of those are background timers
        self.waker: Optional[Callable[[float], None]] = None

    def __bool__(self) -> bool:
        return self._live > 0

    def keeps_loop_running(self) -> bool:
        """True while a timer other than a background one is pending."""
        return self._live > self._background

    def __len__(self) -> int:
        return self._live

    def schedule(
        self,
        when: float,
        callback: Callable[..., Any],
        args: Tuple[Any, ...] = (),
        interval: Optional[float] = None,
        *,
        background: bool = False,
    ) -> TimerHandle:
        """Add a timer due at ``when`` (monotonic clock); no validation here.

        A ``background`` timer runs like the others while the loop runs, but
        does not keep it running (see :meth:`keeps_loop_running`): ``loop()``
        returns once the map is empty, and releasing the loop drops such
        timers (used by ``asyncio_compat.shutdown``).
        """
        handle = TimerHandle(when, callback, args, interval, self)
        if background:
            handle.background = True
            self._background += 1
        self._push(handle)
        if self.waker is not None:
            self.waker(when)
        return handle

    def _push(self, handle: TimerHandle) -> None:
        heapq.heappush(self._heap, (handle.when, next(_sequence), handle))
        self._live += 1

    def next_deadline(self) -> Optional[float]:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def clip(self, timeout: Optional[float]) -> Optional[float]:
        """``timeout`` shortened so the wait ends at the earliest deadline."""
        if not self._live:
            return timeout
        deadline = self.next_deadline()
        if deadline is None:
            return timeout
        until = max(0.0, deadline - time.monotonic())
        return until if timeout is None else min(timeout, until)

    def run_due(self, now: float) -> None:
        """Run every timer due at ``now``, in deadline order.

        Timers scheduled by a callback for ``now`` or earlier wait for the
        next pass, so a callback that reschedules itself cannot starve I/O.
        A callback's exception is reported on stderr (see
        :func:`report_timer_error`) and stops nothing else; ExitNow,
        KeyboardInterrupt and SystemExit propagate to the loop's caller.
        """
        heap = self._heap
        limit = now + _CLOCK_SLACK
        due: List[Tuple[float, int, TimerHandle]] = []
        while heap and heap[0][0] <= limit:
            entry = heapq.heappop(heap)
            if not entry[2].cancelled:
                due.append(entry)
        for index, (_, _, handle) in enumerate(due):
            if handle.cancelled:  # an earlier callback cancelled it
                continue
            try:
                self._fire(handle)
            except BaseException:
                # ExitNow & co leave the loop: what did not run yet stays
                # scheduled, with its place among equal deadlines
                for entry in due[index + 1 :]:
                    heapq.heappush(heap, entry)
                raise

    def _fire(self, handle: TimerHandle) -> None:
        if handle.interval is None:
            handle.cancelled = True
            self._live -= 1
            if handle.background:
                self._background -= 1
        else:
            # next run counted from the planned time, so periods do not drift;
            # a callback slower than its period runs again on the next pass
            handle.when = max(handle.when + handle.interval, time.monotonic())
            self._live -= 1
            self._push(handle)
        try:
            handle.callback(*handle.args)
        except _reraised_exceptions:
            raise
        except BaseException:
            report_timer_error(handle)

    def clear(self) -> None:
        """Cancel every timer."""
        for _, _, handle in self._heap:
            handle.cancelled = True
        self._heap.clear()
        self._live = 0
        self._background = 0


def report_timer_error(handle: TimerHandle) -> None:
    """Report the exception a timer callback raised, as ``handle_error`` would.

    Writes ``error: uncaptured python exception in timer <callback>`` and the
    traceback to stderr.  The loop and the other timers go on.
    """
    sys.stderr.write(f"error: uncaptured python exception in timer {handle.callback!r}\n")
    traceback.print_exc()


# -- serving a map from a foreign event loop -----------------------------------


class ChangeSignal(Set[int]):
    """The set of changed fds of a SocketMap, calling ``notify(fds)`` when it grows.

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
    (:class:`ChangeSignal`), and every ``poll_interval`` seconds while some
    channel must be asked every pass (it overrides ``readable()`` or
    ``writable()``, or the map is a plain dict).

    Subclasses provide :meth:`_call_soon`, :meth:`_call_later`,
    :meth:`_failed` and :meth:`_release`.
    """

    def __init__(self, socket_map: Any, state: Any, poll_interval: float) -> None:
        self.map = socket_map
        self.state = state  # the MapLoop: poller, registrations, timers
        self.poll_interval = poll_interval
        self.attached = True
        self.error: Optional[BaseException] = None  # what ended the driver, if anything did
        self._in_pass = False
        self._pass_queued = False
        self._timer_deadline: Optional[float] = None  # when _cancel_timer's wake-up is due
        self._cancel_timer: Optional[Cancel] = None
        self._cancel_tick: Optional[Cancel] = None
        state.pins += 1
        self._install_signal()
        state.timers.waker = self._timer_added

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
        if not self.state.tracked or self.state.polled:
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
            self.state.run_pass(0.0)
            self.state.sync()
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
        gone = {fd for fd in fds if fd not in self.map and fd in self.state.owners}
        if gone:
            self.state._sync_fds(gone)
        self.queue_pass()

    def _timer_added(self, when: float) -> None:
        if self._in_pass:
            return  # rescheduled when the pass ends
        if self._timer_deadline is None or when < self._timer_deadline:
            self._reschedule()

    def _reschedule(self) -> None:
        if not self.attached:
            return
        deadline = self.state.timers.next_deadline()
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
        # the MapLoop shares the SocketMap's change record; swap both
        if self.state.tracked:
            signal = ChangeSignal(self.state.dirty, self._map_changed)
            self.map._changed = signal
            self.state.dirty = signal

    def _remove_signal(self) -> None:
        signal = self.state.dirty
        if isinstance(signal, ChangeSignal):
            plain = set(signal)
            self.map._changed = plain
            self.state.dirty = plain

    def detach(self) -> None:
        """Stop serving the map; the channels stay in it, untouched.  Idempotent."""
        if not self.attached:
            return
        self.attached = False
        self._stop_timer()
        if self._cancel_tick is not None:
            self._cancel_tick()
            self._cancel_tick = None
        self.state.timers.waker = None
        self._remove_signal()
        self.state.pins -= 1
        self._release()
