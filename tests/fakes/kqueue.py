"""A fake ``select.kqueue`` / ``select.kevent`` that behaves like the BSD kernels.

What it reproduces, from kqueue(2) on macOS and FreeBSD and CPython's wrapper:

* interest is a set of (ident, filter) pairs; EV_ADD of a pair already there
  updates it; EV_ADD on an fd that is not open fails with EBADF;
* closing an fd drops its pairs (a reused fd number is a different file, told
  apart by device and inode).  EV_DELETE of a pair that is not there fails
  with ENOENT; for a closed fd, "macos" mode answers ENOENT and "freebsd"
  mode EBADF, the two answers seen in the field;
* "macos" mode refuses any call carrying more than one change with EINVAL.
  macOS refuses only some such calls, which is why backends send one change
  per call; refusing all of them makes a batching backend fail every time;
* a change that fails is returned as an EV_ERROR event (``data`` = errno)
  when the call has room for events, and raised as OSError when it has none;
* a wait reports the read filter for data to read or EOF and the write
  filter for room to write or EOF, with EV_EOF set on EOF; an fd closed while
  waiting is dropped silently, never reported;
* on a regular file (a vnode) the read filter fires only while the file
  offset is before the end (``data`` = bytes left), and the write filter
  always: unlike poll(2), a file read to its end is not readable;
* ``control(changelist, max_events, timeout)``: timeout in seconds (None
  blocks, negative is a ValueError), at most ``max_events`` events returned;
  use after close is a ValueError.

The wait really waits, on a ``select.poll`` built for each call, so the whole
poller contract suite can run against this fake.
"""

from __future__ import annotations

import errno
import os
import select
import stat
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import pytest

from pollers import ERR, HUP

from ._common import (
    FakeKernelObject,
    Identity,
    as_fd,
    atomic,
    ceil_ms,
    identity,
    identity_or_none,
    os_error,
    real_poll,
)

KQ_FILTER_READ = -1
KQ_FILTER_WRITE = -2
KQ_EV_ADD = 0x0001
KQ_EV_DELETE = 0x0002
KQ_EV_ENABLE = 0x0004
KQ_EV_DISABLE = 0x0008
KQ_EV_ONESHOT = 0x0010
KQ_EV_CLEAR = 0x0020
KQ_EV_ERROR = 0x4000
KQ_EV_EOF = 0x8000

CONSTANTS = {
    name: value for name, value in globals().items() if name.startswith("KQ_")
}

MODES = ("macos", "freebsd")

# Linux reports a peer's half-close as POLLRDHUP only when asked; kqueue sets
# EV_EOF on the read filter for it.
_RDHUP = getattr(select, "POLLRDHUP", 0)
# select.POLLHUP | POLLERR, spelled with pollers' equal flags: Windows' select has no POLL*
_EOF_BITS = HUP | ERR

Pair = Tuple[int, int]


class FakeKevent:
    """``select.kevent``: the same constructor and attributes."""

    def __init__(
        self,
        ident: object,
        filter: int = KQ_FILTER_READ,  # noqa: A002 - CPython's keyword name
        flags: int = KQ_EV_ADD,
        fflags: int = 0,
        data: int = 0,
        udata: Any = 0,
    ) -> None:
        self.ident = as_fd(ident)
        self.filter = filter
        self.flags = flags
        self.fflags = fflags
        self.data = data
        self.udata = udata

    def __repr__(self) -> str:
        return (
            f"<FakeKevent ident={self.ident} filter={self.filter} flags={self.flags:#x} "
            f"fflags={self.fflags} data={self.data}>"
        )


