"""asyncio_compat.shutdown(): the graceful stop of a map."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Any, List

import pytest
from helpers import run_example

import asyncio_compat
from asyncio_compat import asynchat, asyncore
from asyncio_compat.timers import call_later

pytestmark = pytest.mark.timeout(30)

PAYLOAD = b"x" * 16_000_000  # far more than the loopback socket buffers hold


class Listener(asyncore.dispatcher):
    def __init__(self, socket_map: Any, handler: Any) -> None:
        super().__init__(map=socket_map)
        self.socket_map = socket_map
        self.handler = handler
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(8)
        self.accepted: List[Any] = []

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        self.accepted.append(self.handler(sock, map=self.socket_map))


class Sender(asyncore.dispatcher_with_send):
    def handle_close(self) -> None:
        self.close()


class ChatSender(asynchat.async_chat):
    def collect_incoming_data(self, data: bytes) -> None:
        pass

    def found_terminator(self) -> None:
        pass


def _connect(listener: Listener, count: int) -> List[socket.socket]:
    port = listener.socket.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    while len(listener.accepted) < count:
        asyncore.loop(timeout=1, count=1, map=listener.socket_map)
    return clients


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.mark.parametrize("handler", [Sender, ChatSender])
def test_slow_readers_get_everything_then_eof(
    default_poller: str, socket_map: asyncore.SocketMap, handler: Any
) -> None:
    listener = Listener(socket_map, handler)
    clients = _connect(listener, 2)
    for channel in listener.accepted:
        if isinstance(channel, asynchat.async_chat):
            channel.push(PAYLOAD)
        else:
            channel.send(PAYLOAD)
    asyncio_compat.shutdown(socket_map, grace=20)
    assert listener.socket is None or listener not in socket_map.values()  # closed at once
    received: List[bytes] = []

    def read_slowly() -> None:  # the clients read only while the loop runs
        for client in clients:
            client.setblocking(False)
            try:
                received.append(client.recv(65536))
            except BlockingIOError:
                pass
        if socket_map:
            call_later(0.001, read_slowly, map=socket_map)

    call_later(0, read_slowly, map=socket_map)
    started = time.monotonic()
    asyncore.loop(timeout=5, use_poll=True, map=socket_map)
    assert time.monotonic() - started < 15  # drained, not cut at the deadline
    assert not socket_map
    total = sum(len(chunk) for chunk in received)
    for client in clients:
        client.setblocking(True)
        total += len(_read_all(client))  # the rest, then EOF
        client.close()
    assert total == 2 * len(PAYLOAD)


def test_readers_that_never_read_are_closed_at_the_deadline(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    listener = Listener(socket_map, Sender)
    clients = _connect(listener, 2)
    for channel in listener.accepted:
        channel.send(PAYLOAD)
    started = time.monotonic()
    asyncio_compat.shutdown(socket_map, grace=0.3)
    asyncore.loop(timeout=5, use_poll=True, map=socket_map)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3
    assert not socket_map
    for client in clients:
        client.close()


def test_connections_are_refused_at_once_and_idle_ones_wait_for_grace(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    listener = Listener(socket_map, asyncore.dispatcher)
    port = listener.socket.getsockname()[1]
    clients = _connect(listener, 1)
    asyncio_compat.shutdown(socket_map, grace=0.2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert len(socket_map) == 1  # the plain dispatcher waits for the deadline
    asyncore.loop(timeout=5, map=socket_map)
    assert not socket_map
    clients[0].close()


def test_shutdown_timers_do_not_keep_the_loop_running(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    listener = Listener(socket_map, Sender)
    clients = _connect(listener, 1)
    asyncio_compat.shutdown(socket_map, grace=20)
    started = time.monotonic()
    asyncore.loop(timeout=5, map=socket_map)  # the empty Sender closes, then the loop returns
    assert time.monotonic() - started < 2
    assert not socket_map
    clients[0].close()


def test_second_call_brings_the_deadline_forward(socket_map: asyncore.SocketMap) -> None:
    listener = Listener(socket_map, asyncore.dispatcher)
    clients = _connect(listener, 1)
    asyncio_compat.shutdown(socket_map, grace=20)
    asyncio_compat.shutdown(socket_map, grace=0)
    assert not socket_map
    clients[0].close()


def test_attached_socketserver_takes_part(socket_map: asyncore.SocketMap) -> None:
    from asyncio_compat import socketserver

    server = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    socketserver.attach(server, socket_map)
    asyncio_compat.shutdown(socket_map, grace=1)
    assert not socketserver.is_attached(server)
    assert not socket_map
    server.server_close()  # the server's own close still works


@pytest.mark.parametrize(
    "grace, error",
    [
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("5", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_grace_is_refused_naming_it(grace: Any, error: type, socket_map: Any) -> None:
    # the same check as every other duration (_validation.seconds): a bool is no duration
    with pytest.raises(error, match="^grace must"):  # type: ignore[call-overload]
        asyncio_compat.shutdown(socket_map, grace=grace)


def test_graceful_shutdown_example(poller_name: str, tmp_path: Path) -> None:
    out = run_example("graceful_shutdown", poller_name, tmp_path)
    assert "SIGTERM: shutting down" in out
    assert "client received 4000000 of 4000000 bytes, then EOF" in out


class _BigReplyServer(asyncore.dispatcher):
    """A worker's server: sends PAYLOAD to each connection, then waits."""

    def __init__(self, listener: socket.socket) -> None:
        super().__init__()
        self.set_socket(listener)
        self.listen(8)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        Sender(sock).send(PAYLOAD)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="workers need fork")
