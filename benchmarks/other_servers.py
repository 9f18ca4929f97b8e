"""The reference servers: a minimal selectors loop (the floor) and asyncio.

The selectors servers are the least a Python event loop can do per event:
one ``select()`` call, one ``recv()``, one ``send()``.  They set the floor
the asyncore implementations are measured against.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
from typing import Any, Callable, List, Optional

from .protocol import ACCEPT_BATCH, BACKLOG, READ_SIZE, LineSink

Announce = Callable[[str], None]


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


class _Connection:
    """One client of a selectors server: its socket and unsent output."""

    __slots__ = ("sock", "pending", "splitter")

    def __init__(self, sock: socket.socket, splitter: Optional[LineSplitter]) -> None:
        self.sock = sock
        self.pending = b""  # output the socket did not take yet
        self.splitter = splitter


class LineSplitter:
    """A linear line splitter: every byte is looked at once and copied once.

    Lines longer than one read are kept as a list of pieces, joined once.
    """

    __slots__ = ("pieces", "sink")

    def __init__(self) -> None:
        self.pieces: List[bytes] = []
        self.sink = LineSink()

    def feed(self, data: bytes) -> List[bytes]:
        """The replies to the lines that ``data`` completes."""
        replies: List[bytes] = []
        find = data.find
        start = 0
        end = find(b"\n")
        if end >= 0 and self.pieces:
            self.pieces.append(data[:end])
            line = b"".join(self.pieces)
            self.pieces = []
            self._handle(line, replies)
            start = end + 1
            end = find(b"\n", start)
        while end >= 0:
            self._handle(data[start:end], replies)
            start = end + 1
            end = find(b"\n", start)
        if start < len(data):
            self.pieces.append(data[start:])
        return replies

    def _handle(self, line: bytes, replies: List[bytes]) -> None:
        reply = self.sink.on_line(line)
        if reply is not None:
            replies.append(reply)


class SelectorsServer:
    """The floor: echo (``lines=False``) or line protocol on a bare selector."""

    def __init__(self, lines: bool) -> None:
        self.lines = lines
        self.selector = selectors.DefaultSelector()
        self.listener = _listening_socket()
        self.selector.register(self.listener, selectors.EVENT_READ, None)

    def run(self) -> None:
        select = self.selector.select
        while True:
            for key, mask in select():
                conn = key.data
                if conn is None:
                    self._accept()
                elif mask & selectors.EVENT_READ:
                    self._read(conn)
                else:
                    self._flush(conn)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            splitter = LineSplitter() if self.lines else None
            self.selector.register(sock, selectors.EVENT_READ, _Connection(sock, splitter))

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except ConnectionError:
            data = b""
        if not data:
            self._close(conn)
        elif conn.splitter is None:
            self._send(conn, data)
        else:
            for reply in conn.splitter.feed(data):
                self._send(conn, reply)

    def _send(self, conn: _Connection, data: bytes) -> None:
        if conn.pending:
            conn.pending += data
            return
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(conn)  # includes a socket closed by an earlier reply
            return
        if sent < len(data):
            conn.pending = data[sent:]
            self.selector.modify(conn.sock, selectors.EVENT_WRITE, conn)

    def _flush(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.pending[:READ_SIZE])
        except BlockingIOError:
            return
        except ConnectionError:
            self._close(conn)
            return
        conn.pending = conn.pending[sent:]
        if not conn.pending:
            self.selector.modify(conn.sock, selectors.EVENT_READ, conn)

    def _close(self, conn: _Connection) -> None:
        if conn.sock.fileno() >= 0:
            self.selector.unregister(conn.sock)
            conn.sock.close()


def serve_selectors(kind: str, announce: Announce) -> None:
    """Run the floor server for ``kind`` (``echo`` or ``lines``) for ever."""
    server = SelectorsServer(lines=kind == "lines")
    announce(f"READY {server.listener.getsockname()[1]}")
    server.run()


class EchoProtocol(asyncio.Protocol):
    """asyncio's echo: write back every chunk received."""

    transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def serve_asyncio(kind: str, announce: Announce) -> None:
    """Run an asyncio Protocol echo server for ever (``kind`` must be ``echo``).

    Raises ValueError for another kind: asyncio has no async_chat.
    """
    if kind != "echo":
        raise ValueError(f"no asyncio server for {kind!r}")
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(EchoProtocol, "127.0.0.1", 0, backlog=BACKLOG)
    )
    announce(f"READY {server.sockets[0].getsockname()[1]}")
    loop.run_forever()
