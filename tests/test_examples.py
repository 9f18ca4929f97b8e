"""Every example under examples/ runs, exits 0 and prints what it should.

Each example runs twice per backend:

* as a subprocess, the way a reader runs it (``python examples/x.py``), with
  ``ASYNCIO_COMPAT_POLLER`` naming the backend, from a scratch directory and
  without ``PYTHONPATH``, so that its own bootstrap has to find the package;
  the test checks the exit status and the key lines of its output;
* in this process, through its ``main()``, so that the leak check of
  conftest.py sees any fd or thread the example leaves behind.

Expected values (messages, page sizes) are read from the example modules
themselves, not repeated here.
"""

from __future__ import annotations

import ast
import os
import re
import socket
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Tuple

import pytest
from helpers import load_example, run_example

pytestmark = pytest.mark.timeout(120)




BYTES_LITERAL = r"(b['\"].*['\"])"  # a bytes repr, as the examples print them


def byte_literals(output: str, pattern: str) -> Dict[str, bytes]:
    """Join, per name, the ``b'...'`` literals of the lines matching ``pattern``.

    ``pattern`` has two groups: the name and the literal.
    """
    joined: Dict[str, bytes] = {}
    for name, literal in re.findall(pattern, output, flags=re.MULTILINE):
        joined[name] = joined.get(name, b"") + ast.literal_eval(literal)
    return joined


# -- asynchat_echo_main -----------------------------------------------------------


def _position(out: str, pattern: str) -> int:
    found = re.search(pattern, out, re.M)
    assert found, f"no line matches {pattern!r}"
    return found.start()


def test_asynchat_echo_output(poller_name: str, tmp_path: Path) -> None:
    example = load_example("asynchat_echo_main")
    message = example.MESSAGE
    out = run_example("asynchat_echo_main", poller_name, tmp_path)
    # the calls come in protocol order
    steps = [
        rf"^client\s+handle_connect\(\): push\(b'ECHO {len(message)}\\n'\)",
        r"^handler\s+collect_incoming_data\(b'ECHO " + str(len(message)) + r"'\)$",
        r"^handler\s+found_terminator\(\) in command mode$",
        rf"^handler\s+set_terminator\({len(message)}\): data mode$",
        r"^handler\s+found_terminator\(\) in data mode$",
        rf"^handler\s+push\({len(message)} bytes\) and set_terminator",
        rf"^client\s+found_terminator\(\): reply of {len(message)} bytes complete",
        r"^handler\s+handle_close\(\): the client hung up$",
        rf"^main\s+the reply matches the {len(message)} bytes sent$",
    ]
    positions = [_position(out, step) for step in steps]
    assert positions == sorted(positions)
    # every byte went through collect_incoming_data in pieces of at most READ_SIZE,
    # and through the producer in pieces of at most PRODUCER_SIZE, ending with b''
    collected = byte_literals(out, rf"^(handler|client)\s+collect_incoming_data\({BYTES_LITERAL}\)$")
    assert collected["client"] == message
    assert collected["handler"].startswith(b"ECHO %d" % len(message))
    assert collected["handler"][len(b"ECHO %d" % len(message)):] == message
    pieces = [ast.literal_eval(lit) for lit in re.findall(rf"data\({BYTES_LITERAL}\)$", out, re.M)]
    assert max(len(piece) for piece in pieces) <= example.READ_SIZE
    more_calls = re.findall(rf"^producer\s+more\(\) -> {BYTES_LITERAL}$", out, re.M)
    produced = [ast.literal_eval(lit) for lit in more_calls]
    assert b"".join(produced) == message and produced[-1] == b""
    assert max(len(piece) for piece in produced) <= example.PRODUCER_SIZE


@pytest.mark.parametrize(
    "message",
    [
        b"x",
        b"ECHO 3\nnewlines\nand a command inside the data\n",
        bytes(range(256)) * 80,  # every byte value, many reads and many more() calls
    ],
    ids=["one-byte", "command-inside-data", "20KiB-binary"],
)
def test_asynchat_echo_in_process(default_poller: str, message: bytes) -> None:
    example = load_example("asynchat_echo_main")
    assert example.run(message) == message


def test_asynchat_echo_refuses_an_empty_message() -> None:
    example = load_example("asynchat_echo_main")
    with pytest.raises(ValueError, match="must not be empty"):
        example.run(b"")


