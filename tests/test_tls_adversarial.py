"""TLS channels against hostile peers, on every backend and both event semantics.

Peers that close (FIN) or reset (RST) during the handshake, that send bytes
that are not TLS, that trickle a handshake so slowly it never ends, that
close in the middle of a record; overrides of ``send``/``recv`` written for
3.11; handlers that close or close_when_done from inside TLS hooks.  Each
hostile peer must end its own connection (in ``handle_close``, or in
``handle_error`` for bytes that are not TLS) and leave the listener and the
other connections served.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time
from typing import Any, Callable, List, Optional, Tuple

import pytest
import test_tls
from helpers import Sockets, in_map, run_until
from test_tls import HOST, ChatEcho, Echo, Listener, LoopArgs, Map, established, tls_client, tls_server

from asyncio_compat import asynchat, asyncore
from asyncio_compat.idle import IdleTimeoutMixin
from asyncio_compat.tls import TLSMixin

pytestmark = pytest.mark.timeout(60)

# test_tls.py's fixtures: the certificate made at test time, the two contexts,
# and each backend with each of 3.11's event semantics
certificate = test_tls.certificate
server_context = test_tls.server_context
client_context = test_tls.client_context
loop_args = test_tls.loop_args

LINGER_ZERO = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # struct linger {on, 0 s}: close() sends an RST
# a TLS record header announcing a 512-byte handshake message, which never comes whole
RECORD_HEADER = b"\x16\x03\x01\x02\x00"


class Watched(Echo):
    """An echo channel that also notes a handshake timeout."""

    def handle_handshake_timeout(self) -> None:
        self.events.append("handshake_timeout")
        super().handle_handshake_timeout()


def raw_peer(server: Listener, sockets: Sockets) -> socket.socket:
    """A plain TCP connection to ``server``, for a peer that speaks no TLS
    (closed after the test by the ``sockets`` fixture)."""
    sock = socket.create_connection(server.address, timeout=10)
    sockets.append(sock)
    return sock


def accepted(socket_map: Map, server: Listener, count: int, loop_args: LoopArgs) -> List[Any]:
    run_until(socket_map, lambda: len(server.accepted) >= count, **loop_args)
    return server.accepted


def serve_for(socket_map: Map, seconds: float, loop_args: LoopArgs) -> None:
    """Run loop passes for ``seconds`` (a pass returns early when events come)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        asyncore.loop(timeout=0.02, map=socket_map, count=1, **loop_args)


def one_raw_peer(
    socket_map: Map, sockets: Sockets, context: ssl.SSLContext, loop_args: LoopArgs, cls: type
) -> Tuple[Listener, socket.socket, Any]:
    """A TLS server of ``cls`` channels, a plain TCP peer, and the server's channel for it."""
    server = tls_server(socket_map, context, cls)
    peer = raw_peer(server, sockets)
    (handler,) = accepted(socket_map, server, 1, loop_args)
    return server, peer, handler


def ended(socket_map: Map, channel: Any) -> Callable[[], bool]:
    return lambda: not in_map(channel, socket_map)


def echo_still_served(
    socket_map: Map, server: Listener, context: ssl.SSLContext, loop_args: LoopArgs
) -> None:
    """A good client on the same listener gets its echo."""
    client = tls_client(socket_map, server.address, context)
    run_until(socket_map, lambda: "handshake" in client.events, **loop_args)
    client.send(b"still served")
    run_until(socket_map, lambda: bytes(client.received) == b"still served", **loop_args)
    assert client.errors == []
    client.close()


# -- the handshake ends early -----------------------------------------------------------------------


