"""Opt-in limits of async_chat (bounded input, output back-pressure) and the
loop's one-call interest functions, on every backend."""

from __future__ import annotations

import socket
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from asyncio_compat import SocketMap, _loop, asynchat, asyncore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


class Lines(asynchat.async_chat):
    def __init__(self, sock: socket.socket, socket_map: Dict[int, Any]) -> None:
        super().__init__(sock, map=socket_map)
        self.set_terminator(b"\n")
        self.lines: List[bytes] = []
        self.too_large: List[int] = []

    def collect_incoming_data(self, data: bytes) -> None:
        self._collect_incoming_data(data)

    def found_terminator(self) -> None:
        self.lines.append(self._get_data())


def serve(socket_map: Dict[int, Any], poller_name: str, passes: int = 3) -> None:
    asyncore.loop(timeout=0.2, map=socket_map, count=passes, poller=poller_name)


def test_message_cap_closes_only_the_offender(
    poller_name: str, pair: Tuple[socket.socket, socket.socket], capsys: pytest.CaptureFixture[str]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()
    other_a, other_b = socket.socketpair()
    try:
        capped = Lines(pair[0].dup(), socket_map)
        capped.max_message_size = 100
        fine = Lines(other_a.dup(), socket_map)
        fine.max_message_size = 100
        pair[1].sendall(b"x" * 60 + b"\n" + b"y" * 50)  # a 60-byte message, then 50 bytes of the next
        serve(socket_map, poller_name)
        assert capped.lines == [b"x" * 60]
        pair[1].sendall(b"y" * 51)  # the second message reaches 101 bytes across reads
        other_b.sendall(b"z" * 100 + b"\n")  # exactly the cap: allowed
        serve(socket_map, poller_name)
        assert capped._fileno is None, "the channel over its cap must be closed"
        assert fine.lines == [b"z" * 100]
        assert "passes max_message_size (100)" in capsys.readouterr().out
        asyncore.close_all(map=socket_map)
    finally:
        other_a.close()
        other_b.close()


def test_message_cap_hook_can_be_overridden(
    poller_name: str, pair: Tuple[socket.socket, socket.socket]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()

    class Lenient(Lines):
        max_message_size = 10

        def handle_message_too_large(self, size: int) -> None:
            self.too_large.append(size)
            self.discard_buffers()

    chan = Lenient(pair[0].dup(), socket_map)
    pair[1].sendall(b"0123456789ABC")
    serve(socket_map, poller_name, passes=1)
    assert chan.too_large == [13]
    assert chan._fileno is not None
    asyncore.close_all(map=socket_map)


def test_no_cap_by_default(poller_name: str, pair: Tuple[socket.socket, socket.socket]) -> None:
    socket_map: Dict[int, Any] = SocketMap()
    chan = Lines(pair[0].dup(), socket_map)
    big = b"q" * 300_000
    pair[1].setblocking(False)
    sent = 0
    for _ in range(200):
        try:
            sent += pair[1].send(big[sent:] + (b"\n" if sent < len(big) else b""))
        except BlockingIOError:
            pass
        serve(socket_map, poller_name, passes=1)
        if chan.lines:
            break
    assert chan.lines == [big]
    asyncore.close_all(map=socket_map)


def test_high_water_pauses_reading_and_loses_nothing(
    poller_name: str, pair: Tuple[socket.socket, socket.socket]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()

    class Echo(Lines):
        output_high_water = 64 * 1024
        ac_in_buffer_size = 90  # ten questions per read: the pause acts between reads

        def found_terminator(self) -> None:
            self.push(self._get_data() * 200 + b"\n")  # answers are much bigger than questions

    chan = Echo(pair[0].dup(), socket_map)
    pair[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client = pair[1]
    client.setblocking(False)
    client.sendall(b"abcdefgh\n" * 300)
    paused_seen = False
    received = bytearray()
    expected = (b"abcdefgh" * 200 + b"\n") * 300
    for _ in range(2000):
        serve(socket_map, poller_name, passes=1)
        paused_seen = paused_seen or not chan.readable()
        # the mark can be passed by the answers to one read, no more
        assert chan.queued_output <= Echo.output_high_water + 10 * 1601
        if paused_seen or len(received) > 1_000_000:
            try:
                received += client.recv(1 << 16)
            except BlockingIOError:
                pass
        if len(received) >= len(expected):
            break
    assert paused_seen, "reading never paused above output_high_water"
    assert bytes(received) == expected
    assert chan.readable() and chan.queued_output == 0
    asyncore.close_all(map=socket_map)


@pytest.mark.parametrize("connected", [True, False])
@pytest.mark.parametrize("accepting", [True, False])
@pytest.mark.parametrize("queued", [False, True])
def test_fast_interest_functions_agree_with_the_predicates(
    connected: bool, accepting: bool, queued: bool
) -> None:
    socket_map: Dict[int, Any] = {}
    for cls in (asyncore.dispatcher, asyncore.dispatcher_with_send, asynchat.async_chat):
        chan = cls(map=socket_map)
        chan.connected = connected
        chan.accepting = accepting
        if queued and isinstance(chan, asyncore.dispatcher_with_send):
            chan.out_buffer = b"pending"
        if queued and isinstance(chan, asynchat.async_chat):
            chan.producer_fifo.append(b"pending")
            chan._reading_paused = True
        fast = _loop._interest_function(chan)
        assert fast is not None and fast is not _loop.wanted_events, cls
        assert fast(chan) == _loop.wanted_events(chan), (cls, connected, accepting, queued)
