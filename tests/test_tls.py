"""TLS channels (asyncio_compat.tls) on every backend.

The certificate is made at test time by ``examples/tls_echo.py``'s
``make_certificate`` (the ``cryptography`` package, else the ``openssl``
command); without either the tests skip and say so.  Server and client run
in one socket map, driven by ``asyncore.loop`` one pass at a time.
"""

from __future__ import annotations

import os
import random
import select
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from helpers import EXAMPLES, in_map, load_example, run_until

from asyncio_compat import asynchat, asyncore, tls
from asyncio_compat.idle import IdleTimeoutMixin
from asyncio_compat.tls import TLSMixin

try:  # FIONREAD through ioctl(), to see what the kernel still holds; POSIX only
    import fcntl
    import termios
except ImportError:  # Windows
    fcntl = termios = None  # type: ignore[assignment]

pytestmark = pytest.mark.timeout(60)

HOST = "localhost"

Map = Dict[int, Any]
LoopArgs = Dict[str, Any]


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    example = load_example("tls_echo")
    try:
        return example.make_certificate(tmp_path_factory.mktemp("tls"))  # type: ignore[no-any-return]
    except example.CertificateToolMissingError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def server_context(certificate: Tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def client_context(certificate: Tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture(params=[True, False], ids=["poll-semantics", "select-semantics"])
def loop_args(request: pytest.FixtureRequest, poller_name: str) -> LoopArgs:
    """``asyncore.loop()`` arguments: each backend, with each of 3.11's ways to
    deliver events (``use_poll``: hang-ups call handle_close, or show as reads)."""
    return {"poller": poller_name, "use_poll": request.param}


# -- channels -------------------------------------------------------------------------------


class Channel(TLSMixin, asyncore.dispatcher_with_send):
    """Records its events, its input and the exceptions handle_error saw."""

    read_size = 65536

    def __init__(self, sock: Optional[socket.socket], socket_map: Map) -> None:
        super().__init__(sock, map=socket_map)
        self.received = bytearray()
        self.events: List[str] = []
        self.errors: List[BaseException] = []
        self.socket_after_unwrap: Any = None

    def handle_handshake_done(self) -> None:
        self.events.append("handshake")

    def handle_read(self) -> None:
        self.received += self.recv(self.read_size)

    def handle_close_notify(self) -> None:
        self.events.append("close_notify")

    def handle_unwrap_done(self) -> None:
        self.events.append("unwrapped")
        self.socket_after_unwrap = self.socket

    def handle_close(self) -> None:
        self.events.append("close")
        self.close()

    def handle_error(self) -> None:
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]
        super().handle_error()  # logs the message, then handle_close()


class Echo(Channel):
    def handle_read(self) -> None:
        data = self.recv(self.read_size)
        self.received += data
        if data:
            self.send(data)


class Listener(asyncore.dispatcher):
    """Accepts on 127.0.0.1 and gives each connection to ``factory``."""

    def __init__(self, socket_map: Map, factory: Callable[[socket.socket], Any]) -> None:
        super().__init__(map=socket_map)
        self.factory = factory
        self.accepted: List[Any] = []
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.address = self.socket.getsockname()
        self.listen(16)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        self.accepted.append(self.factory(sock))


def tls_server(socket_map: Map, context: ssl.SSLContext, cls: type = Echo) -> Listener:
    def accept(sock: socket.socket) -> Any:
        channel = cls(sock, socket_map)
        channel.wrap_ssl(context, server_side=True)
        return channel

    return Listener(socket_map, accept)


def tls_client(
    socket_map: Map, address: Any, context: ssl.SSLContext, hostname: str = HOST, cls: type = Channel
) -> Any:
    client = cls(None, socket_map)
    client.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    client.wrap_ssl(context, server_hostname=hostname)
    client.connect(address)
    return client


def established(
    socket_map: Map, loop_args: LoopArgs, server_context: ssl.SSLContext, client_context: ssl.SSLContext,
    server_cls: type = Echo, client_cls: type = Channel,
) -> Tuple[Any, Any]:
    """A client and the server's channel for it, both past the handshake."""
    server = tls_server(socket_map, server_context, server_cls)
    client = tls_client(socket_map, server.address, client_context, cls=client_cls)
    run_until(
        socket_map,
        lambda: bool(server.accepted) and "handshake" in server.accepted[0].events,
        **loop_args,
    )
    run_until(socket_map, lambda: "handshake" in client.events, **loop_args)
    server.close()
    return client, server.accepted[0]


# -- handshake and data --------------------------------------------------------------------


def test_handshake_and_echo(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    client, handler = established(socket_map, loop_args, server_context, client_context)
    client.send(b"ping over TLS")
    run_until(socket_map, lambda: bytes(client.received) == b"ping over TLS", **loop_args)
    assert client.tls.version() == handler.tls.version()
    assert client.tls.version().startswith("TLSv1.")
    assert ("DNS", HOST) in client.tls.getpeercert()["subjectAltName"]
    assert handler.received == b"ping over TLS"
    assert client.errors == [] and handler.errors == []


class ChatEcho(TLSMixin, asynchat.async_chat):
    """Echoes raw bytes through async_chat's buffers (no terminator)."""

    def __init__(self, sock: Optional[socket.socket], socket_map: Map) -> None:
        super().__init__(sock, socket_map)
        self.set_terminator(None)
        self.events: List[str] = []

    def handle_handshake_done(self) -> None:
        self.events.append("handshake")

    def collect_incoming_data(self, data: bytes) -> None:
        self.push(data)


class ChatSink(ChatEcho):
    """Sends a payload, checks what comes back as it comes."""

    expected = b""

    def __init__(self, sock: Optional[socket.socket], socket_map: Map) -> None:
        super().__init__(sock, socket_map)
        self.matched = 0
        self.mismatch_at: Optional[int] = None

    def collect_incoming_data(self, data: bytes) -> None:
        end = self.matched + len(data)
        if self.mismatch_at is None and self.expected[self.matched:end] != data:
            self.mismatch_at = self.matched
        self.matched = end


def test_several_megabytes_through_tls_every_byte_checked(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    payload = random.Random(loop_args["poller"]).randbytes(6 << 20)
    client, _ = established(
        socket_map, loop_args, server_context, client_context, server_cls=ChatEcho, client_cls=ChatSink
    )
    client.expected = payload
    client.push(payload)
    run_until(
        socket_map,
        lambda: client.matched >= len(payload) or client.mismatch_at is not None,
        **loop_args,
    )
    assert client.mismatch_at is None
    assert client.matched == len(payload)


# -- STARTTLS ------------------------------------------------------------------------------------

# Sent in plaintext just before the "go ahead": more than one send() takes,
# so the server's wrap_ssl() has to wait for it to drain.
FILLER_LINES = 40000


class StartTLSServer(TLSMixin, asynchat.async_chat):
    """A line protocol: ``STARTTLS`` switches to TLS, anything else is echoed with the mode."""

    context: ssl.SSLContext

    def __init__(self, sock: socket.socket, socket_map: Map) -> None:
        super().__init__(sock, map=socket_map)
        self.set_terminator(b"\r\n")
        self.line = bytearray()

    def collect_incoming_data(self, data: bytes) -> None:
        self.line += data

    def found_terminator(self) -> None:
        line, self.line = bytes(self.line), bytearray()
        if line == b"STARTTLS":
            self.push(b"250-filler\r\n" * FILLER_LINES + b"220 go ahead\r\n")
            self.wrap_ssl(self.context, server_side=True)
        else:
            mode = b"secure" if self.tls is not None else b"plain"
            self.push(mode + b" " + line + b"\r\n")


class StartTLSClient(TLSMixin, asynchat.async_chat):
    context: ssl.SSLContext

    def __init__(self, socket_map: Map, address: Any) -> None:
        super().__init__(map=socket_map)
        self.set_terminator(b"\r\n")
        self.line = bytearray()
        self.lines: List[bytes] = []
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)
        self.push(b"HELLO\r\nSTARTTLS\r\n")

    def collect_incoming_data(self, data: bytes) -> None:
        self.line += data

    def found_terminator(self) -> None:
        line, self.line = bytes(self.line), bytearray()
        self.lines.append(line)
        if line == b"220 go ahead":
            self.wrap_ssl(self.context, server_hostname=HOST)

    def handle_handshake_done(self) -> None:
        self.push(b"PING\r\n")


def test_starttls_upgrade_mid_connection(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    StartTLSServer.context = server_context
    StartTLSClient.context = client_context
    listener = Listener(socket_map, lambda sock: StartTLSServer(sock, socket_map))
    client = StartTLSClient(socket_map, listener.address)
    run_until(
        socket_map,
        lambda: b"secure PING" in client.lines or not in_map(client, socket_map),
        **loop_args,
    )
    assert client.lines[0] == b"plain HELLO"
    assert client.lines[1:-2] == [b"250-filler"] * FILLER_LINES
    assert client.lines[-2:] == [b"220 go ahead", b"secure PING"]
    assert client.tls is not None and listener.accepted[0].tls is not None


# -- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, expected",
    [
        ("wrong hostname", "Hostname mismatch, certificate is not valid for 'wrong.example'"),
        ("untrusted", "self"),  # "self-signed certificate" (OpenSSL 3), "self signed" (1.1)
    ],
)
def test_rejected_certificate_goes_to_handle_error_and_loop_survives(
    loop_args: LoopArgs,
    socket_map: Map,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    capsys: pytest.CaptureFixture[str],
    case: str,
    expected: str,
) -> None:
    server = tls_server(socket_map, server_context)
    if case == "wrong hostname":
        bad = tls_client(socket_map, server.address, client_context, hostname="wrong.example")
    else:  # a client that trusts no CA at all
        bad = tls_client(socket_map, server.address, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    run_until(socket_map, lambda: bool(bad.errors), **loop_args)
    error = bad.errors[0]
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert expected in error.verify_message
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().out  # handle_error's message
    assert not in_map(bad, socket_map)  # closed by the default handle_error
    run_until(
        socket_map,
        lambda: len(server.accepted) == 1 and not in_map(server.accepted[0], socket_map),
        **loop_args,
    )
    # the same loop and listener serve the next client
    good = tls_client(socket_map, server.address, client_context)
    run_until(socket_map, lambda: "handshake" in good.events, **loop_args)
    good.send(b"after the failure")
    run_until(socket_map, lambda: bytes(good.received) == b"after the failure", **loop_args)


def test_api_misuse_raises_clear_errors(socket_map: Map, client_context: ssl.SSLContext) -> None:
    channel = Channel(None, socket_map)
    with pytest.raises(ValueError, match="no socket yet"):
        channel.wrap_ssl(client_context, server_hostname=HOST)
    channel.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(TypeError, match="needs an ssl.SSLContext"):
        channel.wrap_ssl("not a context")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="server_hostname is required"):
        channel.wrap_ssl(client_context)
    with pytest.raises(ValueError, match="no open TLS session"):
        channel.unwrap_ssl()
    channel.wrap_ssl(client_context, server_hostname=HOST)
    with pytest.raises(ValueError, match="already on"):
        channel.wrap_ssl(client_context, server_hostname=HOST)
    listening = Channel(None, socket_map)
    listening.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    listening.listen(1)
    with pytest.raises(ValueError, match="listening socket"):
        listening.wrap_ssl(client_context, server_hostname=HOST)


def test_a_record_cut_short_must_be_offered_again_whole(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    class Deaf(Channel):
        def readable(self) -> bool:  # never reads: the client's socket fills up
            return False

    client, _ = established(socket_map, loop_args, server_context, client_context, server_cls=Deaf)
    block = b"z" * 16384
    while asyncore.dispatcher.send(client, block):
        pass  # until the socket is full and the SSL object holds a cut record
    with pytest.raises(ValueError, match="must be sent again whole"):
        client.tls.send(b"short")


# -- closing ----------------------------------------------------------------------------------------


def test_unwrap_sends_close_notify_and_peer_closes(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    client, handler = established(socket_map, loop_args, server_context, client_context)
    client.unwrap_ssl()
    run_until(socket_map, lambda: "close" in client.events and "close" in handler.events, **loop_args)
    # the server saw a clean TLS end, answered it (close() sends close_notify) and closed
    assert handler.events == ["handshake", "close_notify", "close"]
    assert client.events == ["handshake", "unwrapped", "close"]
    assert type(client.socket_after_unwrap) is socket.socket
    assert client.errors == [] and handler.errors == []


class Downgrading(Echo):
    """Answers the peer's close_notify by going on in plaintext (as FTP's CCC)."""

    def handle_close_notify(self) -> None:
        super().handle_close_notify()
        self.unwrap_ssl()


def test_unwrap_on_both_sides_then_plaintext(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    client, handler = established(
        socket_map, loop_args, server_context, client_context, server_cls=Downgrading
    )
    client.send(b"secret")
    run_until(socket_map, lambda: bytes(client.received) == b"secret", **loop_args)
    client.unwrap_ssl()
    run_until(socket_map, lambda: "unwrapped" in client.events and "unwrapped" in handler.events, **loop_args)
    assert client.tls is None and handler.tls is None
    client.send(b"in the clear")
    run_until(socket_map, lambda: bytes(client.received) == b"secretin the clear", **loop_args)
    assert handler.events == ["handshake", "close_notify", "unwrapped"]


def test_close_sends_close_notify(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    client, handler = established(socket_map, loop_args, server_context, client_context)
    client.close()
    run_until(socket_map, lambda: "close" in handler.events, **loop_args)
    assert handler.events == ["handshake", "close_notify", "close"]


def test_peer_gone_without_close_notify_is_an_end_of_stream(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    client, handler = established(socket_map, loop_args, server_context, client_context)
    # close the TCP connection under the TLS layer: no close_notify
    assert in_map(client, socket_map)
    client.del_channel()
    socket.socket(fileno=client.tls.ssl.detach()).close()
    run_until(socket_map, lambda: "close" in handler.events, **loop_args)
    assert handler.events == ["handshake", "close"]
    assert handler.errors == []


# -- decrypted bytes the kernel does not know about ---------------------------------------------


class GatedReader(Channel):
    """Reads ``read_size`` bytes per call, only while ``gate`` is open.

    It overrides ``readable()`` as legacy code does; the TLS layer still
    answers during the handshake.
    """

    read_size = 300
    gate = False
    stop_at: Optional[int] = None

    def readable(self) -> bool:
        return self.gate

    def handle_read(self) -> None:
        super().handle_read()
        if self.stop_at is not None and len(self.received) >= self.stop_at:
            self.gate = False


def unread_in_kernel(sock: Any) -> int:
    return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


@pytest.mark.skipif(fcntl is None, reason="reads the kernel's FIONREAD count with fcntl.ioctl(): POSIX only")
def test_decrypted_bytes_are_delivered_without_the_socket_becoming_readable(
    loop_args: LoopArgs,
    socket_map: Map,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small numbers, so that every record fits in the TCP window at once.
    monkeypatch.setattr(tls, "_READ_AHEAD", 4500)
    record, records = 1000, 5  # the last record straddles the read-ahead limit
    payload = random.Random(7).randbytes(record * records)
    client, reader = established(
        socket_map, loop_args, server_context, client_context, server_cls=GatedReader
    )
    # all the records in one TCP segment (TCP_CORK on Linux; elsewhere at
    # least without Nagle's delay)
    cork = getattr(socket, "TCP_CORK", None)
    client.socket.setsockopt(socket.IPPROTO_TCP, cork or socket.TCP_NODELAY, 1)
    for start in range(0, len(payload), record):
        assert asyncore.dispatcher.send(client, payload[start:start + record]) == record
    if cork:
        client.socket.setsockopt(socket.IPPROTO_TCP, cork, 0)
    assert select.select([reader.socket], [], [], 10.0)[0], "the records never reached the reader's socket"
    assert unread_in_kernel(reader.socket) > len(payload), "precondition: all records in the kernel"

    reader.stop_at = 1200
    reader.gate = True
    reader.interest_changed()
    run_until(socket_map, lambda: not reader.gate, **loop_args)
    # the kernel has nothing left; part of the last record is inside the SSL object
    assert unread_in_kernel(reader.socket) == 0
    assert reader.tls.ssl.pending() == record * records - 4500
    assert bytes(reader.received) == payload[:1200]

    reader.stop_at = None
    reader.gate = True
    reader.interest_changed()
    for _ in range(20):  # passes that never wait: only the made-up read events can deliver
        asyncore.loop(timeout=0, map=socket_map, count=1, **loop_args)
    assert bytes(reader.received) == payload


class LegacyClient(TLSMixin, asyncore.dispatcher):
    """Predicates written the classic way, with no thought for TLS."""

    def __init__(self, socket_map: Map) -> None:
        super().__init__(map=socket_map)
        self.outgoing = b""
        self.received = b""
        self.events: List[str] = []

    def writable(self) -> bool:
        return bool(self.outgoing)

    def handle_handshake_done(self) -> None:
        self.events.append("handshake")
        self.outgoing = b"legacy"

    def handle_write(self) -> None:
        self.outgoing = self.outgoing[self.send(self.outgoing):]

    def handle_read(self) -> None:
        self.received += self.recv(100)


def test_class_with_its_own_predicates_still_handshakes(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server = tls_server(socket_map, server_context)
    client = LegacyClient(socket_map)
    client.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    client.wrap_ssl(client_context, server_hostname=HOST)
    client.connect(server.address)
    run_until(socket_map, lambda: client.received == b"legacy", **loop_args)
    assert client.events == ["handshake"]


# -- the example -------------------------------------------------------------------------------------


def test_tls_echo_example_runs(poller_name: str, tmp_path: Path, certificate: Tuple[Path, Path]) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["ASYNCIO_COMPAT_POLLER"] = poller_name
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "tls_echo.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"poller: {poller_name}"
    example = load_example("tls_echo")
    for line in example.LINES:
        assert f"client: got back {line!r}" in lines
    assert "server: the client ended TLS with a close_notify" in lines
    assert lines[-1] == "map empty, loop returned; every line matched"


def test_tls_echo_example_in_process(default_poller: str, certificate: Tuple[Path, Path]) -> None:
    example = load_example("tls_echo")
    client = example.run(*certificate)  # the leak check sees what it leaves open
    assert client.succeeded()


class PatientHandler(IdleTimeoutMixin, Echo):
    idle_timeout = 0.2


def test_idle_timeout_bounds_a_handshake_that_never_comes(
    loop_args: LoopArgs, socket_map: Map, server_context: ssl.SSLContext
) -> None:
    server = tls_server(socket_map, server_context, PatientHandler)
    mute = socket.create_connection(server.address)  # connects, never says hello
    try:
        run_until(
            socket_map,
            lambda: bool(server.accepted) and not in_map(server.accepted[0], socket_map),
            **loop_args,
        )
        handler = server.accepted[0]
        assert handler.events == ["close"] and handler.errors == []
        assert handler.tls is not None and handler.tls.phase == tls.HANDSHAKE
    finally:
        mute.close()
