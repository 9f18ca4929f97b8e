"""The bookkeeping that every poller backend shares.

A backend only translates flags and makes syscalls; this base keeps, for
every registered fd, the mask the caller wants and makes a syscall only when
that mask changes:

* a mask of 0 means "registered, but nothing wanted": the fd is kept in our
  table and is *not* in the kernel's interest set.  epoll keeps reporting
  EPOLLHUP for a hung-up socket registered with an empty mask, so parking an
  fd by removing it is the only way not to spin on it;
* our table is changed only after the kernel accepted the change, so the two
  never disagree (a failed ``register`` leaves no trace);
* ``unregister`` of an fd that was closed since tolerates exactly ENOENT and
  EBADF, the two errors a kernel gives for an fd it no longer knows.
"""

from __future__ import annotations

import errno
import math
import os
import select
import stat
import time
from types import TracebackType
from typing import ClassVar, Dict, List, Mapping, Optional, Protocol, Tuple, Type, TypeVar, Union

from . import platform_rules

# Portable event flags.  Their values equal select.POLL* on every platform we
# support (tests assert it), so the poll and epoll backends need no
# translation at all.
READ = 0x001  #: data to read (POLLIN); requestable
PRI = 0x002  #: urgent / out-of-band data (POLLPRI); requestable
WRITE = 0x004  #: room to write (POLLOUT); requestable
ERR = 0x008  #: error condition (POLLERR); reported only
HUP = 0x010  #: hang-up (POLLHUP); reported only
NVAL = 0x020  #: fd not open (POLLNVAL); reported only

REQUESTABLE = READ | PRI | WRITE
REPORTED = READ | PRI | WRITE | ERR | HUP | NVAL

# Errors that mean "the kernel no longer knows this fd": the only ones that
# unregister swallows.
IGNORED_ON_UNREGISTER = frozenset({errno.ENOENT, errno.EBADF})

# Errors that mean "this fd is not open" when select() or fstat() meets it.
# POSIX says EBADF.  Windows' select() says WSAENOTSOCK for a closed socket
# handle, which CPython hands over as errno.ENOTSOCK (10038 there; its
# errno module spells the WSA numbers under the POSIX names too).
CLOSED_FD_ERRNOS = frozenset(
    {errno.EBADF, errno.ENOTSOCK}
    | {getattr(errno, name) for name in ("WSAEBADF", "WSAENOTSOCK") if hasattr(errno, name)}
)

# The longest single wait, in seconds: poll(2) and epoll_wait(2) take an int of
# milliseconds, and CPython raises OverflowError past 2**31 - 1 of them (about
# 24.8 days).  A longer timeout is cut to this; the caller sees an early empty
# return, which a loop treats like any other pass without events.
MAX_TIMEOUT = 2_147_483.0


class HasFileno(Protocol):
    def fileno(self) -> int: ...


FileDescriptorLike = Union[int, HasFileno]


def fd_of(fileobj: FileDescriptorLike) -> int:
    """Return the fd number of an int or of an object with ``fileno()``.

    Raises ValueError for a negative number and TypeError for anything else.
    """
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise TypeError(
                f"expected an fd number or an object with fileno(), got {fileobj!r}"
            ) from None
    if fd < 0:
        raise ValueError(f"invalid file descriptor {fd}")
    return fd


def _check_mask(events: int) -> None:
    if not isinstance(events, int) or events & ~REQUESTABLE:
        raise ValueError(
            f"invalid event mask {events!r}: only READ, PRI and WRITE can be requested"
        )


def _clamp_timeout(timeout: object) -> Optional[float]:
    """``timeout`` brought into [0, MAX_TIMEOUT]; None stays None (block)."""
    if timeout is None:
        return None
    # Called every loop pass: float and int skip the numbers.Real ABC check,
    # and comparisons replace min(max()).
    if not isinstance(timeout, (float, int)):
        # numbers (its ABCs) is imported only for a timeout that is neither
        # float nor int: others never pay its memory
        import numbers

        if not isinstance(timeout, numbers.Real):
            raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    value = float(timeout)
    if value != value:
        # NaN compares false with everything: a deadline loop would never end
        raise ValueError("timeout must not be NaN")
    if value <= 0.0:
        return 0.0
    return value if value < MAX_TIMEOUT else MAX_TIMEOUT


def fd_is_open(fd: int) -> bool:
    """True if ``fd`` names an open file; used to find fds closed behind our back.

    Asks fstat().  On Windows fstat() fails on every socket handle (they are
    not C runtime fds) and only sockets can be polled, so a zero-timeout
    select() on that one socket asks instead.  An error other than "not
    open" (CLOSED_FD_ERRNOS) counts as open: the fd is left to the caller.
    """
    try:
        if platform_rules.WINDOWS:
            select.select([fd], [], [], 0)
        else:
            os.fstat(fd)
    except OSError as exc:
        return exc.errno not in CLOSED_FD_ERRNOS
    return True


_P = TypeVar("_P", bound="Poller")


