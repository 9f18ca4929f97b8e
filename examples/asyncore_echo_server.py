"""An echo service in asyncore: a server, its per-connection handlers and two clients.

Run it from a checkout::

    python3 examples/asyncore_echo_server.py

Everything lives in one socket map.  The server listens on 127.0.0.1 with
port 0 (the kernel picks a free port), accepts as many connections as it was
told to expect and then closes its listening socket.  Each client sends its
message a few bytes at a time, collects the echo and hangs up; each handler
closes when it sees the end of the stream.  The map is then empty, and
``asyncore.loop()`` returns by itself: no flag, no timeout.

Set ``ASYNCIO_COMPAT_POLLER`` (``epoll``, ``poll``, ``select``...) to run it on
another backend.  Exit status 0 when every client got its message back,
1 otherwise.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Dict, List, Tuple

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import asyncore

MESSAGES = (
    b"The quick brown fox jumps over the lazy dog.",
    b"Pack my box with five dozen liquor jugs!",
)
CHUNK = 16  # bytes per send() and recv(): small, so the pieces show in the log

Channels = Dict[int, asyncore.dispatcher]


class EchoHandler(asyncore.dispatcher_with_send):
    """One accepted connection: sends back whatever arrives.

    ``dispatcher_with_send`` keeps what the socket did not take in
    ``out_buffer`` and sends the rest when the socket is writable again.
    """

    def __init__(self, sock: socket.socket, channels: Channels, number: int) -> None:
        super().__init__(sock, map=channels)
        self.logger = logging.getLogger(f"handler-{number}")

    def handle_read(self) -> None:
        data = self.recv(CHUNK)
        if data:  # b"" means end of stream; recv() has called handle_close
            self.logger.info("echoing %d bytes: %r", len(data), data)
            self.send(data)

    def handle_close(self) -> None:
        # recv() calls this at end of stream; an error may call it again
        if self.connected:
            self.logger.info("peer closed; closing")
            self.close()


class EchoServer(asyncore.dispatcher):
    """Listens on 127.0.0.1 and hands each connection to an :class:`EchoHandler`.

    After ``expected`` connections it closes its listening socket: the
    handlers keep working, and the map can empty once they are done.
    """

    def __init__(self, channels: Channels, expected: int) -> None:
        super().__init__(map=channels)
        self.channels = channels
        self.expected = expected
        self.accepted = 0
        self.logger = logging.getLogger("server")
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.address: Tuple[str, int] = self.socket.getsockname()
        self.listen(5)
        self.logger.info("listening; expecting %d connections", expected)

    def handle_accepted(self, sock: socket.socket, addr: Tuple[str, int]) -> None:
        self.accepted += 1
        self.logger.info("accepted connection %d", self.accepted)
        EchoHandler(sock, self.channels, self.accepted)
        if self.accepted == self.expected:
            self.logger.info("accepted all %d; closing the listening socket", self.expected)
            self.close()


class EchoClient(asyncore.dispatcher):
    """Connects, sends ``message`` in ``CHUNK``-byte pieces, reads the echo, hangs up.

    It overrides ``writable()`` the classic way: the loop asks it on every
    pass.  Before the connection completes it answers True, because a
    finished connect shows up as a write event.
    """

    def __init__(self, channels: Channels, address: Tuple[str, int], message: bytes, name: str) -> None:
        super().__init__(map=channels)
        self.message = message
        self.unsent = message
        self.received = b""
        self.logger = logging.getLogger(name)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)

    def handle_connect(self) -> None:
        self.logger.info("connected; %d bytes to send", len(self.message))

    def writable(self) -> bool:
        return not self.connected or bool(self.unsent)

    def handle_write(self) -> None:
        sent = self.send(self.unsent[:CHUNK])
        self.logger.info("sent %d bytes", sent)
        self.unsent = self.unsent[sent:]

    def handle_read(self) -> None:
        data = self.recv(CHUNK)
        self.received += data
        self.logger.info("received %d bytes (%d of %d)", len(data), len(self.received), len(self.message))
        if len(self.received) >= len(self.message):
            self.logger.info("echo complete; hanging up")
            self.close()

    def handle_close(self) -> None:
        # only reached if the server hangs up before the echo is complete
        self.logger.info("server closed the connection early")
        self.close()

    def succeeded(self) -> bool:
        return self.received == self.message


def run() -> List[EchoClient]:
    """Serve ``MESSAGES`` to one client each, until the map is empty."""
    channels: Channels = asyncio_compat.SocketMap()
    server = EchoServer(channels, expected=len(MESSAGES))
    clients = [
        EchoClient(channels, server.address, message, f"client-{letter}")
        for message, letter in zip(MESSAGES, "AB")
    ]
    asyncore.loop(timeout=1.0, map=channels)  # returns once the map is empty
    return clients


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)-10s %(message)s", stream=sys.stdout)
    logging.getLogger("main").info("poller: %s", asyncio_compat.get_default_poller().name)
    clients = run()
    failed = [client.logger.name for client in clients if not client.succeeded()]
    if failed:
        logging.getLogger("main").error("echo mismatch for %s", ", ".join(failed))
        return 1
    logging.getLogger("main").info("map empty, loop returned; every echo matched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
