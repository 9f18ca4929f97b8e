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

On Windows (``platform_rules.WINDOWS``, read at call time), Winsock's select():

* fails with WSAEINVAL when all three sets are empty instead of sleeping, so
  a wait with nothing registered (a loop with only timers) sleeps instead;
* reports a closed socket as WSAENOTSOCK (errno.ENOTSOCK there), not EBADF,
  and fstat() does not work on sockets: the closed ones are found by one
  zero-timeout select() per socket (``_base.fd_is_open``);
* reports a failed non-blocking connect() in the exceptional set, never as
  writable, so every fd asking for WRITE is put there too; when such an fd
  did not ask for PRI the event comes back as ERR, as poll(2) reports it;
* takes at most 512 sockets per set (CPython's FD_SETSIZE there counts
  sockets, whatever their handle values), refused at register time.
"""

from __future__ import annotations

import select
import time
from typing import ClassVar, Collection, Dict, List, NoReturn, Optional, Set, Tuple

from . import platform_rules
from ._base import CLOSED_FD_ERRNOS, ERR, MAX_TIMEOUT, PRI, READ, WRITE, Poller

# fd_set's size in glibc, macOS and the BSDs.  Below it every platform's
# select() accepts the fd; at or above it we ask CPython (see _selectable).
FD_SETSIZE = 1024

# CPython's Windows build: how many sockets one select() set may hold.
WINDOWS_FD_SETSIZE = 512


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
        if platform_rules.WINDOWS:
            self._check_windows_room()
        elif not _selectable(fd):
            raise ValueError(
                f"fd {fd} is out of range for select() (at or above FD_SETSIZE, "
                f"{FD_SETSIZE} on most systems); use the poll, epoll or kqueue backend"
            )
        self._place(fd, events)

    def _check_windows_room(self) -> None:
        # Past the limit CPython raises ValueError for the whole select()
        # call, which would stop every channel; refusing the newcomer stops one.
        if len(self._readers | self._writers | self._urgent) >= WINDOWS_FD_SETSIZE:
            raise ValueError(
                f"select() on Windows watches at most {WINDOWS_FD_SETSIZE} sockets "
                "and that many already ask for events"
            )

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
            if exc.errno not in CLOSED_FD_ERRNOS:
                raise
            return self._poll_around_closed(exc)

    def _poll_around_closed(self, reported: OSError) -> List[Tuple[int, int]]:
        """NVAL for the closed fds, and what the others have ready now.

        A signal handler may close more fds between the calls (each retry
        finds them), or close one and open another file under its number
        before fstat() looks: the number is open again, so the retry
        succeeds.  Only EBADF twice in a row with every fd open is raised.
        """
        stale: List[Tuple[int, int]] = []
        gone: Set[int] = set()
        fruitless = 0
        while True:
            found = [(fd, flags) for fd, flags in self._closed_fds() if fd not in gone]
            if found:
                fruitless = 0
            else:
                fruitless += 1
                if fruitless == 2:
                    raise OSError(reported.errno, f"select() reported {reported} but every fd is open")
            stale += found
            gone.update(fd for fd, _ in found)
            try:
                # the others may have events too: collect them now, not a pass later
                ready = self._select(self._readers - gone, self._writers - gone, self._urgent - gone, 0.0)
            except OSError as exc:
                if exc.errno not in CLOSED_FD_ERRNOS:
                    raise
                reported = exc
                continue
            return stale + ready

    @staticmethod
    def _select(
        readers: Collection[int],
        writers: Collection[int],
        urgent: Collection[int],
        timeout: Optional[float],
    ) -> List[Tuple[int, int]]:
        """One select() call, its three lists merged into (fd, events) pairs."""
        exceptional_wanted = urgent
        if platform_rules.WINDOWS:
            if not (readers or writers or urgent):
                _sleep(timeout)  # Winsock fails (WSAEINVAL) on three empty sets
                return []
            # Winsock reports a failed connect() in the exceptional set only
            exceptional_wanted = set(urgent).union(writers)
        readable, writable, exceptional = select.select(readers, writers, exceptional_wanted, timeout)
        ready: Dict[int, int] = dict.fromkeys(readable, READ)
        for fd in writable:
            ready[fd] = ready.get(fd, 0) | WRITE
        for fd in exceptional:
            ready[fd] = ready.get(fd, 0) | (PRI if fd in urgent else ERR)
        return list(ready.items())


def _sleep(timeout: Optional[float]) -> None:
    """Wait as select() with three empty sets does on POSIX: ``timeout``, or forever for None."""
    if timeout is None:
        _sleep_forever()
    if timeout > 0:
        time.sleep(timeout)


def _sleep_forever() -> NoReturn:
    # only a signal handler's exception (KeyboardInterrupt) ends this, as it
    # would end a POSIX select() on nothing
    while True:
        time.sleep(MAX_TIMEOUT)
