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
* A registration belongs to the open file, not to the fd number: while a
  dup of a closed fd lives on (a forked child, ``os.dup``), its events keep
  coming under the old number, and no epoll_ctl() can remove it any more
  (the number names another file now, or nothing: ENOENT, EBADF, or EPERM
  for a regular file).  Callers unregister before they close; when an
  unregister fails that way, the interest set is rebuilt before the next
  wait, under the same fd number (dup2), so a stale registration cannot
  report events for a newcomer under its number.  The same rebuild follows
  a sweep that found a closed fd, which is then reported NVAL at each sweep
  and never with the old file's events.
* epoll.poll() takes seconds as a float and rounds up to the millisecond
  itself; -1 blocks.
"""

from __future__ import annotations

import errno
import os
import select
from typing import ClassVar, List, Optional, Tuple

from ._base import AlwaysReady, SweepingPoller

# epoll_ctl(DEL) errors meaning "this number no longer names the file we
# registered": closed (EBADF), another file (ENOENT), a regular file (EPERM)
_NUMBER_REUSED_OR_CLOSED = frozenset({errno.EBADF, errno.ENOENT, errno.EPERM})


class EpollPoller(SweepingPoller):
    """select.epoll() with registration kept in the kernel across calls."""

    name: ClassVar[str] = "epoll"

    def __init__(self) -> None:
        super().__init__()
        self._epoll = select.epoll()
        # fds epoll refused with EPERM (regular files)
        self._always_ready = AlwaysReady()
        # an unregister failed after the fd was closed: the kernel may still
        # hold that file's registration (see the module's notes)
        self._may_hold_stale = False

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
        if self._always_ready.masks.pop(fd, None) is not None:
            return
        try:
            self._epoll.unregister(fd)
        except OSError as exc:
            if exc.errno not in _NUMBER_REUSED_OR_CLOSED:
                raise
            self._may_hold_stale = True

    def _renew(self) -> None:
        """Rebuild the interest set from our table, keeping the epoll fd's number.

        The number stays because a foreign event loop (Tk) may watch it.
        """
        self._may_hold_stale = False
        fresh = select.epoll()
        try:
            os.dup2(fresh.fileno(), self._epoll.fileno(), inheritable=False)
        finally:
            fresh.close()
        for fd, mask in list(self._wanted.items()):
            if mask and fd not in self._always_ready:
                self._register_again(fd, mask)

    def _found_closed(self) -> None:
        # a dup of a closed fd keeps its registration alive: without a
        # rebuild its events would come under the old number until unregister
        self._may_hold_stale = True

    def _register_again(self, fd: int, mask: int) -> None:
        try:
            self._kernel_register(fd, mask)
        except FileExistsError:
            # registered in the new set meanwhile (another thread's wake, a
            # signal handler): our table holds the mask it must have
            self._epoll.modify(fd, mask)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            self._next_sweep = 0.0  # closed behind our back: the sweep reports it now

    def _wait(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        if self._may_hold_stale:
            self._renew()
        # test the table before calling events(): there is almost never a
        # regular file, and the usual pass then makes no call and no list
        if self._always_ready.masks:
            always = self._always_ready.events()
            return self._epoll.poll(0) + always
        return self._epoll.poll(-1 if timeout is None else timeout)

    def _kernel_close(self) -> None:
        self._always_ready.masks.clear()
        self._epoll.close()