class Poller:
    """Waits for events on a set of file descriptors.

    Subclasses set ``name`` and implement the four ``_kernel_*`` methods,
    which only ever see non-zero masks.  Usable as a context manager; the
    kernel object (if any) is released by :meth:`close`.
    """

    name: ClassVar[str] = "abstract"

    def __init__(self) -> None:
        # fd -> mask the caller asked for (0 = parked, not in the kernel)
        self._wanted: Dict[int, int] = {}
        #: fd -> registered mask, the poller's own table (the same dict):
        #: read it, never change it.  For event loops that compare a wanted
        #: mask before calling :meth:`set_mask` on their hottest path; an
        #: attribute, not a property, saves a call per pass.
        self.masks: Mapping[int, int] = self._wanted
        self._closed = False

    # -- the public interface ------------------------------------------

    def register(self, fileobj: FileDescriptorLike, events: int) -> None:
        """Start watching ``fileobj`` for ``events``.

        Raises KeyError if the fd is already registered, ValueError for a bad
        mask or a closed poller, and the kernel's OSError if it refuses.
        """
        fd = fd_of(fileobj)
        _check_mask(events)
        self._check_open()
        if fd in self._wanted:
            raise KeyError(f"fd {fd} is already registered")
        if events:
            self._kernel_register(fd, events)
        self._wanted[fd] = events

    def modify(self, fileobj: FileDescriptorLike, events: int) -> None:
        """Change the mask of a registered fd; an unchanged mask costs nothing.

        Raises KeyError for an fd that is not registered.
        """
        fd = fd_of(fileobj)
        _check_mask(events)
        self._check_open()
        try:
            old = self._wanted[fd]
        except KeyError:
            raise KeyError(f"fd {fd} is not registered") from None
        if events == old:
            return
        if not old:
            self._kernel_register(fd, events)
        elif not events:
            self._kernel_unregister_tolerant(fd, old)
        else:
            self._kernel_modify(fd, old, events)
        self._wanted[fd] = events

    def unregister(self, fileobj: FileDescriptorLike) -> None:
        """Stop watching an fd.  An fd closed since is fine (ENOENT/EBADF).

        Raises KeyError for an fd that is not registered.
        """
        fd = fd_of(fileobj)
        self._check_open()
        try:
            old = self._wanted[fd]
        except KeyError:
            raise KeyError(f"fd {fd} is not registered") from None
        if old:
            self._kernel_unregister_tolerant(fd, old)
        # pop: a signal handler may have unregistered it during the kernel call
        self._wanted.pop(fd, None)

    def discard(self, fd: int) -> None:
        """:meth:`unregister` for an fd that may not be registered (then a no-op).

        For callers that may race another caller removing the same fd (a
        signal handler, another thread).  Errors are those of unregister
        but KeyError.
        """
        old = self._wanted.get(fd)
        if old is None:
            return
        self._check_open()
        if old:
            self._kernel_unregister_tolerant(fd, old)
        self._wanted.pop(fd, None)

    def update(self, fileobj: FileDescriptorLike, events: int) -> None:
        """Register, modify or leave as is, whichever brings the fd to ``events``."""
        fd = fd_of(fileobj)
        if fd in self._wanted:
            self.modify(fd, events)
        else:
            self.register(fd, events)

    def set_mask(self, fd: int, events: int) -> None:
        """:meth:`update` for callers that pass a plain fd number and a valid mask.

        The hot path of an event loop: an unchanged mask costs one dict
        lookup.  Errors are those of register/modify.
        """
        old = self._wanted.get(fd)
        if old == events:
            return
        if old is None:
            self.register(fd, events)
        else:
            self.modify(fd, events)

    def poll(self, timeout: Optional[float] = None) -> List[Tuple[int, int]]:
        """Wait for events and return ``[(fd, events), ...]``.

        ``timeout`` is in seconds: None blocks, <= 0 returns at once, and a
        positive value is rounded up to the kernel's unit, so a
        sub-millisecond timeout never turns into a busy loop.  An fd closed
        behind the poller's back is reported as NVAL, never raised.  Signals
        that arrive while waiting are retried by Python (PEP 475).  A timeout
        longer than MAX_TIMEOUT (about 24.8 days) is cut to it.

        Raises TypeError for a timeout that is not a number, ValueError for
        NaN or a closed poller.
        """
        if self._closed:  # tested here: an open poller's pass makes no call
            self._check_open()
        if type(timeout) is float and 0.0 < timeout < MAX_TIMEOUT:
            # loop(30.0) passes this on every pass: skipping _clamp_timeout()
            # saves a call and an isinstance() per pass
            return self._kernel_poll(timeout)
        if timeout == 0 and type(timeout) in (int, float):
            # loop(0) passes this on every pass: skipping _clamp_timeout()
            # saves a call and its checks per pass
            return self._kernel_poll(0.0)
        return self._kernel_poll(_clamp_timeout(timeout))

    def get_mask(self, fileobj: FileDescriptorLike) -> int:
        """The mask registered for an fd; KeyError if it is not registered."""
        return self._wanted[fd_of(fileobj)]

    def __contains__(self, fileobj: object) -> bool:
        try:
            return fd_of(fileobj) in self._wanted  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def __len__(self) -> int:
        return len(self._wanted)

    def fileno(self) -> int:
        """The kernel object's fd, or -1 for backends that have none."""
        return -1

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the kernel object.  Calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._wanted.clear()
            self._kernel_close()

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._wanted)} fds"
        return f"<{type(self).__name__} {state}>"

    # -- what a backend provides ----------------------------------------

    def _kernel_register(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def _kernel_modify(self, fd: int, old: int, events: int) -> None:
        raise NotImplementedError

    def _kernel_unregister(self, fd: int, old: int) -> None:
        raise NotImplementedError

    def _kernel_poll(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        raise NotImplementedError

    def _kernel_close(self) -> None:
        pass

    # -- helpers for backends ---------------------------------------------

    def _kernel_unregister_tolerant(self, fd: int, old: int) -> None:
        try:
            self._kernel_unregister(fd, old)
        except OSError as exc:
            if exc.errno not in IGNORED_ON_UNREGISTER:
                raise

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{type(self).__name__} is closed")

    def _closed_fds(self) -> List[Tuple[int, int]]:
        """NVAL events for the fds in the kernel's set that are no longer open."""
        # over a copy, taken in one C call: fstat() is a call into Python
        # between items, where a signal handler (or another thread) may
        # register or unregister an fd
        return [(fd, NVAL) for fd, mask in list(self._wanted.items()) if mask and not fd_is_open(fd)]


def timeout_ms(timeout: Optional[float]) -> int:
    """Seconds to whole milliseconds for poll(2)-style calls, rounded up; None -> -1."""
    if timeout is None:
        return -1
    # ceil() already gives an int; a comparison, not min(): poll backends
    # convert the timeout on every pass that waits
    ms = math.ceil(timeout * 1000.0)
    return ms if ms < 2**31 - 1 else 2**31 - 1


class SweepingPoller(Poller):
    """Base for kernels that silently forget a closed fd (epoll, kqueue).

    Such a kernel never reports the fd again, so a channel whose socket was
    closed behind the loop's back would wait forever.  While fds are
    registered, a wait is cut into slices of ``sweep_interval`` seconds and
    the registered fds are checked with fd_is_open() between slices (and
    after any wait that ran ``sweep_interval``); the closed ones come back as
    NVAL, as poll(2) would report them.  The check costs one fstat per fd per
    interval, nothing on the per-event path.
    """

    sweep_interval: ClassVar[float] = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0

    def _kernel_poll(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        if not self._wanted:
            return self._wait(timeout)
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        while True:
            if now >= self._next_sweep:
                self._next_sweep = now + self.sweep_interval
                stale = self._closed_fds()
                if stale:
                    self._found_closed()
                    return stale
            if timeout == 0.0:
                # what the lines below come to for a zero timeout, without
                # the comparisons and a second clock read
                return self._wait(0.0)
            # comparisons, not min()/max(): this runs on every pass that waits
            slice_end = self._next_sweep
            if deadline is not None and deadline < slice_end:
                slice_end = deadline
            ready = self._wait(slice_end - now if slice_end > now else 0.0)
            if ready:
                return ready
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return ready

    def _wait(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        raise NotImplementedError

    def _found_closed(self) -> None:
        """The sweep found registered fds closed behind our back (a hook)."""


class AlwaysReady:
    """fds a kernel mechanism will not wait for (regular files), kept aside.

    poll(2) and select(2) report a regular file ready for reading and writing
    at once, even at end of file; a file_dispatcher relies on that to read
    b"" and close.  epoll refuses such fds (EPERM) and kqueue's vnode filter
    fires only while the offset is before the end, so those backends keep
    them here and report them on every call instead.  Only READ and WRITE are
    reported (poll(2) never reports PRI for a file); a file closed behind our
    back is reported NVAL, by one fstat() per such fd per call.
    """

    def __init__(self) -> None:
        # fd -> the caller's mask, never 0 (parked fds are removed)
        self.masks: Dict[int, int] = {}

    def __contains__(self, fd: int) -> bool:
        return fd in self.masks

    def __bool__(self) -> bool:
        return bool(self.masks)

    def events(self) -> List[Tuple[int, int]]:
        """What poll(2) would report for these fds now."""
        found = []
        # over a copy: a signal handler may change the table between the fstat() calls
        for fd, mask in list(self.masks.items()):
            if not fd_is_open(fd):
                found.append((fd, NVAL))
            elif mask & (READ | WRITE):
                found.append((fd, mask & (READ | WRITE)))
        return found


def is_regular_file(fd: int) -> bool:
    """True for an fd open on a regular file; False for anything else or a closed fd."""
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


PollerClass = Type[Poller]

__all__ = [
    "READ", "PRI", "WRITE", "ERR", "HUP", "NVAL", "REQUESTABLE", "REPORTED",
    "Poller", "SweepingPoller", "PollerClass", "FileDescriptorLike", "fd_of",
    "fd_is_open", "CLOSED_FD_ERRNOS", "timeout_ms", "MAX_TIMEOUT", "AlwaysReady", "is_regular_file",
]
