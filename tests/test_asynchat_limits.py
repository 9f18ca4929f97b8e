"""Opt-in limits of async_chat, on every backend: a cap on the size of one
message (``max_message_size``) and output back-pressure (``output_high_water``)."""

from __future__ import annotations

import socket
from typing import Any, Dict, List, Tuple

import pytest
from helpers import Sockets, in_map

from asyncio_compat import asynchat, asyncore

pytestmark = pytest.mark.timeout(60)


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
    poller_name: str, socket_map: Dict[int, Any], sockets: Sockets, capsys: pytest.CaptureFixture[str]
) -> None:
    mine, peer = sockets.pair()
    other_a, other_b = sockets.pair()
    capped = Lines(mine.dup(), socket_map)
    capped.max_message_size = 100
    fine = Lines(other_a.dup(), socket_map)
    fine.max_message_size = 100
    peer.sendall(b"x" * 60 + b"\n" + b"y" * 50)  # a 60-byte message, then 50 bytes of the next
    serve(socket_map, poller_name)
    assert capped.lines == [b"x" * 60]
    peer.sendall(b"y" * 51)  # the second message reaches 101 bytes across reads
    other_b.sendall(b"z" * 100 + b"\n")  # exactly the cap: allowed
    serve(socket_map, poller_name)
    assert not in_map(capped, socket_map), "the channel over its cap must be closed"
    assert fine.lines == [b"z" * 100]
    assert "passes max_message_size (100)" in capsys.readouterr().out


def test_message_cap_hook_can_be_overridden(
    poller_name: str, socket_map: Dict[int, Any], pair: Tuple[socket.socket, socket.socket]
) -> None:

    class Lenient(Lines):
        max_message_size = 10

        def handle_message_too_large(self, size: int) -> None:
            self.too_large.append(size)
            self.discard_buffers()

    chan = Lenient(pair[0].dup(), socket_map)
    pair[1].sendall(b"0123456789ABC")
    serve(socket_map, poller_name, passes=1)
    assert chan.too_large == [13]
    assert in_map(chan, socket_map)


def test_no_cap_by_default(
    poller_name: str, socket_map: Dict[int, Any], pair: Tuple[socket.socket, socket.socket]
) -> None:
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


def test_high_water_pauses_reading_and_loses_nothing(
    poller_name: str, socket_map: Dict[int, Any], pair: Tuple[socket.socket, socket.socket]
) -> None:

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