@pytest.mark.timeout(60, method="signal")
def test_a_stopping_worker_finishes_what_it_queued(default_poller: str) -> None:
    from asyncio_compat.workers import WorkerPool

    with WorkerPool(_BigReplyServer, workers=1, shutdown_grace=20) as pool:
        assert pool.address is not None
        with socket.create_connection(pool.address[:2], timeout=10) as client:
            first = client.recv(65536)
            assert first
            pool.terminate()  # SIGTERM: the worker stops gracefully
            rest = _read_all(client)
        codes = pool.stop(grace=30)
    assert len(first) + len(rest) == len(PAYLOAD)
    assert list(codes.values()) == [0]


def test_shutdown_under_the_asyncio_bridge(socket_map: asyncore.SocketMap) -> None:
    import asyncio

    from asyncio_compat import _loop, asyncio_bridge

    listener = Listener(socket_map, Sender)
    clients = _connect(listener, 1)
    listener.accepted[0].send(PAYLOAD)
    received: List[int] = []

    async def main() -> None:
        event_loop = asyncio.get_running_loop()
        eof = event_loop.create_future()
        reader = clients[0]
        reader.setblocking(False)

        def read() -> None:
            try:
                data = reader.recv(1 << 20)
            except BlockingIOError:
                return
            received.append(len(data))
            if not data:
                event_loop.remove_reader(reader.fileno())
                eof.set_result(None)

        event_loop.add_reader(reader.fileno(), read)
        asyncio_compat.shutdown(socket_map, grace=20)
        await asyncio.wait_for(asyncio_bridge.run_map(socket_map), 15)
        await asyncio.wait_for(eof, 15)  # the rest of the data, then EOF

    asyncio.run(main())
    assert sum(received) == len(PAYLOAD)
    assert _loop.existing_loop(socket_map) is None  # nothing kept for the shutdown's timers
    clients[0].close()


# -- adversarial: later calls, signals, re-entrancy ------------------------------------


def test_a_later_call_never_moves_the_deadline_later(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    # promise: a second call only brings the deadline forward (never later)
    listener = Listener(socket_map, asyncore.dispatcher)
    clients = _connect(listener, 1)
    started = time.monotonic()
    asyncio_compat.shutdown(socket_map, grace=0.3)
    asyncio_compat.shutdown(socket_map, grace=60)
    asyncore.loop(timeout=5, map=socket_map)
    assert time.monotonic() - started < 3
    assert not socket_map
    clients[0].close()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_a_second_signal_closes_everything_at_once(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    # promise (stopping.rst): a second shutdown(grace=0), for a second signal, closes everything at once
    listener = Listener(socket_map, ChatSender)
    clients = _connect(listener, 1)
    listener.accepted[0].push(PAYLOAD)  # the client never reads: close_when_done() would wait
    graces = [20.0, 0.0]

    def stop() -> None:
        asyncio_compat.shutdown(socket_map, grace=graces.pop(0))

    asyncio_compat.add_signal_handler(signal.SIGUSR1, stop, map=socket_map)
    try:
        signal.raise_signal(signal.SIGUSR1)
        asyncore.loop(timeout=0.05, map=socket_map, count=5)
        assert len(socket_map) == 1  # the chat channel drains until the deadline
        started = time.monotonic()
        signal.raise_signal(signal.SIGUSR1)
        asyncore.loop(timeout=5, map=socket_map)
    finally:
        asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
    assert time.monotonic() - started < 2
    assert not socket_map and graces == []
    clients[0].close()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.timeout(30, method="thread")  # this test owns SIGALRM
def test_shutdown_in_a_plain_signal_handler_during_the_wait(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    # promise: safe to call from a handler; the stop never makes loop() raise and
    # loop() returns as soon as the map is empty (what a stopping worker's
    # second signal does: shutdown(grace=0) inside the signal handler itself)
    listener = Listener(socket_map, Sender)
    clients = _connect(listener, 2)
    listener.accepted[0].send(PAYLOAD)
    previous = signal.signal(signal.SIGALRM, lambda *_: asyncio_compat.shutdown(socket_map, grace=0))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        started = time.monotonic()
        asyncore.loop(timeout=10, use_poll=True, map=socket_map)
        elapsed = time.monotonic() - started
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert elapsed < 3
    assert not socket_map
    for client in clients:
        client.close()


class ClosesOthers(asyncore.dispatcher):
    """Its close() closes the other channels of its map too (re-entrant closes)."""

    def close(self) -> None:
        super().close()
        for channel in list(self._map.values()):
            channel.close()


def test_a_close_that_closes_other_channels_during_the_stop(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    # promise: whatever is still in the map at the deadline is closed
    listener = Listener(socket_map, ClosesOthers)
    clients = _connect(listener, 3)
    asyncio_compat.shutdown(socket_map, grace=0.1)
    asyncore.loop(timeout=5, map=socket_map)
    assert not socket_map
    for client in clients:
        client.close()
