"""serve_forever(), shutdown() and handle_request() on every poller backend.

Which backend a server waits on is checked with a subclass of that backend
that counts its instances and calls: the server must build its poller from
exactly the class it was given (by keyword, class attribute or process
default).
"""

from __future__ import annotations

import os
import select
import socket
import threading
from typing import Any, Callable, Iterator, List

import pytest
from helpers import LineEcho, read_line, sweep_every

import asyncio_compat
import pollers
from asyncio_compat import socketserver

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"
LINE = b"ping\n"


def counting(name: str) -> Any:
    """A subclass of backend ``name`` that counts instances and poll() calls."""
    base = pollers.get(name)

    class Counting(base):  # type: ignore[valid-type,misc]
        made = 0
        polls = 0

        def __init__(self) -> None:
            super().__init__()
            type(self).made += 1

        def poll(self, timeout: Any = None) -> Any:
            type(self).polls += 1
            return super().poll(timeout)

    return Counting


def echo(address: Any) -> bytes:
    with socket.create_connection(address, timeout=10) as client:
        client.sendall(LINE)
        return read_line(client)


class Serving:
    """serve_forever() in a thread; stop() shuts it down and joins."""

    def __init__(self, server: socketserver.BaseServer, poll_interval: Any = 0.5) -> None:
        self.server = server
        self.errors: List[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(poll_interval,))
        self.thread.start()

    def _run(self, poll_interval: Any) -> None:
        try:
            self.server.serve_forever(poll_interval)
        except BaseException as exc:  # handed to the test thread
            self.errors.append(exc)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


@pytest.fixture
def serve() -> Iterator[Callable[..., Serving]]:
    started: List[Serving] = []

    def start(server: socketserver.BaseServer, poll_interval: Any = 0.5) -> Serving:
        started.append(Serving(server, poll_interval))
        return started[-1]

    yield start
    for serving in started:
        if serving.thread.is_alive():
            serving.stop()


# -- the backend a server waits on ----------------------------------------------


def test_keyword_picks_the_backend(poller_name: str, serve: Callable[..., Serving]) -> None:
    backend = counting(poller_name)
    with socketserver.TCPServer((HOST, 0), LineEcho, poller=backend) as server:
        serving = serve(server)
        assert echo(server.server_address) == LINE
        serving.stop()
        assert serving.errors == []
    assert backend.made == 1 and backend.polls >= 1


def test_keyword_accepts_a_backend_name(poller_name: str, serve: Callable[..., Serving]) -> None:
    with socketserver.ThreadingTCPServer((HOST, 0), LineEcho, poller=poller_name) as server:
        assert socketserver.get_poller(server) is pollers.get(poller_name)
        serving = serve(server)
        assert echo(server.server_address) == LINE
        assert echo(server.server_address) == LINE
        serving.stop()
        assert serving.errors == []


def test_set_poller_picks_the_backend_of_the_next_wait(poller_name: str) -> None:
    backend = counting(poller_name)
    server = socketserver.TCPServer((HOST, 0), LineEcho)
    socketserver.set_poller(server, backend)
    assert socketserver.get_poller(server) is backend
    with server, socket.create_connection(server.server_address, timeout=10) as client:
        client.sendall(LINE)
        server.handle_request()
        assert client.recv(100) == LINE
        socketserver.set_poller(server, None)
        assert socketserver.get_poller(server) is None
    assert backend.made == 1


def test_a_subclass_attribute_named_poller_is_its_own(poller_name: str) -> None:
    """``poller`` is not ours: a subclass may keep anything under that name."""
    backend = counting(poller_name)

    class Server(socketserver.TCPServer):
        poller = "not a backend name"

    server = Server((HOST, 0), LineEcho, poller=backend)
    with server, socket.create_connection(server.server_address, timeout=10) as client:
        server.poller = select.poll() if hasattr(select, "poll") else object()  # type: ignore[assignment]
        client.sendall(LINE)
        server.handle_request()
        assert client.recv(100) == LINE
    assert backend.made == 1