def test_asynchat_echo_reports_a_corrupted_reply(default_poller: str) -> None:
    example = load_example("asynchat_echo_main")

    class UpperCasingHandler(example.EchoHandler):  # type: ignore[name-defined,misc]
        def echo(self, payload: bytes) -> None:
            super().echo(payload.upper())

    reply = example.run(b"lower case", UpperCasingHandler)
    assert reply == b"LOWER CASE"
    assert example.report(b"lower case", reply) == 1
    assert example.report(b"lower case", None) == 1
    assert example.report(b"lower case", b"lower case") == 0


@pytest.mark.parametrize(
    "line, length",
    [(b"ECHO 42", 42), (b"ECHO 0", 0), (b"  ECHO   7 ", 7)],
)
def test_parse_command_accepts(line: bytes, length: int) -> None:
    assert load_example("asynchat_echo_main").parse_command(line) == length


@pytest.mark.parametrize("line", [b"", b"ECHO", b"ECHO -1", b"ECHO 1.5", b"echo 3", b"ECHO 3 4", b"PING 3"])
def test_parse_command_rejects(line: bytes) -> None:
    with pytest.raises(ValueError, match="expected ECHO <length>"):
        load_example("asynchat_echo_main").parse_command(line)


def _talk_to_echo_server(example: ModuleType, request: bytes) -> bytes:
    """Send ``request`` from a plain socket, serve it, and return all the server said."""
    channels = example.asyncio_compat.SocketMap()
    server = example.EchoServer(channels)
    with socket.create_connection(server.address, timeout=10) as peer:
        peer.sendall(request)
        peer.shutdown(socket.SHUT_WR)
        example.asyncore.loop(timeout=0.1, map=channels, count=500)
        leftover = list(channels.values())
        example.asyncore.close_all(channels)
        assert not leftover, f"channels still open: {leftover}"
        received = b""
        while True:
            data = peer.recv(4096)
            if not data:
                return received
            received += data


def test_asynchat_echo_handler_serves_several_commands(default_poller: str) -> None:
    example = load_example("asynchat_echo_main")
    # ECHO 0 answers at once; the handler goes back to command mode after each echo
    request = b"ECHO 0\nECHO 3\nabcECHO 5\n\n\n\n\n\n"
    assert _talk_to_echo_server(example, request) == b"abc\n\n\n\n\n"


def test_asynchat_echo_handler_refuses_a_bad_command(default_poller: str) -> None:
    example = load_example("asynchat_echo_main")
    reply = _talk_to_echo_server(example, b"HELLO 5\nhello")
    assert reply.startswith(b"ERROR expected ECHO <length>, got b'HELLO 5'")
    assert reply.endswith(b"\n")


# -- asyncore_echo_server ----------------------------------------------------------


def test_echo_server_output(poller_name: str, tmp_path: Path) -> None:
    example = load_example("asyncore_echo_server")
    out = run_example("asyncore_echo_server", poller_name, tmp_path)
    echoed = byte_literals(out, rf"^(handler-\d)\s+echoing \d+ bytes: {BYTES_LITERAL}$")
    assert sorted(echoed.values()) == sorted(example.MESSAGES)
    for client, message in zip(("client-A", "client-B"), example.MESSAGES):
        assert re.search(rf"^{client}\s+received \d+ bytes \({len(message)} of {len(message)}\)$", out, re.M)
        assert re.search(rf"^{client}\s+echo complete; hanging up$", out, re.M)
    assert len(re.findall(r"^handler-\d\s+peer closed; closing$", out, re.M)) == 2
    assert "accepted all 2; closing the listening socket" in out
    assert out.rstrip().endswith("map empty, loop returned; every echo matched")


def test_echo_server_in_process(default_poller: str) -> None:
    example = load_example("asyncore_echo_server")
    clients = example.run()
    assert [client.received for client in clients] == list(example.MESSAGES)


# -- asyncore_http_client ---------------------------------------------------------


def test_http_client_output(poller_name: str, tmp_path: Path) -> None:
    example = load_example("asyncore_http_client")
    out = run_example("asyncore_http_client", poller_name, tmp_path)
    for path, body in example.PAGES.items():
        assert f"{path}: HTTP/1.0 200 OK" in out
        assert f"{path}: {len(body)} body bytes, Content-Length {len(body)}" in out
        assert f"{path}: matches the page served" in out
        reads = [int(n) for n in re.findall(rf"^GET {re.escape(path)}\s+read (\d+) bytes$", out, re.M)]
        assert sum(reads) > len(body)  # the body plus the status line and headers
        assert re.search(rf"^GET {re.escape(path)}\s+server closed the connection$", out, re.M)


