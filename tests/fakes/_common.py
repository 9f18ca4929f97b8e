"""Helpers shared by the fakes: fd identity, a real poll(2) to wait with, timeouts."""

from __future__ import annotations

import math
import os
import select
import signal
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NoReturn, Optional, Tuple

import pytest


def _no_poll() -> NoReturn:
    pytest.skip("the fake kernels wait with select.poll(), which Windows lacks")


# Captured at import: a test may replace select.poll with a spy, and the fakes
# must keep waiting on the real thing underneath.  Where there is no poll(2)
# (Windows) a test that installs a fake skips.
real_poll: Callable[[], Any] = getattr(select, "poll", _no_poll)

Identity = Tuple[int, int]


def identity(fd: int) -> Identity:
    """(device, inode) of an open fd: tells a reused fd number from the old file.

    Raises OSError(EBADF) for an fd that is not open.
    """
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def identity_or_none(fd: int) -> Optional[Identity]:
    try:
        return identity(fd)
    except OSError:
        return None


def as_fd(obj: object) -> int:
    """An int fd or an object's fileno(), checked the way CPython's select does.

    Raises TypeError for anything else and ValueError for a negative number.
    """
    fd = obj if isinstance(obj, int) else getattr(obj, "fileno", lambda: None)()
    if not isinstance(fd, int):
        raise TypeError(f"argument must be an int, or have a fileno() method, not {obj!r}")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def closed_error(kind: str) -> ValueError:
    return ValueError(f"I/O operation on closed {kind} object")


_ALL_SIGNALS = getattr(signal, "valid_signals", lambda: set())()
_block = getattr(signal, "pthread_sigmask", None)


@contextmanager
def atomic() -> Iterator[None]:
    """Run the body as a kernel runs a system call: no signal handler inside.

    A real kevent() or write() to /dev/poll applies its changes before any
    Python-level handler can run.  The fakes are Python code, where a handler
    (or a finalizer the garbage collector calls) may run between any two
    instructions and change the very tables being walked.  Signals are
    blocked for the body; one that arrives meanwhile is delivered when the
    body ends.  Where pthread_sigmask is missing, the body runs unprotected.
    """
    if _block is None:
        yield
        return
    previous = _block(signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        yield
    finally:
        _block(signal.SIG_SETMASK, previous)


def ceil_ms(seconds: float) -> int:
    return int(math.ceil(seconds * 1000.0))


def open_handle() -> int:
    """An fd for a fake kernel object to own, as a real kqueue or /dev/poll does.

    Leaving it open is a leak the test suite's fd check reports, so a backend
    that forgets to close its kernel object fails its tests.
    """
    return os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))



class FakeKernelObject:
    """What a fake kernel object shares with the real ones: an fd of its own
    (:func:`open_handle`), ``fileno()``, ``closed`` and an idempotent
    ``close()``; any other call on a closed object raises ValueError as
    CPython's do (:meth:`_check_open`)."""

    kind = "kernel"  # the name in "I/O operation on closed <kind> object"

    def __init__(self) -> None:
        self._handle: Optional[int] = open_handle()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def fileno(self) -> int:
        return self._check_open()

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            os.close(handle)

    def _check_open(self) -> int:
        if self._handle is None:
            raise closed_error(self.kind)
        return self._handle
