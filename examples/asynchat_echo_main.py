"""An asynchat echo protocol with two framing modes, server and client in one process.

Run it from a checkout::

    python3 examples/asynchat_echo_main.py

The protocol: the client sends a command line ``ECHO <length>\\n``, then
exactly ``<length>`` bytes of text; the server sends those bytes back.

:class:`EchoHandler`, the server side of one connection, switches its
terminator as it goes:

* command mode: the terminator is the bytes ``b"\\n"``, so
  ``found_terminator()`` runs at the end of the command line;
* data mode: the terminator is the int ``<length>``, so
  ``found_terminator()`` runs once that many bytes have arrived, whatever
  they contain (newlines included); then it echoes them and goes back to
  command mode.

:class:`EchoClient` pushes the command with ``push()`` and the text through a
producer (a ``simple_producer`` that logs its ``more()`` calls), and reads
the reply with an int terminator: it knows how long the reply must be.

Both sides read at most ``READ_SIZE`` bytes per ``recv()`` and the producer
hands out ``PRODUCER_SIZE`` bytes per ``more()``, so that the log shows the
calls asynchat makes.  The server listens on 127.0.0.1 port 0, serves one
connection and stops listening; the loop returns when every channel has
closed.  Exit status 0 when the reply equals the text sent, 1 otherwise.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import asynchat, asyncore

MESSAGE = b"Framing with asynchat:\ncommand line first,\nthen raw bytes."
READ_SIZE = 16  # bytes per recv() on both sides (ac_in_buffer_size)
PRODUCER_SIZE = 24  # bytes per more() of the client's producer
COMMAND = b"ECHO"

Channels = Dict[int, asyncore.dispatcher]


def parse_command(line: bytes) -> int:
    """The length announced by a command line such as ``b"ECHO 42"``.

    Raises ValueError for another verb, a missing or non-decimal length, or
    extra words.
    """
    words = line.split()
    if len(words) != 2 or words[0] != COMMAND or not words[1].isdigit():
        raise ValueError(f"expected {COMMAND.decode()} <length>, got {line!r}")
    return int(words[1])


class EchoHandler(asynchat.async_chat):
    """The server side of one connection: command mode, then data mode, and back."""

    ac_in_buffer_size = READ_SIZE

    def __init__(self, sock: socket.socket, channels: Channels) -> None:
        super().__init__(sock, map=channels)
        self.logger = logging.getLogger("handler")
        self.pieces: List[bytes] = []  # what collect_incoming_data got so far
        self.mode = "command"
        self.set_terminator(b"\n")

    def collect_incoming_data(self, data: bytes) -> None:
        self.logger.info("collect_incoming_data(%r)", data)
        self.pieces.append(data)

    def found_terminator(self) -> None:
        received = b"".join(self.pieces)
        self.pieces.clear()
        self.logger.info("found_terminator() in %s mode", self.mode)
        if self.mode == "command":
            self.start_data(received)
        else:
            self.echo(received)

    def start_data(self, line: bytes) -> None:
        """Act on a command line: switch to data mode, or refuse and hang up."""
        try:
            length = parse_command(line)
        except ValueError as exc:
            self.logger.info("refusing: %s", exc)
            self.push(f"ERROR {exc}\n".encode())
            self.close_when_done()
            return
        if length == 0:
            # an int terminator of 0 means "no terminator at all": answer now
            self.echo(b"")
            return
        self.logger.info("set_terminator(%d): data mode", length)
        self.mode = "data"
        self.set_terminator(length)

    def echo(self, payload: bytes) -> None:
        self.logger.info("push(%d bytes) and set_terminator(b'\\n'): command mode", len(payload))
        self.push(payload)
        self.mode = "command"
        self.set_terminator(b"\n")

    def handle_close(self) -> None:
        self.logger.info("handle_close(): the client hung up")
        self.close()


class EchoServer(asyncore.dispatcher):
    """Listens on 127.0.0.1, port 0, and hands one connection to ``handler_class``."""

    def __init__(self, channels: Channels, handler_class: Type[EchoHandler] = EchoHandler) -> None:
        super().__init__(map=channels)
        self.channels = channels
        self.handler_class = handler_class
        self.logger = logging.getLogger("server")
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.address: Tuple[str, int] = self.socket.getsockname()
        self.listen(1)

    def handle_accepted(self, sock: socket.socket, addr: Tuple[str, int]) -> None:
        self.logger.info("accepted a connection; no longer listening")
        self.handler_class(sock, self.channels)
        self.close()


class LoggingProducer(asynchat.simple_producer):
    """A ``simple_producer`` that logs each piece it hands to the channel."""

    def more(self) -> bytes:
        data: bytes = super().more()
        logging.getLogger("producer").info("more() -> %r", data)
        return data


class EchoClient(asynchat.async_chat):
    """Sends ``ECHO <length>`` and the text, then reads exactly ``length`` bytes back."""

    ac_in_buffer_size = READ_SIZE

    def __init__(self, channels: Channels, address: Tuple[str, int], message: bytes) -> None:
        super().__init__(map=channels)
        self.logger = logging.getLogger("client")
        self.message = message
        self.pieces: List[bytes] = []
        self.reply: Optional[bytes] = None  # set when the whole reply has arrived
        self.set_terminator(len(message))
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)

    def handle_connect(self) -> None:
        command = b"%s %d\n" % (COMMAND, len(self.message))
        self.logger.info("handle_connect(): push(%r), then push_with_producer(...)", command)
        self.push(command)
        self.push_with_producer(LoggingProducer(self.message, buffer_size=PRODUCER_SIZE))

    def collect_incoming_data(self, data: bytes) -> None:
        self.logger.info("collect_incoming_data(%r)", data)
        self.pieces.append(data)

    def found_terminator(self) -> None:
        self.reply = b"".join(self.pieces)
        self.logger.info("found_terminator(): reply of %d bytes complete; close_when_done()", len(self.reply))
        self.close_when_done()

    def handle_close(self) -> None:
        self.logger.info("handle_close()")
        self.close()


def run(message: bytes, handler_class: Type[EchoHandler] = EchoHandler) -> Optional[bytes]:
    """Echo ``message`` through a server and a client in a fresh socket map.

    Returns the reply, or None when the connection closed before it was
    complete.  Raises ValueError for an empty message: an int terminator of
    0 would mean "no terminator" to the client.
    """
    if not message:
        raise ValueError("the message to echo must not be empty")
    channels: Channels = asyncio_compat.SocketMap()
    server = EchoServer(channels, handler_class)
    client = EchoClient(channels, server.address, message)
    asyncore.loop(timeout=1.0, map=channels)  # returns once every channel has closed
    return client.reply


def report(sent: bytes, reply: Optional[bytes]) -> int:
    """Log whether ``reply`` matches ``sent``; the exit status to use (0 or 1)."""
    logger = logging.getLogger("main")
    if reply == sent:
        logger.info("the reply matches the %d bytes sent", len(sent))
        return 0
    logger.error("MISMATCH: sent %r, got back %r", sent, reply)
    return 1


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)-9s %(message)s", stream=sys.stdout)
    logging.getLogger("main").info("poller: %s", asyncio_compat.get_default_poller().name)
    return report(MESSAGE, run(MESSAGE))


if __name__ == "__main__":
    sys.exit(main())
