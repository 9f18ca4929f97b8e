"""A fake ``select.devpoll`` that behaves like /dev/poll on Solaris and illumos.

What it reproduces, from poll(7d) and CPython's wrapper:

* register, modify and unregister only fill a buffer of pollfd records; the
  buffer is written to the device at the next ``poll()``;
* writing an fd that is already in the set ORs the new events into the old
  ones (so registering twice gives the union); ``modify`` writes a POLLREMOVE
  record before the new mask, so it replaces; POLLREMOVE of an fd that is not
  in the set is ignored;
* a closed fd left in the set is reported as POLLNVAL;
* ``poll(timeout)`` takes milliseconds: None or a negative value blocks, a
  fraction of a millisecond is rounded up;
* the mask must fit an unsigned short (OverflowError otherwise); use after
  close is a ValueError.

The wait really waits, on a ``select.poll`` built for each call, so the whole
poller contract suite can run against this fake.
"""

from __future__ import annotations

import math
import select
from typing import Dict, List, Optional, Tuple

import pytest

from pollers import PRI, READ, WRITE

from ._common import FakeKernelObject, as_fd, atomic, real_poll

POLLREMOVE = 0x0800  # Solaris <sys/poll.h>
# select.POLLIN | POLLPRI | POLLOUT, spelled with pollers' equal flags: Windows' select has no POLL*
_DEFAULT_MASK = READ | PRI | WRITE


class FakeDevpoll(FakeKernelObject):
    """``select.devpoll()``.

    ``writes`` records every (fd, events) record written to the device and
    ``timeouts`` the millisecond timeout of every wait; ``interest()`` shows
    the set as the device holds it.
    """

    kind = "devpoll"

    def __init__(self) -> None:
        super().__init__()
        self._set: Dict[int, int] = {}
        self._buffer: List[Tuple[int, int]] = []
        self.writes: List[Tuple[int, int]] = []
        self.timeouts: List[int] = []

    def register(self, fd: object, eventmask: int = _DEFAULT_MASK) -> None:
        self._check_open()
        self._buffer.append((as_fd(fd), _unsigned_short(eventmask)))

    def modify(self, fd: object, eventmask: int) -> None:
        self._check_open()
        number = as_fd(fd)
        self._buffer += [(number, POLLREMOVE), (number, _unsigned_short(eventmask))]

    def unregister(self, fd: object) -> None:
        self._check_open()
        self._buffer.append((as_fd(fd), POLLREMOVE))

    def poll(self, timeout: Optional[float] = None) -> List[Tuple[int, int]]:
        """Write the buffered records, then wait; ``timeout`` in milliseconds."""
        self._check_open()
        with atomic():
            self._flush()
            wanted = list(self._set.items())
        ms = -1 if timeout is None or timeout < 0 else int(math.ceil(timeout))
        self.timeouts.append(ms)
        poller = real_poll()
        for number, events in wanted:
            poller.register(number, events)
        # PEP 475: poll() retries on EINTR with the remaining time, like DP_POLL
        return list(poller.poll(ms))

    def interest(self) -> Dict[int, int]:
        """The fd -> events set as the device holds it (after a flush)."""
        with atomic():
            self._flush()
            return dict(self._set)

    def _flush(self) -> None:
        taken, self._buffer = self._buffer, []
        for number, events in taken:
            self.writes.append((number, events))
            if events == POLLREMOVE:
                self._set.pop(number, None)
            else:
                self._set[number] = self._set.get(number, 0) | events


def _unsigned_short(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise OverflowError(f"event mask {value!r} does not fit an unsigned short")
    return value


def install_devpoll(monkeypatch: pytest.MonkeyPatch) -> List[FakeDevpoll]:
    """Put the fake in place of ``select.devpoll``.

    Returns the list that every FakeDevpoll created from now on is appended to.
    """
    created: List[FakeDevpoll] = []

    def devpoll() -> FakeDevpoll:
        dp = FakeDevpoll()
        created.append(dp)
        return dp

    monkeypatch.setattr(select, "devpoll", devpoll, raising=False)
    return created
