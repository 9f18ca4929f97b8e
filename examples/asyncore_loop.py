"""Driving asyncore from someone else's loop: ``loop(timeout, count=1)`` per tick.

Run it from a checkout::

    python3 examples/asyncore_loop.py

A GUI toolkit owns the main loop of its program; asyncore gets a turn from
an idle or timer callback, and each turn must come back quickly.  Calling
``asyncore.loop(timeout, map=..., count=1)`` runs exactly one pass: it waits
at most ``timeout`` seconds for an event, handles what is ready, and
returns.

Here the "toolkit" is a plain ``while`` loop counting ticks.  A reader
dispatcher holds one end of a socket pair and reads at most ``CHUNK`` bytes
per event.  For the first ticks nothing arrives and each pass simply times
out; at tick ``SEND_AT`` the outer loop writes a whole sentence into the
other end and closes it.  The sentence is already in the kernel, yet each
tick reads one chunk only: one pass, one read.  The end of the stream closes
the reader, the map empties and the outer loop stops.

Exit status 0 when the sentence arrived whole and no tick read twice.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Dict, List

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import asyncore

TEXT = b"Each call to loop(count=1) is one pass: one read here."
CHUNK = 16  # bytes per recv()
TIMEOUT = 0.05  # seconds one tick may wait for an event
SEND_AT = 3  # the tick at which the sentence is written
MAX_TICKS = 50  # a bound, so that a bug cannot make the example spin forever

Channels = Dict[int, asyncore.dispatcher]


class ChunkReader(asyncore.dispatcher):
    """Reads ``CHUNK`` bytes per read event and remembers the tick of each read."""

    def __init__(self, sock: socket.socket, channels: Channels) -> None:
        super().__init__(sock, map=channels)
        self.received = b""
        self.read_ticks: List[int] = []  # one entry per handle_read call
        self.tick = 0  # set by the outer loop before each pass

    def writable(self) -> bool:
        return False  # this end only reads

    def handle_read(self) -> None:
        self.read_ticks.append(self.tick)
        data = self.recv(CHUNK)
        if data:  # b"" means end of stream: recv() has called handle_close
            self.received += data
            print(f"tick {self.tick}:   read {len(data)} bytes: {data!r}")

    def handle_close(self) -> None:
        print(f"tick {self.tick}:   end of stream; the reader closes")
        self.close()


def run_ticks(channels: Channels, reader: ChunkReader, writer: socket.socket) -> int:
    """The outer "GUI" loop: one asyncore pass per tick until the map empties.

    Returns the number of ticks it took.
    """
    tick = 0
    while channels and tick < MAX_TICKS:
        tick += 1
        reader.tick = tick
        if tick == SEND_AT:
            print(f"tick {tick}: idle work writes {len(TEXT)} bytes to the other end and closes it")
            writer.sendall(TEXT)
            writer.close()
        reads_before = len(reader.read_ticks)
        asyncore.loop(timeout=TIMEOUT, map=channels, count=1)
        if len(reader.read_ticks) == reads_before:
            print(f"tick {tick}: nothing ready within {TIMEOUT} s; the pass returned")
    return tick


def main() -> int:
    print(f"poller: {asyncio_compat.get_default_poller().name}")
    channels: Channels = asyncio_compat.SocketMap()
    ours, theirs = socket.socketpair()
    reader = ChunkReader(ours, channels)
    try:
        ticks = run_ticks(channels, reader, theirs)
    finally:
        theirs.close()  # both are no-ops when already closed
        reader.close()
    doubled = sorted({t for t in reader.read_ticks if reader.read_ticks.count(t) > 1})
    print(f"{ticks} ticks, {len(reader.read_ticks)} reads, {len(reader.received)} bytes received")
    if reader.received != TEXT or doubled or channels:
        print(f"FAILED: received {reader.received!r}; ticks with two reads: {doubled}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
