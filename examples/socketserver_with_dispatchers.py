"""One ``asyncore.loop()`` serving socketserver servers and asyncore dispatchers together.

Run it from a checkout::

    python3 examples/socketserver_with_dispatchers.py

One socket map holds:

* a synchronous ``TCPServer`` (a "quote of the day" service: it writes one
  line and hangs up), put in the map by ``socketserver.attach(server, map)``;
* a ``ThreadingTCPServer`` echo service, attached the same way: its
  handlers read from their clients, so they must not run in the loop's
  thread, and the mix-in hands each one to a thread;
* an asyncore echo server (a plain ``dispatcher``) and its handlers;
* asyncore client dispatchers talking to all three.

Everything is served by one ``asyncore.loop()`` call.  When the clients are
done the servers are detached (``detach()``, which leaves their sockets
open; ``server_close()`` then closes them) and the asyncore server closes:
the map is empty and ``loop()`` returns by itself.  Exit status 0 when every
client got what it expected.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import asyncore, socketserver

QUOTE = b"Simple is better than complex.\n"
ECHO_LINE = b"echo me, threads\n"
DISPATCHER_LINE = b"echo me, dispatchers\n"

Channels = Dict[int, Any]


class QuoteHandler(socketserver.StreamRequestHandler):
    """Writes the quote and returns: never waits for the client, so it is safe in the loop."""

    def handle(self) -> None:
        print("quote server: handling a request in the loop's thread")
        self.wfile.write(QUOTE)


class ThreadedEcho(socketserver.StreamRequestHandler):
    """Reads a line, which needs the loop free to send it: runs in its own thread."""

    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


class EchoHandler(asyncore.dispatcher_with_send):
    def handle_read(self) -> None:
        data = self.recv(4096)
        if data:
            self.send(data)

    def handle_close(self) -> None:
        self.close()


class DispatcherEchoServer(asyncore.dispatcher):
    """The classic asyncore echo server, listening beside the socketserver ones."""

    def __init__(self, channels: Channels) -> None:
        super().__init__(map=channels)
        self.channels = channels
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(5)
        self.address: Tuple[str, int] = self.socket.getsockname()

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        EchoHandler(sock, map=self.channels)


class Client(asyncore.dispatcher_with_send):
    """Connects, sends ``payload``, collects the reply up to the server's hang-up or a newline."""

    def __init__(
        self, name: str, channels: Channels, address: Tuple[str, int], payload: bytes,
        on_done: Callable[[], None],
    ) -> None:
        super().__init__(map=channels)
        self.name = name
        self.payload = payload
        self.on_done = on_done
        self.reply = b""
        self.done = False
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)

    def handle_connect(self) -> None:
        if self.payload:
            self.send(self.payload)

    def handle_read(self) -> None:
        self.reply += self.recv(4096)
        if self.reply.endswith(b"\n"):
            self.finish()

    def handle_close(self) -> None:
        self.finish()

    def finish(self) -> None:
        self.close()
        if not self.done:
            self.done = True
            print(f"{self.name}: got {self.reply!r}")
            self.on_done()


class Coordinator:
    """Ends the demo from inside the loop once every client is done."""

    def __init__(self, servers: List[socketserver.BaseServer], echo: DispatcherEchoServer) -> None:
        self.servers = servers
        self.echo = echo
        self.clients: List[Client] = []

    def client_done(self) -> None:
        if all(client.done for client in self.clients):
            for server in self.servers:
                socketserver.detach(server)
            self.echo.close()
            print("all clients done: servers detached, asyncore server closed")


def run() -> List[Client]:
    channels: Channels = asyncio_compat.SocketMap()
    quotes = socketserver.TCPServer(("127.0.0.1", 0), QuoteHandler)
    echoes = socketserver.ThreadingTCPServer(("127.0.0.1", 0), ThreadedEcho)
    with quotes, echoes:  # server_close() on the way out
        socketserver.attach(quotes, channels)
        socketserver.attach(echoes, channels)
        echo = DispatcherEchoServer(channels)
        coordinator = Coordinator([quotes, echoes], echo)
        done = coordinator.client_done
        coordinator.clients = [
            Client("quote client", channels, quotes.server_address, b"", done),
            Client("threaded echo client", channels, echoes.server_address, ECHO_LINE, done),
            Client("dispatcher echo client", channels, echo.address, DISPATCHER_LINE, done),
        ]
        print(f"one map, {len(channels)} channels: 2 attached servers, 1 asyncore server, 3 clients")
        asyncore.loop(timeout=1.0, map=channels)  # returns once the map is empty
        print(f"loop returned; channels left in the map: {len(channels)}")
    return coordinator.clients


def main() -> int:
    print(f"poller: {asyncio_compat.get_default_poller().name}")
    clients = run()
    expected = [QUOTE, ECHO_LINE, DISPATCHER_LINE]
    if [client.reply for client in clients] != expected:
        print("some client did not get what it expected")
        return 1
    print("every client got what it expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
