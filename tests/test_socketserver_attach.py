"""One asyncore loop serving socketserver servers and dispatchers together.

Every test runs on each available backend.  Clients are asyncore
dispatchers in the same map as the server, so nothing gets served unless the
one ``asyncore.loop()`` call serves both.  A synchronous server's handler
runs inside the loop, so the synchronous handlers here never wait for a
client of the same loop (that would block the loop, by design); those that
must read are on threading or forking servers.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from typing import Any, Dict, List

import pytest
from helpers import EchoHandler, LineEcho, run_until, sweep_every

from asyncio_compat import asyncore, socketserver

pytestmark = [
    pytest.mark.timeout(30),
    # every test on a tracked SocketMap and on a plain dict
    pytest.mark.parametrize("socket_map", ["SocketMap", "dict"], indirect=True),
]

HOST = "127.0.0.1"
LINE = b"one line\n"


class Greeter(socketserver.StreamRequestHandler):
    """Writes one line and hangs up without reading: safe inside the loop."""

    def handle(self) -> None:
        self.wfile.write(b"welcome %d\n" % self.server.greeted)  # type: ignore[attr-defined]
        self.server.greeted += 1  # type: ignore[attr-defined]


class GreetingServer(socketserver.TCPServer):
    greeted = 0


class Client(asyncore.dispatcher_with_send):
    """Connects, sends ``payload`` (if any), collects everything until the server hangs up."""

    def __init__(self, address: Any, socket_map: Dict[int, Any], payload: bytes = b"") -> None:
        super().__init__(map=socket_map)
        self.payload = payload
        self.received = b""
        self.finished = False
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)

    def handle_connect(self) -> None:
        if self.payload:
            self.send(self.payload)

    def handle_read(self) -> None:
        self.received += self.recv(4096)

    def handle_close(self) -> None:
        self.finished = True
        self.close()


class EchoServer(asyncore.dispatcher):
    """A plain asyncore echo server, to share the loop with the socketserver one."""

    def __init__(self, socket_map: Dict[int, Any]) -> None:
        super().__init__(map=socket_map)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind((HOST, 0))
        self.listen(5)
        self.address = self.socket.getsockname()
        self.socket_map = socket_map

    def handle_accepted(self, sock: Any, addr: Any) -> None:
        EchoHandler(sock, map=self.socket_map)


@pytest.mark.parametrize("use_poll", [True, False], ids=["poll-semantics", "select-semantics"])
def test_server_and_dispatchers_in_one_loop(
    socket_map: Dict[int, Any], poller_name: str, use_poll: bool
) -> None:
    with GreetingServer((HOST, 0), Greeter) as server:
        channel = socketserver.attach(server, socket_map)
        assert socket_map[server.fileno()] is channel and channel.attached
        echo = EchoServer(socket_map)
        clients = [Client(server.server_address, socket_map) for _ in range(3)]
        echo_client = Client(echo.address, socket_map, LINE)
        run_until(
            socket_map,
            lambda: all(c.finished for c in clients) and echo_client.received == LINE,
            poller=poller_name,
            use_poll=use_poll,
        )
        assert sorted(c.received for c in clients) == [b"welcome 0\n", b"welcome 1\n", b"welcome 2\n"]
        socketserver.detach(server)
        assert server.fileno() not in socket_map and not socketserver.is_attached(server)
        assert server.socket.fileno() >= 0  # detaching never closes the server's socket


def test_threading_server_reads_from_a_client_of_the_same_loop(
    socket_map: Dict[int, Any], poller_name: str
) -> None:
    threads: List[str] = []

    class Handler(LineEcho):
        def handle(self) -> None:
            threads.append(threading.current_thread().name)
            super().handle()

    with socketserver.ThreadingTCPServer((HOST, 0), Handler) as server:
        socketserver.attach(server, socket_map)
        client = Client(server.server_address, socket_map, LINE)
        run_until(socket_map, lambda: client.finished, poller=poller_name, use_poll=True)
        assert client.received == LINE
    assert threads and threads[0] != threading.current_thread().name
    assert not socketserver.is_attached(server)  # server_close() detached it


def test_udp_server_in_the_loop(socket_map: Dict[int, Any], poller_name: str) -> None:
    class Echo(socketserver.DatagramRequestHandler):
        def handle(self) -> None:
            self.wfile.write(self.rfile.read().upper())

    class DatagramClient(asyncore.dispatcher):
        def __init__(self, address: Any) -> None:
            super().__init__(map=socket_map)
            self.create_socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.socket.sendto(b"shout", address)
            self.reply = b""

        def writable(self) -> bool:
            return False

        def handle_read(self) -> None:
            self.reply = self.socket.recv(100)

    with socketserver.UDPServer((HOST, 0), Echo) as server:
        socketserver.attach(server, socket_map)
        client = DatagramClient(server.server_address)
        run_until(socket_map, lambda: client.reply != b"", poller=poller_name, use_poll=True)
        assert client.reply == b"SHOUT"


def test_service_actions_run_on_the_loop_while_idle(
    socket_map: Dict[int, Any], poller_name: str
) -> None:
    ticks: List[float] = []

    class Server(socketserver.TCPServer):
        def service_actions(self) -> None:
            ticks.append(time.monotonic())

    with Server((HOST, 0), Greeter) as server:
        socketserver.attach(server, socket_map, poll_interval=0.01)
        # no request: the timers alone call it
        run_until(socket_map, lambda: len(ticks) >= 3, poller=poller_name, use_poll=True)
        socketserver.detach(server)
        count = len(ticks)
        asyncore.loop(timeout=0.05, map=socket_map, count=3)
        assert len(ticks) == count  # detached: the periodic call stopped


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_forking_server_children_are_reaped_by_the_loop(
    socket_map: Dict[int, Any], poller_name: str
) -> None:
    class Server(socketserver.ForkingTCPServer):
        pass

    server = Server((HOST, 0), LineEcho)
    try:
        socketserver.attach(server, socket_map, poll_interval=0.01)
        client = Client(server.server_address, socket_map, LINE)
        run_until(socket_map, lambda: client.finished, poller=poller_name, use_poll=True)
        assert client.received == LINE
        run_until(socket_map, lambda: server.active_children == set(), poller=poller_name, use_poll=True)
    finally:
        server.server_close()


def test_one_bad_request_does_not_stop_the_service(
    socket_map: Dict[int, Any], poller_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    class Picky(GreetingServer):
        verified = 0

        def verify_request(self, request: Any, client_address: Any) -> bool:
            self.verified += 1
            if self.verified == 1:
                # an errno that means "peer gone" to asyncore: must not detach the server
                raise ConnectionResetError(errno.ECONNRESET, "verify broke")
            return True

    with Picky((HOST, 0), Greeter) as server:
        channel = socketserver.attach(server, socket_map)
        first = Client(server.server_address, socket_map)
        run_until(socket_map, lambda: first.finished, poller=poller_name, use_poll=True)
        assert first.received == b""  # refused, closed
        second = Client(server.server_address, socket_map)
        run_until(socket_map, lambda: second.finished, poller=poller_name, use_poll=True)
        assert second.received == b"welcome 0\n"
        assert socket_map.get(server.fileno()) is channel
    err = capsys.readouterr().err
    assert "verify broke" in err and "stays attached" in err


def test_server_close_while_attached_detaches(socket_map: Dict[int, Any]) -> None:
    server = GreetingServer((HOST, 0), Greeter)
    fd = server.fileno()
    channel = socketserver.attach(server, socket_map)
    server.server_close()
    assert fd not in socket_map and not channel.attached and not socketserver.is_attached(server)


def test_close_all_detaches_but_leaves_the_socket_to_its_server(socket_map: Dict[int, Any]) -> None:
    with GreetingServer((HOST, 0), Greeter) as server:
        socketserver.attach(server, socket_map)
        asyncore.close_all(socket_map)
        assert not socketserver.is_attached(server) and not socket_map
        assert server.socket.fileno() >= 0
        assert socketserver.attach(server, socket_map).attached  # and it can come back


def test_socket_closed_behind_the_loops_back_detaches(
    poller_name: str, socket_map: Dict[int, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sweep_every(0.01, poller_name, monkeypatch)
    server = GreetingServer((HOST, 0), Greeter)
    socketserver.attach(server, socket_map)
    asyncore.loop(timeout=0.01, map=socket_map, count=1, poller=poller_name)  # now registered
    server.socket.close()  # not server_close(): the map does not know
    run_until(socket_map, lambda: not socketserver.is_attached(server), poller=poller_name, use_poll=True)
    assert not socket_map


def test_repr_names_the_channel(socket_map: Dict[int, Any]) -> None:
    with GreetingServer((HOST, 0), Greeter) as server:
        text = repr(socketserver.attach(server, socket_map))
    assert text.startswith("<socketserver.ServerChannel listening")
    assert str(server.server_address[1]) in text


# -- misuse --------------------------------------------------------------------------


def test_attached_server_refuses_its_own_loops(socket_map: Dict[int, Any]) -> None:
    with GreetingServer((HOST, 0), Greeter) as server:
        socketserver.attach(server, socket_map)
        with pytest.raises(RuntimeError, match="already attached"):
            socketserver.attach(server, socket_map)
        with pytest.raises(RuntimeError, match="serve_forever.*detach"):
            server.serve_forever()
        with pytest.raises(RuntimeError, match="handle_request.*detach"):
            server.handle_request()


def test_serving_server_cannot_be_attached(socket_map: Dict[int, Any]) -> None:
    ticks = threading.Semaphore(0)

    class Server(GreetingServer):
        def service_actions(self) -> None:
            ticks.release()

    with Server((HOST, 0), Greeter) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.01,))
        thread.start()
        try:
            assert ticks.acquire(timeout=10)  # serve_forever is running
            with pytest.raises(RuntimeError, match="serve_forever"):
                socketserver.attach(server, socket_map)
        finally:
            server.shutdown()
            thread.join()
        assert not socket_map


@pytest.mark.parametrize("interval", [0, -1, "fast", None])
def test_attach_refuses_a_bad_poll_interval(socket_map: Dict[int, Any], interval: Any) -> None:
    with GreetingServer((HOST, 0), Greeter) as server:
        with pytest.raises((TypeError, ValueError), match="poll_interval"):
            socketserver.attach(server, socket_map, poll_interval=interval)
        assert not socket_map and not socketserver.is_attached(server)


def test_attach_refuses_a_closed_server(socket_map: Dict[int, Any]) -> None:
    server = GreetingServer((HOST, 0), Greeter)
    server.server_close()
    with pytest.raises(ValueError, match="closed"):
        socketserver.attach(server, socket_map)
    assert not socket_map


def test_detach_twice_is_harmless(socket_map: Dict[int, Any]) -> None:
    with GreetingServer((HOST, 0), Greeter) as server:
        channel = socketserver.attach(server, socket_map)
        channel.detach()
        channel.detach()
        socketserver.detach(server)
        assert not socket_map and not socketserver.is_attached(server)


# -- the names are the subclass's ------------------------------------------------------


class OwnNames(GreetingServer):
    """A subclass using, for its own ends, names this package once reserved."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attached: List[str] = []  # its own list
        self.poller = select.poll() if hasattr(select, "poll") else object()  # its own object
        self.detached = 0

    def attach(self, what: str) -> None:  # its own meaning
        self.attached.append(what)

    def detach(self) -> None:
        self.detached += 1


def test_a_subclass_owns_attach_attached_detach_and_poller(
    socket_map: Dict[int, Any], poller_name: str
) -> None:
    server = OwnNames((HOST, 0), Greeter, poller=poller_name)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    try:
        with socket.create_connection(server.server_address, timeout=10) as client:
            assert client.recv(100) == b"welcome 0\n"
    finally:
        server.shutdown()
        thread.join()
    server.attach("a note")
    channel = socketserver.attach(server, socket_map)
    assert socketserver.is_attached(server) and channel.attached
    client_channel = Client(server.server_address, socket_map)
    run_until(socket_map, lambda: client_channel.finished, poller=poller_name, use_poll=True)
    assert client_channel.received == b"welcome 1\n"
    server.server_close()
    assert not socketserver.is_attached(server) and server.fileno() not in socket_map
    assert server.detached == 0 and server.attached == ["a note"]  # never called by us
