"""kqueue(2): macOS and the BSDs.

Kernel facts:

* Interest is a set of (fd, filter) pairs: READ is KQ_FILTER_READ and WRITE
  is KQ_FILTER_WRITE.  kqueue has no separate urgent-data filter here, so
  PRI is accepted and folded into the read filter; it is never reported.
* macOS refuses some kevent() calls that carry several changes with EINVAL
  (tornado hit this), so every change goes in a call of its own.
* EOF on the write side is reported as EV_EOF on the write filter: we report
  HUP with it.  With EV_EOF on a socket, ``fflags`` holds the pending socket
  error (a refused connect, for instance): we report ERR with it, as poll(2)
  reports POLLERR.  EV_ERROR on a returned event also reports ERR.
* A READ-to-WRITE modify is two changes (add one filter, delete the other).
  If a later change fails, the earlier ones are undone before the error is
  raised, so the kernel is left as our table says.
* A closed fd is dropped from the queue by the kernel.  Deleting its filter
  afterwards fails with EBADF on FreeBSD and ENOENT on macOS; unregister
  tolerates both.  The kernel never reports it again, so SweepingPoller finds
  it with fstat() and reports NVAL.
* A regular file's read filter fires only while the file offset is before
  the end, so a file read to its end is never reported again and a
  file_dispatcher would never see b"" and close.  poll(2) reports regular
  files ready at once; so do we: they are kept out of the kqueue and
  reported on every call, as the epoll backend does (AlwaysReady, _base.py).
  This costs one fstat() per register.
* kqueue.control() takes seconds as a float (None blocks).
"""

from __future__ import annotations

import contextlib
import select
from typing import Any, ClassVar, Dict, Iterator, List, Optional, Tuple

from ._base import (
    ERR,
    HUP,
    IGNORED_ON_UNREGISTER,
    READ,
    WRITE,
    AlwaysReady,
    SweepingPoller,
    is_regular_file,
)

# The KQ_* names and kqueue/kevent exist only where the platform has kqueue;
# they are looked up on the module at call time (so a test can stand a fake
# in for them) through this untyped alias.
_kq_api: Any = select


def _filters(events: int) -> int:
    """Our mask reduced to the two filters kqueue knows (PRI reads as READ)."""
    return (READ if events & ~WRITE else 0) | (events & WRITE)


def _filter_of(flag: int) -> int:
    return int(_kq_api.KQ_FILTER_READ if flag == READ else _kq_api.KQ_FILTER_WRITE)


def _steps(old: int, new: int) -> Iterator[Tuple[int, bool]]:
    """The (flag, add?) changes that take the filters in ``old`` to ``new``."""
    for flag in (READ, WRITE):
        if new & flag and not old & flag:
            yield flag, True
    for flag in (READ, WRITE):
        if old & flag and not new & flag:
            yield flag, False


class KqueuePoller(SweepingPoller):
    """select.kqueue(), one change per kevent() call."""

    name: ClassVar[str] = "kqueue"

    def __init__(self) -> None:
        super().__init__()
        self._kq: Any = _kq_api.kqueue()
        # number of (fd, filter) pairs we put in the kernel: the most one call can return
        self._filter_count = 0
        # regular files: kept out of the kqueue, reported ready on every call
        self._always_ready = AlwaysReady()

    def fileno(self) -> int:
        return int(self._kq.fileno())

    def _kernel_register(self, fd: int, events: int) -> None:
        if is_regular_file(fd):
            self._always_ready.masks[fd] = events
        else:
            self._change(fd, 0, _filters(events))

    def _kernel_modify(self, fd: int, old: int, events: int) -> None:
        if fd in self._always_ready:
            self._always_ready.masks[fd] = events
        else:
            self._change(fd, _filters(old), _filters(events))

    def _kernel_unregister(self, fd: int, old: int) -> None:
        if self._always_ready.masks.pop(fd, None) is None:
            self._change(fd, _filters(old), 0)

    def _change(self, fd: int, old: int, new: int) -> None:
        """Apply each filter change in a call of its own; undo them all if one fails."""
        done: List[Tuple[int, bool]] = []
        try:
            for flag, add in _steps(old, new):
                self._apply(fd, flag, add)
                done.append((flag, add))
        except OSError:
            self._undo(fd, done)
            raise
        self._filter_count += bin(new).count("1") - bin(old).count("1")

    def _apply(self, fd: int, flag: int, add: bool) -> None:
        if add:
            self._control(fd, _filter_of(flag), _kq_api.KQ_EV_ADD)
            return
        try:
            self._control(fd, _filter_of(flag), _kq_api.KQ_EV_DELETE)
        except OSError as exc:
            # the kernel dropped the filter with the closed fd already
            if exc.errno not in IGNORED_ON_UNREGISTER:
                raise

    def _undo(self, fd: int, done: List[Tuple[int, bool]]) -> None:
        """Best-effort reversal of the changes already made, newest first."""
        for flag, add in reversed(done):
            # a failure here is secondary: the original error is the one raised
            with contextlib.suppress(OSError):
                self._apply(fd, flag, not add)

    def _control(self, fd: int, kfilter: int, flags: int) -> None:
        change = _kq_api.kevent(fd, filter=kfilter, flags=flags)
        self._kq.control([change], 0, 0)

    def _wait(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        always = self._always_ready.events()
        kevents = self._kq.control(None, max(self._filter_count, 1), 0.0 if always else timeout)
        ready: Dict[int, int] = {}
        for kev in kevents:
            ready[kev.ident] = ready.get(kev.ident, 0) | _translate(kev)
        return list(ready.items()) + always

    def _kernel_close(self) -> None:
        self._always_ready.masks.clear()
        self._kq.close()


def _translate(kev: Any) -> int:
    """One returned kevent as our flags."""
    eof = kev.flags & _kq_api.KQ_EV_EOF
    events = READ
    if kev.filter == _kq_api.KQ_FILTER_WRITE:
        events = WRITE | (HUP if eof else 0)
    if kev.flags & _kq_api.KQ_EV_ERROR or (eof and kev.fflags):
        events |= ERR
    return events
