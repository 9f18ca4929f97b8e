"""STARTTLS in asyncio_compat.smtpd (not in 3.11; on only with a ``tls_context``), on every backend.

The certificate and contexts are test_tls.py's fixtures (skipped, with the
reason, where no certificate tool is installed).
"""

from __future__ import annotations

import smtplib
import socket
import ssl

import pytest
from test_tls import certificate, client_context, server_context  # noqa: F401 (fixtures)

from asyncio_compat import smtpd

TIMEOUT = 20.0
HOST = "localhost"  # the name in the test certificate


def read_reply(reader: object) -> bytes:
    """One whole reply (continuation lines included) from a binary file."""
    reply = b""
    while True:
        line = reader.readline()  # type: ignore[attr-defined]
        reply += line
        if line[3:4] != b"-":
            return reply


def test_sendmail_over_starttls(default_poller: str, server_context: ssl.SSLContext,  # noqa: F811
                                client_context: ssl.SSLContext) -> None:  # noqa: F811
    server = smtpd.CapturingServer(tls_context=server_context)
    with server, smtplib.SMTP(HOST, server.address[1], timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.starttls(context=client_context)[0] == 220
        client.ehlo()
        assert not client.has_extn("starttls")  # already on
        assert client.sock.version() is not None
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: tls\r\n\r\nsecret")
    expected = smtpd.CapturedMessage("a@example.com", ["b@example.com"], b"Subject: tls\n\nsecret")
    assert server.messages == [expected]


def test_session_restarts_after_starttls(default_poller: str, server_context: ssl.SSLContext,  # noqa: F811
                                         client_context: ssl.SSLContext) -> None:  # noqa: F811
    with smtpd.CapturingServer(tls_context=server_context) as server:
        raw = socket.create_connection((HOST, server.address[1]), timeout=TIMEOUT)
        with raw, raw.makefile("rb") as reader:
            read_reply(reader)
            # pipelined after STARTTLS: must not be run as if it came over TLS
            raw.sendall(b"EHLO a\r\nMAIL FROM:<a@example.com>\r\nSTARTTLS\r\nRCPT TO:<b@example.com>\r\n")
            assert b"250-STARTTLS\r\n" in read_reply(reader)
            assert read_reply(reader) == b"250 OK\r\n"
            assert read_reply(reader) == b"220 Ready to start TLS\r\n"
            with client_context.wrap_socket(raw, server_hostname=HOST) as secure:
                secure.sendall(b"RCPT TO:<b@example.com>\r\nEHLO b\r\nSTARTTLS\r\nQUIT\r\n")
                with secure.makefile("rb") as tls_reader:
                    assert read_reply(tls_reader) == b"503 Error: send HELO first\r\n"
                    ehlo = read_reply(tls_reader)
                    assert b"STARTTLS" not in ehlo and ehlo.endswith(b"250 HELP\r\n")
                    assert read_reply(tls_reader) == b"503 Error: TLS already active\r\n"
                    assert read_reply(tls_reader) == b"221 Bye\r\n"
    assert server.messages == []


def test_without_a_context_starttls_is_unknown(default_poller: str) -> None:
    with smtpd.CapturingServer() as server, smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS") == (500, b'Error: command "STARTTLS" not recognized')


def test_starttls_takes_no_argument(default_poller: str, server_context: ssl.SSLContext) -> None:  # noqa: F811
    server = smtpd.CapturingServer(tls_context=server_context)
    with server, smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
        assert client.docmd("STARTTLS", "now") == (501, b"Syntax: STARTTLS")


def test_tls_context_must_be_a_context() -> None:
    with pytest.raises(TypeError, match="tls_context must be an ssl.SSLContext"):
        smtpd.CapturingServer(tls_context="cert.pem")  # type: ignore[arg-type]