def test_http_client_in_process(default_poller: str, capsys: pytest.CaptureFixture[str]) -> None:
    example = load_example("asyncore_http_client")
    assert example.main() == 0
    assert capsys.readouterr().out.count("matches the page served") == len(example.PAGES)


class _FakeDownload:
    """Stands in for a finished HTTPClient: a path and a canned response."""

    def __init__(self, path: str, body: bytes, content_length: int) -> None:
        self.path = path
        self.body = body
        self.content_length = content_length

    def response(self) -> Tuple[str, Dict[str, str], bytes]:
        return "HTTP/1.0 200 OK", {"content-length": str(self.content_length)}, self.body


def test_http_client_check_rejects_a_damaged_page(capsys: pytest.CaptureFixture[str]) -> None:
    example = load_example("asyncore_http_client")
    page = example.PAGES["/index.html"]
    damaged = page.replace(b"Paragraph 7", b"Paragraph 8")
    assert damaged != page
    assert example.check(_FakeDownload("/index.html", page, len(page))) is True
    assert example.check(_FakeDownload("/index.html", damaged, len(damaged))) is False
    assert example.check(_FakeDownload("/index.html", page[:-1], len(page))) is False
    assert capsys.readouterr().out.count("DIFFERS from the page served") == 2


# -- asyncore_loop ----------------------------------------------------------------


def test_loop_output(poller_name: str, tmp_path: Path) -> None:
    example = load_example("asyncore_loop")
    out = run_example("asyncore_loop", poller_name, tmp_path)
    reads = re.findall(rf"^tick (\d+):   read (\d+) bytes: {BYTES_LITERAL}$", out, re.M)
    ticks = [int(tick) for tick, _, _ in reads]
    assert ticks == list(range(example.SEND_AT, example.SEND_AT + len(ticks)))  # one read per tick
    assert b"".join(ast.literal_eval(literal) for _, _, literal in reads) == example.TEXT
    assert all(int(size) <= example.CHUNK for _, size, _ in reads)
    idle = [int(t) for t in re.findall(r"^tick (\d+): nothing ready", out, re.M)]
    assert idle == list(range(1, example.SEND_AT))
    assert re.search(rf"^tick {example.SEND_AT + len(ticks)}:   end of stream; the reader closes$", out, re.M)


def test_loop_in_process(default_poller: str, capsys: pytest.CaptureFixture[str]) -> None:
    example = load_example("asyncore_loop")
    assert example.main() == 0
    assert f"{len(example.TEXT)} bytes received" in capsys.readouterr().out


# -- asyncore_file_dispatcher --------------------------------------------------------


def _sum_reads(out: str, label: str) -> int:
    return sum(int(n) for n in re.findall(rf"^{label}: read (\d+) bytes$", out, re.M))


@pytest.mark.skipif(os.name != "posix", reason="file_dispatcher exists on POSIX only")
def test_file_dispatcher_output(poller_name: str, tmp_path: Path) -> None:
    example = load_example("asyncore_file_dispatcher")
    out = run_example("asyncore_file_dispatcher", poller_name, tmp_path)
    piped = b"".join(example.PIPE_LINES)
    assert _sum_reads(out, "file") == len(example.FILE_TEXT)
    assert _sum_reads(out, "pipe") == len(piped)
    written: List[int] = [int(n) for n in re.findall(r"^feeder: wrote (\d+) bytes$", out, re.M)]
    assert sum(written) == len(piped)
    assert f"file: end of data after {len(example.FILE_TEXT)} bytes" in out
    assert f"pipe: end of data after {len(piped)} bytes" in out
    # the reader sees the end only after the feeder closed the last write end
    assert out.index("feeder: all written; closing the write end") < out.index("pipe: end of data")
    assert "temporary file: read back intact" in out
    assert "pipe: read back intact" in out


@pytest.mark.skipif(os.name != "posix", reason="file_dispatcher exists on POSIX only")
def test_file_dispatcher_in_process(default_poller: str) -> None:
    example = load_example("asyncore_file_dispatcher")
    assert example.read_temporary_file()
    assert example.read_pipe()
