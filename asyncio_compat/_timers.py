"""Deadline-ordered timers for one socket map's loop.

The queue is a heap of ``(when, sequence, handle)``: ties fire in scheduling
order.  A cancelled handle stays in the heap (marked) and is skipped when it
comes up, so cancel() is O(1), even from inside a callback.  Once cancelled
entries outnumber the live ones (and there are more than a few), the heap is
rebuilt without them: memory stays proportional to the live timers however
often a long timer is cancelled and made again (an idle timeout restarted per
message), and the rebuilds cost O(1) per cancel on average.
"""

from __future__ import annotations

import heapq
import itertools
import sys
import time
from typing import Any, Callable, List, Optional, Tuple

from ._delivery import RERAISED

_sequence = itertools.count()

# how a timer's callback is called when not directly: runner(callback, args)
Runner = Callable[[Callable[..., Any], Tuple[Any, ...]], None]

# A wait that ends this close to a deadline counts as having reached it: the
# kernel may round a timeout to its own clock ticks (asyncio does the same).
_CLOCK_SLACK = max(time.get_clock_info("monotonic").resolution, 1e-6)


# a heap this short is never rebuilt: skipping its cancelled entries costs less
_COMPACT_ABOVE = 64


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
            self._queue.cancelled_one(self.background)

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
        #: handles scheduled and not cancelled: read it (the loop tests it
        #: every pass without a call), never change it
        self.live = 0
        self._background = 0  # how many of those are background timers
        self.waker: Optional[Callable[[float], None]] = None

    def __bool__(self) -> bool:
        return self.live > 0

    def keeps_loop_running(self) -> bool:
        """True while a timer other than a background one is pending."""
        return self.live > self._background

    def __len__(self) -> int:
        return self.live

    def cancelled_one(self, background: bool) -> None:
        """Count a handle of this queue that was just cancelled (see TimerHandle.cancel)."""
        self.live -= 1
        if background:
            self._background -= 1
        heap = self._heap
        if len(heap) > _COMPACT_ABOVE and len(heap) > 2 * self.live:
            # in place: run_due may be iterating over this very list object
            heap[:] = [entry for entry in heap if not entry[2].cancelled]
            heapq.heapify(heap)

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
        self.live += 1

    def next_deadline(self) -> Optional[float]:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def clip(self, timeout: Optional[float]) -> Optional[float]:
        """``timeout`` shortened so the wait ends at the earliest deadline."""
        if not self.live:
            return timeout
        deadline = self.next_deadline()
        if deadline is None:
            return timeout
        until = max(0.0, deadline - time.monotonic())
        return until if timeout is None else min(timeout, until)

    def run_due(self, now: float, runner: Optional[Runner] = None) -> None:
        """Run every timer due at ``now``, in deadline order.

        ``runner(callback, args)``, when given, makes each call instead of
        ``callback(*args)`` (debug mode times them that way).

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
                self._fire(handle, runner)
            except BaseException:
                # ExitNow & co leave the loop: what did not run yet stays
                # scheduled, with its place among equal deadlines
                for entry in due[index + 1 :]:
                    heapq.heappush(heap, entry)
                raise

    def _fire(self, handle: TimerHandle, runner: Optional[Runner]) -> None:
        if handle.interval is None:
            handle.cancelled = True
            self.live -= 1
            if handle.background:
                self._background -= 1
        else:
            # next run counted from the planned time, so periods do not drift;
            # a callback slower than its period runs again on the next pass
            handle.when = max(handle.when + handle.interval, time.monotonic())
            self.live -= 1
            self._push(handle)
        try:
            if runner is None:
                handle.callback(*handle.args)
            else:
                runner(handle.callback, handle.args)
        except RERAISED:
            raise
        except BaseException:
            report_timer_error(handle)

    def clear(self) -> None:
        """Cancel every timer."""
        for _, _, handle in self._heap:
            handle.cancelled = True
        self._heap.clear()
        self.live = 0
        self._background = 0


def report_timer_error(handle: TimerHandle) -> None:
    """Report the exception a timer callback raised, as ``handle_error`` would.

    Writes ``error: uncaptured python exception in timer <callback>`` and the
    traceback to stderr.  The loop and the other timers go on.
    """
    import traceback  # see _delivery.report_error: imported on the first error only

    sys.stderr.write(f"error: uncaptured python exception in timer {handle.callback!r}\n")
    traceback.print_exc()
