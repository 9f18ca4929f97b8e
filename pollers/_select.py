"""select(2): everywhere, but limited to fds below FD_SETSIZE (1024 on Linux).

Kernel facts:

* select() fails the whole call with EBADF when any fd in its sets was closed
  behind our back.  We then find the closed fds with fstat() and report them
  as NVAL, the way poll(2) would, instead of raising, together with whatever
  the other fds have ready (a second select() without the closed ones).
* An fd at or above FD_SETSIZE (1024 on Linux, macOS and the BSDs) makes
  CPython raise ValueError at call time, for the whole call; we refuse it at
  register time instead, with a message that names the limit.  CPython
  checks the limit on every POSIX platform (macOS included), so we ask
  CPython itself: an fd >= 1024 is tried with a zero-timeout select() once,
  at register time.
* PRI maps to the "exceptional" set (out-of-band data, and on some kernels a
  failed connect).
"""

from __future__ import annotations

import errno
import select
from typing import ClassVar, Collection, Dict, List, Optional, Set, Tuple

from ._base import PRI, READ, WRITE, Poller

# fd_set's size in glibc, macOS and the BSDs.  Below it every platform's
# select() accepts the fd; at or above it we ask CPython (see _selectable).
FD_SETSIZE = 1024


def _selectable(fd: int) -> bool:
    """Whether CPython's select() accepts ``fd`` at all.

    Below FD_SETSIZE it always does.  Above, the limit differs by platform
    (Windows has none, 64-bit illumos 65536), so a zero-timeout select() on
    that fd tells: CPython raises ValueError before calling the kernel for an
    fd out of range.  A kernel error (EBADF for an fd not open yet) means the
    number itself is acceptable.
    """
    if fd < FD_SETSIZE:
        return True
    try:
        select.select([fd], [], [], 0)
    except ValueError:
        return False
    except OSError:
        pass
    return True


class SelectPoller(Poller):
    """The portable fallback.  O(registered fds) per call, in the kernel too."""

    name: ClassVar[str] = "select"

    def __init__(self) -> None:
        super().__init__()
        self._readers: Set[int] = set()
        self._writers: Set[int] = set()
        self._urgent: Set[int] = set()

    def _kernel_register(self, fd: int, events: int) -> None:
        if not _selectable(fd):
            raise ValueError(
                f"fd {fd} is out of range for select() (at or above FD_SETSIZE, "
                f"{FD_SETSIZE} on most systems); use the poll, epoll or kqueue backend"
            )
        self._place(fd, events)

    def _kernel_modify(self, fd: int, old: int, events: int) -> None:
        self._place(fd, events)

    def _kernel_unregister(self, fd: int, old: int) -> None:
        self._readers.discard(fd)
        self._writers.discard(fd)
        self._urgent.discard(fd)

    def _place(self, fd: int, events: int) -> None:
        for flag, members in ((READ, self._readers), (WRITE, self._writers), (PRI, self._urgent)):
            if events & flag:
                members.add(fd)
            else:
                members.discard(fd)

    def _kernel_poll(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        try:
            return self._select(self._readers, self._writers, self._urgent, timeout)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
        stale = self._closed_fds()
        if not stale:
            raise OSError(errno.EBADF, "select() reported EBADF but every fd is open")
        gone = {fd for fd, _ in stale}
        # the others may have events too: collect them now, not a pass later
        ready = self._select(self._readers - gone, self._writers - gone, self._urgent - gone, 0.0)
        return stale + ready

    @staticmethod
    def _select(
        readers: Collection[int],
        writers: Collection[int],
        urgent: Collection[int],
        timeout: Optional[float],
    ) -> List[Tuple[int, int]]:
        """One select() call, its three lists merged into (fd, events) pairs."""
        readable, writable, exceptional = select.select(readers, writers, urgent, timeout)
        ready: Dict[int, int] = dict.fromkeys(readable, READ)
        for fd in writable:
            ready[fd] = ready.get(fd, 0) | WRITE
        for fd in exceptional:
            ready[fd] = ready.get(fd, 0) | PRI
        return list(ready.items())
