"""epoll(7): Linux; cost per call proportional to the ready fds only.

Kernel facts:

* The EPOLL* values equal our flags (EPOLLIN == POLLIN ...).
* An empty mask on a hung-up socket still reports EPOLLHUP on every call:
  the base class parks an fd whose mask drops to 0 by removing it instead.
* Regular files (and directories, and some character devices) are refused
  with EPERM.  They are always ready for I/O, so such fds are kept in a set
  of their own and reported ready for the READ and WRITE they asked for on
  every call, without waiting (Twisted does the same; poll(2) also reports a
  regular file ready at once).  See AlwaysReady in _base.py.
* A closed fd is dropped silently from the interest set (unless a dup of it
  is still open), so it is never reported: SweepingPoller finds it with
  fstat() and reports NVAL.
* epoll.poll() takes seconds as a float and rounds up to the millisecond
  itself; -1 blocks.
"""

from __future__ import annotations

import select
from typing import ClassVar, List, Optional, Tuple

from ._base import AlwaysReady, SweepingPoller


class EpollPoller(SweepingPoller):
    """select.epoll() with registration kept in the kernel across calls."""

    name: ClassVar[str] = "epoll"

    def __init__(self) -> None:
        super().__init__()
        self._epoll = select.epoll()
        # fds epoll refused with EPERM (regular files)
        self._always_ready = AlwaysReady()

    def fileno(self) -> int:
        return self._epoll.fileno()

    def _kernel_register(self, fd: int, events: int) -> None:
        try:
            self._epoll.register(fd, events)
        except PermissionError:  # EPERM: a regular file
            self._always_ready.masks[fd] = events

    def _kernel_modify(self, fd: int, old: int, events: int) -> None:
        if fd in self._always_ready:
            self._always_ready.masks[fd] = events
        else:
            self._epoll.modify(fd, events)

    def _kernel_unregister(self, fd: int, old: int) -> None:
        if self._always_ready.masks.pop(fd, None) is None:
            self._epoll.unregister(fd)

    def _wait(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        # test the table before calling events(): there is almost never a
        # regular file, and the call and its empty list cost 1,700 of 29,600
        # instructions per loop(0, count=1) (callgrind, 3.11)
        if self._always_ready.masks:
            always = self._always_ready.events()
            return self._epoll.poll(0) + always
        return self._epoll.poll(-1 if timeout is None else timeout)

    def _kernel_close(self) -> None:
        self._always_ready.masks.clear()
        self._epoll.close()
