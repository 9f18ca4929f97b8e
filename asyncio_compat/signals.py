"""Signal handlers that run in the loop: ``add_signal_handler``/``remove_signal_handler``.

A handler installed with ``signal.signal()`` runs wherever the main thread
happens to be when the signal arrives: in the middle of a channel's handler,
or inside the loop's wait.  The callbacks registered here run instead in the
loop that serves their map, between two handlers, like a timer; the signal
only records that it came and wakes that loop.

How the wake-up works: each map with signal callbacks owns a pipe whose
read end its loop watches (``MapLoop.watch_fd``: not a channel, so it
neither keeps ``loop()`` running nor is closed by ``close_all()``).  The
Python-level handler appends the signal to the map's queue, then writes a
byte to the pipe, whoever holds the process-wide wakeup fd: a byte written
after the append means the loop cannot drain the pipe and miss the signal
(the C-level write may come first, from another thread, before Python ran
the handler).  Python runs that handler only between two bytecodes of the
main thread, so a signal that lands just before a main-thread loop enters
its wait would wait with it; as asyncio does, the pipe is also given to
``signal.set_wakeup_fd()``, whose C-level write cannot miss, when that slot
is free.  Whoever takes the slot later (asyncio's ``add_signal_handler``)
keeps it: it is released only while it is still ours.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import deque
from types import FrameType
from typing import Any, Callable, Deque, Dict, Optional, Tuple, Union

from . import _fork, _loop, asyncore
from ._delivery import call_reported

__all__ = ["add_signal_handler", "remove_signal_handler"]

_Handler = Union[Callable[[int, Optional[FrameType]], Any], int, None]

# signals nobody may catch
_UNCATCHABLE = frozenset(
    getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name)
)


class _MapSignals:
    """The signal callbacks of one socket map, its wake-up pipe and its queue."""

    def __init__(self, socket_map: Any) -> None:
        self.map = socket_map
        self.callbacks: Dict[int, Tuple[Callable[..., Any], Tuple[Any, ...]]] = {}
        self.queue: Deque[int] = deque()  # signals received, not yet handled
        self.read_fd, self.write_fd = _nonblocking_pipe()

    def wake(self) -> None:
        """Write one byte to the pipe (safe in a signal handler; a full pipe is awake already)."""
        try:
            os.write(self.write_fd, b"\0")
        except (BlockingIOError, InterruptedError):
            pass

    def watch(self, map_loop: _loop.MapLoop) -> None:
        """Have ``state`` (this map's loop) run our callbacks when the pipe is readable."""
        map_loop.watch_fd(self.read_fd, self.drain)
        if self.queue:
            self.wake()  # signals that came while the map had no loop

    def drain(self) -> None:
        """Empty the pipe, then run the callbacks of the signals received, in order."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        queue = self.queue
        while queue:
            signum = queue.popleft()
            entry = self.callbacks.get(signum)
            if entry is not None:
                call_reported(entry[0], entry[1], "signal callback")

    def renew_pipe(self) -> None:
        """In a forked child: a pipe of its own (the inherited one is the parent's too)."""
        old_read = self.read_fd
        map_loop = _loop.existing_loop(self.map)
        if map_loop is not None:
            map_loop.unwatch_fd(old_read)  # the loop's poller is already the child's own
        os.close(old_read)
        os.close(self.write_fd)
        self.read_fd, self.write_fd = _nonblocking_pipe()
        self.queue.clear()  # the parent's signals are not ours
        if map_loop is not None:
            self.watch(map_loop)

    def close(self) -> None:
        map_loop = _loop.existing_loop(self.map)
        if map_loop is not None:
            map_loop.unwatch_fd(self.read_fd)
        os.close(self.read_fd)
        os.close(self.write_fd)


def _nonblocking_pipe() -> Tuple[int, int]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    return read_fd, write_fd


# id(map) -> its signal callbacks (the entry holds the map, so the id is not reused)
_BY_MAP: Dict[int, _MapSignals] = {}
# signum -> the handler that was installed before ours, restored when the last callback goes
_PREVIOUS: Dict[int, _Handler] = {}
# the _MapSignals whose pipe is the process's wakeup fd, if we hold that slot
_wakeup_owner: Optional[_MapSignals] = None


def _on_signal(signum: int, frame: Optional[FrameType]) -> None:
    """The Python-level handler: queue the signal for each map that handles it, wake their loops."""
    for entry in list(_BY_MAP.values()):
        if signum in entry.callbacks:
            # once per number until the loop gets to it: the queue stays as
            # short as the set of signals handled, however long no loop runs
            if signum not in entry.queue:
                entry.queue.append(signum)
            entry.wake()  # after the append: see the module docstring


def _main_thread_only(what: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            f"{what}() must be called from the main thread: Python delivers signals "
            "only there (the loop serving the map may run in any thread)"
        )


def _check_signum(signum: object) -> int:
    if isinstance(signum, bool) or not isinstance(signum, int):
        raise TypeError(f"signum must be an int, not {type(signum).__name__}")
    if signum not in signal.valid_signals():
        raise ValueError(f"invalid signal number {signum}")
    if signum in _UNCATCHABLE:
        raise ValueError(f"signal {signal.Signals(signum).name} cannot be caught")
    return signum


def add_signal_handler(signum: int, callback: Callable[..., Any], *args: Any, map: Any = None) -> None:
    """Run ``callback(*args)`` in the loop serving ``map`` each time ``signum`` arrives.

    ``map`` defaults to ``asyncore.socket_map``.  The callback runs in that
    loop's thread, between two handlers, never inside the signal context; the
    signal wakes a waiting ``loop()`` at once (as it wakes the one-pass
    ``poll()`` and ``poll2()``, and a map served by the asyncio bridge or Tk
    gets a pass at once).  Several signals of the same number
    before the loop gets to them may run the callback once or several times.
    A new call for the same ``signum`` and map replaces the callback.  An
    exception from the callback is reported on stderr and the loop goes on;
    ExitNow, KeyboardInterrupt and SystemExit leave ``loop()``.

    The process's wakeup fd (``signal.set_wakeup_fd()``) is taken only when
    free and given back only while still ours; the callbacks run whoever
    holds it (asyncio's ``loop.add_signal_handler()`` takes it).  Python
    runs the signal's handler in the main thread, between two of its
    bytecodes: a signal delivered to another thread (``pthread_kill``) runs
    its callback once the main thread runs Python code again.  While
    another library holds the wakeup fd, a signal landing in the instant
    before a ``loop()`` in the main thread enters its wait runs its callback
    when that wait ends (within ``sweep_interval`` on epoll and kqueue).

    Raises RuntimeError outside the main thread, TypeError when ``callback``
    is not callable or ``signum`` not an int, ValueError for an invalid
    signal number or one that cannot be caught (SIGKILL, SIGSTOP).
    """
    _main_thread_only("add_signal_handler")
    signum = _check_signum(signum)
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    socket_map = asyncore.map_or_default(map)
    entry = _BY_MAP.get(id(socket_map))
    if entry is None:
        entry = _start_map(socket_map)
    if signum not in _PREVIOUS:
        _PREVIOUS[signum] = signal.signal(signum, _on_signal)
    entry.callbacks[signum] = (callback, args)


def _start_map(socket_map: Any) -> _MapSignals:
    entry = _MapSignals(socket_map)
    _BY_MAP[id(socket_map)] = entry
    map_loop = _loop.existing_loop(socket_map)
    if map_loop is not None:
        entry.watch(map_loop)
    _claim_wakeup_fd(entry)
    return entry


def _claim_wakeup_fd(entry: _MapSignals) -> None:
    """Make ``entry``'s pipe the process's wakeup fd if that slot is free."""
    global _wakeup_owner
    if _wakeup_owner is not None:
        return
    previous = signal.set_wakeup_fd(entry.write_fd, warn_on_full_buffer=False)
    if previous != -1:
        signal.set_wakeup_fd(previous)  # someone (asyncio) holds it: keep theirs
        return
    _wakeup_owner = entry


def remove_signal_handler(signum: int, map: Any = None) -> bool:
    """Remove the callback for ``signum`` on ``map``; True if there was one.

    When no map has a callback for ``signum`` any more, the handler that was
    installed before the first :func:`add_signal_handler` comes back.
    Raises RuntimeError outside the main thread, TypeError/ValueError for a
    bad ``signum``.
    """
    _main_thread_only("remove_signal_handler")
    signum = _check_signum(signum)
    socket_map = asyncore.map_or_default(map)
    entry = _BY_MAP.get(id(socket_map))
    if entry is None or entry.callbacks.pop(signum, None) is None:
        return False
    if not any(signum in other.callbacks for other in _BY_MAP.values()):
        previous = _PREVIOUS.pop(signum)
        signal.signal(signum, signal.SIG_DFL if previous is None else previous)
    if not entry.callbacks:
        _stop_map(entry)
    return True


def _stop_map(entry: _MapSignals) -> None:
    global _wakeup_owner
    del _BY_MAP[id(entry.map)]
    if _wakeup_owner is entry:
        _wakeup_owner = None
        release_wakeup_fd(entry.write_fd)
    entry.close()
    for other in _BY_MAP.values():
        _claim_wakeup_fd(other)  # the next map inherits the slot
        break


def release_wakeup_fd(write_fd: int) -> bool:
    """Free the process's wakeup fd if it is still ``write_fd``; True if it was.

    Someone else's fd (asyncio took the slot after us) is put back: there is
    no way to read the slot without setting it.
    """
    held = signal.set_wakeup_fd(-1)
    if held != write_fd and held != -1:
        signal.set_wakeup_fd(held)
    return held == write_fd


def _watch_new_loop(map_loop: _loop.MapLoop) -> None:
    # map_loop.serves, not map_loop.map: a one-pass loop of poll()/poll2() serves
    # the map through a view, and runs its callbacks too
    entry = _BY_MAP.get(id(map_loop.serves))
    if entry is not None and map_loop.serves is entry.map:
        entry.watch(map_loop)


def _renew_in_child() -> None:
    """In a forked child: new pipes; the wakeup fd goes to one of them if it was ours or is free.

    Someone else's fd in the slot (the parent's choice) stays.  asyncio 3.12+
    frees the slot in every child from its own fork hook, before or after
    this one.
    """
    global _wakeup_owner
    ours = -1 if _wakeup_owner is None else _wakeup_owner.write_fd
    _wakeup_owner = None
    try:
        held = signal.set_wakeup_fd(-1)
    except ValueError:  # forked from another thread than the main one
        held = None
    for entry in _BY_MAP.values():
        entry.renew_pipe()
    if held is not None and held not in (-1, ours):
        signal.set_wakeup_fd(held)
    elif held is not None:
        for entry in _BY_MAP.values():
            _claim_wakeup_fd(entry)
            break


_loop.on_new_loop(_watch_new_loop)
_fork.after_fork_in_child(_renew_in_child)
