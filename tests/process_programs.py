"""Two programs run under CPython 3.11's own asyncore and under ours (signals, fork).

    python process_programs.py stdlib|ours close_all|swap|prefork

Each prints one JSON line of what its handlers saw, free of pids, fds and
times, so the two runs can be compared as they are.  ``ours`` puts
asyncio_compat in place of the standard library's modules first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, Dict, List

if sys.argv[1] == "ours":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncio_compat

    asyncio_compat.install()

import asyncore  # noqa: E402  (after install(): ours or the standard library's)

SEEN: List[str] = []


class Reader(asyncore.dispatcher):
    def __init__(self, sock: socket.socket, name: str) -> None:
        super().__init__(sock)
        self.name = name

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        data = self.recv(100)
        if data:
            SEEN.append(f"{self.name} read {data!r}")

    def handle_close(self) -> None:
        SEEN.append(f"{self.name} closed")
        self.close()

    def handle_error(self) -> None:
        SEEN.append(f"{self.name} error {sys.exc_info()[0].__name__}")  # type: ignore[union-attr]
        self.close()


def close_all_program() -> Dict[str, Any]:
    pairs = [socket.socketpair() for _ in range(3)]
    for index, (ours, _) in enumerate(pairs):
        Reader(ours, f"r{index}")
    signal.signal(signal.SIGALRM, lambda *_: asyncore.close_all())
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    asyncore.loop(timeout=5, use_poll=True)
    result = {"seen": SEEN, "map": len(asyncore.socket_map)}
    for _, theirs in pairs:
        theirs.close()
    return result


def swap_program() -> Dict[str, Any]:
    first, first_peer = socket.socketpair()
    old = Reader(first, "old")
    peers = [first_peer]

    def swap(*_: object) -> None:
        old.close()
        ours, theirs = socket.socketpair()
        theirs.sendall(b"news")
        theirs.shutdown(socket.SHUT_WR)
        peers.append(theirs)
        Reader(ours, "new")

    signal.signal(signal.SIGALRM, swap)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    asyncore.loop(timeout=5, use_poll=True)
    for peer in peers:
        peer.close()
    return {"seen": SEEN, "map": len(asyncore.socket_map)}


class PidReply(asyncore.dispatcher_with_send):
    def handle_read(self) -> None:
        if self.recv(100):
            self.send(b"%d\n" % os.getpid())

    def handle_close(self) -> None:
        self.close()

    def handle_error(self) -> None:
        os.write(2, b"handler error in a child\n")
        self.close()


class Listener(asyncore.dispatcher):
    def __init__(self) -> None:
        super().__init__()
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(64)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        PidReply(sock)


def prefork_program() -> Dict[str, Any]:
    listener = Listener()
    port = listener.socket.getsockname()[1]
    asyncore.loop(timeout=0, count=1, use_poll=True)
    pids = []
    # SIGTERM stays blocked until a child has its handler: sent early, it
    # would otherwise kill a child that has not installed it yet
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, lambda *_: asyncore.close_all())
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            try:
                asyncore.loop(timeout=30, use_poll=True)
            finally:
                os._exit(0)
        pids.append(pid)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    answers = []
    for _ in range(2):
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
        for client in clients:
            client.sendall(b"who?\n")
        for client in clients:
            answers.append(int(client.makefile("rb").readline() or 0))
            client.close()
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    return {
        "answered": sum(1 for pid in answers if pid in pids),
        "unanswered": sum(1 for pid in answers if pid not in pids),
        "exit codes": codes,
    }


PROGRAMS = {"close_all": close_all_program, "swap": swap_program, "prefork": prefork_program}

if __name__ == "__main__":
    print(json.dumps(PROGRAMS[sys.argv[2]]()))
