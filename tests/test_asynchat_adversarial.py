"""async_chat attacked where it goes beyond 3.11: overrides of ``send``/``recv``
that expect what 3.11 gave them, peers that trickle or reset, and handlers
that push, close or close_when_done from inside ``found_terminator``.

Each test names the promise of docs/asynchat.rst it tries to break.
"""

from __future__ import annotations

import socket
from typing import Any, List, Optional

import pytest
from helpers import Sockets, in_map, run_until
from test_asynchat import Chat
from test_asynchat import Sink as PlainSink

from asyncio_compat import SocketMap, asynchat, asyncore

pytestmark = pytest.mark.timeout(60)

BIG_PIECES = 1 << 20  # ac_out_buffer_size well above 64 KiB


def payload(size: int) -> bytes:
    return (b"0123456789abcdefghijklmnopqrstuvwxyz\n" * (size // 37 + 1))[:size]


class Lines(Chat):
    """test_asynchat's Chat, keeping each piece handed to collect_incoming_data too."""

    def __init__(self, sock: socket.socket, socket_map: Any, terminator: Any = b"\n") -> None:
        super().__init__(sock, socket_map, terminator)
        self.pieces: List[Any] = []

    @property
    def lines(self) -> List[bytes]:
        return self.messages

    def collect_incoming_data(self, data: bytes) -> None:
        self.pieces.append(data)
        super().collect_incoming_data(data)


class Sink(PlainSink):
    def handle_close(self) -> None:
        # with poll2() semantics a hang-up comes with the last read event, as
        # in 3.11: take what is still in the socket before closing
        self.socket.setblocking(False)
        try:
            while True:
                data = self.socket.recv(65536)
                if not data:
                    break
                self.received += data
        except OSError:
            pass
        super().handle_close()


# -- an overridden send() is handed bytes (docs: "always handed bytes") --------------------


class Metered(Lines):
    """A logging/metering override, written for 3.11: it decodes what it is given.

    With ``throttle`` it passes on only part of each piece, so the rest of a
    large item stays queued and comes back in a later send().
    """

    throttle: Optional[int] = None

    def __init__(self, sock: socket.socket, socket_map: Any) -> None:
        super().__init__(sock, socket_map)
        self.ac_out_buffer_size = BIG_PIECES
        self.kinds: List[type] = []
        self.metered = 0

    def send(self, data: bytes) -> int:
        self.kinds.append(type(data))
        data.decode("latin-1")  # raises AttributeError on a memoryview
        if self.throttle is not None:
            data = data[: self.throttle]
        sent = super().send(data)
        self.metered += sent
        return sent


class ViewProducer:
    """A producer that hands out memoryviews of one large buffer."""

    def __init__(self, data: bytes, size: int) -> None:
        self.view = memoryview(data)
        self.size = size

    def more(self) -> memoryview:
        piece, self.view = self.view[: self.size], self.view[self.size:]
        return piece


@pytest.mark.parametrize(
    "kind", ["bytes", "memoryview", "bytearray", "view-producer", "bytearray-producer", "throttled"]
)
def test_an_overridden_send_is_handed_bytes_whatever_the_piece_size(
    poller_name: str, socket_map: SocketMap, sockets: Sockets, kind: str
) -> None:
    mine, peer = sockets.pair()
    chat = Metered(mine, socket_map)
    sink = Sink(peer, socket_map)
    body = payload(3 * BIG_PIECES + 12345)
    if kind == "bytes":
        chat.push(body)
    elif kind == "memoryview":
        chat.push(memoryview(body))
    elif kind == "bytearray":
        chat.push(bytearray(body))
    elif kind == "view-producer":
        chat.push_with_producer(ViewProducer(body, 300_000))
    elif kind == "bytearray-producer":
        chat.push_with_producer(asynchat.simple_producer(bytearray(body), buffer_size=300_000))
    else:
        chat.throttle = 70_000  # leaves a remainder above 64 KiB queued
        chat.push(body)
    run_until(socket_map, lambda: len(sink.received) >= len(body) or bool(chat.errors), poller=poller_name)
    assert chat.errors == []
    assert set(chat.kinds) == {bytes}
    assert bytes(sink.received) == body and chat.metered == len(body)


class RecordingSocket:
    """A socket of another type (a wrapper around a real one): its send()
    decodes what it is given, as one written for 3.11 may."""

    def __init__(self, sock: socket.socket, take: int) -> None:
        self.sock = sock
        self.take = take
        self.kinds: List[type] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def send(self, data: bytes) -> int:
        self.kinds.append(type(data))
        data.decode("latin-1")
        return self.sock.send(data[: self.take])


def test_a_socket_of_another_type_is_handed_bytes(
    poller_name: str, socket_map: SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    chat = Lines(mine, socket_map)
    chat.ac_out_buffer_size = BIG_PIECES
    wrapper = RecordingSocket(mine, 100_000)
    chat.socket = wrapper  # type: ignore[assignment]
    sink = Sink(peer, socket_map)
    body = payload(2 * BIG_PIECES + 7)
    chat.push(body)
    run_until(socket_map, lambda: len(sink.received) >= len(body) or bool(chat.errors), poller=poller_name)
    assert chat.errors == [] and set(wrapper.kinds) == {bytes}
    assert bytes(sink.received) == body


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_dispatcher_with_send_hands_its_socket_bytes(
    poller_name: str, socket_map: SocketMap, sockets: Sockets, wrap: Any
) -> None:
    # the other buffered sender: whatever send() is given, the socket sees bytes
    mine, peer = sockets.pair()
    sender = asyncore.dispatcher_with_send(mine, socket_map)
    wrapper = RecordingSocket(mine, 50_000)
    sender.socket = wrapper  # type: ignore[assignment]
    sink = Sink(peer, socket_map)
    body = payload(300_000)
    sender.send(wrap(body))
    run_until(socket_map, lambda: len(sink.received) >= len(body), poller=poller_name)
    assert set(wrapper.kinds) == {bytes} and bytes(sink.received) == body


# -- an overridden recv() may return what 3.11 accepted ------------------------------------


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_an_overridden_recv_may_return_any_bytes_like(
    poller_name: str, use_poll: bool, socket_map: SocketMap, sockets: Sockets, wrap: Any
) -> None:
    class Wrapped(Lines):
        def recv(self, size: int) -> Any:
            return wrap(super().recv(size))

    mine, peer = sockets.pair()
    chat = Wrapped(mine, socket_map, b"\r\n")
    peer.sendall(b"one\r\ntw")
    run_until(socket_map, lambda: chat.lines == [b"one"], poller=poller_name, use_poll=use_poll)
    peer.sendall(b"o\r")
    peer.sendall(b"\nthree\r\n")
    run_until(socket_map, lambda: len(chat.lines) == 3, poller=poller_name, use_poll=use_poll)
    assert chat.lines == [b"one", b"two", b"three"] and chat.errors == []
    assert all(type(line) is bytes for line in chat.lines)


# -- trickling and resetting peers ---------------------------------------------------------


def test_a_peer_trickling_one_byte_at_a_time_gets_every_message_and_no_empty_piece(
    poller_name: str, use_poll: bool, socket_map: SocketMap, sockets: Sockets
) -> None:
    # docs: a partial terminator is held back "until the next read";
    # collect_incoming_data "is never called with empty data"
    mine, peer = sockets.pair()
    chat = Lines(mine, socket_map, b"\r\n\r\n")
    stream = b"GET / HTTP/1.0\r\nHost: x\r\n\r\n\r\r\n\r\r\n\r\nlast\r\n\r\n"
    for byte in stream:
        peer.send(bytes([byte]))
        asyncore.loop(timeout=0.05, map=socket_map, count=1, use_poll=use_poll, poller=poller_name)
    run_until(socket_map, lambda: len(chat.lines) == 3, poller=poller_name, use_poll=use_poll)
    assert chat.lines == [b"GET / HTTP/1.0\r\nHost: x", b"\r\r\n\r", b"last"]
    assert all(piece for piece in chat.pieces) and chat.errors == []


def test_a_peer_reset_mid_message_closes_only_that_channel(
    poller_name: str, use_poll: bool, socket_map: SocketMap, sockets: Sockets
) -> None:
    server_end, client_end = sockets.tcp_pair()
    other_end, other_peer = sockets.pair()
    victim = Lines(server_end, socket_map)
    bystander = Lines(other_end, socket_map)
    client_end.sendall(b"complete\nhalf a mess")
    run_until(socket_map, lambda: victim.lines == [b"complete"], poller=poller_name, use_poll=use_poll)
    client_end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client_end.close()  # an RST, not a FIN
    run_until(socket_map, lambda: not in_map(victim, socket_map), poller=poller_name, use_poll=use_poll)
    other_peer.sendall(b"still served\n")
    run_until(socket_map, lambda: bystander.lines == [b"still served"], poller=poller_name, use_poll=use_poll)
    assert bystander.errors == [] and in_map(bystander, socket_map)


# -- re-entrancy from found_terminator ------------------------------------------------------


class Quitter(Lines):
    """Echoes each line; on QUIT pushes a goodbye and close_when_done()."""

    def found_terminator(self) -> None:
        line = self._get_data()
        self.lines.append(line)
        if line == b"QUIT":
            self.push(b"bye\n")
            self.close_when_done()
        else:
            self.push(line + b"\n")


def test_close_when_done_inside_found_terminator_sends_what_came_before_and_closes(
    poller_name: str, use_poll: bool, socket_map: SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    chat = Quitter(mine, socket_map)
    sink = Sink(peer, socket_map)
    peer.sendall(b"a\nb\nQUIT\nafter quit\n")  # all in one read
    run_until(socket_map, lambda: sink.eof, poller=poller_name, use_poll=use_poll)
    # what was pushed after close_when_done() is queued behind the close, as in 3.11
    assert bytes(sink.received) == b"a\nb\nbye\n"
    assert chat.errors == [] and not in_map(chat, socket_map)


class Closer(Lines):
    """Closes itself on the first line, with more lines in the same read."""

    def found_terminator(self) -> None:
        self.lines.append(self._get_data())
        self.close()


def test_close_inside_found_terminator_with_more_lines_pending_raises_nothing(
    poller_name: str, use_poll: bool, socket_map: SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    other_end, other_peer = sockets.pair()
    chat = Closer(mine, socket_map)
    bystander = Lines(other_end, socket_map)
    peer.sendall(b"first\nsecond\nthird\n")
    other_peer.sendall(b"hello\n")
    run_until(
        socket_map, lambda: not in_map(chat, socket_map) and bystander.lines == [b"hello"],
        poller=poller_name, use_poll=use_poll,
    )
    assert chat.lines[0] == b"first" and chat.errors == [] and bystander.errors == []
    assert peer.recv(10) == b""  # the peer sees the end of the stream


class BigAnswer(Lines):
    """Answers each line with a reply larger than a socket buffer, from inside found_terminator."""

    def __init__(self, sock: socket.socket, socket_map: Any, answer: bytes) -> None:
        super().__init__(sock, socket_map)
        self.answer = answer

    def found_terminator(self) -> None:
        self.lines.append(self._get_data())
        self.push(self.answer)
        if len(self.lines) == 3:
            self.close_when_done()


def test_large_pushes_from_found_terminator_arrive_whole_and_in_order(
    poller_name: str, use_poll: bool, socket_map: SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    answer = payload(700_000)
    chat = BigAnswer(mine, socket_map, answer)
    sink = Sink(peer, socket_map)
    peer.sendall(b"1\n2\n3\n4\n")
    run_until(socket_map, lambda: sink.eof, poller=poller_name, use_poll=use_poll)
    assert bytes(sink.received) == answer * 3
    # the fourth answer was pushed behind the close, as in 3.11: never sent
    assert chat.errors == [] and chat.queued_output == len(answer)


def test_push_at_once_sends_without_a_loop_pass(sockets: Sockets, socket_map: SocketMap) -> None:
    # docs: "push() calls it [initiate_send] at once"
    mine, peer = sockets.pair()
    chat = Lines(mine, socket_map)
    chat.push(b"now\n")
    peer.settimeout(5.0)
    assert peer.recv(10) == b"now\n"
    assert not chat.producer_fifo


def test_write_events_send_until_the_fifo_is_empty(
    poller_name: str, socket_map: SocketMap, sockets: Sockets
) -> None:
    # docs: "every write event calls it again until the FIFO is empty"
    mine, peer = sockets.pair()
    chat = Lines(mine, socket_map)
    body = payload(5 << 20)
    chat.push(body)
    assert chat.producer_fifo, "the socket took 5 MiB at once: the test proves nothing"
    sink = Sink(peer, socket_map)
    run_until(socket_map, lambda: len(sink.received) == len(body), poller=poller_name)
    assert not chat.producer_fifo and chat.queued_output == 0
    assert bytes(sink.received) == body


class Counting:
    """A producer whose len() is 0, as 3.11 would have dropped it unasked."""

    def __init__(self, pieces: List[bytes]) -> None:
        self.pieces = pieces
        self.asked = 0

    def __len__(self) -> int:
        return 0

    def more(self) -> bytes:
        self.asked += 1
        return self.pieces.pop(0) if self.pieces else b""


def test_a_producer_is_always_asked_for_more(
    poller_name: str, socket_map: SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    chat = Lines(mine, socket_map)
    producer = Counting([b"x" * 10, b"y" * 10])
    chat.push_with_producer(producer)
    chat.close_when_done()
    sink = Sink(peer, socket_map)
    run_until(socket_map, lambda: sink.eof, poller=poller_name)
    assert bytes(sink.received) == b"x" * 10 + b"y" * 10 and producer.asked == 3


def test_nothing_pushed_is_dropped_under_back_pressure_with_a_slow_reader(
    poller_name: str, socket_map: SocketMap, sockets: Sockets
) -> None:
    # docs: "push() never drops data" (output_high_water set, the peer reads late)
    mine, peer = sockets.pair()
    answer = payload(200_000)
    chat = BigAnswer(mine, socket_map, answer)
    chat.output_high_water = 100_000
    peer.sendall(b"1\n2\n3\n")
    run_until(socket_map, lambda: chat.queued_output > 100_000, poller=poller_name)
    for _ in range(5):  # the peer reads nothing yet
        asyncore.loop(timeout=0.01, map=socket_map, count=1, poller=poller_name)
    sink = Sink(peer, socket_map)
    run_until(socket_map, lambda: sink.eof, poller=poller_name)
    assert bytes(sink.received) == answer * 3 and chat.errors == []


def test_a_channel_with_megabytes_queued_still_reads(
    poller_name: str, use_poll: bool, socket_map: SocketMap, sockets: Sockets
) -> None:
    # docs: "it always wants to read" (output_high_water None: reading never pauses)
    mine, peer = sockets.pair()
    chat = Lines(mine, socket_map)
    chat.push(payload(8 << 20))  # far more than the socket takes; the peer reads none of it
    assert chat.queued_output > 4 << 20
    for number in range(50):
        peer.sendall(b"line %d\n" % number)
    run_until(socket_map, lambda: len(chat.lines) == 50, poller=poller_name, use_poll=use_poll)
    assert chat.lines[-1] == b"line 49" and chat.errors == [] and chat.queued_output > 0
