"""Fork safety: a prefork server whose parent ran the loop before forking.

Each forked child must get a poller of its own: sharing the parent's epoll
instance made children steal each other's events.  Children leave with
``os._exit`` and are reaped by the test.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import traceback
from typing import Any, Dict, List

import pytest

from asyncio_compat import asyncore

pytestmark = [
    # the signal method: a timer thread would make the forks multi-threaded
    pytest.mark.timeout(60, method="signal"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

CHILDREN = 2
CONNECTIONS = 40
BOUND = 10.0  # the clients' socket timeout
FAST = 3.0  # seconds for all connections (about 20 ms here); the shared-epoll bug took 18 s for 40


class PidReply(asyncore.dispatcher_with_send):
    """Answers each line with this process's pid."""

    def handle_read(self) -> None:
        if self.recv(4096):
            self.send(b"%d\n" % os.getpid())

    def handle_close(self) -> None:
        self.close()

    def handle_error(self) -> None:
        # a child that got another child's event reads EAGAIN here: counted
        # in the child's exit status (see _child)
        HANDLER_ERRORS.append(repr(self))
        self.close()


HANDLER_ERRORS: List[str] = []


class Listener(asyncore.dispatcher):
    def __init__(self, socket_map: Any) -> None:
        super().__init__(map=socket_map)
        self.create_socket()
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(64)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        PidReply(sock, map=self._map)


def _child(socket_map: asyncore.SocketMap) -> None:
    code = 1
    try:
        signal.signal(signal.SIGTERM, lambda *_: asyncore.close_all(socket_map))
        # only now: unblocking first let a SIGTERM already pending kill the
        # child by the default action before this handler existed (seen in CI)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        asyncore.loop(timeout=30, use_poll=True, map=socket_map)
        code = 3 if HANDLER_ERRORS else 0
    except BaseException:
        traceback.print_exc()  # the exit status alone would not say what went wrong
        raise
    finally:
        os._exit(code)


def _ask_all(port: int, count: int) -> List[int]:
    """Open ``count`` connections at once, ask on each, return each one's answer."""
    clients = [socket.create_connection(("127.0.0.1", port), timeout=BOUND) for _ in range(count)]
    try:
        for client in clients:
            client.sendall(b"who?\n")
        return [_answer(client) for client in clients]
    finally:
        for client in clients:
            client.close()


def _answer(client: socket.socket) -> int:
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = client.recv(64)
        assert chunk, "connection closed without an answer"
        reply += chunk
    return int(reply)


