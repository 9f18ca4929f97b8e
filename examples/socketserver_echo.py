"""A line echo server on asyncio_compat.socketserver, and a client talking to it.

Run it from a checkout::

    python3 examples/socketserver_echo.py

The server is a plain ``TCPServer`` on 127.0.0.1, port 0 (the kernel picks
a free one); its ``serve_forever()`` runs in a thread and waits on the
process default poller (``ASYNCIO_COMPAT_POLLER`` picks another).  The main
thread connects, sends each of ``MESSAGES`` on its own connection, prints
what comes back, then calls ``shutdown()``, which returns once the serving
loop has ended.  Exit status 0 when every echo matched, 1 otherwise.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path
from typing import List, Tuple

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import socketserver

MESSAGES = (b"hello, server\n", b"a second line\n")


class EchoHandler(socketserver.StreamRequestHandler):
    """Reads one line and writes it back; the connection then ends."""

    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


def ask(address: Tuple[str, int], line: bytes) -> bytes:
    """Send ``line`` on a new connection and return the reply, up to its newline."""
    with socket.create_connection(address, timeout=10) as client:
        client.sendall(line)
        with client.makefile("rb") as replies:
            return replies.readline()


def run(messages: Tuple[bytes, ...] = MESSAGES) -> List[bytes]:
    """Serve ``messages`` one connection each; the replies, in order."""
    with socketserver.TCPServer(("127.0.0.1", 0), EchoHandler) as server:
        serving = threading.Thread(target=server.serve_forever, name="server")
        serving.start()
        try:
            print(f"serving on {server.server_address[0]}:{server.server_address[1]}")
            replies = []
            for line in messages:
                reply = ask(server.server_address, line)
                print(f"sent {line!r}, got back {reply!r}")
                replies.append(reply)
        finally:
            server.shutdown()  # returns once serve_forever() has returned
            serving.join()
    print("server shut down")
    return replies


def main() -> int:
    print(f"poller: {asyncio_compat.get_default_poller().name}")
    replies = run()
    if replies != list(MESSAGES):
        print("echo mismatch")
        return 1
    print("every echo matched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
