"""poll(2): no fd limit, one kernel pass over every registered fd per call.

Kernel facts:

* The POLL* values equal our flags, so no translation is needed.
* A closed fd in the set comes back as POLLNVAL: exactly what we promise.
* poll() takes milliseconds; the timeout is rounded up so that 0.5 ms does
  not become 0 and spin.
"""

from __future__ import annotations

import select
from typing import ClassVar, List, Optional, Tuple

from ._base import Poller, timeout_ms


class PollPoller(Poller):
    """select.poll(): the stateful kernel object is kept across calls."""

    name: ClassVar[str] = "poll"

    def __init__(self) -> None:
        super().__init__()
        self._poll = select.poll()

    def _kernel_register(self, fd: int, events: int) -> None:
        self._poll.register(fd, events)

    def _kernel_modify(self, fd: int, old: int, events: int) -> None:
        self._poll.modify(fd, events)

    def _kernel_unregister(self, fd: int, old: int) -> None:
        try:
            self._poll.unregister(fd)
        except KeyError:
            # not in the set: removed meanwhile by a signal handler that
            # unregistered the same fd (poll's own word for ENOENT)
            pass

    def _kernel_poll(self, timeout: Optional[float]) -> List[Tuple[int, int]]:
        # a zero timeout needs no conversion: loop(0) skips the timeout_ms()
        # call on every pass
        return self._poll.poll(0 if timeout == 0.0 else timeout_ms(timeout))
