"""Reading files and pipes through the loop with ``asyncore.file_dispatcher``.

Run it from a checkout (POSIX only: ``file_dispatcher`` does not exist on
Windows)::

    python3 examples/asyncore_file_dispatcher.py

``file_dispatcher`` wraps a file descriptor so that the loop can treat it
like a socket: ``recv()`` becomes ``os.read()`` and ``send()`` becomes
``os.write()``.  It duplicates the descriptor it is given, so the caller
still closes its own.

Part 1 writes a temporary file and reads it back in chunks.  A regular file
is always "ready" (epoll even refuses to watch one; the loop copes), so this
mostly shows the mechanics.  Part 2 is the useful case: a pipe whose write
end is a second ``file_dispatcher`` in the same map, feeding a few lines as
the pipe takes them and closing when done; the reader sees the end of the
stream once the last write end is closed.

Exit status 0 when both sources were read back exactly as written.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, Tuple

try:
    import asyncio_compat
except ImportError:  # a checkout that is not installed: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

from asyncio_compat import asyncore

CHUNK = 64  # bytes per read
FILE_TEXT = b"".join(b"%d. a line of the temporary file\n" % n for n in range(1, 7))
PIPE_LINES = (b"first line through the pipe\n", b"second line\n", b"third and last line\n")

Channels = Dict[int, asyncore.dispatcher]


class ChunkReader(asyncore.file_dispatcher):
    """Reads ``CHUNK`` bytes per read event until the end of the file or stream."""

    def __init__(self, fd: int, channels: Channels, label: str) -> None:
        super().__init__(fd, map=channels)
        self.label = label
        self.received = b""

    def writable(self) -> bool:
        return False  # a reader never waits for room to write

    def handle_read(self) -> None:
        data = self.recv(CHUNK)
        if data:  # b"" means end of file: recv() has called handle_close
            self.received += data
            print(f"{self.label}: read {len(data)} bytes")

    def handle_close(self) -> None:
        # recv() calls this at the end; an error event may call it again
        if self.connected:
            print(f"{self.label}: end of data after {len(self.received)} bytes")
        self.close()


class PipeFeeder(asyncore.file_dispatcher):
    """Writes ``lines`` into a pipe's write end, one per write event, then closes it."""

    def __init__(self, fd: int, channels: Channels, lines: Tuple[bytes, ...]) -> None:
        super().__init__(fd, map=channels)
        self.queue = list(lines)

    def readable(self) -> bool:
        return False  # nothing ever comes back on a write end

    def writable(self) -> bool:
        return bool(self.queue)

    def handle_write(self) -> None:
        line = self.queue[0]
        written = self.send(line)
        print(f"feeder: wrote {written} bytes")
        if written == len(line):
            self.queue.pop(0)
        else:  # the pipe took part of it: keep the rest for the next event
            self.queue[0] = line[written:]
        if not self.queue:
            print("feeder: all written; closing the write end")
            self.close()


def read_temporary_file() -> bool:
    """Part 1: write a temporary file, read it back through the loop."""
    print(f"-- part 1: a temporary file of {len(FILE_TEXT)} bytes")
    channels: Channels = asyncio_compat.SocketMap()
    with tempfile.TemporaryFile() as handle:
        handle.write(FILE_TEXT)
        handle.flush()
        handle.seek(0)
        reader = ChunkReader(handle.fileno(), channels, "file")
        asyncore.loop(timeout=1.0, map=channels)
    return reader.received == FILE_TEXT


def read_pipe() -> bool:
    """Part 2: a pipe with a feeder and a reader in the same map."""
    expected = b"".join(PIPE_LINES)
    print(f"-- part 2: a pipe, {len(PIPE_LINES)} lines ({len(expected)} bytes) fed by a dispatcher")
    channels: Channels = asyncio_compat.SocketMap()
    read_end, write_end = os.pipe()
    try:
        reader = ChunkReader(read_end, channels, "pipe")
        PipeFeeder(write_end, channels, PIPE_LINES)
    finally:
        # the dispatchers hold duplicates; ours must go, or the reader
        # would never see the end of the stream
        os.close(read_end)
        os.close(write_end)
    asyncore.loop(timeout=1.0, map=channels)
    return reader.received == expected


def main() -> int:
    print(f"poller: {asyncio_compat.get_default_poller().name}")
    results = {"temporary file": read_temporary_file(), "pipe": read_pipe()}
    for source, intact in results.items():
        print(f"{source}: {'read back intact' if intact else 'MISMATCH'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
