"""A threaded echo server: each connection is handled in a thread of its own.

Run it from a checkout::

    python3 examples/socketserver_threaded.py

``ThreadingTCPServer`` runs ``serve_forever()`` in the ``server`` thread
and hands every accepted connection to a new thread.  To show that the
handlers really run at the same time, each one waits at a barrier until all
``CLIENTS`` handlers have arrived before it answers: a synchronous
``TCPServer`` would wait there for ever (the barrier's timeout then
fails the example).  Each reply names the thread that produced it.  Exit
status 0 when every client got its line back from a distinct handler
thread.
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

CLIENTS = 3


class ThreadReportingEcho(socketserver.StreamRequestHandler):
    """Echoes one line prefixed by the name of the thread handling it."""

    def handle(self) -> None:
        line = self.rfile.readline()
        self.server.all_arrived.wait(timeout=10)  # type: ignore[attr-defined]
        name = threading.current_thread().name
        self.wfile.write(f"{name}: ".encode() + line)


class EchoServer(socketserver.ThreadingTCPServer):
    """Closing the server waits for its handler threads (block_on_close)."""

    def __init__(self, address: Tuple[str, int]) -> None:
        super().__init__(address, ThreadReportingEcho)
        self.all_arrived = threading.Barrier(CLIENTS)


def run(clients: int = CLIENTS) -> List[Tuple[bytes, str]]:
    """Connect ``clients`` at once; return each (sent line, handler thread name)."""
    results: List[Tuple[bytes, str]] = []
    with EchoServer(("127.0.0.1", 0)) as server:
        serving = threading.Thread(target=server.serve_forever, name="server")
        serving.start()
        try:
            address = server.server_address
            connections = [socket.create_connection(address, timeout=15) for _ in range(clients)]
            for number, connection in enumerate(connections):
                connection.sendall(b"line from client %d\n" % number)
            for number, connection in enumerate(connections):
                with connection, connection.makefile("rb") as replies:
                    name, _, echoed = replies.readline().decode().partition(": ")
                print(f"client {number} got {echoed!r} from thread {name!r}")
                results.append((echoed.encode(), name))
        finally:
            server.shutdown()
            serving.join()
    print("server closed; its handler threads have all finished")
    return results


def main() -> int:
    print(f"poller: {asyncio_compat.get_default_poller().name}")
    print(f"serve_forever() runs in thread 'server'; the clients in {threading.current_thread().name!r}")
    results = run()
    names = {name for _, name in results}
    lines_ok = [line for line, _ in results] == [b"line from client %d\n" % n for n in range(CLIENTS)]
    distinct = len(names) == CLIENTS and not names & {"server", threading.current_thread().name}
    print(f"{len(names)} distinct handler threads")
    return 0 if lines_ok and distinct else 1


if __name__ == "__main__":
    sys.exit(main())