@pytest.mark.parametrize("sent_first", [b"", RECORD_HEADER + b"\x01\x00"], ids=["nothing", "half-a-hello"])
def test_a_fin_during_the_handshake_calls_handle_close_not_handle_error(
    loop_args: LoopArgs, socket_map: Map, sockets: Sockets,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext,
    sent_first: bytes,
) -> None:
    # tls.py: "A peer that disconnects meanwhile ... gets handle_close"
    # (a load balancer's health check: connect, maybe a few bytes, FIN)
    server, peer, handler = one_raw_peer(socket_map, sockets, server_context, loop_args, Watched)
    if sent_first:
        peer.sendall(sent_first)
    peer.shutdown(socket.SHUT_WR)
    run_until(socket_map, ended(socket_map, handler), **loop_args)
    peer.close()
    assert handler.events == ["close"] and handler.errors == []
    echo_still_served(socket_map, server, client_context, loop_args)


def test_a_reset_during_the_handshake_calls_handle_close(
    loop_args: LoopArgs, socket_map: Map, sockets: Sockets,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server, peer, handler = one_raw_peer(socket_map, sockets, server_context, loop_args, Watched)
    peer.sendall(RECORD_HEADER + b"\x01")
    asyncore.loop(timeout=0.05, map=socket_map, count=2, **loop_args)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    peer.close()
    run_until(socket_map, ended(socket_map, handler), **loop_args)
    assert handler.events == ["close"] and handler.errors == []
    echo_still_served(socket_map, server, client_context, loop_args)


def test_a_server_that_closes_during_the_clients_handshake_calls_the_clients_handle_close(
    loop_args: LoopArgs, socket_map: Map, client_context: ssl.SSLContext
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = tls_client(socket_map, listener.getsockname(), client_context)
        peer, _ = listener.accept()
    run_until(socket_map, lambda: client.connected, **loop_args)
    peer.close()  # reads the ClientHello or not: a FIN, or an RST if the hello was unread
    run_until(socket_map, ended(socket_map, client), **loop_args)
    assert client.events == ["close"] and client.errors == []


def test_bytes_that_are_not_tls_go_to_handle_error_and_only_that_connection_ends(
    loop_args: LoopArgs, socket_map: Map, sockets: Sockets,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # a plaintext HTTP client on the TLS port: an ssl.SSLError naming the
    # problem, logged by handle_error, which closes that connection
    server, peer, handler = one_raw_peer(socket_map, sockets, server_context, loop_args, Watched)
    peer.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
    run_until(socket_map, ended(socket_map, handler), **loop_args)
    assert len(handler.errors) == 1 and isinstance(handler.errors[0], ssl.SSLError)
    assert handler.errors[0].reason in {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL"}
    assert in_map(server, socket_map)
    echo_still_served(socket_map, server, client_context, loop_args)
    peer.close()


# -- a handshake that never ends --------------------------------------------------------------------


class Patient(IdleTimeoutMixin, Watched):
    """Idle timeout and handshake deadline together: the trickle defeats the first."""

    idle_timeout = 0.25
    handshake_timeout = 0.6


def test_a_trickled_handshake_is_ended_by_its_deadline(
    loop_args: LoopArgs, socket_map: Map, sockets: Sockets,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server, peer, handler = one_raw_peer(socket_map, sockets, server_context, loop_args, Patient)
    started = time.monotonic()
    peer.sendall(RECORD_HEADER)
    sent = 0
    while in_map(handler, socket_map):
        assert time.monotonic() - started < 10, "the handshake deadline never came"
        peer.send(b"\x01")  # one byte every 0.05 s: never idle for 0.25 s, never done
        sent += 1
        serve_for(socket_map, 0.05, loop_args)
    assert handler.events == ["handshake_timeout", "close"] and handler.errors == []
    assert time.monotonic() - started >= 0.6
    assert sent > 6  # the peer was active the whole time (idle_timeout was 0.25 s)
    peer.close()
    echo_still_served(socket_map, server, client_context, loop_args)


def test_the_deadline_does_not_outlive_a_completed_handshake(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    class Quick(Watched):
        handshake_timeout = 0.3

    client, handler = established(socket_map, loop_args, server_context, client_context, server_cls=Quick)
    serve_for(socket_map, 0.6, loop_args)
    assert in_map(handler, socket_map) and handler.events == ["handshake"]
    client.close()
    run_until(socket_map, ended(socket_map, handler), **loop_args)
    # no timer left behind: loop() returns as soon as the map is empty
    started = time.monotonic()
    asyncore.loop(timeout=0.05, map=socket_map, **loop_args)
    assert time.monotonic() - started < 0.25


def test_a_closed_channels_deadline_keeps_no_loop_running(
    loop_args: LoopArgs, socket_map: Map, sockets: Sockets, server_context: ssl.SSLContext
) -> None:
    server, peer, handler = one_raw_peer(socket_map, sockets, server_context, loop_args, Watched)
    server.close()
    handler.close()  # in the middle of its handshake, with a 60 s deadline armed
    peer.close()
    started = time.monotonic()
    asyncore.loop(timeout=0.05, map=socket_map, **loop_args)
    assert time.monotonic() - started < 0.25


def test_handshake_timeout_none_turns_the_deadline_off_and_bad_values_are_refused(
    socket_map: Map, server_context: ssl.SSLContext, poller_name: str
) -> None:
    left, right = socket.socketpair()
    try:
        channel = Watched(left, socket_map)
        for bad, error in (("5", TypeError), (0, ValueError), (-1.0, ValueError), (float("nan"), ValueError)):
            channel.handshake_timeout = bad
            with pytest.raises(error, match="handshake_timeout"):
                channel.wrap_ssl(server_context, server_side=True)
        channel.handshake_timeout = None
        channel.wrap_ssl(server_context, server_side=True)
        channel.handshake_timeout = 0.01  # read at wrap_ssl(): changing it later changes nothing
        asyncore.loop(timeout=0.1, map=socket_map, count=3, poller=poller_name)
        assert in_map(channel, socket_map) and channel.events == []
        channel.close()
    finally:
        right.close()


def test_an_exception_in_handle_handshake_timeout_goes_to_handle_error(
    loop_args: LoopArgs, socket_map: Map, sockets: Sockets, server_context: ssl.SSLContext
) -> None:
    class Raising(Watched):
        handshake_timeout = 0.05

        def handle_handshake_timeout(self) -> None:
            raise RuntimeError("hook failed")

    server, peer, handler = one_raw_peer(socket_map, sockets, server_context, loop_args, Raising)
    run_until(socket_map, ended(socket_map, handler), **loop_args)
    assert [type(exc) for exc in handler.errors] == [RuntimeError]
    peer.close()


# -- mid-record ends, and a crowd of hostile peers ----------------------------------------------------


class BioPeer:
    """A TLS client driven by hand through memory BIOs over a plain socket,
    so the test decides which of its bytes reach the server."""

    def __init__(self, server: Listener, context: ssl.SSLContext, sockets: Sockets) -> None:
        self.sock = raw_peer(server, sockets)
        self.sock.setblocking(False)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=HOST)
        self.done = False

    def pump(self) -> None:
        """One step: read what the server sent, advance the handshake, send what it made."""
        try:
            data = self.sock.recv(65536)
            if data:
                self.incoming.write(data)
        except BlockingIOError:
            pass
        if not self.done:
            try:
                self.tls.do_handshake()
                self.done = True
            except ssl.SSLWantReadError:
                pass
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def record(self, plaintext: bytes) -> bytes:
        """The ciphertext of ``plaintext``, not sent."""
        self.tls.write(plaintext)
        return self.outgoing.read()


def test_a_peer_closing_in_the_middle_of_a_record_is_an_end_of_stream(
    loop_args: LoopArgs, socket_map: Map, sockets: Sockets,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server = tls_server(socket_map, server_context, Watched)
    peer = BioPeer(server, client_context, sockets)
    (handler,) = accepted(socket_map, server, 1, loop_args)

    def handshaken() -> bool:
        peer.pump()
        return peer.done and "handshake" in handler.events

    run_until(socket_map, handshaken, **loop_args)
    whole = peer.record(b"whole record")
    cut = peer.record(b"x" * 5000)
    peer.sock.sendall(whole + cut[: len(cut) // 2])
    peer.sock.shutdown(socket.SHUT_WR)
    run_until(socket_map, ended(socket_map, handler), **loop_args)
    assert bytes(handler.received) == b"whole record"
    # (Python 3.9 with OpenSSL 3 reads this end as a close_notify: the
    # interpreter's report, not ours to second-guess)
    assert handler.events[0] == "handshake" and handler.events[-1] == "close"
    assert handler.errors == []
    peer.sock.close()


def test_a_crowd_of_hostile_peers_leaves_a_good_client_served(
    loop_args: LoopArgs, socket_map: Map, sockets: Sockets,
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    class Short(Watched):
        handshake_timeout = 0.5

    server = tls_server(socket_map, server_context, Short)
    fin, reset, garbage, trickle, silent = (raw_peer(server, sockets) for _ in range(5))
    handlers = list(accepted(socket_map, server, 5, loop_args))
    fin.shutdown(socket.SHUT_WR)
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    reset.close()
    garbage.sendall(b"\x00" * 300 + b"\xff" * 300)
    trickle.sendall(RECORD_HEADER)
    good = tls_client(socket_map, server.address, client_context)
    last_byte = [time.monotonic()]

    def everyone_done() -> bool:
        if time.monotonic() - last_byte[0] > 0.05:
            last_byte[0] = time.monotonic()
            try:
                trickle.send(b"\x02")
            except OSError:
                pass
        return all(not in_map(h, socket_map) for h in handlers) and "handshake" in good.events

    run_until(socket_map, everyone_done, **loop_args)
    good.send(b"after the crowd")
    run_until(socket_map, lambda: bytes(good.received) == b"after the crowd", **loop_args)
    errors = [exc for h in handlers for exc in h.errors]
    assert all(isinstance(exc, ssl.SSLError) for exc in errors) and len(errors) <= 1  # the garbage
    assert good.errors == [] and in_map(server, socket_map)
    for sock in (fin, garbage, trickle, silent):
        sock.close()
    good.close()


# -- overrides written for 3.11, and re-entrancy from TLS hooks -------------------------------------


class LoggedChat(ChatEcho):
    """A TLS async_chat whose send() override decodes what it is given."""

    def __init__(self, sock: Optional[socket.socket], socket_map: Map) -> None:
        super().__init__(sock, socket_map)
        self.ac_out_buffer_size = 1 << 20
        self.kinds: List[type] = []

    def send(self, data: bytes) -> int:
        self.kinds.append(type(data))
        data.decode("latin-1")
        return super().send(data)


class Collector(ChatEcho):
    """Keeps what it receives instead of echoing it."""

    def __init__(self, sock: Optional[socket.socket], socket_map: Map) -> None:
        super().__init__(sock, socket_map)
        self.received = bytearray()
        self.errors: List[BaseException] = []

    def collect_incoming_data(self, data: bytes) -> None:
        self.received += data

    def handle_error(self) -> None:
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]
        self.close()


@pytest.mark.parametrize("override", [True, False], ids=["send-override", "own-send"])
def test_large_pieces_through_tls_arrive_whole_and_an_override_sees_bytes(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext,
    override: bool,
) -> None:
    class Big(ChatEcho):
        ac_out_buffer_size = 1 << 20

    sender_cls = LoggedChat if override else Big
    server = tls_server(socket_map, server_context, Collector)
    sender = sender_cls(None, socket_map)
    sender.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    sender.wrap_ssl(client_context, server_hostname=HOST)
    sender.connect(server.address)
    body = bytes(range(256)) * 12289  # about 3 MiB, not a multiple of a record
    sender.push(body)
    run_until(socket_map, lambda: bool(server.accepted), **loop_args)
    receiver = server.accepted[0]
    run_until(socket_map, lambda: len(receiver.received) >= len(body) or bool(receiver.errors), **loop_args)
    assert bytes(receiver.received) == body and receiver.errors == []
    if override:
        assert set(sender.kinds) == {bytes}


def test_close_from_handle_handshake_done_raises_nothing(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    class Refuser(Watched):
        def handle_handshake_done(self) -> None:
            super().handle_handshake_done()
            self.close()

    server = tls_server(socket_map, server_context, Refuser)
    client = tls_client(socket_map, server.address, client_context)
    run_until(socket_map, lambda: len(server.accepted) == 1, **loop_args)
    run_until(socket_map, ended(socket_map, server.accepted[0]), **loop_args)
    run_until(socket_map, ended(socket_map, client), **loop_args)
    assert server.accepted[0].errors == [] and client.errors == []


class LineQuitter(TLSMixin, asynchat.async_chat):
    """Echoes lines over TLS; on QUIT pushes a goodbye and close_when_done()."""

    def __init__(self, sock: Optional[socket.socket], socket_map: Map) -> None:
        super().__init__(sock, socket_map)
        self.set_terminator(b"\n")
        self.events: List[str] = []
        self.errors: List[BaseException] = []

    def collect_incoming_data(self, data: bytes) -> None:
        self._collect_incoming_data(data)

    def handle_handshake_done(self) -> None:
        self.events.append("handshake")

    def found_terminator(self) -> None:
        line = self._get_data()
        if line == b"QUIT":
            self.push(b"bye\n")
            self.close_when_done()
        else:
            self.push(line + b"\n")

    def handle_error(self) -> None:
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]
        self.close()


def test_close_when_done_inside_found_terminator_over_tls(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    client, handler = established(
        socket_map, loop_args, server_context, client_context, server_cls=LineQuitter
    )
    client.send(b"a\nb\nQUIT\nafter quit\n")
    run_until(socket_map, lambda: "close" in client.events, **loop_args)
    assert bytes(client.received) == b"a\nb\nbye\n"
    assert client.events == ["handshake", "close_notify", "close"]
    assert handler.errors == [] and client.errors == [] and not in_map(handler, socket_map)


class GreetsOnConnect(ChatEcho):
    """A client that wraps before connect() and pushes in handle_connect()."""

    def handle_connect(self) -> None:
        self.push(b"secret greeting")


def test_output_queued_after_wrap_ssl_never_leaves_in_plaintext(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # wrap_ssl() docstring: without output queued at the call, everything
    # queued after it waits for the session (before: it went out in clear)
    server = tls_server(socket_map, server_context, Collector)
    client = GreetsOnConnect(None, socket_map)
    client.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    client.wrap_ssl(client_context, server_hostname=HOST)
    client.connect(server.address)
    client.push(b"early words, ")  # not connected yet
    run_until(socket_map, lambda: bool(server.accepted), **loop_args)
    receiver = server.accepted[0]
    expected = b"early words, secret greeting"
    run_until(
        socket_map, lambda: len(receiver.received) >= len(expected) or bool(receiver.errors), **loop_args
    )
    assert bytes(receiver.received) == expected and receiver.errors == []
    assert "handshake" in client.events


def test_the_fd_never_changes_across_wrap_and_unwrap(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # tls.rst: "The fd, and so the channel's place in the map, never change."
    class Downgrading(Echo):
        def handle_close_notify(self) -> None:
            self.events.append("close_notify")
            self.unwrap_ssl()

    client, handler = established(
        socket_map, loop_args, server_context, client_context, server_cls=Downgrading
    )
    fds = (client.socket.fileno(), handler.socket.fileno())
    assert socket_map[fds[0]] is client and socket_map[fds[1]] is handler
    client.unwrap_ssl()
    run_until(socket_map, lambda: "unwrapped" in client.events and "unwrapped" in handler.events, **loop_args)
    assert (client.socket.fileno(), handler.socket.fileno()) == fds
    assert socket_map[fds[0]] is client and socket_map[fds[1]] is handler
    client.send(b"plain again")
    run_until(socket_map, lambda: bytes(client.received) == b"plain again", **loop_args)
