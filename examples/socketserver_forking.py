"""A forking echo server: each connection is handled by a child process.

Run it from a checkout (POSIX only: it needs ``os.fork``)::

    python3 examples/socketserver_forking.py

The example stays single-threaded, as forking programs should: the clients
connect and send their lines first (the kernel buffers them), then the
server's ``handle_request()`` accepts each connection and forks.  The child
answers with its own pid and exits; the parent goes straight back to
accepting.  ``server_close()`` waits for every child (``block_on_close``)
and ``active_children`` is empty afterwards.  Exit status 0 when every
reply came from a distinct child process; 0 with a note on platforms
without ``fork``.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import List, Tuple

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import socketserver

CLIENTS = 3


class PidReportingEcho(socketserver.StreamRequestHandler):
    """Runs in the child: echoes one line prefixed by the child's pid."""

    def handle(self) -> None:
        line = self.rfile.readline()
        self.wfile.write(b"%d: " % os.getpid() + line)


def run(clients: int = CLIENTS) -> List[Tuple[int, bytes]]:
    """Serve ``clients`` connections; return each (child pid, echoed line)."""
    results: List[Tuple[int, bytes]] = []
    server = socketserver.ForkingTCPServer(("127.0.0.1", 0), PidReportingEcho)
    try:
        connections = [socket.create_connection(server.server_address, timeout=15) for _ in range(clients)]
        for number, connection in enumerate(connections):
            connection.sendall(b"line from client %d\n" % number)
        for _ in connections:
            server.handle_request()  # accept, fork, and back at once
        print(f"parent forked {len(server.active_children or ())} children")
        for number, connection in enumerate(connections):
            with connection, connection.makefile("rb") as replies:
                pid, _, echoed = replies.readline().partition(b": ")
            print(f"client {number} got {echoed!r} from child pid {int(pid)}")
            results.append((int(pid), echoed))
    finally:
        server.server_close()  # waits for the children
    print(f"server closed; children left: {len(server.active_children or ())}")
    return results


def main() -> int:
    print(f"poller: {asyncio_compat.get_default_poller().name}")
    if not hasattr(os, "fork"):
        print("this platform has no os.fork: nothing to show")
        return 0
    print(f"server pid {os.getpid()}")
    results = run()
    pids = {pid for pid, _ in results}
    lines_ok = [line for _, line in results] == [b"line from client %d\n" % n for n in range(CLIENTS)]
    distinct = len(pids) == CLIENTS and os.getpid() not in pids
    print(f"{len(pids)} distinct child processes")
    return 0 if lines_ok and distinct else 1


if __name__ == "__main__":
    sys.exit(main())
