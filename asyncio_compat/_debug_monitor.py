"""Debug mode at work: handlers timed, spinning channels found.

Loaded by the first debug pass (see ``_debug``).  A MapLoop in debug mode
hands each event to its :class:`LoopMonitor`, which delivers it through
``_delivery``'s per-channel functions (so the handler-error contract is the
same) with the channel behind a :class:`TimedChannel` that times each
handler the loop calls on it; the monitor also times the wait and each timer
callback.

Spinning is judged from the kernel's side, around each handler call, so it
sees every way a handler may move bytes (``dispatcher.send``, its socket's
own methods, TLS):

* reading: the bytes waiting on the fd (``FIONREAD``) are the same after the
  handler as before it (unread data, or an unread end of stream);
* writing, TCP on Linux: the bytes the application has written on the
  socket (``tcpi_bytes_acked`` of ``TCP_INFO`` plus the unacknowledged queue,
  ``SIOCOUTQ``) did not grow; that count is exact.  Other sockets (AF_UNIX):
  the send queue (``SIOCOUTQ``) did not grow, which a send hides only if the
  peer drains exactly as much during the handler.

A channel reported ready :data:`SPIN_THRESHOLD` times in a row without
progress in that direction is logged once.  Where the kernel gives no such
count (a listening socket, a pipe's write end, Windows) that direction of
that channel is not watched.
"""

from __future__ import annotations

import array
import logging
import socket
import struct
import sys
import time
import weakref
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from pollers import READ, WRITE, Poller

from . import _debug
from ._channel import Channel
from ._debug import describe
from ._delivery import deliver_poll, deliver_select

try:
    import fcntl
    import termios

    _FIONREAD: Optional[int] = termios.FIONREAD
    _SIOCOUTQ: Optional[int] = getattr(termios, "TIOCOUTQ", None)
except ImportError:  # Windows: no ioctl, no spin detection
    fcntl = None  # type: ignore[assignment]
    _FIONREAD = _SIOCOUTQ = None

#: readiness reports in a row, without a byte moving, that make a channel "spinning"
SPIN_THRESHOLD = 100

#: where debug mode logs
logger = logging.getLogger("asyncio_compat")

Ready = List[Tuple[int, int]]  # (fd, flags) as a poller reports them

# struct tcp_info (linux/tcp.h, append-only): tcpi_bytes_acked is the u64 at
# offset 120 (Linux 4.1 and later)
_TCP_INFO_SIZE = 128
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_OFFSET = 120


