"""asyncio_compat.socketserver: servers, handlers and mix-ins (CPython 3.13 behaviour).

Requests are driven with ``handle_request()`` from the test's own thread
where possible: the client connects and sends first, the kernel buffers it,
and the server then handles the pending request.  Serving-loop and poller
behaviour live in test_socketserver_serving.py; sharing an asyncore loop in
test_socketserver_attach.py.
"""

from __future__ import annotations

import gc
import io
import os
import socket
import sys
import threading
import weakref
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from helpers import LineEcho, read_line

from asyncio_compat import socketserver

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"
LINE = b"hello world\n"


class DatagramEcho(socketserver.DatagramRequestHandler):
    """Sends back the datagram it got."""

    def handle(self) -> None:
        self.wfile.write(self.rfile.read())


def pending_client(server: socketserver.TCPServer, payload: bytes = LINE) -> socket.socket:
    """A connected client that has already sent ``payload`` (buffered by the kernel)."""
    client = socket.socket(server.address_family, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect(server.server_address)
    client.sendall(payload)
    return client


def tcp_echo_once(server: socketserver.TCPServer) -> bytes:
    with pending_client(server) as client:
        server.handle_request()
        return read_line(client)


# -- module surface --------------------------------------------------------------


def test_all_lists_exactly_the_public_classes() -> None:
    public = {
        name for name in dir(socketserver)
        if not name.startswith("_")
        and getattr(getattr(socketserver, name), "__module__", None) == "socketserver"
    }
    assert set(socketserver.__all__) == public
    for name in ("BaseServer", "ThreadingUnixDatagramServer", "ServerChannel", "DatagramRequestHandler"):
        assert name in public


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_forking_combinations_exist_where_fork_does() -> None:
    for name in ("ForkingMixIn", "ForkingTCPServer", "ForkingUDPServer",
                 "ForkingUnixStreamServer", "ForkingUnixDatagramServer"):
        assert name in socketserver.__all__
    assert socketserver.ForkingUnixDatagramServer.__mro__[1:3] == (
        socketserver.ForkingMixIn, socketserver.UnixDatagramServer,
    )


def test_version_string_follows_the_running_python() -> None:
    # 3.15 deprecates socketserver.__version__ (a module __getattr__ warns); before, plain
    import warnings

    if sys.version_info >= (3, 15):
        with pytest.warns(DeprecationWarning, match="slated for removal in Python 3.20") as caught:
            assert socketserver.__version__ == "0.4"
        assert caught[0].filename == __file__
        assert "__version__" not in vars(socketserver)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert socketserver.__version__ == "0.4"
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        socketserver.nonesuch  # type: ignore[attr-defined]  # noqa: B018


def test_class_attributes_have_cpython_defaults() -> None:
    tcp = socketserver.TCPServer
    assert (tcp.address_family, tcp.socket_type) == (socket.AF_INET, socket.SOCK_STREAM)
    assert (tcp.request_queue_size, tcp.allow_reuse_address, tcp.allow_reuse_port) == (5, False, False)
    assert socketserver.UDPServer.socket_type == socket.SOCK_DGRAM
    assert socketserver.UDPServer.max_packet_size == 8192
    assert socketserver.BaseServer.timeout is None
    assert (socketserver.ThreadingMixIn.daemon_threads, socketserver.ThreadingMixIn.block_on_close) == (
        False, True,
    )
    handler = socketserver.StreamRequestHandler
    assert (handler.rbufsize, handler.wbufsize, handler.timeout, handler.disable_nagle_algorithm) == (
        -1, 0, None, False,
    )


# -- TCPServer ---------------------------------------------------------------------


def test_tcp_echo_and_bound_address() -> None:
    with socketserver.TCPServer((HOST, 0), LineEcho) as server:
        assert server.server_address == server.socket.getsockname()
        assert server.server_address[1] != 0
        assert server.fileno() == server.socket.fileno()
        assert tcp_echo_once(server) == LINE


def test_context_manager_closes_the_socket() -> None:
    with socketserver.TCPServer((HOST, 0), LineEcho) as server:
        assert server.socket.fileno() >= 0
    assert server.socket.fileno() == -1


def test_failed_bind_closes_the_socket() -> None:
    # the leak fixture fails the test if the socket of either attempt stays open
    with pytest.raises(OverflowError):
        socketserver.TCPServer((HOST, -1), LineEcho)
    with socketserver.TCPServer((HOST, 0), LineEcho) as taken, pytest.raises(OSError):
        socketserver.TCPServer(taken.server_address, LineEcho)


def test_bind_and_activate_false_leaves_binding_to_the_caller() -> None:
    server = socketserver.TCPServer((HOST, 0), LineEcho, bind_and_activate=False)
    try:
        assert server.server_address == (HOST, 0)
        server.server_bind()
        server.server_activate()
        assert server.server_address[1] != 0
        assert tcp_echo_once(server) == LINE
    finally:
        server.server_close()


def test_reuse_options_are_set_on_the_socket() -> None:
    class Reusing(socketserver.TCPServer):
        allow_reuse_address = True
        allow_reuse_port = hasattr(socket, "SO_REUSEPORT")

    with Reusing((HOST, 0), LineEcho) as server:
        assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        if Reusing.allow_reuse_port:
            assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    with socketserver.TCPServer((HOST, 0), LineEcho) as plain:
        assert not plain.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)


