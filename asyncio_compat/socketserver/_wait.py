"""Waiting for requests on a poller, for ``serve_forever()`` and ``handle_request()``.

CPython's ``serve_forever()`` noticed ``shutdown()`` only when its poll timed
out, so a stop took up to ``poll_interval`` seconds.  Here the serving loop
also watches one end of a socket pair and ``shutdown()`` writes a byte to the
other: the wait ends at once.  The flag that ``shutdown()`` sets stays the
source of truth; the byte only cuts the wait short, so a missed or failed
write costs at most one ``poll_interval``, never a hang.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

from pollers import READ, FileDescriptorLike, Poller


class ShutdownWaker:
    """The socket pair that lets ``shutdown()`` interrupt a waiting serve loop.

    The pair exists only while a serve loop runs (see :meth:`armed`), so an
    idle server holds no extra file descriptors.  :meth:`ring` may be called
    from any thread, any number of times, armed or not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # the writing end while a serve loop is armed, else None
        self._sender: Optional[socket.socket] = None

    @contextmanager
    def armed(self) -> Iterator[socket.socket]:
        """Open the pair for one serve loop; yields the end to poll for READ.

        Both ends are closed when the block ends, whatever ends it.
        Raises OSError when the process is out of file descriptors.
        """
        receiver, sender = socket.socketpair()
        # ring() must never block, even if the buffer were somehow full
        sender.setblocking(False)
        with self._lock:
            self._sender = sender
        try:
            yield receiver
        finally:
            with self._lock:
                self._sender = None
            receiver.close()
            sender.close()

    def ring(self) -> None:
        """Wake the armed serve loop, if there is one; never raises, never blocks."""
        with self._lock:
            if self._sender is None:
                return
            # a full buffer is already readable; any other failure only
            # delays the stop to the next poll timeout, as in CPython
            with contextlib.suppress(OSError):
                self._sender.send(b"\0")


def fd_reported(ready: List[Tuple[int, int]], fd: int) -> int:
    """The flags reported for ``fd`` in a ``poll()`` result, 0 when it is absent."""
    for reported_fd, flags in ready:
        if reported_fd == fd:
            return flags
    return 0


def wait_for_request(
    poller: Poller, server: FileDescriptorLike, timeout: Optional[float]
) -> bool:
    """Wait until ``server`` is readable; False when ``timeout`` runs out first.

    ``timeout`` None waits for ever.  Early returns of the kernel wait (the
    poll is retried until the deadline) do not shorten the total wait.
    Raises whatever ``poller.register`` raises for a bad fd (ValueError for
    a closed socket's -1).
    """
    poller.register(server, READ)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if poller.poll(timeout):
            return True
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout < 0:
                return False