class FakeKqueue(FakeKernelObject):
    """``select.kqueue()`` with the kernel behaviour listed in the module docstring.

    ``changes`` records every change passed in, ``timeouts`` every wait's
    timeout; ``queue_event`` makes the next wait also return a given event
    (for kernel reports such as EV_ERROR that cannot be provoked on demand).
    """

    kind = "kqueue"

    def __init__(self, mode: str = "macos") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        super().__init__()
        self.mode = mode
        # (ident, filter) -> identity of the file the pair was added for
        self._knotes: Dict[Pair, Identity] = {}
        self._queued: List[FakeKevent] = []
        self.changes: List[FakeKevent] = []
        self.timeouts: List[Optional[float]] = []

    # -- the select.kqueue interface --------------------------------------

    def control(
        self, changelist: Optional[Iterable[Any]], max_events: int, timeout: Optional[float] = None
    ) -> List[FakeKevent]:
        """Apply the changes, then wait for at most ``max_events`` events."""
        self._check_open()
        changes = self._check_arguments(changelist, max_events, timeout)
        with atomic():
            errors = self._apply_all(changes, max_events)
        if errors or max_events == 0:
            return errors
        return self._wait(max_events, timeout)

    # -- for tests ----------------------------------------------------------

    def pairs(self) -> Set[Pair]:
        """The (ident, filter) pairs the kernel holds now."""
        with atomic():
            self._forget_closed()
            return set(self._knotes)

    def queue_event(self, kev: FakeKevent) -> None:
        self._queued.append(kev)

    # -- internals ------------------------------------------------------------

    def _check_arguments(
        self, changelist: Optional[Iterable[Any]], max_events: int, timeout: Optional[float]
    ) -> List[FakeKevent]:
        if max_events < 0:
            raise ValueError(f"Length of eventlist must be 0 or positive, got {max_events}")
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be positive or None")
        changes = list(changelist or [])
        if not all(isinstance(change, FakeKevent) for change in changes):
            raise TypeError("changelist must be an iterable of select.kevent objects")
        if self.mode == "macos" and len(changes) > 1:
            raise os_error(errno.EINVAL)
        return changes

    def _apply_all(self, changes: List[FakeKevent], room: int) -> List[FakeKevent]:
        """Apply each change; failures become EV_ERROR events while there is room."""
        errors: List[FakeKevent] = []
        for change in changes:
            self.changes.append(change)
            try:
                self._apply(change)
            except OSError as exc:
                if len(errors) >= room:
                    raise
                flags = change.flags | KQ_EV_ERROR
                errors.append(FakeKevent(change.ident, change.filter, flags, data=exc.errno or 0))
        return errors

    def _apply(self, change: FakeKevent) -> None:
        if change.filter not in (KQ_FILTER_READ, KQ_FILTER_WRITE):
            raise os_error(errno.EINVAL)
        self._forget_closed()
        key = (change.ident, change.filter)
        if change.flags & KQ_EV_ADD:
            self._knotes[key] = identity(change.ident)  # EBADF when not open
        elif key in self._knotes:
            if change.flags & KQ_EV_DELETE:
                del self._knotes[key]
        elif self.mode == "freebsd" and identity_or_none(change.ident) is None:
            raise os_error(errno.EBADF)
        else:
            raise os_error(errno.ENOENT)

    def _forget_closed(self) -> None:
        """Drop the pairs of files closed since they were added, as close(2) does."""
        for key, ident in list(self._knotes.items()):
            if identity_or_none(key[0]) != ident:
                self._knotes.pop(key, None)

    def _wait(self, max_events: int, timeout: Optional[float]) -> List[FakeKevent]:
        self.timeouts.append(timeout)
        with atomic():
            self._forget_closed()
            vnodes = self._vnode_events()
            masks = self._poll_masks()
        if self._queued or vnodes:
            timeout = 0.0
        poller = real_poll()
        for fd, mask in masks.items():
            poller.register(fd, mask)
        # PEP 475: poll() retries on EINTR with the remaining time, like kevent();
        # handlers run during the wait, as they do during a real one
        ready = poller.poll(-1 if timeout is None else ceil_ms(timeout))
        with atomic():
            queued, self._queued = self._queued[:max_events], self._queued[max_events:]
            # level-triggered: a ready pair left out by max_events is found again next time
            found = [kev for fd, revents in ready for kev in self._events(fd, revents)]
        return (queued + vnodes + found)[:max_events]

    def _vnode_events(self) -> List[FakeKevent]:
        """The filters on regular files that fire now (they are never waited for)."""
        found = []
        for fd, kfilter in self._knotes:
            if not _is_regular_file(fd):
                continue
            if kfilter == KQ_FILTER_WRITE:
                found.append(FakeKevent(fd, KQ_FILTER_WRITE, KQ_EV_ADD))
                continue
            left = os.fstat(fd).st_size - os.lseek(fd, 0, os.SEEK_CUR)
            if left > 0:
                found.append(FakeKevent(fd, KQ_FILTER_READ, KQ_EV_ADD, data=left))
        return found

    def _poll_masks(self) -> Dict[int, int]:
        masks: Dict[int, int] = {}
        for fd, kfilter in self._knotes:
            if _is_regular_file(fd):
                continue
            wanted = select.POLLIN | _RDHUP if kfilter == KQ_FILTER_READ else select.POLLOUT
            masks[fd] = masks.get(fd, 0) | wanted
        return masks

    def _events(self, fd: int, revents: int) -> List[FakeKevent]:
        """poll(2)'s answer for one fd, as the kevents kqueue would return."""
        if revents & select.POLLNVAL:
            return []  # closed while we waited: kqueue forgets it silently
        found = []
        read_eof = KQ_EV_EOF if revents & (_EOF_BITS | _RDHUP) else 0
        write_eof = KQ_EV_EOF if revents & _EOF_BITS else 0
        if (fd, KQ_FILTER_READ) in self._knotes and revents & (select.POLLIN | _EOF_BITS | _RDHUP):
            found.append(FakeKevent(fd, KQ_FILTER_READ, KQ_EV_ADD | read_eof))
        if (fd, KQ_FILTER_WRITE) in self._knotes and revents & (select.POLLOUT | _EOF_BITS):
            found.append(FakeKevent(fd, KQ_FILTER_WRITE, KQ_EV_ADD | write_eof))
        return found


def _is_regular_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:  # closed by a signal handler during the fake's wait: poll(2) says NVAL
        return False


def install_kqueue(monkeypatch: pytest.MonkeyPatch, mode: str = "macos") -> List[FakeKqueue]:
    """Put the fake in place of ``select.kqueue``, ``select.kevent`` and KQ_*.

    Returns the list that every FakeKqueue created from now on is appended to.
    """
    created: List[FakeKqueue] = []

    def kqueue() -> FakeKqueue:
        kq = FakeKqueue(mode)
        created.append(kq)
        return kq

    monkeypatch.setattr(select, "kqueue", kqueue, raising=False)
    monkeypatch.setattr(select, "kevent", FakeKevent, raising=False)
    for name, value in CONSTANTS.items():
        monkeypatch.setattr(select, name, value, raising=False)
    return created
