"""In-process workloads of the engine, to count instructions under valgrind.

Beside ``echo_instructions.py``: run, from the checkout to measure::

    PYTHONHASHSEED=0 ASYNCIO_COMPAT_POLLER=poll valgrind --tool=callgrind \\
        --callgrind-out-file=/dev/null python benchmarks/engine_instructions.py lines 20480

and read ``Collected``; run it again with twice the work and divide the
difference by the difference in work.  The poll backend keeps the count
steady: epoll's closed-fd sweep runs by the wall clock.

``lines N``
    an ``async_chat`` cuts N lines of 51 bytes, sent 64 to a ``send()``;
``bulk N``
    an ``async_chat`` without a terminator takes N blocks of 64 KiB;
``idle N``
    N calls of ``loop(0, count=1)`` beside 1,000 idle ``dispatcher_with_send``
    (``--channels``).

The file uses only the public API, so it runs unchanged against an older
checkout (``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Callable, Dict, List, Optional

if __name__ == "__main__" and "asyncio_compat" not in sys.modules:
    # run by path from a checkout: its package, unless PYTHONPATH names another
    sys.path.insert(len(sys.path) if os.environ.get("PYTHONPATH") else 0,
                    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from asyncio_compat import SocketMap, asynchat, asyncore  # noqa: E402  (after the path set-up above)

LINE = b"GET /some/path HTTP/1.0 x" * 2 + b"\n"
BLOCK = 65536


class Counter(asynchat.async_chat):
    """Counts the messages and bytes the framer hands it."""

    def __init__(self, sock: socket.socket, socket_map: SocketMap) -> None:
        super().__init__(sock, map=socket_map)
        self.messages = 0
        self.received = 0

    def collect_incoming_data(self, data: bytes) -> None:
        self.received += len(data)

    def found_terminator(self) -> None:
        self.messages += 1


def _feed(payload: bytes, units: int, terminator: Optional[bytes], done: Callable[[Counter], bool]) -> None:
    """Send ``units`` copies of ``payload`` to a Counter as fast as it takes them."""
    socket_map = SocketMap()
    mine, peer = socket.socketpair()
    chat = Counter(mine, socket_map)
    chat.set_terminator(terminator)
    peer.setblocking(False)
    sent_units = 0
    offset = 0  # into the payload being sent
    try:
        while not done(chat):
            while sent_units < units:
                try:
                    offset += peer.send(memoryview(payload)[offset:])
                except BlockingIOError:
                    break
                if offset == len(payload):
                    sent_units += 1
                    offset = 0
            asyncore.loop(0.1, map=socket_map, count=1)
    finally:
        asyncore.close_all(socket_map)
        peer.close()


def lines(count: int) -> None:
    blocks = -(-count // 64)
    _feed(LINE * 64, blocks, b"\n", lambda chat: chat.messages >= blocks * 64)


def bulk(count: int) -> None:
    _feed(b"x" * BLOCK, count, None, lambda chat: chat.received >= count * BLOCK)


def idle(count: int, channels: int = 1000) -> None:
    socket_map = SocketMap()
    peers: List[socket.socket] = []
    for _ in range(channels):
        mine, peer = socket.socketpair()
        peers.append(peer)
        asyncore.dispatcher_with_send(mine, map=socket_map)
    try:
        for _ in range(count):
            asyncore.loop(0, map=socket_map, count=1)
    finally:
        asyncore.close_all(socket_map)
        for peer in peers:
            peer.close()


WORKLOADS: Dict[str, Callable[..., None]] = {"lines": lines, "bulk": bulk, "idle": idle}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("count", type=int)
    parser.add_argument("--channels", type=int, default=1000, help="idle channels (idle only)")
    args = parser.parse_args(argv)
    if args.workload == "idle":
        idle(args.count, args.channels)
    else:
        WORKLOADS[args.workload](args.count)
    print(f"{args.workload} {args.count}")


if __name__ == "__main__":
    main()
