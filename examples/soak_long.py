"""A soak test: many concurrent loopback connections echoing through async_chat.

Run it from a checkout, for as long as you like::

    python3 examples/soak_long.py --connections 5000 --size 102400 --rounds 10

Each round opens ``--connections`` clients against one echo server, all in
one socket map served by ``asyncore.loop()``.  Every client streams
``--size`` bytes (keeping at most ``--window`` bytes unanswered) and checks
every byte of the echo as it arrives; the server is a plain ``async_chat``
that pushes back what it collects.  After each round the map must be empty
and the process must hold no more descriptors than before the round.  It
prints one line per round and exits 0 when every byte of every round
matched, 1 otherwise.

Both ends live in this process, so it needs about two descriptors per
connection: it raises its soft RLIMIT_NOFILE to the hard limit when that is
needed, and says so when even that is too low.  ``tests/test_soak.py`` runs
one round of this same code (5,000 connections, 100 KiB each).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import asynchat, asyncore

Channels = Dict[int, Any]

# Clients whose connect has not been accepted yet, at most: past the listen
# backlog, SYNs are dropped and retried a second later.
CONNECTING_AT_ONCE = 256
# Descriptors kept beyond two per connection (stdio, the poller, the listener...).
SPARE_FDS = 64


class EchoHandler(asynchat.async_chat):
    """The server's side of a connection: pushes back whatever arrives."""

    def __init__(self, sock: socket.socket, channels: Channels) -> None:
        super().__init__(sock, channels)
        self.set_terminator(None)

    def collect_incoming_data(self, data: bytes) -> None:
        self.push(data)


class EchoServer(asyncore.dispatcher):
    """Listens on 127.0.0.1; tells the soak about each accepted connection."""

    def __init__(self, soak: Soak) -> None:
        super().__init__(map=soak.channels)
        self.soak = soak
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.address: Tuple[str, int] = self.socket.getsockname()
        self.listen(min(socket.SOMAXCONN, 4096))

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        EchoHandler(sock, self.soak.channels)
        self.soak.accepted()


class EchoClient(asynchat.async_chat):
    """Streams ``expected`` with at most ``window`` bytes in flight; checks the echo."""

    def __init__(self, soak: Soak, expected: memoryview) -> None:
        super().__init__(None, soak.channels)
        self.soak = soak
        self.expected = expected
        self.window = soak.window
        self.sent = 0
        self.matched = 0
        self.set_terminator(None)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(soak.address)

    def handle_connect(self) -> None:
        self.soak.connected(self)

    def push_more(self) -> None:
        end = min(len(self.expected), self.matched + self.window)
        if end > self.sent:
            self.push(self.expected[self.sent:end])
            self.sent = end

    def collect_incoming_data(self, data: bytes) -> None:
        end = self.matched + len(data)
        if self.expected[self.matched:end] != data:
            self.soak.failed(f"echo mismatch in bytes {self.matched}..{end}")
            self.close()
            return
        self.matched = end
        if end == len(self.expected):
            self.soak.finished(end)
            self.close()
        else:
            self.push_more()

    def handle_close(self) -> None:
        self.soak.failed(f"connection closed after {self.matched} of {len(self.expected)} bytes")
        self.close()

    def handle_error(self) -> None:
        self.soak.failed(f"error: {sys.exc_info()[1]!r}")
        self.close()


