"""The benchmark servers written against ``asyncore``/``asynchat``.

The same source serves both contenders: :mod:`benchmarks.server_main`
imports this module after deciding what ``import asyncore`` gives, either
CPython 3.11's standard library modules or ours (through
``asyncio_compat.install()``, the way legacy code adopts the package).
"""

from __future__ import annotations

import asynchat
import asyncore
import socket
import zlib
from typing import Any, Callable, List, Optional, Tuple

from .protocol import ACCEPT_BATCH, BACKLOG, READ_SIZE, LineSink


class EchoHandler(asyncore.dispatcher_with_send):
    """Sends back whatever it reads (the asyncore documentation's echo handler)."""

    def handle_read(self) -> None:
        data = self.recv(READ_SIZE)
        if data:
            self.send(data)


class ChatHandler(asynchat.async_chat):
    """A line protocol on async_chat; each line goes to a :class:`LineSink`."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.set_terminator(b"\n")
        self.parts: List[bytes] = []
        self.sink = LineSink()

    def collect_incoming_data(self, data: bytes) -> None:
        self.parts.append(data)

    def found_terminator(self) -> None:
        line = b"".join(self.parts)
        self.parts = []
        reply = self.sink.on_line(line)
        if reply is not None:
            self.push(reply)


class BulkHandler(asynchat.async_chat):
    """Large CRLF-terminated messages, collected in a list and joined at the end.

    Each message is answered at once with its length (``<n>\\r\\n``); the
    message ``CRC`` is answered with the CRC-32 of the message before it, so
    that the client checks every byte outside its timed window.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.set_terminator(b"\r\n")
        self.parts: List[bytes] = []
        self.last = b""

    def collect_incoming_data(self, data: bytes) -> None:
        self.parts.append(data)

    def found_terminator(self) -> None:
        message = b"".join(self.parts)
        self.parts = []
        if message == b"CRC":
            self.push(b"%d\r\n" % zlib.crc32(self.last))
            return
        self.last = message
        self.push(b"%d\r\n" % len(message))


class Listener(asyncore.dispatcher):
    """Accepts connections and gives each to ``handler``.

    Listens on a new loopback socket, or adopts ``sock`` (a listening socket
    handed over by ``asyncio_compat.workers``).
    """

    def __init__(self, handler: Callable[[socket.socket], Any], sock: Optional[socket.socket] = None) -> None:
        super().__init__()
        self.handler = handler
        if sock is None:
            self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
            self.set_reuse_addr()
            self.bind(("127.0.0.1", 0))
        else:
            self.set_socket(sock)
        self.listen(BACKLOG)

    def handle_accept(self) -> None:
        # several per event: one accept per loop pass would make opening
        # 10,000 connections quadratic for a loop whose passes are O(n)
        for _ in range(ACCEPT_BATCH):
            pair = self.accept()
            if pair is None:
                return
            self.handler(pair[0])

    def port(self) -> int:
        sock = self.socket
        if sock is None:
            raise RuntimeError("the listener has no socket")
        return int(sock.getsockname()[1])


HANDLERS = {"echo": EchoHandler, "lines": ChatHandler, "bulk": BulkHandler}


def serve(kind: str, announce: Callable[[str], None], loop_kwargs: Any) -> None:
    """Listen, announce ``READY <port>``, and run ``asyncore.loop()`` for ever.

    Raises KeyError for an unknown ``kind``.
    """
    server = Listener(HANDLERS[kind])
    announce(f"READY {server.port()}")
    asyncore.loop(**loop_kwargs)


class IdleChannel(asyncore.dispatcher_with_send):
    """An idle connected channel: readable, not writable."""

    def handle_read(self) -> None:
        self.recv(READ_SIZE)


def loop_latency(dispatchers: int, duration: float, loop_kwargs: Any) -> Tuple[float, int]:
    """Mean seconds per ``loop(0, count=1)`` call beside ``dispatchers`` idle ones.

    Returns ``(seconds_per_call, calls)``: the median over batches of calls,
    run for about ``duration`` seconds after one settling call.
    """
    pairs = [socket.socketpair() for _ in range(dispatchers // 2)]
    channels = [IdleChannel(sock) for pair in pairs for sock in pair]
    call = _one_pass(loop_kwargs)
    call()
    try:
        return _timed_batches(call, duration)
    finally:
        for channel in channels:
            channel.close()


def _one_pass(loop_kwargs: Any) -> Callable[[], None]:
    kwargs = dict(loop_kwargs, timeout=0, count=1)

    def call() -> None:
        asyncore.loop(**kwargs)

    return call


def _timed_batches(call: Callable[[], None], duration: float) -> Tuple[float, int]:
    import time

    means: List[float] = []
    calls = 0
    batch = 50
    end = time.perf_counter() + duration
    while time.perf_counter() < end or len(means) < 3:
        start = time.perf_counter()
        for _ in range(batch):
            call()
        means.append((time.perf_counter() - start) / batch)
        calls += batch
    means.sort()
    return means[len(means) // 2], calls
