"""asyncio_compat.asynchat: real socket exchanges on every backend, plus the
output queue and 3.11 parity driven through stand-in sockets."""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
import sys
import sysconfig
import warnings
from types import ModuleType
from typing import Any, List, Optional, Tuple

import pytest
from helpers import Sockets, run_until
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncio_compat import SocketMap, asynchat, asyncore

pytestmark = pytest.mark.timeout(60)


# -- channels and helpers --------------------------------------------------------------


class Chat(asynchat.async_chat):
    """Keeps each message; records handler errors instead of printing them."""

    def __init__(
        self, sock: Optional[socket.socket] = None, map: Any = None, terminator: Any = b"\r\n"
    ) -> None:
        super().__init__(sock, map)
        self.messages: List[bytes] = []
        self.errors: List[BaseException] = []
        self.set_terminator(terminator)

    def collect_incoming_data(self, data: bytes) -> None:
        # 3.11's helper for subclasses that keep the pieces until found_terminator()
        self._collect_incoming_data(data)

    def found_terminator(self) -> None:
        self.messages.append(self._get_data())

    def handle_error(self) -> None:
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]
        self.close()


class Sink(asyncore.dispatcher):
    """Reads everything its socket receives; notes the end of the stream."""

    def __init__(self, sock: socket.socket, map: Any) -> None:
        super().__init__(sock, map)
        self.received = bytearray()
        self.eof = False

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.received += self.recv(65536)

    def handle_close(self) -> None:
        self.eof = True
        self.close()


