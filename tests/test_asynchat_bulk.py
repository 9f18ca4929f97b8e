"""asyncio_compat.asynchat's bulk paths: pushes queued without copies, several
sends and reads per event, and the cases that keep 3.11's one-at-a-time."""

from __future__ import annotations

import socket
from typing import Any, List, Optional

import pytest
from helpers import release_map

from asyncio_compat import SocketMap, asynchat, asyncore

pytestmark = pytest.mark.timeout(60)

PIECE = 65536  # the default ac_in_buffer_size and ac_out_buffer_size


class Collector(asynchat.async_chat):
    """Counts reads and keeps what it is handed; its messages end with ``\\n``."""

    def __init__(self, sock: Optional[Any] = None, map: Any = None) -> None:
        super().__init__(sock, map)
        self.set_terminator(b"\n")
        self.pieces: List[bytes] = []
        self.found = 0
        self.reads = 0

    def recv(self, buffer_size: int) -> bytes:
        self.reads += 1
        return super().recv(buffer_size)

    def collect_incoming_data(self, data: bytes) -> None:
        self.pieces.append(data)

    def found_terminator(self) -> None:
        self.found += 1


class Endless:
    """A socket stand-in: ``recv`` always fills the buffer, ``send`` takes
    everything (or nothing, if ``takes`` is false)."""

    def __init__(self, takes: bool = True) -> None:
        self.sent: List[Any] = []
        self.takes = takes

    def recv(self, size: int) -> bytes:
        return b"x" * size

    def send(self, data: Any) -> int:
        if not self.takes:
            return 0
        self.sent.append(data)
        return len(data)

    def close(self) -> None:
        pass


def driven(channel: asynchat.async_chat, takes: bool = True) -> Endless:
    sock = Endless(takes)
    channel.socket = sock  # type: ignore[assignment]
    channel.connected = True
    return sock


def test_a_long_bytes_push_is_queued_as_views_of_it() -> None:
    chat = Collector()  # not connected: nothing is sent
    body = bytes(range(256)) * 1000
    chat.push(body)
    assert all(type(item) is memoryview and item.obj is body for item in chat.producer_fifo)
    assert b"".join(chat.producer_fifo) == body
    assert chat.queued_output == len(body)


def test_a_long_bytearray_push_is_copied_so_later_changes_are_not_sent() -> None:
    chat = Collector()
    body = bytearray(3 * PIECE)
    chat.push(body)
    body[:3] = b"new"
    body.extend(b"more")  # would fail if a view of it were queued
    assert b"".join(chat.producer_fifo) == bytes(3 * PIECE)


def test_sends_go_on_while_the_socket_takes_whole_pieces() -> None:
    chat = Collector()
    sock = driven(chat)
    chat.push(b"y" * (20 * PIECE))
    assert len(sock.sent) == 16  # one event's worth; 3.11 sent one piece
    assert all(len(piece) == PIECE for piece in sock.sent)
    chat.handle_write()
    assert len(sock.sent) == 20 and not chat.producer_fifo


def test_a_send_override_still_gets_bytes() -> None:
    class Recording(Collector):
        def send(self, data: Any) -> int:
            seen.append(type(data))
            return len(data)

    seen: List[type] = []
    chat = Recording()
    driven(chat)
    chat.push(b"z" * (3 * PIECE))
    assert seen == [bytes, bytes, bytes]


def test_reads_go_on_while_they_fill_the_buffer() -> None:
    chat = Collector()
    driven(chat)
    chat.handle_read()
    assert chat.reads == 16 and sum(map(len, chat.pieces)) == 16 * PIECE


class Throttled(Collector):
    def readable(self) -> bool:  # a legacy predicate: asked before every read
        return True


class Closing(Collector):
    def collect_incoming_data(self, data: bytes) -> None:
        super().collect_incoming_data(data)
        self.close()


class Answering(Collector):
    """Pushes back what it reads, to a peer that takes nothing."""

    output_high_water = PIECE

    def collect_incoming_data(self, data: bytes) -> None:
        super().collect_incoming_data(data)
        self.push(data)


@pytest.mark.parametrize(("cls", "reads"), [(Throttled, 1), (Closing, 1), (Answering, 2)])
def test_reading_again_stops_where_3_11_would_have_asked_first(cls: type, reads: int) -> None:
    chat = cls()
    driven(chat, takes=False)
    chat.handle_read()
    assert chat.reads == reads  # Answering: the second read passed the high-water mark


def test_a_bulk_transfer_arrives_whole(poller_name: str) -> None:
    socket_map = SocketMap()
    mine, peer = socket.socketpair()
    try:
        chat = Collector(mine, socket_map)
        body = bytes(range(11, 256)) * 20_000  # no b"\n" in it: one long message
        peer.setblocking(False)
        chat.push(body)
        received = bytearray()
        outgoing = memoryview(body + b"\n")
        for _ in range(10_000):
            if len(received) == len(body) and chat.found:
                break
            asyncore.loop(timeout=0.01, map=socket_map, count=1, poller=poller_name)
            try:
                received += peer.recv(1 << 20)
            except BlockingIOError:
                pass
            if outgoing:
                try:
                    outgoing = outgoing[peer.send(outgoing):]
                except BlockingIOError:
                    pass
        assert bytes(received) == body
        assert chat.found == 1 and b"".join(chat.pieces) == body
    finally:
        release_map(socket_map)
        mine.close()
        peer.close()
