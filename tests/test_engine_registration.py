"""Registration and interest: which fds the map loop registers, for which
channel, and when it asks a channel's ``readable()``/``writable()``.

* a reused fd number is bound to its new owner, never handed the old one's
  event, and a client that reconnects inside a handler (usually under the
  same fd) gets its new connection, not an immediate ``handle_close``;
* channels with the built-in predicates are not asked while idle; a channel
  asked every pass (its own predicates, or any channel of a plain dict) is
  asked once per pass, its first included, and a change of its answer counts
  from the next pass; output queued from another channel's handler is noticed;
* a predicate marked ``pushes_interest`` that raises after an event is asked
  once, then ``handle_error`` follows;
* the mask functions of the built-in classes agree with their predicates.

Every test runs once per available backend (the ``poller_name`` fixture).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Dict, List, Optional, Tuple

import pytest
from helpers import Collector, Sockets, run_until
from helpers import run_passes as run

from asyncio_compat import SocketMap, _interest, _loop, asynchat, asyncore

pytestmark = pytest.mark.timeout(60)

Map = Dict[int, Any]
SOCKET_MAP_KINDS = pytest.mark.parametrize("socket_map", ["SocketMap", "dict"], indirect=True)


# -- fd reuse: a record belongs to the channel that holds the fd now ----------------------------


@SOCKET_MAP_KINDS
def test_event_is_not_delivered_to_new_owner_of_reused_fd(
    poller_name: str, socket_map: Map, sockets: Sockets
) -> None:
    channels: List[Collector] = []
    newcomers: List[Collector] = []

    class Closer(Collector):
        """The first of the two to run closes the other and takes its fd."""

        def handle_read(self) -> None:
            super().handle_read()
            if newcomers:
                return
            victim = next(c for c in channels if c is not self)
            old_fd = victim.socket.fileno()
            victim.close()
            a, _ = sockets.pair()
            if a.fileno() != old_fd:
                os.dup2(a.fileno(), old_fd)  # force the reuse the test is about
                sockets.append(socket.socket(fileno=old_fd))
                a = sockets[-1]
            newcomers.append(Collector(a, socket_map))
            assert newcomers[0].socket.fileno() == old_fd

    for _ in range(2):
        a, b = sockets.pair()
        channels.append(Closer(a.dup(), socket_map))
        b.send(b"x")  # both readable in the same pass
    run(socket_map, poller_name)
    assert len(newcomers) == 1
    assert newcomers[0].events == [], "the closed channel's event reached the new owner"


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


# -- interest: who is asked, and when ------------------------------------------------------------


def test_builtin_predicates_are_not_asked_when_idle(
    poller_name: str, socket_map: Map, sockets: Sockets
) -> None:
    looks: List[int] = []

    class Watched(asyncore.dispatcher_with_send):
        """Built-in predicates; counts each time its interest is worked out (which
        reads out_buffer, whether by writable() or by the loop's one-call form)."""

        @property  # type: ignore[override]
        def out_buffer(self) -> bytes:
            looks.append(1)
            return self.pending

        @out_buffer.setter
        def out_buffer(self, value: bytes) -> None:
            self.pending = value

    for _ in range(50):
        a, _b = sockets.pair()
        assert Watched(a.dup(), map=socket_map).connected
    run(socket_map, poller_name, count=1, timeout=0)
    assert looks, "precondition: a new channel's interest is worked out"
    looks.clear()
    run(socket_map, poller_name, count=5, timeout=0)
    assert looks == [], "idle channels with built-in predicates were asked"


@pytest.mark.parametrize("socket_map", ["dict"], indirect=True)
def test_plain_dict_map_is_compared_every_pass(poller_name: str, socket_map: Map, sockets: Sockets) -> None:
    a, b = sockets.pair()
    chan = Collector(a.dup(), socket_map)
    fd = chan.socket.fileno()
    del socket_map[fd]  # legacy code touching the map directly
    b.send(b"late")
    run(socket_map, poller_name, count=1, timeout=0) if socket_map else None
    socket_map[fd] = chan  # and putting it back
    run(socket_map, poller_name, count=1)
    assert chan.data == b"late"


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


class Toggle(Collector):
    """A legacy subclass with its own readable(): asked every pass."""

    def __init__(self, sock: Any, socket_map: Map) -> None:
        super().__init__(sock, socket_map)
        self.want = False
        self.asked = 0

    def readable(self) -> bool:
        self.asked += 1
        return self.want


def test_overridden_readable_is_honoured_on_next_pass(
    poller_name: str, socket_map: Map, pair: Tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    chan = Toggle(a.dup(), socket_map)
    b.send(b"hello")
    asyncore.loop(timeout=0.01, map=socket_map, count=3, poller=poller_name)
    assert chan.data == b""
    assert chan.asked >= 3, "an overridden predicate must be asked every pass"
    chan.want = True  # no notification: 3.11 code just flips state
    asyncore.loop(timeout=0.5, map=socket_map, count=1, poller=poller_name)
    assert chan.data == b"hello"


def test_send_from_another_channel_is_noticed(poller_name: str, socket_map: Map, sockets: Sockets) -> None:
    a1, b1 = sockets.pair()
    a2, b2 = sockets.pair()
    sender = asyncore.dispatcher_with_send(a2.dup(), map=socket_map)

    class Relay(Collector):
        def handle_read(self) -> None:
            super().handle_read()
            # dispatcher_with_send tells the loop; a full socket buffer is
            # drained on later passes
            sender.send(self.data * 20000)

    Relay(a1.dup(), socket_map)
    b1.send(b"ab")
    b2.setblocking(False)
    got = bytearray()

    def all_arrived() -> bool:
        try:
            got.extend(b2.recv(1 << 20))
        except BlockingIOError:
            pass
        return len(got) >= 40000

    run_until(socket_map, all_arrived, poller=poller_name)
    assert got == b"ab" * 20000


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


@pytest.mark.parametrize("connected", [True, False])
@pytest.mark.parametrize("accepting", [True, False])
@pytest.mark.parametrize("queued", [False, True])
@pytest.mark.parametrize("paused", [False, True])
def test_fast_interest_functions_agree_with_the_predicates(
    connected: bool, accepting: bool, queued: bool, paused: bool, socket_map: Map, sockets: Sockets
) -> None:
    """The built-in channel classes are not asked every pass: the loop computes
    their masks in one call (``register_fast_interest``).  The mask it registers
    is the one asking the predicates gives, in every state (``accept_paused``
    included: a paused listener asks for nothing)."""
    for cls in (asyncore.dispatcher, asyncore.dispatcher_with_send, asynchat.async_chat):
        mine, _ = sockets.pair()
        chan = cls(mine, map=socket_map)
        chan.connected = False  # nothing is sent while the output queues
        if queued and isinstance(chan, asyncore.dispatcher_with_send):
            chan.out_buffer = b"pending"
        if queued and isinstance(chan, asynchat.async_chat):
            # above the high-water mark: reading pauses
            chan.output_high_water = 1
            chan.push(b"pending")
            assert not chan.readable()
        chan.connected = connected
        chan.accepting = accepting
        chan.accept_paused = paused  # as pause_accepting() sets it, without its timer
        map_loop = _loop.loop_for(socket_map)
        map_loop.sync()  # the new channel's registration, as a pass begins with
        assert not map_loop.asks_every_pass(), cls
        registered = map_loop.poller.get_mask(mine.fileno())
        where = (cls, connected, accepting, queued, paused)
        assert registered == _interest.wanted_events(chan), where
        if accepting and paused:
            assert registered == 0, where
        chan.close()