def big_payload(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


# -- input: each terminator kind over real sockets -----------------------------------------


def test_line_terminator_matched_across_reads(
    poller_name: str, use_poll: bool, socket_map: SocketMap, pair: Tuple[socket.socket, socket.socket]
) -> None:
    mine, peer = pair
    chat = Chat(mine, socket_map, b"\r\n")
    chat.ac_in_buffer_size = 3
    peer.sendall(b"hello\r\nwor")
    run_until(
        socket_map,
        lambda: chat.messages == [b"hello"] and b"".join(chat.incoming) == b"wor",
        poller=poller_name,
        use_poll=use_poll,
    )
    peer.sendall(b"ld\r")
    run_until(socket_map, lambda: chat.ac_in_buffer == b"\r", poller=poller_name, use_poll=use_poll)
    assert b"".join(chat.incoming) == b"world"
    peer.sendall(b"\n\r\n")
    run_until(socket_map, lambda: len(chat.messages) == 3, poller=poller_name, use_poll=use_poll)
    assert chat.messages == [b"hello", b"world", b""]
    assert chat.errors == []


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n", b"qqq"])
def test_terminators_of_every_length_read_one_byte_at_a_time(
    poller_name: str, socket_map: SocketMap, pair: Tuple[socket.socket, socket.socket], terminator: bytes
) -> None:
    mine, peer = pair
    chat = Chat(mine, socket_map, terminator)
    chat.ac_in_buffer_size = 1
    words = [b"hello world", b"", b"q not dead yet"]
    peer.sendall(b"".join(word + terminator for word in words))
    run_until(socket_map, lambda: len(chat.messages) == 3, poller=poller_name, use_poll=True)
    assert chat.messages == words


def test_int_terminator_counts_down_across_reads(
    poller_name: str, socket_map: SocketMap, pair: Tuple[socket.socket, socket.socket]
) -> None:
    mine, peer = pair
    chat = Chat(mine, socket_map, 10)
    peer.sendall(b"abcd")
    run_until(socket_map, lambda: chat.get_terminator() == 6, poller=poller_name, use_poll=True)
    assert chat.messages == []
    peer.sendall(b"efghijKL")
    run_until(socket_map, lambda: chat.messages == [b"abcdefghij"], poller=poller_name, use_poll=True)
    # 0 means "collect everything": the rest waits in incoming
    run_until(socket_map, lambda: chat.incoming == [b"KL"], poller=poller_name, use_poll=True)
    assert chat.get_terminator() == 0


@pytest.mark.parametrize("terminator", [None, b"", 0])
def test_no_terminator_collects_everything(
    poller_name: str, socket_map: SocketMap, pair: Tuple[socket.socket, socket.socket], terminator: Any
) -> None:
    mine, peer = pair
    chat = Chat(mine, socket_map, terminator)
    data = b"hello world\r\nI'm not dead yet!\n"
    peer.sendall(data)
    run_until(socket_map, lambda: b"".join(chat.incoming) == data, poller=poller_name, use_poll=True)
    assert chat.messages == []
    assert chat.ac_in_buffer == b""


class LengthPrefixed(Chat):
    """``LEN n\\r\\n`` then n bytes: the terminator changes at every found."""

    def __init__(self, sock: socket.socket, map: Any) -> None:
        super().__init__(sock, map, b"\r\n")
        self.bodies: List[bytes] = []

    def found_terminator(self) -> None:
        data = self._get_data()
        if isinstance(self.get_terminator(), int):
            self.bodies.append(data)
            self.set_terminator(b"\r\n")
        else:
            self.set_terminator(int(data.split()[1]))


def test_a_terminator_set_in_found_terminator_applies_to_the_rest_of_the_read(
    poller_name: str, socket_map: SocketMap, pair: Tuple[socket.socket, socket.socket]
) -> None:
    mine, peer = pair
    chat = LengthPrefixed(mine, socket_map)
    peer.sendall(b"LEN 7\r\nab\r\ncd\nLEN 3\r\nxyzLEN 2\r\n")
    run_until(
        socket_map,
        lambda: len(chat.bodies) == 2 and chat.get_terminator() == 2,
        poller=poller_name,
        use_poll=True,
    )
    assert chat.bodies == [b"ab\r\ncd\n", b"xyz"]
    assert b"".join(chat.incoming) == b""
    assert chat.errors == []


def test_a_tcp_client_pushing_before_it_is_connected(poller_name: str, socket_map: SocketMap) -> None:
    accepted: List[Chat] = []

    class Server(asyncore.dispatcher):
        def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
            accepted.append(Chat(sock, socket_map, b"\n"))

    server = Server(map=socket_map)
    server.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    client = Chat(map=socket_map, terminator=b"\n")
    client.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect(server.socket.getsockname())
    client.push(b"first\nsecond\n")
    assert client.writable(), "an unconnected channel waits for the connect"
    run_until(
        socket_map,
        lambda: bool(accepted) and accepted[0].messages == [b"first", b"second"],
        poller=poller_name,
        use_poll=True,
    )
    assert not client.writable(), "nothing left to send once connected"


# -- input: errors -------------------------------------------------------------------------------


def test_a_recv_that_would_block_is_ignored(pair: Tuple[socket.socket, socket.socket]) -> None:
    mine, _ = pair
    channels = SocketMap()
    chat = Chat(mine, channels)
    chat.handle_read()  # nothing was sent: recv() raises BlockingIOError
    assert chat.errors == [] and chat.connected
    chat.del_channel(channels)


class StandInSocket:
    """Enough of a socket for a channel driven by hand (no fd)."""

    def __init__(self, incoming: Any = b"", send_budget: Optional[List[int]] = None) -> None:
        self.incoming = incoming
        self.sent: List[Any] = []
        self.budget = send_budget  # bytes each send() takes; None: all
        self.closed = False

    def recv(self, size: int) -> Any:
        if isinstance(self.incoming, BaseException):
            raise self.incoming
        data, self.incoming = self.incoming[:size], self.incoming[size:]
        return data

    def send(self, data: Any) -> int:
        if isinstance(self.budget, BaseException):
            raise self.budget
        take = len(data) if self.budget is None else min(len(data), self.budget.pop(0) if self.budget else 0)
        if take:
            self.sent.append(data[:take])
        return take

    def close(self) -> None:
        self.closed = True


def hand_driven(chat: asynchat.async_chat, sock: StandInSocket) -> None:
    chat.socket = sock
    chat.connected = True


def test_other_recv_errors_go_to_handle_error() -> None:
    chat = Chat()
    hand_driven(chat, StandInSocket(OSError(errno.EIO, "I/O error")))
    chat.handle_read()
    assert len(chat.errors) == 1 and chat.errors[0].errno == errno.EIO  # type: ignore[attr-defined]


def test_text_from_recv_is_encoded_under_use_encoding() -> None:
    # 3.11 called bytes(str, encoding) here, on the type: a TypeError
    chat = Chat()
    chat.use_encoding = 1
    chat.set_terminator("\r\n")
    assert chat.get_terminator() == b"\r\n"
    hand_driven(chat, StandInSocket("h\xe9llo\r\nw"))
    chat.handle_read()
    assert chat.messages == [b"h\xe9llo"]
    assert chat.incoming == [b"w"]


def test_text_from_recv_without_use_encoding_is_refused() -> None:
    chat = Chat()
    hand_driven(chat, StandInSocket("hello\r\n"))
    with pytest.raises(TypeError, match="received data must be bytes, not str"):
        chat.handle_read()


def test_a_str_terminator_without_use_encoding_fails_at_the_read() -> None:
    chat = Chat(terminator="\r\n")
    assert chat.get_terminator() == "\r\n"
    hand_driven(chat, StandInSocket(b"hello\r\n"))
    with pytest.raises(TypeError, match="str terminator"):
        chat.handle_read()


def test_a_negative_int_terminator_is_refused() -> None:
    chat = Chat()
    with pytest.raises(ValueError, match="negative"):
        chat.set_terminator(-1)


def test_reading_before_any_terminator_is_set_is_an_attribute_error() -> None:
    chat = asynchat.async_chat()
    hand_driven(chat, StandInSocket(b"data"))
    with pytest.raises(AttributeError, match="terminator"):
        chat.handle_read()


class Alternating(Chat):
    """Its own get_terminator(): CRLF and LF by turns, asked before every step."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def get_terminator(self) -> bytes:
        self.asked += 1
        return b"\r\n" if len(self.messages) % 2 == 0 else b"\n"


def test_an_overridden_get_terminator_is_asked_before_every_step() -> None:
    # the plain attribute is read instead only when get_terminator() is async_chat's own
    chat = Alternating()
    chat.terminator = b"never used"
    hand_driven(chat, StandInSocket(b"a\nb\r\nc\nd\r\ne\n"))
    chat.handle_read()
    assert chat.messages == [b"a\nb", b"c", b"d", b"e"]
    assert chat.asked == 4  # once per message, as 3.11 asked it (the buffer ends with the last)
    assert chat.errors == []


class Failing(Chat):
    def found_terminator(self) -> None:
        raise ValueError("protocol error")


def test_a_raising_handler_closes_only_its_channel(
    poller_name: str, use_poll: bool, socket_map: SocketMap
) -> None:
    bad_mine, bad_peer = socket.socketpair()
    good_mine, good_peer = socket.socketpair()
    try:
        bad = Failing(bad_mine, socket_map)
        good = Chat(good_mine, socket_map)
        bad_peer.sendall(b"one\r\n")
        good_peer.sendall(b"one\r\n")
        run_until(
            socket_map,
            lambda: bool(bad.errors) and good.messages == [b"one"],
            poller=poller_name,
            use_poll=use_poll,
        )
        assert isinstance(bad.errors[0], ValueError)
        assert bad.socket.fileno() == -1 and bad_mine.fileno() not in socket_map
        good_peer.sendall(b"two\r\n")
        run_until(
            socket_map,
            lambda: good.messages == [b"one", b"two"],
            poller=poller_name,
            use_poll=use_poll,
        )
    finally:
        for sock in (bad_mine, bad_peer, good_mine, good_peer):
            sock.close()


# -- input: ac_in_buffer ---------------------------------------------------------------------------


def test_ac_in_buffer_reads_and_replaces_the_unconsumed_bytes() -> None:
    seen: List[bytes] = []

    class Rewriting(Chat):
        def found_terminator(self) -> None:
            super().found_terminator()
            seen.append(self.ac_in_buffer)
            if len(self.messages) == 1:
                self.ac_in_buffer = b"replaced\r\n"

    chat = Rewriting()
    hand_driven(chat, StandInSocket(b"one\r\ntwo\r\nthree\r"))
    chat.handle_read()
    assert chat.messages == [b"one", b"replaced"]
    assert seen == [b"two\r\nthree\r", b""]
    assert chat.ac_in_buffer == b""
    chat.socket.incoming = b"four\r"
    chat.handle_read()
    assert chat.ac_in_buffer == b"\r" and chat.incoming == [b"four"]


def test_discard_buffers_drops_input_and_output() -> None:
    chat = Chat()
    hand_driven(chat, StandInSocket(b"partial\r", send_budget=[]))
    chat.handle_read()
    chat.push(b"queued")
    assert chat.ac_in_buffer == b"\r" and chat.incoming and chat.producer_fifo
    chat.discard_buffers()
    assert chat.ac_in_buffer == b"" and chat.incoming == [] and not chat.producer_fifo
    assert not chat.writable()


# -- output --------------------------------------------------------------------------------------


def test_push_splits_by_ac_out_buffer_size_and_refuses_text() -> None:
    chat = Chat()  # not connected: nothing is sent
    chat.ac_out_buffer_size = 4
    chat.push(b"abcdefghij")
    chat.push(bytearray(b"xy"))
    chat.push(memoryview(b"z"))
    assert [bytes(item) for item in chat.producer_fifo] == [b"abcd", b"efgh", b"ij", b"xy", b"z"]
    for bad in ("text", 10, None):
        with pytest.raises(TypeError, match="bytes-like"):
            chat.push(bad)  # type: ignore[arg-type]
    assert len(chat.producer_fifo) == 5
    assert chat.writable()


class Countdown:
    """A producer giving ``b"<n>,"`` for n down to 1."""

    def __init__(self, start: int) -> None:
        self.left = start

    def more(self) -> bytes:
        if not self.left:
            return b""
        self.left -= 1
        return b"%d," % (self.left + 1)


def test_producers_are_drained_in_order_then_close_when_done(
    poller_name: str, use_poll: bool, socket_map: SocketMap, pair: Tuple[socket.socket, socket.socket]
) -> None:
    mine, peer = pair
    chat = Chat(mine, socket_map)
    sink = Sink(peer, socket_map)
    body = big_payload(300_000)
    chat.push(b"head|")
    chat.push_with_producer(asynchat.simple_producer(body, buffer_size=7000))
    chat.push_with_producer(Countdown(5))
    chat.push_with_producer(b"|bytes as a producer|")
    chat.push(b"tail")
    chat.close_when_done()
    chat.push(b"never sent")
    run_until(socket_map, lambda: sink.eof, poller=poller_name, use_poll=use_poll)
    assert bytes(sink.received) == b"head|" + body + b"5,4,3,2,1,|bytes as a producer|tail"
    assert chat.socket.fileno() == -1 and not chat.connected


def test_str_output_is_encoded_only_under_use_encoding(
    poller_name: str, socket_map: SocketMap, pair: Tuple[socket.socket, socket.socket]
) -> None:
    mine, peer = pair
    chat = Chat(mine, socket_map)
    sink = Sink(peer, socket_map)
    with pytest.raises(TypeError, match="use_encoding"):
        chat.push_with_producer(asynchat.simple_producer("text"))
    chat.discard_buffers()
    chat.use_encoding = 1
    chat.push_with_producer(asynchat.simple_producer("h\xe9llo w\xf6rld", buffer_size=3))
    run_until(socket_map, lambda: len(sink.received) == 11, poller=poller_name, use_poll=True)
    assert bytes(sink.received) == "h\xe9llo w\xf6rld".encode("latin-1")


def test_a_partial_send_keeps_a_view_of_the_rest_instead_of_a_copy(
    poller_name: str, socket_map: SocketMap, pair: Tuple[socket.socket, socket.socket]
) -> None:
    mine, peer = pair
    chat = Chat(mine, socket_map)
    chat.ac_out_buffer_size = 1 << 24
    body = big_payload(8 << 20)  # far more than a socket buffer holds
    chat.push_with_producer(body)
    head = chat.producer_fifo[0]
    assert isinstance(head, memoryview) and head.obj is body
    assert 0 < len(head) < len(body)
    sink = Sink(peer, socket_map)
    run_until(socket_map, lambda: len(sink.received) == len(body), poller=poller_name, use_poll=True)
    assert bytes(sink.received) == body


def test_send_errors_go_to_handle_error() -> None:
    chat = Chat()
    sock = StandInSocket()
    sock.budget = OSError(errno.EIO, "I/O error")  # type: ignore[assignment]
    hand_driven(chat, sock)
    chat.push(b"data")
    assert len(chat.errors) == 1 and chat.errors[0].errno == errno.EIO  # type: ignore[attr-defined]


def test_small_items_queued_while_blocked_leave_in_one_send() -> None:
    chat = Chat()
    sock = StandInSocket(send_budget=[0, 0, 0, 0, 9, 100])
    hand_driven(chat, sock)
    for item in (b"abc", bytearray(b"def"), memoryview(b"ghi"), b"jkl"):
        chat.push(item)
    assert sock.sent == [] and len(chat.producer_fifo) == 4
    chat.handle_write()  # one send of the 12 bytes queued; it takes 9
    assert sock.sent == [b"abcdefghi"]
    assert [bytes(item) for item in chat.producer_fifo] == [b"jkl"]
    chat.handle_write()
    assert sock.sent[1] == b"jkl" and type(sock.sent[1]) is bytes
    assert not chat.producer_fifo and not chat.writable()


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(
        st.tuples(st.sampled_from(["push", "bytearray", "view", "producer", "bytes-producer"]),
                  st.binary(max_size=40)),
        max_size=15,
    ),
    budgets=st.lists(st.integers(0, 50), max_size=200),
    out_size=st.integers(1, 64),
)
def test_whatever_send_takes_the_stream_arrives_whole_and_in_order(
    items: List[Tuple[str, bytes]], budgets: List[int], out_size: int
) -> None:
    chat = Chat()
    chat.ac_out_buffer_size = out_size
    sock = StandInSocket(send_budget=list(budgets))
    hand_driven(chat, sock)
    for kind, data in items:
        if kind == "push":
            chat.push(data)
        elif kind == "bytearray":
            chat.push(bytearray(data))
        elif kind == "view":
            chat.push(memoryview(data))
        elif kind == "producer":
            chat.push_with_producer(asynchat.simple_producer(data, buffer_size=5))
        else:
            chat.push_with_producer(data)
    chat.close_when_done()
    sock.budget = None  # from now on the socket takes everything
    for _ in range(1000):
        if not chat.connected:
            break
        chat.handle_write()
    assert not chat.connected and sock.closed
    assert b"".join(bytes(part) for part in sock.sent) == b"".join(data for _, data in items)
    assert all(len(part) <= out_size for part in sock.sent)


def test_simple_producer_hands_out_its_data_in_pieces() -> None:
    producer = asynchat.simple_producer(b"abcdefgh", buffer_size=3)
    assert producer.data == b"abcdefgh"
    assert producer.more() == b"abc"
    assert producer.data == b"defgh"
    assert [producer.more(), producer.more(), producer.more()] == [b"def", b"gh", b""]
    assert producer.data == b""
    producer.data = b"again"
    assert producer.more() == b"aga"


# -- the loop learns about output queued outside the channel's own handlers -----------------


class Relay(Chat):
    """On each line, pushes ``payload`` to another channel."""

    def __init__(self, sock: socket.socket, map: Any, target: Chat, payload: bytes) -> None:
        super().__init__(sock, map)
        self.target = target
        self.payload = payload

    def found_terminator(self) -> None:
        super().found_terminator()
        self.target.push(self.payload)


def test_a_push_from_another_channels_handler_is_sent(
    poller_name: str, use_poll: bool, socket_map: SocketMap, sockets: Sockets
) -> None:
    target_end, sink_end = sockets.pair()
    relay_end, trigger = sockets.pair()
    target = Chat(target_end, socket_map)
    sink = Sink(sink_end, socket_map)
    payload = big_payload(2 << 20)  # cannot go out in one send
    Relay(relay_end, socket_map, target, payload)
    for _ in range(3):  # the target is registered as idle: nothing to write
        asyncore.loop(timeout=0.01, use_poll=use_poll, map=socket_map, count=1, poller=poller_name)
    trigger.sendall(b"go\r\n")
    run_until(socket_map, lambda: len(sink.received) == len(payload), poller=poller_name, use_poll=use_poll)
    assert bytes(sink.received) == payload


def test_a_push_from_outside_the_loop_is_sent(
    poller_name: str, socket_map: SocketMap, pair: Tuple[socket.socket, socket.socket]
) -> None:
    mine, peer = pair
    chat = Chat(mine, socket_map)
    sink = Sink(peer, socket_map)
    for _ in range(3):
        asyncore.loop(timeout=0.01, map=socket_map, count=1, poller=poller_name)
    payload = big_payload(2 << 20)
    chat.push(payload)
    assert chat.producer_fifo, "the socket could not take it all at once"
    run_until(socket_map, lambda: len(sink.received) == len(payload), poller=poller_name, use_poll=True)
    assert bytes(sink.received) == payload


def test_close_when_done_from_outside_the_loop_closes_an_idle_channel(
    poller_name: str, socket_map: SocketMap, pair: Tuple[socket.socket, socket.socket]
) -> None:
    mine, peer = pair
    chat = Chat(mine, socket_map)
    sink = Sink(peer, socket_map)
    for _ in range(3):
        asyncore.loop(timeout=0.01, map=socket_map, count=1, poller=poller_name)
    chat.close_when_done()
    run_until(socket_map, lambda: sink.eof, poller=poller_name, use_poll=True)
    assert not chat.connected and chat.socket.fileno() == -1


def test_pushes_reach_the_loop_on_the_default_backend(
    default_poller: str, pair: Tuple[socket.socket, socket.socket]
) -> None:
    mine, peer = pair
    channels = SocketMap()
    try:
        chat = Chat(mine, channels)
        sink = Sink(peer, channels)
        asyncore.loop(timeout=0.01, map=channels, count=1)
        chat.push(big_payload(1 << 20))
        chat.close_when_done()
        for _ in range(1000):
            if sink.eof:
                break
            asyncore.loop(timeout=0.05, map=channels, count=1)
        assert sink.eof and len(sink.received) == 1 << 20
    finally:
        asyncore.close_all(map=channels)


# -- names and 3.11 parity -----------------------------------------------------------------------


def test_classes_present_themselves_as_asynchat() -> None:
    assert asynchat.async_chat.__module__ == "asynchat"
    assert asynchat.simple_producer.__module__ == "asynchat"
    assert repr(asynchat.async_chat()).startswith("<asynchat.async_chat at ")
    for name in ("async_chat", "simple_producer", "find_prefix_at_end"):
        assert name in asynchat.__all__


def stdlib_asynchat() -> Optional[ModuleType]:
    """CPython's own asynchat (3.11 and older), loaded by path under a private name."""
    path = os.path.join(sysconfig.get_paths()["stdlib"], "asynchat.py")
    if not os.path.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location("_stdlib_asynchat_for_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        spec.loader.exec_module(module)
    return module


STDLIB_ASYNCHAT = stdlib_asynchat()


def recording_class(base: type) -> type:
    """A subclass of ``base`` fed by a list of reads, logging every call it gets."""

    class Recording(base):  # type: ignore[misc]
        def __init__(self, reads: List[bytes], schedule: List[Any]) -> None:
            super().__init__()
            self.reads = list(reads)
            self.schedule = list(schedule)
            self.log: List[Any] = []
            self.set_terminator(self.schedule.pop(0))

        def recv(self, size: int) -> bytes:
            data = self.reads.pop(0)
            if len(data) > size:  # the rest stays in the socket for the next recv
                self.reads.insert(0, data[size:])
            return data[:size]

        def collect_incoming_data(self, data: bytes) -> None:
            self.log.append(("collect", bytes(data)))

        def found_terminator(self) -> None:
            self.log.append(("found", self.get_terminator()))
            if self.schedule:
                self.set_terminator(self.schedule.pop(0))

    return Recording


@pytest.mark.skipif(STDLIB_ASYNCHAT is None, reason="this Python has no stdlib asynchat (3.12+)")
@settings(max_examples=300, deadline=None)
@given(
    stream=st.lists(st.sampled_from([b"a", b"b", b"\r", b"\n", b"\r\n", b"xyz"]), max_size=80).map(b"".join),
    schedule=st.lists(
        st.sampled_from([b"\n", b"\r\n", b"ab", b"aba", b"\r\n\r\n", 1, 3, 8, None, b"", 0]),
        min_size=1, max_size=30,
    ),
    cuts=st.lists(st.integers(1, 25), min_size=1, max_size=8),
    in_size=st.integers(1, 40),
)
def test_every_call_matches_cpython_311(
    stream: bytes, schedule: List[Any], cuts: List[int], in_size: int
) -> None:
    reads: List[bytes] = []
    position = 0
    while position < len(stream):
        size = cuts[len(reads) % len(cuts)]
        reads.append(stream[position:position + size])
        position += size
    assert STDLIB_ASYNCHAT is not None
    bases = (STDLIB_ASYNCHAT.async_chat, asynchat.async_chat)
    channels = [recording_class(base)(reads, schedule) for base in bases]
    for channel in channels:
        channel.ac_in_buffer_size = in_size
        channel.handle_close = lambda: None  # recv is stubbed; nothing to close
        while channel.reads:
            channel.handle_read()
            channel.log.append(("after read", channel.get_terminator(), bytes(channel.ac_in_buffer)))
    theirs, ours = channels
    assert ours.log == theirs.log
