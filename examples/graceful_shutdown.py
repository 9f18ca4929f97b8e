"""SIGTERM to a graceful exit: a line server that finishes what it started.

Run it from a checkout::

    python3 examples/graceful_shutdown.py

The server answers each line with a large reply.  SIGTERM (or SIGINT) does
not kill it: ``add_signal_handler`` runs ``stop()`` in the loop, which calls
``asyncio_compat.shutdown()``.  The listening socket closes at once, every
reply already queued is sent, the connections close, and ``asyncore.loop()``
returns because the map is empty.  Connections still open after ``GRACE``
seconds would be closed.

To be self-contained, the program plays its own client: it connects, asks
for one reply and, once the server has queued it, sends itself SIGTERM.
Exit status 0 when the client got the whole reply after the signal.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, List

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import asynchat, asyncore

GRACE = 10.0  # seconds the connections get to finish after SIGTERM
REPLY_SIZE = 4_000_000  # larger than the socket buffers: still sending at the signal


class LineHandler(asynchat.async_chat):
    """Answers every line with REPLY_SIZE bytes."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.set_terminator(b"\n")

    def collect_incoming_data(self, data: bytes) -> None:
        pass

    def found_terminator(self) -> None:
        self.push(b"x" * REPLY_SIZE)
        os.kill(os.getpid(), signal.SIGTERM)  # the demo: stop while the reply is queued


class Server(asyncore.dispatcher):
    def __init__(self) -> None:
        super().__init__()
        self.create_socket()
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(16)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        LineHandler(sock)


class Client(asyncore.dispatcher):
    """Sends one line and counts the reply until the server closes."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.create_socket()
        self.connect(("127.0.0.1", port))
        self.received = 0
        self.request = b"hello\n"

    def writable(self) -> bool:
        return bool(self.request) or not self.connected

    def handle_connect(self) -> None:
        pass

    def handle_write(self) -> None:
        self.request = self.request[self.send(self.request):]

    def handle_read(self) -> None:
        self.received += len(self.recv(65536))

    def handle_close(self) -> None:
        self.close()


def stop(events: List[str]) -> None:
    """The SIGTERM callback: runs in the loop, between two handlers."""
    events.append("SIGTERM: shutting down")
    asyncio_compat.shutdown(grace=GRACE)


def main() -> int:
    print(f"poller: {asyncio_compat.get_default_poller().name}")
    events: List[str] = []
    server = Server()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio_compat.add_signal_handler(signum, stop, events)
    client = Client(server.socket.getsockname()[1])
    asyncore.loop(timeout=30)  # returns once shutdown() has emptied the map
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio_compat.remove_signal_handler(signum)
    print(*events, sep="\n")
    print(f"client received {client.received} of {REPLY_SIZE} bytes, then EOF")
    return 0 if events and client.received == REPLY_SIZE else 1


if __name__ == "__main__":
    sys.exit(main())
