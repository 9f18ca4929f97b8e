"""Two 3.11 behaviours legacy programs rely on, on every backend:

* a channel that overrides ``readable()``/``writable()`` is asked each once
  per pass, its first pass included;
* a client that reconnects on the same dispatcher inside a handler
  (``close(); create_socket(); connect()``, usually under the same fd
  number) gets its new connection, not an immediate ``handle_close``.
"""

from __future__ import annotations

import socket
from typing import Any, Dict, List, Optional

import pytest

from asyncio_compat import SocketMap, asyncore

pytestmark = pytest.mark.timeout(60)


class Counting(asyncore.dispatcher):
    """Overrides both predicates and logs each call; never wants to write."""

    def __init__(self, sock: socket.socket, socket_map: Dict[int, Any]) -> None:
        super().__init__(sock, map=socket_map)
        self.log: List[str] = []

    def readable(self) -> bool:
        self.log.append("readable")
        return True

    def writable(self) -> bool:
        self.log.append("writable")
        return False

    def handle_read(self) -> None:
        self.log.append("read " + self.recv(100).decode())


@pytest.mark.parametrize("map_type", [SocketMap, dict])
@pytest.mark.parametrize("use_poll", [True, False])
def test_an_overriding_channel_is_asked_once_per_pass(
    poller_name: str, map_type: Any, use_poll: bool
) -> None:
    socket_map: Dict[int, Any] = map_type()
    mine, peer = socket.socketpair()
    try:
        chan = Counting(mine, socket_map)
        for number in range(3):
            if number == 1:
                peer.send(b"x")
            timeout = 0.5 if number == 1 else 0.0
            asyncore.loop(timeout, use_poll, socket_map, count=1, poller=poller_name)
            chan.log.append("end of pass")
        assert chan.log == [
            "readable", "writable", "end of pass",
            "readable", "writable", "read x", "end of pass",
            "readable", "writable", "end of pass",
        ]
    finally:
        asyncore.close_all(socket_map)
        peer.close()


class Reconnecting(asyncore.dispatcher_with_send):
    """Connects; when the server hangs up the first connection, reconnects in handle_close."""

    def __init__(self, address: Any, socket_map: Dict[int, Any]) -> None:
        super().__init__(map=socket_map)
        self.address = address
        self.log: List[str] = []
        self.fds: List[Optional[int]] = []
        self.create_socket()
        self.fds.append(self._fileno)
        self.connect(address)

    def handle_connect(self) -> None:
        self.log.append("connect")

    def handle_read(self) -> None:
        data = self.recv(100)
        if data:
            self.log.append("read " + data.decode())

    def handle_close(self) -> None:
        self.log.append("close")
        self.close()
        if self.log.count("close") == 1:
            self.create_socket()
            self.fds.append(self._fileno)
            self.connect(self.address)


class Server(asyncore.dispatcher):
    """Hangs up its first connection; greets the second."""

    def __init__(self, socket_map: Dict[int, Any]) -> None:
        super().__init__(map=socket_map)
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(5)
        self.accepted: List[socket.socket] = []

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        if not self.accepted:
            sock.close()
            self.accepted.append(sock)
        else:
            sock.send(b"hello")
            self.accepted.append(sock)


@pytest.mark.parametrize("map_type", [SocketMap, dict])
@pytest.mark.parametrize("use_poll", [True, False])
def test_reconnecting_inside_a_handler_gets_the_new_connection(
    poller_name: str, use_poll: bool, map_type: Any
) -> None:
    socket_map: Dict[int, Any] = map_type()
    server = Server(socket_map)
    client = Reconnecting(server.socket.getsockname(), socket_map)
    try:
        for _ in range(200):
            if "read hello" in client.log:
                break
            asyncore.loop(timeout=0.1, map=socket_map, count=1, poller=poller_name, use_poll=use_poll)
        assert client.fds[0] == client.fds[1], "the new socket did not reuse the fd: nothing was tested"
        assert client.log == ["connect", "close", "connect", "read hello"]
    finally:
        asyncore.close_all(socket_map)
        for sock in server.accepted:
            sock.close()


class FailsToSayAfterAnEvent(asyncore.dispatcher):
    """Reports its interest changes; after reading once, its readable() raises."""

    def __init__(self, sock: socket.socket, socket_map: Any) -> None:
        super().__init__(sock, map=socket_map)
        self.asked_after_read = 0
        self.has_read = False
        self.calls_before_handle_error: List[int] = []

    @asyncore.pushes_interest
    def readable(self) -> bool:
        if self.has_read:
            self.asked_after_read += 1
            raise RuntimeError("readable() fails")
        return True

    @asyncore.pushes_interest
    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.recv(100)
        self.has_read = True

    def handle_error(self) -> None:
        self.calls_before_handle_error.append(self.asked_after_read)
        self.close()


@pytest.mark.parametrize("use_poll", [False, True])
def test_a_pushed_predicate_that_raises_after_an_event_is_asked_once(
    poller_name: str, use_poll: bool
) -> None:
    # The loop asks a channel that reports its changes for its interest right
    # after each event; when the predicate raises, handle_error() follows
    # that one call (sync() makes the same promise), the predicate is not
    # asked again to find out.
    socket_map: Dict[int, Any] = SocketMap()
    mine, peer = socket.socketpair()
    with peer:
        channel = FailsToSayAfterAnEvent(mine, socket_map)
        peer.send(b"x")
        for _ in range(20):
            if channel.calls_before_handle_error:
                break
            asyncore.loop(5.0, use_poll, socket_map, count=1, poller=poller_name)
        assert channel.calls_before_handle_error == [1]
        assert not socket_map
