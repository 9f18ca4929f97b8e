"""Deadline-ordered timers for one socket map's loop.

A heap of ``(when, sequence, handle)``: ties fire in scheduling order.  A
cancelled handle stays in the heap (marked) and is skipped when it comes up,
so cancel() is O(1), even from inside a callback.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Any, Callable, List, Optional, Tuple

from ._errors import _reraised_exceptions

_sequence = itertools.count()


class TimerHandle:
    """A scheduled call.  ``when`` is on the ``time.monotonic()`` clock."""

    __slots__ = ("when", "callback", "args", "interval", "cancelled", "_queue")

    def __init__(
        self,
        when: float,
        callback: Callable[..., Any],
        args: Tuple[Any, ...],
        interval: Optional[float],
        queue: "TimerQueue",
    ) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.interval = interval  # seconds between runs of a periodic timer
        self.cancelled = False
        self._queue = queue

    def cancel(self) -> None:
        """Stop the timer; a periodic timer does not run again.  Idempotent."""
        if not self.cancelled:
            self.cancelled = True
            self._queue._live -= 1

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<TimerHandle when={self.when:.6f} {self.callback!r}{state}>"


class TimerQueue:
    """The timers of one loop."""

    def __init__(self) -> None:
        self._heap: List[Tuple[float, int, TimerHandle]] = []
        self._live = 0  # handles scheduled and not cancelled

    def __bool__(self) -> bool:
        return self._live > 0

    def __len__(self) -> int:
        return self._live

    def schedule(
        self,
        when: float,
        callback: Callable[..., Any],
        args: Tuple[Any, ...] = (),
        interval: Optional[float] = None,
    ) -> TimerHandle:
        handle = TimerHandle(when, callback, args, interval, self)
        self._push(handle)
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
        A callback's exception is printed to stderr with its traceback and
        stops nothing else; ExitNow, KeyboardInterrupt and SystemExit propagate.
        """
        heap = self._heap
        due: List[TimerHandle] = []
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            if not handle.cancelled:
                due.append(handle)
        for handle in due:
            if handle.cancelled:
                continue
            self._fire(handle)

    def _fire(self, handle: TimerHandle) -> None:
        if handle.interval is None:
            handle.cancelled = True
            self._live -= 1
        else:
            # next run counted from the planned time, so periods do not drift
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
        for _, _, handle in self._heap:
            handle.cancelled = True
        self._heap.clear()
        self._live = 0


def report_timer_error(handle: TimerHandle) -> None:
    """Print a failed timer's traceback to stderr, as handle_error would."""
    import sys
    import traceback

    sys.stderr.write(f"error: timer callback {handle.callback!r} raised:\n")
    traceback.print_exc()
