"""select(2): everywhere, but limited to fds below FD_SETSIZE (1024 on Linux).

Kernel facts:

* select() fails the whole call with EBADF when any fd in its sets was closed
  behind our back.  We then find the closed fds with fstat() and report them
  as NVAL, the way poll(2) would, instead of raising.
* An fd at or above FD_SETSIZE makes CPython raise ValueError at call time;
  we refuse it at register time instead, with a message that names the limit.
* PRI maps to the "exceptional" set (out-of-band data, and on some kernels a
  failed connect).
"""

from __future__ import annotations

import errno
import select
import sys
from typing import ClassVar, List, Optional, Set, Tuple

from ._base import PRI, READ, WRITE, Poller

# glibc's fd_set holds 1024 bits.  macOS builds CPython so that select()
# accepts larger fds, so the limit is checked on Linux only.
FD_SETSIZE: Optional[int] = 1024 if sys.platform.startswith("linux") else None


class SelectPoller(Poller):
    """The portable fallback.  O(registered fds) per call, in the kernel too."""

    name: ClassVar[str] = "select"

    def __init__(self) -> None:
        super().__init__()
        self._readers: Set[int] = set()
        self._writers: Set[int] = set()
        self._urgent: Set[int] = set()

    def _kernel_register(self, fd: int, events: int) -> None:
        if FD_SETSIZE is not None and fd >= FD_SETSIZE:
            raise ValueError(
                f"fd {fd} is out of range for select() (FD_SETSIZE is {FD_SETSIZE}); "
                "use the poll or epoll backend"
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
            readable, writable, urgent = select.select(
                self._readers, self._writers, self._urgent, timeout
            )
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            stale = self._closed_fds()
            if not stale:
                raise
            return stale
        ready = dict.fromkeys(readable, READ)
        for fd in writable:
            ready[fd] = ready.get(fd, 0) | WRITE
        for fd in urgent:
            ready[fd] = ready.get(fd, 0) | PRI
        return list(ready.items())
