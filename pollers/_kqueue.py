"""kqueue(2): macOS and the BSDs.

Kernel facts:

* Interest is a set of (fd, filter) pairs: READ is KQ_FILTER_READ and WRITE
  is KQ_FILTER_WRITE.  kqueue has no separate urgent-data filter here, so
  PRI is accepted and folded into the read filter; it is never reported.
* macOS refuses some kevent() calls that carry several changes with EINVAL
  (tornado hit this), so every change goes in a call of its own.
* EOF on the write side is reported as EV_EOF on the write filter: we report
  HUP with it.  EV_ERROR on a returned event reports ERR.
* A closed fd is dropped from the queue by the kernel.  Deleting its filter
  afterwards fails with EBADF on FreeBSD and ENOENT on macOS; unregister
  tolerates both.  The kernel never reports it again, so SweepingPoller finds
  it with fstat() and reports NVAL.
* kqueue.control() takes seconds as a float (None blocks).
"""

from __future__ import annotations

import select
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from ._base import _IGNORED_ON_UNREGISTER, ERR, HUP, READ, WRITE, SweepingPoller


def _filters(events: int) -> int:
    """Our mask reduced to the two filters kqueue knows (PRI reads as READ)."""
    return (READ if events & ~WRITE else 0) | (events & WRITE)


class KqueuePoller(SweepingPoller):
    """select.kqueue(), one change per kevent() call."""

    name: ClassVar[str] = "kqueue"

    def __init__(self) -> None:
        super().__init__()
        self._kq: Any = select.kqueue()  # type: ignore[attr-defined,unused-ignore]
        # number of (fd, filter) pairs in the kernel: the most one call can return
        self._filter_count = 0

    def fileno(self) -> int:
        return int(self._kq.fileno())

    def _kernel_register(self, fd: int, events: int) -> None:
        self._change(fd, 0, _filters(events))

    def _kernel_modify(self, fd: int, old: int, events: int) -> None:
        self._change(fd, _filters(old), _filters(events))

    def _kernel_unregister(self, fd: int, old: int) -> None:
        self._change(fd, _filters(old), 0)

    def _change(self, fd: int, old: int, new: int) -> None:
        """Add the filters in ``new`` but not ``old``, then delete the reverse."""
        for flag, kfilter in ((READ, select.KQ_FILTER_READ), (WRITE, select.KQ_FILTER_WRITE)):  # type: ignore[attr-defined,unused-ignore]
            if new & flag and not old & flag:
                self._control(fd, kfilter, select.KQ_EV_ADD)  # type: ignore[attr-defined,unused-ignore]
                self._filter_count += 1
        for flag, kfilter in ((READ, select.KQ_FILTER_READ), (WRITE, select.KQ_FILTER_WRITE)):  # type: ignore[attr-defined,unused-ignore]
            if old & flag and not new & flag:
                try:
                    self._control(fd, kfilter, select.KQ_EV_DELETE)  # type: ignore[attr-defined,unused-ignore]
                except OSError as exc:
                    # the kernel dropped the filter with the closed fd already
                    if exc.errno not in _IGNORED_ON_UNREGISTER:
                        raise
                self._filter_count -= 1

    def _control(self, fd: int, kfilter: int, flags: int) -> None:
        change = select.kevent(fd, filter=kfilter, flags=flags)  # type: ignore[attr-defined,unused-ignore]
        self._kq.control([change], 0, 0)

    def _wait(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        kevents = self._kq.control(None, max(self._filter_count, 1), timeout)
        ready: Dict[int, int] = {}
        for kev in kevents:
            ready[kev.ident] = ready.get(kev.ident, 0) | _translate(kev)
        return list(ready.items())

    def _kernel_close(self) -> None:
        self._kq.close()


def _translate(kev: Any) -> int:
    """One returned kevent as our flags."""
    if kev.filter == select.KQ_FILTER_WRITE:  # type: ignore[attr-defined,unused-ignore]
        events = WRITE
        if kev.flags & select.KQ_EV_EOF:  # type: ignore[attr-defined,unused-ignore]
            events |= HUP
    else:
        events = READ
    if kev.flags & select.KQ_EV_ERROR:  # type: ignore[attr-defined,unused-ignore]
        events |= ERR
    return events