class LoopMonitor:
    """The debug-mode side of one MapLoop: timing, spin counts, totals."""

    def __init__(self) -> None:
        self.handler_seconds = 0.0
        self.wait_seconds = 0.0
        self.spins: Dict[int, SpinRecord] = {}  # fd -> its channel's counts

    def totals(self) -> Tuple[float, float]:
        """(seconds in handlers and timer callbacks, seconds waiting) so far."""
        return self.handler_seconds, self.wait_seconds

    def call(self, obj: object, handler: str) -> None:
        """Call ``obj.<handler>()``, logging it if it is slow; exceptions pass through."""
        started = time.perf_counter()
        try:
            getattr(obj, handler)()
        finally:
            self._took(started, obj, f".{handler}")

    def run_timer(self, callback: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        """Run a timer's callback, logging it if it is slow."""
        started = time.perf_counter()
        try:
            callback(*args)
        finally:
            self._took(started, callback, "", "timer ")

    def _took(self, started: float, obj: object, handler: str, kind: str = "") -> None:
        elapsed = time.perf_counter() - started
        self.handler_seconds += elapsed
        if elapsed > _debug.slow_handler_seconds:
            logger.warning("slow handler: %s%s%s took %.3f s", kind, describe(obj), handler, elapsed)

    def wait(self, poll: Callable[[Optional[float]], Ready], timeout: Optional[float]) -> Ready:
        """``poll(timeout)``, adding the time it took to :attr:`wait_seconds`."""
        started = time.perf_counter()
        try:
            return poll(timeout)
        finally:
            self.wait_seconds += time.perf_counter() - started

    def deliver(self, fd: int, obj: Channel, flags: int, socket_map: Mapping[int, object],
                poller: Poller, poll_semantics: bool) -> None:
        """One event's delivery, as the loop's: each handler timed, the
        event's progress checked for spinning."""
        record = self._spin_record(fd, obj)
        marks = record.measure(fd, flags)
        timed = TimedChannel(obj, self)
        owners = OwnerView(socket_map, obj, timed)
        if poll_semantics:
            deliver_poll(timed, flags, fd, owners)
        else:
            deliver_select(timed, flags, fd, owners, poller)
        if socket_map.get(fd) is obj and record.belongs_to(obj):
            record.compare(fd, flags, marks)
        else:
            self.spins.pop(fd, None)

    def _spin_record(self, fd: int, obj: Channel) -> SpinRecord:
        record = self.spins.get(fd)
        if record is None or not record.belongs_to(obj):
            record = self.spins[fd] = SpinRecord(obj)
        return record


class TimedChannel:
    """Stands for a channel during delivery: the handlers the loop calls are
    timed, everything else is the channel's own."""

    __slots__ = ("channel", "monitor")

    def __init__(self, channel: Channel, monitor: LoopMonitor) -> None:
        self.channel = channel
        self.monitor = monitor

    def __getattr__(self, name: str) -> Any:  # Any: whatever the channel holds
        return getattr(self.channel, name)

    def readable(self) -> bool:
        return self.channel.readable()

    def writable(self) -> bool:
        return self.channel.writable()

    def handle_read_event(self) -> None:
        self.monitor.call(self.channel, "handle_read_event")

    def handle_write_event(self) -> None:
        self.monitor.call(self.channel, "handle_write_event")

    def handle_expt_event(self) -> None:
        self.monitor.call(self.channel, "handle_expt_event")

    def handle_close(self) -> None:
        self.monitor.call(self.channel, "handle_close")

    def handle_error(self) -> None:
        self.monitor.call(self.channel, "handle_error")


class OwnerView(Mapping[int, object]):
    """The socket map as delivery sees it while ``channel`` stands behind ``timed``."""

    __slots__ = ("map", "channel", "timed")

    def __init__(self, socket_map: Mapping[int, object], channel: object, timed: object) -> None:
        self.map = socket_map
        self.channel = channel
        self.timed = timed

    def __getitem__(self, fd: int) -> object:
        found = self.map[fd]
        return self.timed if found is self.channel else found

    def get(self, fd: int, default: object = None) -> object:
        found = self.map.get(fd, default)
        return self.timed if found is self.channel else found

    def __iter__(self) -> Iterator[int]:
        return iter(self.map)

    def __len__(self) -> int:
        return len(self.map)


class SpinRecord:
    """One channel's readiness reports in a row without progress, per direction.

    It holds its channel and socket weakly (where they allow it): a record
    must not keep an abandoned channel alive, or debug mode would hide the
    very leak it reports (see ``_debug.collected``).
    """

    __slots__ = ("channel", "socket", "reads", "writes", "reported")

    def __init__(self, channel: Channel) -> None:
        self.channel = _weak(channel)
        self.socket = _weak(getattr(channel, "socket", None))  # a new socket starts a new record
        self.reads = 0
        self.writes = 0
        self.reported = 0  # the directions (READ, WRITE) already logged

    def belongs_to(self, obj: Channel) -> bool:
        """True if this record counts for ``obj`` as it is now (same socket)."""
        return self.channel() is obj and self.socket() is getattr(obj, "socket", None)

    def measure(self, fd: int, flags: int) -> Tuple[Optional[int], Optional[int]]:
        """The kernel's counts for the directions in ``flags``, None where unknown."""
        waiting = bytes_waiting(fd) if flags & READ else None
        written = bytes_written(self.socket(), fd) if flags & WRITE else None
        return waiting, written

    def compare(self, fd: int, flags: int, before: Tuple[Optional[int], Optional[int]]) -> None:
        """Count a report without progress, log the channel once it reaches the threshold."""
        after = self.measure(fd, flags)
        if before[0] is not None:
            self.reads = self.reads + 1 if after[0] == before[0] else 0
            if self.reads >= SPIN_THRESHOLD:
                self._report(READ, "reading", "without reading a byte")
        if before[1] is not None:
            self.writes = self.writes + 1 if after[1] == before[1] else 0
            if self.writes >= SPIN_THRESHOLD:
                self._report(WRITE, "writing", "without sending a byte")

    def _report(self, direction: int, ready_for: str, without: str) -> None:
        if not self.reported & direction:
            self.reported |= direction
            count = self.reads if direction == READ else self.writes
            logger.warning(
                "spinning: %s was reported ready for %s %d times in a row %s",
                describe(self.channel()), ready_for, count, without,
            )


def _weak(obj: object) -> Callable[[], object]:
    """A weak reference to ``obj``, or a strong one where it allows none."""
    try:
        return weakref.ref(obj)
    except TypeError:  # None, or a class without __weakref__
        return lambda: obj


def _ioctl_count(fd: int, request: Optional[int]) -> Optional[int]:
    if request is None or fcntl is None:
        return None
    buffer = array.array("i", [0])
    try:
        fcntl.ioctl(fd, request, buffer, True)
    except (OSError, ValueError, OverflowError):
        return None
    return buffer[0]


def bytes_waiting(fd: int) -> Optional[int]:
    """Bytes ready to be read on ``fd`` (FIONREAD), None where the kernel will not say."""
    return _ioctl_count(fd, _FIONREAD)


def bytes_written(sock: object, fd: int) -> Optional[int]:
    """A count that grows with every byte the application sends on ``fd``.

    TCP on Linux: the bytes written so far (acknowledged plus queued), exact.
    Elsewhere: the send queue, or None where the kernel has none to report.
    """
    queued = _ioctl_count(fd, _SIOCOUTQ)
    if queued is None or not _is_linux_tcp(sock):
        return queued
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return queued
    if len(info) < _BYTES_ACKED_OFFSET + _BYTES_ACKED.size:
        return queued
    return int(_BYTES_ACKED.unpack_from(info, _BYTES_ACKED_OFFSET)[0]) + queued


def _is_linux_tcp(sock: object) -> bool:
    return (
        sys.platform.startswith("linux")
        and getattr(sock, "type", None) == socket.SOCK_STREAM
        and getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6)
    )
