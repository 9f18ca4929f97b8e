"""What clients and servers say to each other, shared by both sides.

Every line server (async_chat on either asyncore, and the hand-written
splitter) hands each line, without its ``\\n``, to the same
:class:`LineSink`, so they all do the same work per line:

``E...``
    echo: the line comes back with its ``\\n`` (the idle-scaling ping);
``END``
    reply ``<lines> <crc32>\\n`` for the data lines seen so far, then reset;
``PREP <n>``
    build an ``n``-byte pattern now (outside the timed part), reply ``OK``;
``PUSH``
    send the pattern built by ``PREP``;
anything else
    a data line: counted and folded into a running CRC-32, so the client can
    check that every byte arrived without the server keeping it.

This module runs in the server processes too, under Python 3.9 to 3.13.
"""

from __future__ import annotations

import random
import zlib
from typing import List, Optional

#: bytes per echo message, and per idle-scaling ping (terminator included)
MESSAGE_SIZE = 64
#: how many bytes each server read asks for: below glibc's 128 KiB mmap
#: threshold, so a read does not cost an mmap/munmap pair
READ_SIZE = 65536
#: connections a listening server accepts per readiness event; asyncore's
#: default of one per pass makes accepting 10,000 connections O(n^2)
ACCEPT_BATCH = 64
#: listen() backlog of every benchmark server
BACKLOG = 4096

_COMMAND_HEADS = (b"E", b"P")


def pattern(size: int) -> bytes:
    """``size`` bytes cycling through 0..255 except ``\\n``, starting with NUL."""
    block = bytes(b for b in range(256) if b != 0x0A)
    whole, rest = divmod(size, len(block))
    # one join, not ``block * whole + rest``: that held two copies at once,
    # and the peak RSS of a bulk server would measure this, not the push
    return b"".join([block] * whole + [block[:rest]])


def random_payload(size: int, seed: int = 21) -> bytes:
    """``size`` pseudo-random bytes (the same for a given ``seed``) without CRLF.

    Every ``\\r\\n`` pair has its ``\\n`` replaced by NUL, which cannot
    form a new pair, so a CRLF appended marks the only end.  Random bytes
    hold every byte value, a terminator's bytes included, about once in 256.
    """
    return random.Random(seed).randbytes(size).replace(b"\r\n", b"\r\0")


def lines_payload(count: int, size: int) -> bytes:
    """``count`` distinct data lines of ``size`` bytes (``\\n`` included), back to back.

    Raises ValueError when ``size`` is too small to number the lines.
    """
    if size < 13:
        raise ValueError(f"data lines need at least 13 bytes, not {size}")
    filler = b"x" * (size - 12)
    return b"".join(b"L%09d %s\n" % (i, filler) for i in range(count))


def expected_summary(line_bodies: bytes, count: int) -> bytes:
    """The reply to ``END`` after ``count`` lines whose bodies concatenate to ``line_bodies``."""
    return b"%d %d\n" % (count, zlib.crc32(line_bodies))


def echo_messages(variants: int = 64) -> List[bytes]:
    """Distinct echo messages of :data:`MESSAGE_SIZE` bytes, each an ``E`` line."""
    body = MESSAGE_SIZE - 8
    return [b"E%06d" % i + bytes([65 + i % 26]) * body + b"\n" for i in range(variants)]


class LineSink:
    """The per-line work of every line server (see the module docstring)."""

    __slots__ = ("count", "crc", "prepared")

    def __init__(self) -> None:
        self.count = 0
        self.crc = 0
        self.prepared = b""

    def on_line(self, line: bytes) -> Optional[bytes]:
        """Handle one line (without ``\\n``); return the reply to send, if any."""
        if line[:1] in _COMMAND_HEADS:
            return self._command(line)
        self.count += 1
        self.crc = zlib.crc32(line, self.crc)
        return None

    def _command(self, line: bytes) -> bytes:
        if line == b"END":
            reply = b"%d %d\n" % (self.count, self.crc)
            self.count = self.crc = 0
            return reply
        if line.startswith(b"PREP "):
            self.prepared = pattern(int(line[5:]))
            return b"OK\n"
        if line == b"PUSH":
            return self.prepared
        return line + b"\n"
