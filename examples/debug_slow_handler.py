"""Debug mode finds the handler that freezes the loop.

Run it from a checkout::

    python3 examples/debug_slow_handler.py

A small lookup service: each connection sends one request line and gets one
reply.  ``ECHO <text>`` is answered at once; ``LOOKUP <name>`` calls
:func:`resolve`, which blocks for a while the way a synchronous DNS query or
database call would.  While it blocks, no other connection is served.

Debug mode is switched on with a threshold of 0.1 s, and the log (on stdout
here) names the handler that took longer, with its channel and the time it
took.  The loop statistics taken just before the last connection closes
show where the time went: in handlers, not in waiting for the network.

Set ``ASYNCIO_COMPAT_POLLER`` to run it on another backend.  Exit status 0
when every client got its reply, 1 otherwise.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import LoopStats, asyncore, loop_stats

SLOW_HANDLER = 0.1  # seconds: debug mode's threshold
RESOLVE_SECONDS = 0.25  # what the blocking lookup takes
REQUESTS = (b"ECHO hello", b"LOOKUP example.org", b"ECHO world")


def resolve(name: bytes) -> bytes:
    """Stands for a blocking call (a synchronous DNS query): the bug to find."""
    time.sleep(RESOLVE_SECONDS)
    return b"192.0.2.1"  # a documentation address (RFC 5737)


class RequestHandler(asyncore.dispatcher_with_send):
    """One accepted connection: reads a request line and answers it."""

    def __init__(self, sock: socket.socket, socket_map: Dict[int, Any]) -> None:
        super().__init__(sock, map=socket_map)
        self.request = b""

    def handle_read(self) -> None:
        data = self.recv(1024)  # b"": the client hung up, and recv() closed us
        self.request += data
        if not data or not self.request.endswith(b"\n"):
            return
        command, _, argument = self.request.strip().partition(b" ")
        answer = resolve(argument) if command == b"LOOKUP" else argument
        self.send(answer + b"\n")

    def handle_close(self) -> None:
        self.close()


class Server(asyncore.dispatcher):
    """Accepts ``expected`` connections, then stops listening."""

    def __init__(self, socket_map: Dict[int, Any], expected: int) -> None:
        super().__init__(map=socket_map)
        self.socket_map = socket_map
        self.expected = expected
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(5)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        RequestHandler(sock, self.socket_map)
        self.expected -= 1
        if self.expected == 0:
            self.close()


class Client(asyncore.dispatcher_with_send):
    """Sends one request, keeps the reply, and hangs up."""

    def __init__(self, address: Any, request: bytes, socket_map: Dict[int, Any],
                 finished: List[Client]) -> None:
        super().__init__(map=socket_map)
        self.request = request
        self.reply = b""
        self.finished = finished
        self.stats: Optional[LoopStats] = None
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)

    def handle_connect(self) -> None:
        self.send(self.request + b"\n")

    def handle_read(self) -> None:
        self.reply += self.recv(1024)
        if self.reply.endswith(b"\n"):
            self.stats = loop_stats(self._map)  # before the map empties and the loop goes
            self.finished.append(self)
            self.close()

    def handle_close(self) -> None:
        self.close()


def main() -> int:
    logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")
    asyncio_compat.set_debug(True, slow_handler=SLOW_HANDLER)
    try:
        socket_map: Dict[int, Any] = asyncore.SocketMap()
        server = Server(socket_map, expected=len(REQUESTS))
        address = server.socket.getsockname()
        finished: List[Client] = []
        for request in REQUESTS:
            Client(address, request, socket_map, finished)
        print(f"poller: {asyncio_compat.get_default_poller().name}")
        asyncore.loop(timeout=5.0, map=socket_map)
    finally:
        asyncio_compat.set_debug(False)
    for client in sorted(finished, key=lambda c: REQUESTS.index(c.request)):
        print(f"{client.request.decode()!r} -> {client.reply.strip().decode()!r}")
    stats = finished[-1].stats
    if stats is not None:
        print(f"loop: {stats.passes} passes, {stats.events} events, "
              f"{stats.handler_seconds:.2f} s in handlers, {stats.wait_seconds:.2f} s waiting")
    return 0 if len(finished) == len(REQUESTS) else 1


if __name__ == "__main__":
    sys.exit(main())
