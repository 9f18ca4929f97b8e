"""Dispatchers shared by several test files."""

from __future__ import annotations

from asyncio_compat import asyncore


class EchoHandler(asyncore.dispatcher_with_send):
    """Sends back whatever it reads; closes quietly when the peer does."""

    def handle_read(self) -> None:
        data = self.recv(65536)
        if data:
            self.send(data)

    def handle_close(self) -> None:
        self.close()
