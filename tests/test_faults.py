"""Faults the loop must survive, on every backend and with both event semantics.

Covered elsewhere (tests/test_loop.py), not repeated here: an fd closed
behind the map, a channel closing another and reusing its fd in one pass,
ExitNow raised from handle_read, a failing readable().

Each test keeps a bystander connection in the same map and checks that it is
still served after the fault.
"""

from __future__ import annotations

import signal
import socket
import struct
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from asyncio_compat import SocketMap, asyncore, timers

pytestmark = pytest.mark.timeout(60)

Map = Dict[int, Any]
Pair = Tuple[socket.socket, socket.socket]


@pytest.fixture(params=[True, False], ids=["poll-semantics", "select-semantics"])
def use_poll(request: pytest.FixtureRequest) -> bool:
    """3.11's two ways of delivering events: poll2() (hang-ups call handle_close) or select()."""
    return bool(request.param)


@pytest.fixture
def sockets() -> Iterator[List[socket.socket]]:
    """Plain sockets closed after the test, whatever it did with them."""
    made: List[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


@pytest.fixture
def socket_map() -> Iterator[Map]:
    made: Map = SocketMap()
    yield made
    asyncore.close_all(map=made, ignore_all=True)


def tcp_pair(sockets: List[socket.socket]) -> Pair:
    """A connected TCP pair on 127.0.0.1 (socketpair() has no RST nor urgent data)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    sockets += [client, server]
    return server, client


def run_until(
    socket_map: Map, poller_name: str, use_poll: bool, until: Callable[[], bool], seconds: float = 20.0
) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "the condition was not reached in time"
        asyncore.loop(timeout=0.05, map=socket_map, count=1, use_poll=use_poll, poller=poller_name)


class Recorder(asyncore.dispatcher_with_send):
    """Reads what comes; records closes and the exceptions handle_error saw."""

    def __init__(self, sock: Optional[socket.socket], socket_map: Map) -> None:
        super().__init__(sock, map=socket_map)
        self.received = bytearray()
        self.events: List[str] = []
        self.errors: List[BaseException] = []

    def handle_read(self) -> None:
        self.received += self.recv(65536)

    def handle_close(self) -> None:
        self.events.append("close")
        self.close()

    def handle_error(self) -> None:
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]
        self.close()


def bystander(socket_map: Map, sockets: List[socket.socket]) -> Tuple[Recorder, socket.socket]:
    ours, theirs = socket.socketpair()
    sockets += [ours, theirs]
    return Recorder(ours.dup(), socket_map), theirs


def check_bystander(
    socket_map: Map, poller_name: str, use_poll: bool, chan: Recorder, peer: socket.socket
) -> None:
    peer.send(b"still served")
    run_until(socket_map, poller_name, use_poll, lambda: chan.received.endswith(b"still served"))
    assert chan.errors == [] and chan._fileno is not None


# -- a peer that resets the connection -----------------------------------------------------------


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets an RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_peer_reset_while_we_send(
    poller_name: str, use_poll: bool, socket_map: Map, sockets: List[socket.socket]
) -> None:
    ours, theirs = tcp_pair(sockets)
    chan = Recorder(ours.dup(), socket_map)
    other, other_peer = bystander(socket_map, sockets)
    chan.send(b"x" * (8 << 20))  # far more than the socket buffers hold
    asyncore.loop(timeout=0.05, map=socket_map, count=2, use_poll=use_poll, poller=poller_name)
    assert chan.out_buffer, "precondition: output still queued"
    reset(theirs)
    run_until(socket_map, poller_name, use_poll, lambda: chan._fileno is None)
    assert chan.events == ["close"] and chan.errors == []
    check_bystander(socket_map, poller_name, use_poll, other, other_peer)


def test_peer_reset_while_we_receive(
    poller_name: str, use_poll: bool, socket_map: Map, sockets: List[socket.socket]
) -> None:
    ours, theirs = tcp_pair(sockets)
    chan = Recorder(ours.dup(), socket_map)
    other, other_peer = bystander(socket_map, sockets)
    theirs.send(b"partial message")
    run_until(socket_map, poller_name, use_poll, lambda: chan.received == b"partial message")
    reset(theirs)
    run_until(socket_map, poller_name, use_poll, lambda: chan._fileno is None)
    assert chan.events == ["close"] and chan.errors == []
    check_bystander(socket_map, poller_name, use_poll, other, other_peer)


# -- half-close ------------------------------------------------------------------------------------


class Responder(asyncore.dispatcher_with_send):
    """Answers a request with a large response; when the peer stops sending,
    it still sends everything queued and only then closes."""

    def __init__(self, sock: socket.socket, socket_map: Map, response: bytes) -> None:
        super().__init__(sock, map=socket_map)
        self.response = response
        self.peer_done = False

    def readable(self) -> bool:
        return not self.peer_done  # the end of stream stays readable: stop asking

    def writable(self) -> bool:
        return bool(self.out_buffer) or self.peer_done

    def handle_read(self) -> None:
        if self.recv(100):
            self.send(self.response)

    def handle_close(self) -> None:
        # recv() saw the peer's end of stream; our direction is still open
        self.peer_done = True

    def handle_write(self) -> None:
        self.initiate_send()
        if self.peer_done and not self.out_buffer:
            self.close()


class HalfCloser(asyncore.dispatcher):
    """Sends a request, shuts its write side, reads until the end."""

    def __init__(self, sock: socket.socket, socket_map: Map) -> None:
        super().__init__(sock, map=socket_map)
        self.received = bytearray()
        self.ended = False
        sock.send(b"request")
        sock.shutdown(socket.SHUT_WR)

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.received += self.recv(1 << 20)

    def handle_close(self) -> None:
        self.ended = True
        self.close()


def test_half_close_still_delivers_all_queued_output(
    poller_name: str, use_poll: bool, socket_map: Map, sockets: List[socket.socket]
) -> None:
    response = bytes(range(256)) * (16 << 10)  # 4 MiB
    ours, theirs = tcp_pair(sockets)
    sockets.remove(ours)  # the responder's close() must end the connection: no other copy
    responder = Responder(ours, socket_map, response)
    peer = HalfCloser(theirs.dup(), socket_map)
    run_until(socket_map, poller_name, use_poll, lambda: peer.ended)
    assert responder.peer_done and responder._fileno is None
    assert len(peer.received) == len(response)
    assert peer.received == response


# -- a handler that raises -------------------------------------------------------------------------

HANDLERS = [
    "handle_read", "handle_write", "handle_expt", "handle_connect",
    "handle_accept", "handle_accepted", "handle_close",
]


def faulty(base: type, method: str) -> type:
    """``base`` with ``method`` raising, and a handle_error that records and closes."""

    def boom(self: Any, *args: Any) -> None:
        raise RuntimeError(f"boom in {method}")

    def handle_error(self: Any) -> None:
        self.errors.append(sys.exc_info()[1])
        self.close()

    return type(f"Faulty_{method}", (base,), {method: boom, "handle_error": handle_error})


class Probe(asyncore.dispatcher):
    """A channel set up so that one chosen handler runs."""

    def __init__(self, sock: Optional[socket.socket], socket_map: Map, want_write: bool = False) -> None:
        super().__init__(sock, map=socket_map)
        self.errors: List[BaseException] = []
        self.want_write = want_write

    def writable(self) -> bool:
        return self.want_write or not self.connected

    def handle_read(self) -> None:
        self.recv(100)

    def handle_write(self) -> None:
        self.want_write = False

    def handle_connect(self) -> None:
        pass


def provoke(method: str, socket_map: Map, sockets: List[socket.socket]) -> Any:
    """Build a Probe whose ``method`` will run (and raise) on the next passes."""
    cls = faulty(Probe, method)
    if method in ("handle_accept", "handle_accepted"):
        chan = cls(None, socket_map)
        chan.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        chan.bind(("127.0.0.1", 0))
        chan.listen(1)
        sockets.append(socket.create_connection(chan.socket.getsockname()))
        return chan
    if method == "handle_connect":
        listener = socket.socket()  # a plain listening port to connect to
        sockets.append(listener)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        chan = cls(None, socket_map)
        chan.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        chan.connect(listener.getsockname())
        return chan
    ours, theirs = tcp_pair(sockets)
    chan = cls(ours.dup(), socket_map, want_write=method == "handle_write")
    if method == "handle_read":
        theirs.send(b"data")
    elif method == "handle_expt":
        theirs.send(b"!", socket.MSG_OOB)
    elif method == "handle_close":
        theirs.close()
    return chan


@pytest.mark.parametrize("method", HANDLERS)
def test_exception_in_a_handler_reaches_handle_error_only(
    poller_name: str, use_poll: bool, socket_map: Map, sockets: List[socket.socket], method: str
) -> None:
    other, other_peer = bystander(socket_map, sockets)
    chan = provoke(method, socket_map, sockets)
    run_until(socket_map, poller_name, use_poll, lambda: bool(chan.errors))
    assert [str(exc) for exc in chan.errors] == [f"boom in {method}"]
    assert chan._fileno is None  # closed by its handle_error, not by the loop
    check_bystander(socket_map, poller_name, use_poll, other, other_peer)


# -- exceptions that must leave loop() -----------------------------------------------------------


# ExitNow from handle_read: tests/test_loop.py::test_exit_now_propagates
EXIT_CASES = [
    (exc_type, method)
    for exc_type in (KeyboardInterrupt, SystemExit, asyncore.ExitNow)
    for method in ("handle_read", "handle_write", "handle_close")
    if (exc_type, method) != (asyncore.ExitNow, "handle_read")
]


@pytest.mark.parametrize("exc_type, method", EXIT_CASES)
def test_exit_exceptions_propagate_and_the_loop_can_go_on(
    poller_name: str,
    use_poll: bool,
    socket_map: Map,
    sockets: List[socket.socket],
    exc_type: type,
    method: str,
) -> None:
    fired: List[str] = []

    def leave(self: Any) -> None:
        if not fired:
            fired.append(method)
            raise exc_type("leave the loop")
        getattr(Probe, method)(self)  # from then on, behave as a Probe

    cls = type("Leaving", (Probe,), {method: leave})
    ours, theirs = tcp_pair(sockets)
    chan = cls(ours.dup(), socket_map, want_write=method == "handle_write")
    if method == "handle_read":
        theirs.send(b"data")
    elif method == "handle_close":
        theirs.close()
    with pytest.raises(exc_type):
        run_until(socket_map, poller_name, use_poll, lambda: False, seconds=20)
    assert fired == [method] and chan.errors == []  # handle_error never saw it
    other, other_peer = bystander(socket_map, sockets)
    check_bystander(socket_map, poller_name, use_poll, other, other_peer)  # same map, next loop() call


def test_exit_exception_from_a_timer_propagates(poller_name: str, socket_map: Map) -> None:
    def stop() -> None:
        raise KeyboardInterrupt

    timers.call_later(0.01, stop, map=socket_map)
    with pytest.raises(KeyboardInterrupt):
        asyncore.loop(timeout=1.0, map=socket_map, count=5, poller=poller_name)


# -- closing another channel during a pass ------------------------------------------------------------


def test_channel_closed_by_another_gets_no_more_events(
    poller_name: str, use_poll: bool, socket_map: Map, sockets: List[socket.socket]
) -> None:
    channels: List[Any] = []

    class Killer(Recorder):
        def handle_read(self) -> None:
            super().handle_read()
            for other in channels:
                if other is not self and other._fileno is not None:
                    other.close()  # its event of this pass is already collected

    for _ in range(2):
        ours, theirs = tcp_pair(sockets)
        channels.append(Killer(ours.dup(), socket_map))
        theirs.send(b"both ready")
    run_until(socket_map, poller_name, use_poll, lambda: any(c.received for c in channels))
    assert sum(1 for c in channels if c.received) == 1
    assert all(c.errors == [] for c in channels)


# -- a signal while the loop waits -----------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_signal_during_poll_does_not_disturb_the_loop(
    poller_name: str, socket_map: Map, sockets: List[socket.socket]
) -> None:
    caught: List[int] = []
    chan, peer = bystander(socket_map, sockets)
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: caught.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)  # many signals while loop() blocks
        timers.call_later(0.3, peer.send, b"after the signals", map=socket_map)
        deadline = time.monotonic() + 20
        while not chan.received and time.monotonic() < deadline:
            asyncore.loop(timeout=5.0, map=socket_map, count=1, poller=poller_name)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(caught) >= 2
    assert chan.received == b"after the signals"
    assert chan.errors == []
