"""5,000 concurrent loopback connections under the default loop().

CPython 3.11's default loop (select) fails past fd 1,023; ours runs on the
best backend.  Server and clients are plain dispatcher subclasses in the
default socket map; every byte echoed is checked.
"""

from __future__ import annotations

import socket
from typing import Any, Dict, List

import pytest
from helpers import EchoHandler

from asyncio_compat import asyncore

# Windows has no resource module, and its only backend, select(), watches 512 sockets at most
resource = pytest.importorskip("resource", reason="no resource module (Windows): no fd limit to raise")

pytestmark = pytest.mark.posix_only("5,000 sockets: Windows' select() watches 512 at most")

CONNECTIONS = 5000
WAVE = 500  # connects in flight at once: stays under the listen backlog
PAYLOAD_SIZE = 2048


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed} fds needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class EchoServer(asyncore.dispatcher):
    def __init__(self) -> None:
        super().__init__()
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(4096)
        self.accepted = 0

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        self.accepted += 1
        EchoHandler(sock)


class Client(asyncore.dispatcher_with_send):
    """Connects, then (when told) sends its payload and checks the echo."""

    def __init__(self, port: int, index: int, results: Dict[str, int]) -> None:
        super().__init__()
        self.payload = (b"%06d:" % index) * (PAYLOAD_SIZE // 7) + b"!"
        self.received: List[bytes] = []
        self.results = results
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(("127.0.0.1", port))

    def handle_connect(self) -> None:
        self.results["connected"] += 1

    def start(self) -> None:
        self.send(self.payload)

    def handle_read(self) -> None:
        self.received.append(self.recv(65536))
        got = b"".join(self.received)
        if len(got) >= len(self.payload):
            self.results["ok" if got == self.payload else "corrupt"] += 1
            self.close()

    def handle_close(self) -> None:
        self.results["short"] += 1
        self.close()


@pytest.mark.timeout(240)
def test_5000_concurrent_connections_echo_under_default_loop() -> None:
    _raise_fd_limit(2 * CONNECTIONS + 200)
    results = {"connected": 0, "ok": 0, "corrupt": 0, "short": 0}
    server = EchoServer()
    port = server.socket.getsockname()[1]
    try:
        for start in range(0, CONNECTIONS, WAVE):
            for index in range(start, start + WAVE):
                Client(port, index, results)
            while results["connected"] < start + WAVE or server.accepted < start + WAVE:
                asyncore.loop(timeout=1.0, count=1)
        assert len(asyncore.socket_map) == 2 * CONNECTIONS + 1  # all open at once
        for client in [c for c in asyncore.socket_map.values() if isinstance(c, Client)]:
            client.start()
        while results["ok"] + results["corrupt"] + results["short"] < CONNECTIONS:
            asyncore.loop(timeout=1.0, count=1)
    finally:
        asyncore.close_all()
    assert results == {"connected": CONNECTIONS, "ok": CONNECTIONS, "corrupt": 0, "short": 0}