class Soak:
    """One round: ``connections`` clients, ``size`` bytes each, one server."""

    def __init__(self, connections: int, size: int, window: int = 32768, seed: int = 0) -> None:
        if connections < 1 or size < 1 or window < 1:
            raise ValueError("connections, size and window must be positive")
        self.connections = connections
        self.size = size
        self.window = window
        # one random block; each client streams its own offset into it
        self.block = memoryview(random.Random(seed).randbytes(size + 65536))
        self.channels: Channels = asyncio_compat.SocketMap()
        self.server = EchoServer(self)
        self.address = self.server.address
        self.opened = 0
        self.connecting = 0
        self.waiting: List[EchoClient] = []  # connected, held until all are
        self.peak_open = 0  # most client connections open at once
        self.done = 0
        self.verified = 0
        self.failures: List[str] = []

    def open_clients(self) -> None:
        while self.opened < self.connections and self.connecting < CONNECTING_AT_ONCE:
            offset = (self.opened * 7919) % 65536
            EchoClient(self, self.block[offset:offset + self.size])
            self.opened += 1
            self.connecting += 1

    def accepted(self) -> None:
        self.connecting -= 1
        self.open_clients()

    def connected(self, client: EchoClient) -> None:
        """Hold each client until all are connected, then start them all:
        every connection is open at once while the data flows."""
        self.waiting.append(client)
        if len(self.waiting) == self.connections:
            self.peak_open = sum(1 for c in self.waiting if c._fileno is not None)
            for waiting in self.waiting:
                waiting.push_more()
            self.waiting.clear()

    def finished(self, size: int) -> None:
        self.done += 1
        self.verified += size

    def failed(self, reason: str) -> None:
        self.failures.append(reason)

    def over(self) -> bool:
        return self.done + len(self.failures) >= self.connections

    def run(self, poller: Optional[str] = None, time_limit: float = 600.0) -> float:
        """Serve until every client is done (or failed); returns the seconds taken.

        Stops with a failure recorded when ``time_limit`` passes first.  The
        map is empty afterwards.
        """
        started = time.monotonic()
        self.open_clients()
        try:
            while not self.over():
                if time.monotonic() - started > time_limit:
                    self.failed(f"time limit: {self.done} of {self.connections} done")
                    break
                asyncore.loop(timeout=1.0, map=self.channels, count=1, poller=poller)
        finally:
            asyncore.close_all(map=self.channels, ignore_all=True)
        return time.monotonic() - started


def fds_needed(connections: int) -> int:
    return 2 * connections + SPARE_FDS


def raise_fd_limit(needed: int) -> Optional[str]:
    """Raise the soft RLIMIT_NOFILE to ``needed`` if it is lower; the reason it
    cannot be, or None.  Changes the limit of the whole process."""
    try:
        import resource
    except ImportError:
        return "no resource module: cannot check the descriptor limit"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return f"needs {needed} descriptors; the hard RLIMIT_NOFILE is {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return None


def open_fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: count the ones fstat() accepts
        return sum(1 for fd in range(4096) if _is_open(fd))


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=5000, help="concurrent clients per round")
    parser.add_argument("--size", type=int, default=100 * 1024, help="bytes each client echoes")
    parser.add_argument("--window", type=int, default=32768, help="unanswered bytes per client, at most")
    parser.add_argument("--rounds", type=int, default=3, help="rounds to run (0: until interrupted)")
    parser.add_argument("--poller", default=None, help="backend name (default: the process default)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    problem = raise_fd_limit(fds_needed(args.connections))
    if problem:
        print(f"cannot run: {problem}")
        return 1
    name = args.poller or asyncio_compat.get_default_poller().name
    print(f"poller: {name}; {args.connections} connections x {args.size} bytes per round")
    round_number = 0
    while args.rounds == 0 or round_number < args.rounds:
        round_number += 1
        before = open_fd_count()
        soak = Soak(args.connections, args.size, args.window, seed=round_number)
        seconds = soak.run(args.poller)
        leaked = open_fd_count() - before
        print(
            f"round {round_number}: {soak.peak_open} connections open at once; {soak.done} echoed "
            f"{soak.verified} bytes, every one checked, in {seconds:.1f}s; "
            f"{len(soak.failures)} failures; descriptors leaked: {leaked}"
        )
        if soak.failures or leaked > 0:
            for reason in soak.failures[:10]:
                print(f"  {reason}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