def test_hooks_run_in_cpython_order() -> None:
    calls: List[str] = []

    class Handler(socketserver.StreamRequestHandler):
        def setup(self) -> None:
            calls.append("setup")
            super().setup()

        def handle(self) -> None:
            calls.append("handle")
            self.wfile.write(self.rfile.readline())

        def finish(self) -> None:
            calls.append("finish")
            super().finish()

    class Server(socketserver.TCPServer):
        def get_request(self) -> Tuple[Any, Any]:
            calls.append("get_request")
            return super().get_request()

        def verify_request(self, request: Any, client_address: Any) -> bool:
            calls.append("verify_request")
            return True

        def process_request(self, request: Any, client_address: Any) -> None:
            calls.append("process_request")
            super().process_request(request, client_address)

        def finish_request(self, request: Any, client_address: Any) -> None:
            calls.append("finish_request")
            super().finish_request(request, client_address)

        def shutdown_request(self, request: Any) -> None:
            calls.append("shutdown_request")
            super().shutdown_request(request)

        def close_request(self, request: Any) -> None:
            calls.append("close_request")
            super().close_request(request)

    with Server((HOST, 0), Handler) as server:
        assert tcp_echo_once(server) == LINE
    assert calls == [
        "get_request", "verify_request", "process_request", "finish_request",
        "setup", "handle", "finish", "shutdown_request", "close_request",
    ]


def test_handler_sees_request_address_and_server() -> None:
    seen: List[Any] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            seen.extend([self.request, self.client_address, self.server])

    with socketserver.TCPServer((HOST, 0), Handler) as server, pending_client(server) as client:
        server.handle_request()
        assert seen[1] == client.getsockname()
        assert seen[2] is server
        assert seen[0].fileno() == -1  # shut down and closed after the handler


def test_refused_request_is_shut_down_unhandled() -> None:
    handled: List[bool] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handled.append(True)

    class Refusing(socketserver.TCPServer):
        shut = 0

        def verify_request(self, request: Any, client_address: Any) -> bool:
            return False

        def shutdown_request(self, request: Any) -> None:
            self.shut += 1
            super().shutdown_request(request)

    with Refusing((HOST, 0), Handler) as server, pending_client(server) as client:
        server.handle_request()
        assert client.recv(10) == b""  # closed by the server
    assert handled == [] and server.shut == 1


def test_failing_verify_request_propagates_without_leaking_the_request() -> None:
    class Broken(socketserver.TCPServer):
        def verify_request(self, request: Any, client_address: Any) -> bool:
            raise KeyError("verify")

    with Broken((HOST, 0), LineEcho) as server, pending_client(server) as client:
        with pytest.raises(KeyError, match="verify"):
            server.handle_request()
        assert client.recv(10) == b""