def test_prefork_children_answer_every_connection_once(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    listener = Listener(socket_map)
    port = listener.socket.getsockname()[1]
    asyncore.loop(timeout=0, count=1, map=socket_map)  # the parent touched the loop
    pids: List[int] = []
    # the child must not run the parent's test machinery: block SIGTERM until it has its handler
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        for _ in range(CHILDREN):
            pid = os.fork()
            if pid == 0:
                _child(socket_map)  # installs its handler, then unblocks SIGTERM
            pids.append(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        started = time.monotonic()
        answers = _ask_all(port, CONNECTIONS // 2) + _ask_all(port, CONNECTIONS // 2)
        elapsed = time.monotonic() - started
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        codes = {pid: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids}
    counts: Dict[int, int] = {}
    for pid in answers:
        counts[pid] = counts.get(pid, 0) + 1
    assert set(counts) <= set(pids), f"answers from unknown processes: {counts}"
    assert sum(counts.values()) == CONNECTIONS
    assert elapsed < FAST
    # 3: a child saw a handler error; anything else: it did not leave loop() cleanly
    assert codes == {pid: 0 for pid in pids}


def test_child_gets_a_poller_of_its_own(default_poller: str, socket_map: asyncore.SocketMap) -> None:
    from asyncio_compat import _loop

    listener = Listener(socket_map)
    asyncore.loop(timeout=0, count=1, map=socket_map)
    state = _loop.existing_loop(socket_map)
    assert state is not None
    parent_poller = state.poller
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child_state = _loop.existing_loop(socket_map)
            fresh = child_state is not None and child_state.poller is not parent_poller
            asyncore.loop(timeout=0, count=1, map=socket_map)
            registered = child_state is not None and listener.socket.fileno() in child_state.poller
            os.write(write_fd, b"%d%d" % (fresh, registered))
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        report = os.read(read_fd, 8)
    finally:
        os.close(read_fd)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert report == b"11"
    assert not parent_poller.closed  # the parent's poller is untouched
    assert listener.socket.fileno() in parent_poller


@pytest.mark.parametrize("backend", ["kqueue", "devpoll"])
def test_renewal_leaves_the_parents_kernel_object_alone(
    monkeypatch: pytest.MonkeyPatch, socket_map: asyncore.SocketMap, backend: str
) -> None:
    """kqueue and /dev/poll over the fakes (tests/fakes): what the fork hook does in a child."""
    from fakes import install_devpoll, install_kqueue

    from asyncio_compat import _fork, _loop
    from pollers._devpoll import DevpollPoller
    from pollers._kqueue import KqueuePoller

    created: List[Any] = install_kqueue(monkeypatch) if backend == "kqueue" else install_devpoll(monkeypatch)
    cls = KqueuePoller if backend == "kqueue" else DevpollPoller
    listener = Listener(socket_map)
    asyncore.loop(timeout=0, count=1, map=socket_map, poller=cls)
    inherited = created[-1]
    record = inherited.changes if backend == "kqueue" else inherited.writes
    made_before = len(record)
    _fork.renew_in_child()  # what os.register_at_fork runs in a new child
    assert inherited.closed
    assert len(record) == made_before, "the child changed the parent's interest set"
    asyncore.loop(timeout=0, count=1, map=socket_map)
    state = _loop.existing_loop(socket_map)
    assert state is not None and state.poller.fileno() == created[-1].fileno()
    fd = listener.socket.fileno()
    if backend == "kqueue":
        assert any(ident == fd for ident, _ in created[-1].pairs())
    else:
        assert fd in created[-1].interest()


class ReadOnce(asyncore.dispatcher):
    """Records the first read, then closes."""

    def __init__(self, sock: socket.socket, socket_map: Any) -> None:
        super().__init__(sock, map=socket_map)
        self.received = b""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.received = self.recv(64)
        self.close()


def _signal_me_soon(signum: int) -> int:
    """A helper process (not a thread: forks follow) that sends ``signum`` to us in 0.1 s."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(0.1)
            os.kill(parent, signum)
        finally:
            os._exit(0)
    return pid


def _serve_a_fresh_pair_in_child(socket_map: asyncore.SocketMap, report_fd: int) -> None:
    """In the child: a new channel on the inherited map must be served; writes what it read."""
    code = 1
    try:
        for channel in list(socket_map.values()):
            channel.socket.close()  # the parent's; closed behind the loop's back
        socket_map.clear()
        ours, theirs = socket.socketpair()
        reader = ReadOnce(ours, socket_map)
        theirs.sendall(b"child")
        asyncore.loop(timeout=BOUND, use_poll=True, map=socket_map, count=5)
        os.write(report_fd, reader.received or b"nothing")
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def test_fork_from_a_signal_handler_during_the_wait(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    # promise (stopping.rst): a child made by os.fork() gets pollers of its own,
    # here forked by a signal handler in the middle of the parent's wait, after
    # a close() there had the loop wake itself
    first, first_peer = socket.socketpair()
    second, second_peer = socket.socketpair()
    closed = ReadOnce(first, socket_map)
    kept = ReadOnce(second, socket_map)
    report_read, report_write = os.pipe()
    children: List[int] = []

    def on_usr1(*_: object) -> None:
        closed.close()
        pid = os.fork()
        if pid == 0:
            _serve_a_fresh_pair_in_child(socket_map, report_write)
        children.append(pid)
        second_peer.sendall(b"parent")

    previous = signal.signal(signal.SIGUSR1, on_usr1)
    helper = _signal_me_soon(signal.SIGUSR1)
    try:
        asyncore.loop(timeout=BOUND, use_poll=True, map=socket_map)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        os.waitpid(helper, 0)
        os.close(report_write)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        report = os.read(report_read, 64)
        os.close(report_read)
        first_peer.close()
        second_peer.close()
    assert kept.received == b"parent"
    assert not socket_map
    assert codes == [0]
    assert report == b"child"