def test_process_default_is_read_at_each_call(poller_name: str) -> None:
    backend = counting(poller_name)
    with socketserver.UDPServer((HOST, 0), socketserver.DatagramRequestHandler) as server:
        server.timeout = 0.001
        asyncio_compat.set_default_poller(backend)  # after construction: still used
        try:
            server.handle_request()
        finally:
            asyncio_compat.set_default_poller(None)
        server.handle_request()  # back on the best backend
    assert backend.made == 1


def test_default_poller_fixture_serves(default_poller: str, serve: Callable[..., Serving]) -> None:
    with socketserver.TCPServer((HOST, 0), LineEcho) as server:
        assert socketserver.get_poller(server) is None
        serving = serve(server, 0.01)
        assert echo(server.server_address) == LINE
        serving.stop()
        assert serving.errors == []


# -- bad input ------------------------------------------------------------------------


def test_unknown_backend_name_is_refused_before_any_socket_exists() -> None:
    with pytest.raises(pollers.UnknownPollerError, match="'nosuch'.*available"):
        socketserver.TCPServer((HOST, 0), LineEcho, poller="nosuch")


def test_set_poller_refuses_bad_backends_and_foreign_servers() -> None:
    with socketserver.UDPServer((HOST, 0), socketserver.DatagramRequestHandler) as server:
        with pytest.raises(pollers.UnknownPollerError, match="epol"):
            socketserver.set_poller(server, "epol")
        with pytest.raises(TypeError, match="poller"):
            socketserver.set_poller(server, 42)  # type: ignore[arg-type]
        assert socketserver.get_poller(server) is None  # unchanged
    with pytest.raises(TypeError, match="not a server of asyncio_compat.socketserver"):
        socketserver.get_poller(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [42, object, socket.socket])
def test_backend_of_the_wrong_type_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="poller"):
        socketserver.TCPServer((HOST, 0), LineEcho, poller=bad)


def test_bad_environment_backend_fails_serve_forever_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(asyncio_compat.ENV_VAR, "nosuch")
    with socketserver.TCPServer((HOST, 0), LineEcho) as server:
        with pytest.raises(pollers.UnknownPollerError, match="nosuch"):
            server.serve_forever()
        server.shutdown()  # must not wait for a loop that never ran


# -- shutdown ---------------------------------------------------------------------------


def test_shutdown_stops_a_loop_that_never_times_out(poller_name: str, serve: Callable[..., Serving]) -> None:
    """poll_interval=None waits without a timeout: only the wake-up can end it."""
    actions: List[int] = []

    class Server(socketserver.TCPServer):
        def service_actions(self) -> None:
            actions.append(1)

    with Server((HOST, 0), LineEcho, poller=poller_name) as server:
        serving = serve(server, None)
        assert echo(server.server_address) == LINE
        serving.stop()
        assert not serving.thread.is_alive() and serving.errors == []
    assert actions  # after the request


def test_shutdown_returns_only_once_the_loop_has_ended(serve: Callable[..., Serving]) -> None:
    order: List[str] = []

    class Server(socketserver.TCPServer):
        def service_actions(self) -> None:
            order.append("serving")

    with Server((HOST, 0), LineEcho) as server:
        serving = serve(server, 0.001)
        assert echo(server.server_address) == LINE
        server.shutdown()
        order.append("shutdown returned")
        count = len(order)
        serving.thread.join()
        assert order[-1] == "shutdown returned" and len(order) == count


def test_shutdown_before_serve_forever_starts() -> None:
    with socketserver.TCPServer((HOST, 0), LineEcho) as server:
        stopper = threading.Thread(target=server.shutdown)
        stopper.start()
        # shutdown() is already waiting, or about to: serve_forever() must
        # see the request and return without serving
        server.serve_forever(poll_interval=None)
        stopper.join()


