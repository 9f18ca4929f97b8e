"""A TLS echo service in asynchat: server and client in one process.

Run it from a checkout::

    python3 examples/tls_echo.py

It first makes a self-signed certificate for ``localhost`` in a temporary
directory (with the ``cryptography`` package when it is installed, else with
the ``openssl`` command).  The server listens on 127.0.0.1, port 0, and wraps
each accepted connection with ``wrap_ssl(context, server_side=True)``; the
client wraps its socket before connecting, naming the host the certificate
must match.  Both are ``async_chat`` subclasses with :class:`TLSMixin` first
in their bases: their line handling is plain asynchat code and never sees a
TLS record.  The client checks every echoed line, then closes; ``close()``
sends a close_notify, and the server reports the clean end of the session.

Set ``ASYNCIO_COMPAT_POLLER`` (``epoll``, ``poll``, ``select``...) to run it on
another backend.  Exit status 0 when every line came back, 1 otherwise, 2
when no tool to make a certificate is available.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import asynchat, asyncore
from asyncio_compat.tls import TLSMixin

HOSTNAME = "localhost"
LINES = (b"hello over TLS", b"asynchat framing, unchanged", b"goodbye")

Channels = Dict[int, Any]


# -- a certificate made at run time ---------------------------------------------------


class CertificateToolMissingError(RuntimeError):
    """Neither the ``cryptography`` package nor the ``openssl`` command is available."""


def make_certificate(directory: Path, hostname: str = HOSTNAME) -> Tuple[Path, Path]:
    """Write a self-signed certificate for ``hostname`` (and 127.0.0.1) and its key.

    Returns ``(certfile, keyfile)`` in ``directory``.  The certificate is
    its own CA: a client trusts it by loading it with ``cafile=``.  Raises
    CertificateToolMissingError when no tool can make one, and
    subprocess.CalledProcessError when ``openssl`` fails.
    """
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    try:
        _with_cryptography(certfile, keyfile, hostname)
    except ImportError:
        _with_openssl_command(certfile, keyfile, hostname)
    return certfile, keyfile


def _with_cryptography(certfile: Path, keyfile: Path, hostname: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_id, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _with_openssl_command(certfile: Path, keyfile: Path, hostname: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertificateToolMissingError(
            "making a test certificate needs the cryptography package or the openssl command"
        )
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", f"/CN={hostname}",
            "-addext", f"subjectAltName=DNS:{hostname},IP:127.0.0.1",
            "-keyout", str(keyfile), "-out", str(certfile),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def contexts(certfile: Path, keyfile: Path) -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(server_context, client_context)``; the client trusts only ``certfile``."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certfile, keyfile)
    client = ssl.create_default_context(cafile=str(certfile))
    return server, client


# -- the service ---------------------------------------------------------------------------


class EchoHandler(TLSMixin, asynchat.async_chat):
    """One accepted connection: sends every line back, under TLS."""

    def __init__(self, sock: socket.socket, channels: Channels, context: ssl.SSLContext) -> None:
        super().__init__(sock, map=channels)
        self.set_terminator(b"\n")
        self.line = bytearray()
        self.wrap_ssl(context, server_side=True)

    def handle_handshake_done(self) -> None:
        print(f"server: handshake done ({self.tls.version() if self.tls else '?'})")

    def collect_incoming_data(self, data: bytes) -> None:
        self.line += data

    def found_terminator(self) -> None:
        print(f"server: echoing {bytes(self.line)!r}")
        self.push(bytes(self.line) + b"\n")
        self.line.clear()

    def handle_close_notify(self) -> None:
        print("server: the client ended TLS with a close_notify")


class EchoServer(asyncore.dispatcher):
    """Listens on 127.0.0.1; serves one connection, then stops listening."""

    def __init__(self, channels: Channels, context: ssl.SSLContext) -> None:
        super().__init__(map=channels)
        self.channels = channels
        self.context = context
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.address: Tuple[str, int] = self.socket.getsockname()
        self.listen(5)

    def handle_accepted(self, sock: socket.socket, addr: Tuple[str, int]) -> None:
        print("server: accepted a connection")
        EchoHandler(sock, self.channels, self.context)
        self.close()


class EchoClient(TLSMixin, asynchat.async_chat):
    """Sends ``LINES`` one at a time over TLS and checks each echo."""

    def __init__(self, channels: Channels, address: Tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(map=channels)
        self.set_terminator(b"\n")
        self.line = bytearray()
        self.echoed: List[bytes] = []
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        # wrapped before the connect: the handshake starts once it completes
        self.wrap_ssl(context, server_hostname=HOSTNAME)
        self.connect(address)

    def handle_connect(self) -> None:
        print("client: connected")

    def handle_handshake_done(self) -> None:
        tls = self.tls
        assert tls is not None
        subject = dict(pair for rdn in tls.getpeercert()["subject"] for pair in rdn)
        print(f"client: handshake done ({tls.version()}, certificate for {subject['commonName']})")
        self.send_next()

    def send_next(self) -> None:
        line = LINES[len(self.echoed)]
        print(f"client: sending {line!r}")
        self.push(line + b"\n")

    def collect_incoming_data(self, data: bytes) -> None:
        self.line += data

    def found_terminator(self) -> None:
        self.echoed.append(bytes(self.line))
        self.line.clear()
        print(f"client: got back {self.echoed[-1]!r}")
        if len(self.echoed) < len(LINES):
            self.send_next()
        else:
            print("client: every line came back; closing (close() sends a close_notify)")
            self.close()

    def succeeded(self) -> bool:
        return tuple(self.echoed) == LINES


def run(certfile: Path, keyfile: Path) -> EchoClient:
    """One server, one client, one map; returns once the map is empty."""
    server_context, client_context = contexts(certfile, keyfile)
    channels: Channels = asyncio_compat.SocketMap()
    server = EchoServer(channels, server_context)
    client = EchoClient(channels, server.address, client_context)
    asyncore.loop(timeout=1.0, map=channels)
    return client


def main() -> int:
    print(f"poller: {asyncio_compat.get_default_poller().name}")
    with tempfile.TemporaryDirectory() as scratch:
        try:
            certfile, keyfile = make_certificate(Path(scratch))
        except CertificateToolMissingError as exc:
            print(f"cannot run: {exc}")
            return 2
        client = run(certfile, keyfile)
    if not client.succeeded():
        print(f"echo mismatch: {client.echoed!r}")
        return 1
    print("map empty, loop returned; every line matched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