def test_handler_exception_goes_to_handle_error(capsys: pytest.CaptureFixture[str]) -> None:
    class Failing(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            raise ValueError("handler broke")

    with socketserver.TCPServer((HOST, 0), Failing) as server, pending_client(server) as client:
        client_address = client.getsockname()
        server.handle_request()
        assert client.recv(10) == b""
        # the server goes on serving after the failure
        server.RequestHandlerClass = LineEcho
        assert tcp_echo_once(server) == LINE
    err = capsys.readouterr().err
    assert "ValueError: handler broke" in err
    assert f"processing of request from {client_address}" in err


def test_system_exit_from_a_handler_propagates_after_closing_the_request() -> None:
    class Exiting(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            raise SystemExit(3)

    errors: List[Any] = []

    class Server(socketserver.TCPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            errors.append(client_address)

    with Server((HOST, 0), Exiting) as server, pending_client(server) as client:
        with pytest.raises(SystemExit):
            server.handle_request()
        assert client.recv(10) == b""
    assert errors == []


def test_failing_get_request_is_ignored() -> None:
    attempts: List[str] = []

    class Unlucky(socketserver.TCPServer):
        def get_request(self) -> Tuple[Any, Any]:
            attempts.append("get_request")
            raise ConnectionAbortedError("gone before accept")

        def verify_request(self, request: Any, client_address: Any) -> bool:
            attempts.append("verify_request")
            return True

    with Unlucky((HOST, 0), LineEcho) as server, pending_client(server):
        server.handle_request()  # no exception escapes
    assert attempts == ["get_request"]


# -- handle_request timeouts ---------------------------------------------------------


def test_handle_request_times_out_with_server_timeout() -> None:
    class Waiting(socketserver.TCPServer):
        timeout = 0.01
        timeouts = 0

        def handle_timeout(self) -> None:
            self.timeouts += 1

    with Waiting((HOST, 0), LineEcho) as server:
        server.handle_request()
        assert server.timeouts == 1


def test_handle_request_honours_the_socket_timeout() -> None:
    class Waiting(socketserver.TCPServer):
        timeouts = 0

        def handle_timeout(self) -> None:
            self.timeouts += 1

    with Waiting((HOST, 0), LineEcho) as server:
        server.socket.settimeout(0.01)  # timeout stays None: the socket's bounds the wait
        server.handle_request()
        assert server.timeouts == 1
        server.timeout = 5.0  # a request that is already there is handled at once
        assert tcp_echo_once(server) == LINE
        assert server.timeouts == 1


def test_handle_request_on_a_closed_server_raises() -> None:
    server = socketserver.TCPServer((HOST, 0), LineEcho)
    server.server_close()
    with pytest.raises(ValueError):
        server.handle_request()


# -- StreamRequestHandler options ------------------------------------------------------


def test_stream_handler_options_reach_the_socket() -> None:
    seen: List[Any] = []

    class Tuned(socketserver.StreamRequestHandler):
        timeout = 7.5
        disable_nagle_algorithm = True
        wbufsize = 4096

        def handle(self) -> None:
            seen.append(self.connection.gettimeout())
            seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            seen.append(self.wfile)
            # buffered: nothing leaves before finish() flushes
            self.wfile.write(self.rfile.readline())

    with socketserver.TCPServer((HOST, 0), Tuned) as server:
        assert tcp_echo_once(server) == LINE
    assert seen[0] == 7.5 and seen[1]
    assert isinstance(seen[2], io.BufferedWriter) and seen[2].closed


def test_unbuffered_wfile_writes_at_once_and_reports_length() -> None:
    results: List[Any] = []

    class Talker(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            results.append(self.wfile.write(b"first\n"))
            results.append(self.rfile.readline())  # the client answers only after "first"
            results.append(self.wfile.write(memoryview(b"second\n")))
            results.append(self.wfile.fileno() == self.connection.fileno())
            results.append(isinstance(self.wfile, io.BufferedIOBase))

    heard: List[bytes] = []
    with socketserver.TCPServer((HOST, 0), Talker) as server:
        client = socket.create_connection(server.server_address, timeout=10)

        def answer() -> None:
            with client:
                if read_line(client) == b"first\n":
                    client.sendall(b"ack\n")
                heard.append(read_line(client))

        talker = threading.Thread(target=answer)
        talker.start()
        server.handle_request()
        talker.join()
    assert results == [6, b"ack\n", 7, True, True]
    assert heard == [b"second\n"]


def test_finish_tolerates_a_flush_that_fails() -> None:
    files: List[Any] = []
    errors: List[Any] = []

    class LateWriter(socketserver.StreamRequestHandler):
        wbufsize = 1 << 16

        def handle(self) -> None:
            self.rfile.readline()
            # writing after SHUT_WR fails with EPIPE, deterministically, at flush time
            self.connection.shutdown(socket.SHUT_WR)
            self.wfile.write(b"x" * 1000)
            files.extend([self.rfile, self.wfile])

    class Server(socketserver.TCPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            errors.append(sys.exc_info()[1])

    with Server((HOST, 0), LateWriter) as server, pending_client(server):
        server.handle_request()
    assert errors == []
    assert files[0].closed and files[1].closed


# -- UDP -----------------------------------------------------------------------------


def udp_roundtrip(server: socketserver.UDPServer, payload: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        client.sendto(payload, server.server_address)
        server.handle_request()
        data, sender = client.recvfrom(65536)
        assert sender == server.server_address
        return bytes(data)


def test_udp_echo() -> None:
    with socketserver.UDPServer((HOST, 0), DatagramEcho) as server:
        assert udp_roundtrip(server, b"ping") == b"ping"
        assert udp_roundtrip(server, b"") == b""


def test_udp_request_is_data_and_server_socket() -> None:
    seen: List[Any] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            seen.append(self.request)
            self.request[1].sendto(b"ok", self.client_address)

    with socketserver.UDPServer((HOST, 0), Handler) as server:
        assert udp_roundtrip(server, b"abc") == b"ok"
        assert seen[0][0] == b"abc" and seen[0][1] is server.socket
        assert server.socket.fileno() >= 0  # the request's socket is not closed


def test_udp_datagrams_longer_than_max_packet_size_are_cut() -> None:
    class Small(socketserver.UDPServer):
        max_packet_size = 4

    with Small((HOST, 0), DatagramEcho) as server:
        assert udp_roundtrip(server, b"abcdefgh") == b"abcd"


def test_threading_udp_server_answers_from_a_thread() -> None:
    threads: List[str] = []

    class Handler(DatagramEcho):
        def handle(self) -> None:
            threads.append(threading.current_thread().name)
            super().handle()

    with socketserver.ThreadingUDPServer((HOST, 0), Handler) as server:
        assert udp_roundtrip(server, b"t") == b"t"
    assert threads and threads[0] != threading.current_thread().name


# -- Unix sockets ----------------------------------------------------------------------

unix_only = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX on this platform")


@unix_only
def test_unix_stream_server(tmp_path: Path) -> None:
    path = str(tmp_path / "stream.sock")
    with socketserver.UnixStreamServer(path, LineEcho) as server:
        assert server.server_address == path
        assert tcp_echo_once(server) == LINE


@unix_only
def test_threading_unix_stream_server(tmp_path: Path) -> None:
    path = str(tmp_path / "threads.sock")
    with socketserver.ThreadingUnixStreamServer(path, LineEcho) as server:
        assert tcp_echo_once(server) == LINE
        assert tcp_echo_once(server) == LINE


@unix_only
@pytest.mark.parametrize("cls_name", ["UnixDatagramServer", "ThreadingUnixDatagramServer"])
def test_unix_datagram_server(tmp_path: Path, cls_name: str) -> None:
    cls = getattr(socketserver, cls_name)
    server = cls(str(tmp_path / "server.sock"), DatagramEcho)
    with server, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        client.bind(str(tmp_path / "client.sock"))  # so that the reply has somewhere to go
        client.settimeout(10)
        client.sendto(b"datagram", server.server_address)
        server.handle_request()
        assert client.recv(100) == b"datagram"


@unix_only
def test_unix_server_on_a_taken_path_raises_and_leaks_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "taken.sock")
    with socketserver.UnixStreamServer(path, LineEcho), pytest.raises(OSError):
        socketserver.UnixStreamServer(path, LineEcho)


# -- ThreadingMixIn ------------------------------------------------------------------------


def test_threading_server_joins_its_threads_on_close() -> None:
    release = threading.Event()
    started = threading.Event()
    handlers: List[threading.Thread] = []

    class Slow(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handlers.append(threading.current_thread())
            started.set()
            release.wait(10)

    server = socketserver.ThreadingTCPServer((HOST, 0), Slow)
    with pending_client(server):
        server.handle_request()
        assert started.wait(10) and handlers[0] is not threading.current_thread()
        threading.Timer(0.01, release.set).start()
        server.server_close()  # blocks until the handler thread ends
        assert not handlers[0].is_alive()


def test_threading_server_without_block_on_close_does_not_wait() -> None:
    release = threading.Event()
    done = threading.Event()
    handlers: List[threading.Thread] = []

    class Slow(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handlers.append(threading.current_thread())
            release.wait(10)
            done.set()

    class Server(socketserver.ThreadingTCPServer):
        block_on_close = False
        daemon_threads = True

    server = Server((HOST, 0), Slow)
    with pending_client(server):
        server.handle_request()
        server.server_close()
        assert not done.is_set()  # nothing joined
        release.set()
        assert done.wait(10)
    handler = handlers.pop()
    handler.join(10)
    gone = weakref.ref(handler)
    del handler
    gc.collect()
    assert gone() is None, "the server still holds its finished thread"  # nothing recorded


def test_threading_server_forgets_finished_threads() -> None:
    handlers: List[weakref.ref[threading.Thread]] = []

    class Echo(LineEcho):
        def handle(self) -> None:
            handlers.append(weakref.ref(threading.current_thread()))
            super().handle()

    with socketserver.ThreadingTCPServer((HOST, 0), Echo) as server:
        for _ in range(6):
            assert tcp_echo_once(server) == LINE
        gc.collect()
        # each echo is over once the client read it; only the last few may linger
        assert sum(ref() is not None for ref in handlers) < 6


def test_threading_handler_exception_goes_to_handle_error() -> None:
    reported = threading.Event()

    class Failing(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            raise RuntimeError("in a thread")

    class Server(socketserver.ThreadingTCPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            if sys.exc_info()[0] is RuntimeError:
                reported.set()

    with Server((HOST, 0), Failing) as server, pending_client(server) as client:
        server.handle_request()
        assert reported.wait(10)
        assert client.recv(10) == b""


# -- ForkingMixIn ------------------------------------------------------------------------

fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")


class PidReporter(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(b"%d\n" % os.getpid())


@fork_only
def test_forking_server_handles_in_a_child_and_waits_on_close() -> None:
    server = socketserver.ForkingTCPServer((HOST, 0), PidReporter)
    try:
        answer = tcp_echo_once(server)
        assert answer.strip().isdigit() and int(answer) != os.getpid()
        assert server.active_children == {int(answer)}
    finally:
        server.server_close()
    assert server.active_children == set()


@fork_only
def test_forking_udp_server() -> None:
    with socketserver.ForkingUDPServer((HOST, 0), DatagramEcho) as server:
        assert udp_roundtrip(server, b"fork") == b"fork"
    assert not server.active_children


@fork_only
def test_forking_server_collects_children_beyond_max_children() -> None:
    class Server(socketserver.ForkingTCPServer):
        max_children = 2

    with Server((HOST, 0), PidReporter) as server:
        pids = {int(tcp_echo_once(server)) for _ in range(4)}
        assert len(pids) == 4
        # nothing reaps between handle_request() calls (as in CPython) ...
        assert server.active_children == pids
        # ... until service_actions(), which waits until fewer than max_children remain
        server.service_actions()
        assert len(server.active_children) < 2
    assert server.active_children == set()


@fork_only
def test_forking_child_exits_with_status_1_after_an_error() -> None:
    statuses: List[int] = []

    class Failing(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            raise ValueError("child broke")

    class Server(socketserver.ForkingTCPServer):
        def collect_children(self, *, blocking: bool = False) -> None:
            # record the exit status ourselves instead of the generic reaping
            for pid in list(self.active_children or ()):
                _, status = os.waitpid(pid, 0)
                statuses.append(os.waitstatus_to_exitcode(status))
                self.active_children.discard(pid)  # type: ignore[union-attr]

    with Server((HOST, 0), Failing) as server, pending_client(server) as client:
        server.handle_request()
        assert client.recv(10) == b""
    assert statuses == [1]


@fork_only
def test_forking_timeout_reaps_children() -> None:
    class Server(socketserver.ForkingTCPServer):
        timeout = 0.01

    server = Server((HOST, 0), PidReporter)
    try:
        tcp_echo_once(server)
        assert server.active_children
        for _ in range(3000):  # each call waits 10 ms, then handle_timeout() reaps
            if not server.active_children:
                break
            server.handle_request()
        assert server.active_children == set()
    finally:
        server.server_close()


# -- the BaseServer contract --------------------------------------------------------------


def test_base_server_without_socket_hooks_explains_itself() -> None:
    server = socketserver.BaseServer(("x", 0), LineEcho)
    with pytest.raises(NotImplementedError, match="fileno"):
        server.fileno()
    with pytest.raises(NotImplementedError, match="get_request"):
        server.get_request()
    server.server_close()


def test_base_server_subclass_can_serve_any_descriptor() -> None:
    """get_request() may return anything; here a line read from a pipe."""
    read_end, write_end = os.pipe()
    got: List[Any] = []

    class PipeServer(socketserver.BaseServer):
        def fileno(self) -> int:
            return read_end

        def get_request(self) -> Tuple[Any, Any]:
            return os.read(read_end, 100), "pipe"

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            got.append((self.request, self.client_address))

    try:
        os.write(write_end, b"job")
        server = PipeServer(None, Handler, poller="select")
        server.timeout = 5
        server.handle_request()
    finally:
        os.close(read_end)
        os.close(write_end)
    assert got == [(b"job", "pipe")]


def test_stdlib_http_handlers_run_on_our_servers() -> None:
    """Handlers derived from the standard library's socketserver classes work unchanged."""
    import http.client
    import http.server

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
            body = b"hello from " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output quiet

    with socketserver.ThreadingTCPServer((HOST, 0), Hello) as server:
        serving = threading.Thread(target=server.serve_forever, args=(0.05,))
        serving.start()
        try:
            host, port = server.server_address
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", "/page")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"hello from /page")
            conn.close()
        finally:
            server.shutdown()
            serving.join()
