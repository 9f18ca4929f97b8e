"""/dev/poll: Solaris and illumos.

Kernel facts:

* The POLL* values are used unchanged.
* Writing an fd that is already in the set ORs the new events into the old
  ones, so a modify must remove the fd first; CPython's devpoll.modify()
  does exactly that, in one write.
* CPython buffers register/modify/unregister and writes them to /dev/poll
  at the next poll() (or when its buffer fills), so a change the kernel
  refuses surfaces as an OSError from poll(), not from register().
  Unregistering an fd that is not in the set is not an error for /dev/poll.
* A closed fd left in the set is reported as POLLNVAL, like poll(2); if its
  number is reused before it is removed, the new file is polled instead.
* devpoll.poll() takes milliseconds: rounded up, -1 blocks.
* The object holds a file descriptor and is limited to RLIMIT_NOFILE fds.
"""

from __future__ import annotations

import select
from typing import Any, ClassVar, List, Optional, Tuple

from ._base import Poller, timeout_ms


class DevpollPoller(Poller):
    """select.devpoll(), where the platform has it."""

    name: ClassVar[str] = "devpoll"

    def __init__(self) -> None:
        super().__init__()
        self._devpoll: Any = select.devpoll()  # type: ignore[attr-defined,unused-ignore]

    def fileno(self) -> int:
        return int(self._devpoll.fileno())

    def _kernel_register(self, fd: int, events: int) -> None:
        self._devpoll.register(fd, events)

    def _kernel_modify(self, fd: int, old: int, events: int) -> None:
        self._devpoll.modify(fd, events)

    def _kernel_unregister(self, fd: int, old: int) -> None:
        self._devpoll.unregister(fd)

    def _kernel_poll(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        return list(self._devpoll.poll(timeout_ms(timeout)))

    def _kernel_close(self) -> None:
        self._devpoll.close()
