"""asyncio_compat.smtpd over real loopback sockets, on every backend.

CPython 3.11's own test_smtpd runs against the module in
test_cpython_suites.py and the byte-for-byte comparison with 3.11 is in
test_smtpd_differential.py; this file covers what those cannot: smtplib
talking to a served socket, CapturingServer and its thread, the idle
timeout, PureProxy relaying, the command line in a subprocess, and where we
differ from 3.11 on purpose.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from asyncio_compat import SocketMap, asyncore, smtpd

ROOT = Path(__file__).resolve().parent.parent
SHIMS = ROOT / "shims"
TIMEOUT = 20.0

MESSAGE = b"From: a@example.com\r\nSubject: hi\r\n\r\nline one\r\n.starts with a dot\r\n"


@pytest.fixture
def capture(default_poller: str) -> Iterator[smtpd.CapturingServer]:
    with smtpd.CapturingServer() as server:
        yield server


def client(server: smtpd.CapturingServer) -> smtplib.SMTP:
    return smtplib.SMTP(*server.address, timeout=TIMEOUT)


# -- the server, driven by smtplib ---------------------------------------------------------


def test_smtplib_message_is_captured_unstuffed(capture: smtpd.CapturingServer) -> None:
    with client(capture) as smtp:
        refused = smtp.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE)
    assert refused == {}
    assert capture.messages == [smtpd.CapturedMessage(
        "a@example.com", ["b@example.com", "c@example.com"],
        b"From: a@example.com\nSubject: hi\n\nline one\n.starts with a dot",
    )]


def test_several_messages_on_one_connection(capture: smtpd.CapturingServer) -> None:
    with client(capture) as smtp:
        for n in range(3):
            smtp.sendmail(f"s{n}@example.com", [f"r{n}@example.com"], b"body %d" % n)
    assert [(m.mailfrom, m.rcpttos, m.message) for m in capture.messages] == [
        (f"s{n}@example.com", [f"r{n}@example.com"], b"body %d" % n) for n in range(3)
    ]


def test_ehlo_announces_3_11_extensions(capture: smtpd.CapturingServer) -> None:
    with client(capture) as smtp:
        code, _ = smtp.ehlo("me.example")
        assert code == 250
        assert smtp.esmtp_features == {"size": str(smtpd.DATA_SIZE_DEFAULT), "8bitmime": "", "help": ""}


def test_size_limit_refuses_a_larger_message(default_poller: str) -> None:
    with smtpd.CapturingServer(data_size_limit=100) as server, client(server) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("a@example.com", ["b@example.com"], b"x" * 1000)
        assert refused.value.smtp_code == 552
    assert server.messages == []


def test_smtputf8_message(default_poller: str) -> None:
    with smtpd.CapturingServer(enable_SMTPUTF8=True) as server, client(server) as smtp:
        smtp.sendmail("ünï@example.com", ["dést@example.com"], "Subject: é\r\n\r\nçà".encode(),
                      mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    assert server.messages == [
        smtpd.CapturedMessage("ünï@example.com", ["dést@example.com"], "Subject: é\n\nçà".encode())
    ]


def test_decode_data_gives_text(default_poller: str) -> None:
    with smtpd.CapturingServer(decode_data=True) as server, client(server) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], "Subject: x\r\n\r\ntext")
    assert server.messages[0].message == "Subject: x\n\ntext"


def test_process_message_reply_reaches_the_client(default_poller: str) -> None:
    class Refusing(smtpd.CapturingServer):
        def process_message(self, *args: Any, **kwargs: Any) -> Optional[str]:
            return "554 no thanks"

    with Refusing() as server, client(server) as smtp, pytest.raises(smtplib.SMTPDataError) as error:
        smtp.sendmail("a@example.com", ["b@example.com"], b"x")
    assert (error.value.smtp_code, error.value.smtp_error) == (554, b"no thanks")


def test_a_failing_process_message_drops_only_that_client(default_poller: str) -> None:
    class Fragile(smtpd.CapturingServer):
        def process_message(self, peer: Any, mailfrom: Any, rcpttos: Any, data: Any, **kwargs: Any) -> None:
            if data == b"boom":
                raise RuntimeError("process_message failed")
            return super().process_message(peer, mailfrom, rcpttos, data, **kwargs)

    with Fragile() as server, client(server) as bystander, client(server) as victim:
        bystander.ehlo()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            victim.sendmail("a@example.com", ["b@example.com"], b"boom")
        bystander.sendmail("c@example.com", ["d@example.com"], b"fine")
        assert bystander.noop()[0] == 250
    assert server.messages == [smtpd.CapturedMessage("c@example.com", ["d@example.com"], b"fine")]


# -- CapturingServer's life ------------------------------------------------------------------


def test_stop_ends_sessions_still_connected(default_poller: str) -> None:
    server = smtpd.CapturingServer()
    server.start()
    idle = socket.create_connection(server.address, timeout=TIMEOUT)
    try:
        assert idle.recv(1024).startswith(b"220 ")
        server.stop()
        assert idle.recv(1024) == b""  # the session was closed, not left behind
    finally:
        idle.close()


def test_stop_without_start_closes_the_listener(default_poller: str) -> None:
    server = smtpd.CapturingServer()
    address = server.address
    # listening from the start: the kernel completes the connection
    socket.create_connection(address, timeout=TIMEOUT).close()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=TIMEOUT).close()
    server.stop()  # again: nothing more


def test_start_twice_is_refused(capture: smtpd.CapturingServer) -> None:
    with pytest.raises(RuntimeError, match="called twice"):
        capture.start()


# -- the idle timeout (opt-in) ------------------------------------------------------------------


class QuickChannel(smtpd.SMTPChannel):
    idle_timeout = 0.3


class QuickServer(smtpd.CapturingServer):
    channel_class = QuickChannel


def test_idle_session_gets_421_and_is_closed(default_poller: str) -> None:
    with QuickServer() as server:
        conn = socket.create_connection(server.address, timeout=TIMEOUT)
        with conn:
            received = b""
            while True:
                piece = conn.recv(1024)
                if not piece:
                    break
                received += piece
    greeting, goodbye, _ = received.split(b"\r\n")
    assert greeting.startswith(b"220 ")
    assert goodbye == b"421 %s Error: timeout exceeded" % socket.getfqdn().encode()


def test_no_idle_timeout_by_default() -> None:
    assert smtpd.SMTPChannel.idle_timeout is None


# -- PureProxy ---------------------------------------------------------------------------------


def test_pure_proxy_relays_a_bytes_message(default_poller: str, socket_map: SocketMap) -> None:
    # 3.11's PureProxy failed with TypeError on every message of the default
    # (decode_data=False) server, so the command line's default class never relayed
    with smtpd.CapturingServer() as upstream:
        proxy = smtpd.PureProxy(("127.0.0.1", 0), upstream.address, map=socket_map)
        sent: Dict[str, Any] = {}

        def send() -> None:
            with smtplib.SMTP(*proxy.socket.getsockname()[:2], timeout=TIMEOUT) as smtp:
                sent["refused"] = smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: s\r\n\r\nbody")

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + TIMEOUT
        while sender.is_alive() and time.monotonic() < deadline:
            asyncore.loop(timeout=0.05, map=socket_map, count=1)
        sender.join(TIMEOUT)
    assert sent == {"refused": {}}
    assert upstream.messages == [
        smtpd.CapturedMessage("a@example.com", ["b@example.com"], b"Subject: s\nX-Peer: 127.0.0.1\n\nbody")
    ]


def test_pure_proxy_refuses_smtputf8() -> None:
    with pytest.raises(ValueError, match="SMTPUTF8"):
        smtpd.PureProxy(("127.0.0.1", 0), ("127.0.0.1", 25), enable_SMTPUTF8=True)


# -- deliberate differences from 3.11 ------------------------------------------------------------


def converse(address: Any, lines: List[bytes]) -> List[bytes]:
    """Send each line and collect its one-line reply (after the greeting)."""
    with socket.create_connection(address, timeout=TIMEOUT) as conn:
        reader = conn.makefile("rb")
        reader.readline()
        replies = []
        for line in lines:
            conn.sendall(line + b"\r\n")
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            replies.append(reply.rstrip(b"\r\n"))
        reader.close()
        return replies


def test_each_channel_keeps_its_own_command_limits(capture: smtpd.CapturingServer) -> None:
    # 3.11 shared one dict among all channels and cleared it for each new
    # connection: a client connecting after EHLO shrank this session's MAIL limit
    long_mail = b"MAIL FROM:<" + b"a" * 510 + b"@example>"  # 530 bytes: over 512, within 512 + 26
    with socket.create_connection(capture.address, timeout=TIMEOUT) as first, first.makefile("rb") as reader:
        reader.readline()
        first.sendall(b"EHLO me\r\n")
        while reader.readline()[3:4] == b"-":
            pass
        assert converse(capture.address, [b"EHLO other"]) == [b"250 HELP"]
        first.sendall(long_mail + b"\r\n")
        assert reader.readline() == b"250 OK\r\n"


def test_bare_size_parameter_is_a_syntax_error(capture: smtpd.CapturingServer) -> None:
    # 3.11 raised AttributeError and dropped the connection
    replies = converse(capture.address, [b"EHLO me", b"MAIL FROM:<a@example.com> SIZE", b"NOOP"])
    assert replies[1:] == [b"501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]", b"250 OK"]


# -- hostile clients --------------------------------------------------------------------------


def test_a_megabyte_line_is_not_kept(capture: smtpd.CapturingServer) -> None:
    line = b"NOOP " + b"x" * (1 << 20)
    assert converse(capture.address, [line, b"NOOP"]) == [b"500 Error: line too long", b"250 OK"]


def test_command_line_memory_is_bounded() -> None:
    fake = FakeConnection()
    channel = smtpd.SMTPChannel(FakeServer(), fake, ("127.0.0.1", 1), map={})
    for _ in range(64):
        fake.inbound = b"y" * 65536
        channel.handle_read()
        assert sum(map(len, channel.received_lines)) <= 512 + 65536
    channel.close()


class FakeServer:
    def process_message(self, *args: Any, **kwargs: Any) -> None:
        return None


class FakeConnection:
    """A connected socket stand-in: recv() returns ``inbound``, send() swallows."""

    inbound = b""

    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return 10**6

    def getpeername(self) -> Any:
        return ("127.0.0.1", 1)

    def recv(self, size: int) -> bytes:
        data, self.inbound = self.inbound[:size], self.inbound[size:]
        return data

    def send(self, data: Any) -> int:
        return len(data)

    def close(self) -> None:
        pass


# -- the command line -------------------------------------------------------------------------


def parse(argv: List[str], capsys: pytest.CaptureFixture[str]) -> Any:
    try:
        return smtpd.parseargs(argv)
    except SystemExit as exit_:
        out = capsys.readouterr()
        return exit_.code, out.out, out.err


def test_parseargs_defaults_and_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    options = parse([], capsys)
    assert (options.setuid, options.classname, options.size_limit, options.enable_SMTPUTF8) == (
        True, "PureProxy", None, False)
    assert (options.localhost, options.localport, options.remotehost, options.remoteport) == (
        "localhost", 8025, "localhost", 25)
    options = parse(["-n", "-u", "-s", "100", "--class", "DebuggingServer", "h1:1", "h2:2"], capsys)
    assert (options.setuid, options.enable_SMTPUTF8, options.size_limit, options.classname) == (
        False, True, 100, "DebuggingServer")
    addresses = (options.localhost, options.localport, options.remotehost, options.remoteport)
    assert addresses == ("h1", 1, "h2", 2)


@pytest.mark.parametrize("argv, code, stderr_has", [
    (["-h"], 0, "Usage:"),
    (["--bogus"], 1, "option --bogus not recognized"),
    (["-s", "big"], 1, "Invalid size: big"),
    (["nocolon"], 1, "Bad local spec: nocolon"),
    (["h:port"], 1, "Bad local port: h:port"),
    (["h:1", "r"], 1, "Bad remote spec: r"),
    (["h:1", "r:x"], 1, "Bad remote port: r:x"),
    (["a:1", "b:2", "c:3"], 1, "Invalid arguments: a:1, b:2, c:3"),
])
def test_parseargs_mistakes_exit(argv: List[str], code: int, stderr_has: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    got_code, _, err = parse(argv, capsys)
    assert got_code == code
    assert stderr_has in err


def test_version_and_debug_flags(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse(["-V"], capsys) == (0, smtpd.__version__ + "\n", "")
    monkeypatch.setattr(smtpd, "DEBUGSTREAM", smtpd.DEBUGSTREAM)
    parse(["-d"], capsys)
    assert smtpd.DEBUGSTREAM is sys.stderr


@pytest.mark.parametrize("name", ["NoSuchServer", "asyncio_compat.smtpd.Nothing", "os.sep", "no_such.Server"])
def test_unknown_server_class_exits_with_usage(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "asyncio_compat.smtpd", "-n", "-c", name, "127.0.0.1:0"],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 1
    assert f"Bad class: {name}" in proc.stderr and "Traceback" not in proc.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _PortTakenError(Exception):
    """The child could not bind the port picked for it: another process took it."""


def cli_session(command: List[str], body: bytes, stop: str, **popen: Any) -> Tuple[List[str], int, str]:
    """Run ``command`` plus ``127.0.0.1:<port>`` (a DebuggingServer run with
    ``-d``), send it ``body`` with smtplib, stop it with the signal named
    ``stop``.  Returns the lines it printed for the message, its exit status
    and its standard error.

    The command line needs a port number (with 0 the server would not say
    which one it got), so a free one is picked; another process may bind it
    before the child does, and the child is then run again on another port.
    """
    for attempt in range(3):
        try:
            return _cli_session_at(command + [f"127.0.0.1:{free_port()}"], body, stop, **popen)
        except _PortTakenError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _cli_session_at(command: List[str], body: bytes, stop: str, **popen: Any) -> Tuple[List[str], int, str]:
    port = int(command[-1].rpartition(":")[2])
    proc = subprocess.Popen(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        try:
            wait_for_line(proc.stderr, "DebuggingServer started at")
        except AssertionError as exc:
            if "Address already in use" in str(exc):
                raise _PortTakenError(str(exc)) from None
            raise
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], body)
        printed = wait_for_line(proc.stdout, "END MESSAGE")
        proc.send_signal(getattr(signal, stop))
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return printed, proc.returncode, err


def wait_for_line(stream: Any, needle: str) -> List[str]:
    """Lines of ``stream`` up to the one holding ``needle``; fails at end of stream."""
    seen = []
    for line in stream:
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never came; got {seen}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("module", ["asyncio_compat.smtpd", "smtpd"])
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_debugging_server_command_prints_and_stops_cleanly(module: str, stop: str) -> None:
    command = [sys.executable, "-m", module, "-n", "-d", "-c", "DebuggingServer"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(SHIMS)]), PYTHONUNBUFFERED="1")
    printed, status, err = cli_session(command, b"Subject: cli\r\n\r\nhello there", stop, cwd=ROOT, env=env)
    assert printed == [
        "---------- MESSAGE FOLLOWS ----------\n",
        "b'Subject: cli'\n",
        "b'X-Peer: 127.0.0.1'\n",
        "b''\n",
        "b'hello there'\n",
        "------------ END MESSAGE ------------\n",
    ]
    assert status == 0, err
    assert "Traceback" not in err, err


@pytest.mark.timeout(60)
def test_cli_session_runs_the_server_again_when_its_port_was_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # the helper above picks a port for a command line; a port another
    # process bound meanwhile must cost a retry, not the test
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = int(squatter.getsockname()[1])
        picks = iter([taken])
        real_free_port = free_port
        monkeypatch.setattr(sys.modules[__name__], "free_port", lambda: next(picks, None) or real_free_port())
        command = [sys.executable, "-m", "asyncio_compat.smtpd", "-n", "-d", "-c", "DebuggingServer"]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        body = b"Subject: retry\r\n\r\nagain"
        printed, status, err = cli_session(command, body, "SIGTERM", cwd=ROOT, env=env)
    assert "b'again'\n" in printed
    assert status == 0, err