def test_shutdown_before_serve_forever_blocks_until_a_later_one_returns() -> None:
    """As in CPython 3.11 and 3.13 (the docstring once said it returned at once)."""
    with socketserver.TCPServer((HOST, 0), LineEcho) as server:
        stopper = threading.Thread(target=server.shutdown)
        stopper.start()
        stopper.join(timeout=0.5)
        assert stopper.is_alive()  # no serve_forever() has run yet: still waiting
        server.serve_forever(poll_interval=None)  # sees the request, returns without serving
        stopper.join(timeout=10)
        assert not stopper.is_alive()


def test_serve_forever_can_run_again_after_shutdown(poller_name: str, serve: Callable[..., Serving]) -> None:
    with socketserver.TCPServer((HOST, 0), LineEcho, poller=poller_name) as server:
        for _ in range(2):
            serving = serve(server, None)
            assert echo(server.server_address) == LINE
            serving.stop()
            assert serving.errors == []


def test_many_servers_shut_down_right_after_starting(poller_name: str, serve: Callable[..., Serving]) -> None:
    servers = [socketserver.TCPServer((HOST, 0), LineEcho, poller=poller_name) for _ in range(10)]
    try:
        runs = [serve(server, None) for server in servers]
        for run in runs:
            run.stop()
            assert run.errors == []
    finally:
        for server in servers:
            server.server_close()


def test_legacy_flag_stops_the_loop_from_a_handler(serve: Callable[..., Serving]) -> None:
    """Code written for CPython sets BaseServer's name-mangled flag from inside a
    handler (where shutdown() would wait for itself), through a server subclass."""

    class Server(socketserver.TCPServer):
        def stop_serving(self) -> None:
            self._BaseServer__shutdown_request = True  # 3.11's private name, as such code spells it

    class Stopper(LineEcho):
        def handle(self) -> None:
            super().handle()
            self.server.stop_serving()  # type: ignore[attr-defined]

    with Server((HOST, 0), Stopper) as server:
        serving = serve(server, 0.01)
        assert echo(server.server_address) == LINE
        serving.thread.join(20)
        assert not serving.thread.is_alive()
        server.shutdown()  # returns at once: the loop is over


def test_service_actions_run_while_idle(serve: Callable[..., Serving]) -> None:
    ticks = threading.Semaphore(0)

    class Server(socketserver.TCPServer):
        def service_actions(self) -> None:
            ticks.release()

    with Server((HOST, 0), LineEcho) as server:
        serving = serve(server, 0.001)
        for _ in range(3):  # no request at all: only the poll timeout wakes it
            assert ticks.acquire(timeout=10)
        serving.stop()


def test_closing_the_socket_under_a_running_loop(
    poller_name: str, serve: Callable[..., Serving], monkeypatch: pytest.MonkeyPatch
) -> None:
    """server_close() from another thread: the loop keeps calm until shutdown()."""
    sweep_every(0.01, poller_name, monkeypatch)
    ticks = threading.Semaphore(0)

    class Server(socketserver.TCPServer):
        def service_actions(self) -> None:
            ticks.release()

    server = Server((HOST, 0), LineEcho, poller=poller_name)
    serving = serve(server, 0.01)
    assert echo(server.server_address) == LINE
    server.server_close()
    for _ in range(3):
        assert ticks.acquire(timeout=10)
    serving.stop()
    assert serving.errors == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to list descriptors")
def test_wake_up_descriptors_live_only_while_serving(poller_name: str, serve: Callable[..., Serving]) -> None:
    ticks = threading.Semaphore(0)

    class Server(socketserver.UDPServer):
        def service_actions(self) -> None:
            ticks.release()

    def open_fds() -> List[str]:
        return sorted(os.listdir("/proc/self/fd"))

    with Server((HOST, 0), socketserver.DatagramRequestHandler, poller=poller_name) as server:
        before = open_fds()
        serving = serve(server, 0.01)
        assert ticks.acquire(timeout=10)
        during = open_fds()
        serving.stop()
        after = open_fds()
    assert len(during) >= len(before) + 2  # the wake-up pair, and the poller's own fd if any
    assert after == before
