"""Delivery: what a channel's handlers get, and the handler-error contract
as ``loop()`` applies it, on every backend and with both of 3.11's event
semantics (``use_poll``).

* the peer resets, half-closes or closes: ``handle_close``, after everything
  queued was delivered, and no error; an fd closed behind the map gets
  ``handle_close`` too;
* a handler or a predicate raises: ``handle_error`` of that channel only;
  ExitNow, KeyboardInterrupt and SystemExit (from a handler or a timer)
  leave ``loop()``, and the map can be served again;
* a channel closed by another during a pass gets no more events.

Most tests keep a bystander connection in the same map and check that it is
still served after the fault.  The per-channel delivery functions are
checked against the loop's inline fast path in tests/test_delivery.py.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from typing import Any, Dict, List, Optional, Tuple

import pytest
from helpers import Collector, Recorder, Sockets, bystander, check_bystander, in_map, run_until, sweep_every
from helpers import run_passes as run

from asyncio_compat import asyncore, timers

pytestmark = pytest.mark.timeout(60)

Map = Dict[int, Any]


# -- a peer that resets the connection -----------------------------------------------------------


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets an RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_peer_reset_while_we_send(
    poller_name: str, use_poll: bool, socket_map: Map, sockets: Sockets
) -> None:
    ours, theirs = sockets.tcp_pair()
    chan = Recorder(ours.dup(), socket_map)
    other, other_peer = bystander(socket_map, sockets)
    chan.send(b"x" * (8 << 20))  # far more than the socket buffers hold
    asyncore.loop(timeout=0.05, map=socket_map, count=2, use_poll=use_poll, poller=poller_name)
    assert chan.out_buffer, "precondition: output still queued"
    reset(theirs)
    run_until(socket_map, lambda: not in_map(chan, socket_map), poller=poller_name, use_poll=use_poll)
    assert chan.events == ["close"] and chan.errors == []
    check_bystander(socket_map, poller_name, use_poll, other, other_peer)


def test_peer_reset_while_we_receive(
    poller_name: str, use_poll: bool, socket_map: Map, sockets: Sockets
) -> None:
    ours, theirs = sockets.tcp_pair()
    chan = Recorder(ours.dup(), socket_map)
    other, other_peer = bystander(socket_map, sockets)
    theirs.send(b"partial message")
    run_until(socket_map, lambda: chan.received == b"partial message", poller=poller_name, use_poll=use_poll)
    reset(theirs)
    run_until(socket_map, lambda: not in_map(chan, socket_map), poller=poller_name, use_poll=use_poll)
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
    poller_name: str, use_poll: bool, socket_map: Map, sockets: Sockets
) -> None:
    response = bytes(range(256)) * (16 << 10)  # 4 MiB
    ours, theirs = sockets.tcp_pair()
    sockets.remove(ours)  # the responder's close() must end the connection: no other copy
    responder = Responder(ours, socket_map, response)
    peer = HalfCloser(theirs.dup(), socket_map)
    run_until(socket_map, lambda: peer.ended, poller=poller_name, use_poll=use_poll)
    assert responder.peer_done and not in_map(responder, socket_map)
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


def provoke(method: str, socket_map: Map, sockets: Sockets) -> Any:
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
    ours, theirs = sockets.tcp_pair()
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
    poller_name: str, use_poll: bool, socket_map: Map, sockets: Sockets, method: str
) -> None:
    other, other_peer = bystander(socket_map, sockets)
    chan = provoke(method, socket_map, sockets)
    run_until(socket_map, lambda: bool(chan.errors), poller=poller_name, use_poll=use_poll)
    assert [str(exc) for exc in chan.errors] == [f"boom in {method}"]
    assert not in_map(chan, socket_map)  # closed by its handle_error, not by the loop
    check_bystander(socket_map, poller_name, use_poll, other, other_peer)


# -- exceptions that must leave loop() -----------------------------------------------------------


# ExitNow from handle_read: test_exit_now_propagates below
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
    sockets: Sockets,
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
    ours, theirs = sockets.tcp_pair()
    chan = cls(ours.dup(), socket_map, want_write=method == "handle_write")
    if method == "handle_read":
        theirs.send(b"data")
    elif method == "handle_close":
        theirs.close()
    with pytest.raises(exc_type):
        run_until(socket_map, lambda: False, poller=poller_name, use_poll=use_poll)
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
    poller_name: str, use_poll: bool, socket_map: Map, sockets: Sockets
) -> None:
    channels: List[Any] = []

    class Killer(Recorder):
        def handle_read(self) -> None:
            super().handle_read()
            for other in channels:
                if other is not self and in_map(other, socket_map):
                    other.close()  # its event of this pass is already collected

    for _ in range(2):
        ours, theirs = sockets.tcp_pair()
        channels.append(Killer(ours.dup(), socket_map))
        theirs.send(b"both ready")
    run_until(socket_map, lambda: any(c.received for c in channels), poller=poller_name, use_poll=use_poll)
    assert sum(1 for c in channels if c.received) == 1
    assert all(c.errors == [] for c in channels)


# -- handlers that raise, and the peer's close: the simple cases -------------------------------------


def test_handler_exception_harms_only_its_channel(
    poller_name: str, socket_map: Map, sockets: Sockets, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken(Collector):
        def handle_read(self) -> None:
            raise RuntimeError("boom in handle_read")

    a1, b1 = sockets.pair()
    a2, b2 = sockets.pair()
    broken = Broken(a1.dup(), socket_map)
    fine = Collector(a2.dup(), socket_map)
    b1.send(b"x")
    b2.send(b"y")
    asyncore.loop(timeout=0.5, map=socket_map, count=1, poller=poller_name)
    assert not in_map(broken, socket_map) and broken.events == ["close"]
    assert fine.data == b"y"
    assert "boom in handle_read" in capsys.readouterr().out


def test_predicate_exception_goes_to_handle_error(
    poller_name: str, socket_map: Map, sockets: Sockets, capsys: pytest.CaptureFixture[str]
) -> None:
    class BadPredicate(Collector):
        def readable(self) -> bool:
            raise ValueError("readable exploded")

    a1, _ = sockets.pair()
    a2, b2 = sockets.pair()
    bad = BadPredicate(a1.dup(), socket_map)
    fine = Collector(a2.dup(), socket_map)
    b2.send(b"ok")
    asyncore.loop(timeout=0.5, map=socket_map, count=1, poller=poller_name)
    assert not in_map(bad, socket_map)
    assert fine.data == b"ok"
    assert "readable exploded" in capsys.readouterr().out


def test_peer_close_reaches_handle_close(
    poller_name: str, use_poll: bool, socket_map: Map, pair: Tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    chan = Collector(a.dup(), socket_map)
    b.send(b"last words")
    b.close()
    asyncore.loop(timeout=0.5, map=socket_map, use_poll=use_poll, count=5, poller=poller_name)
    assert chan.data == b"last words"
    assert chan.events[-1] == "close"
    assert not socket_map


def test_exit_now_propagates(
    poller_name: str, socket_map: Map, pair: Tuple[socket.socket, socket.socket]
) -> None:
    class Quitter(Collector):
        def handle_read(self) -> None:
            raise asyncore.ExitNow("stop")

    a, b = pair
    Quitter(a.dup(), socket_map)
    b.send(b"x")
    with pytest.raises(asyncore.ExitNow):
        asyncore.loop(timeout=0.5, map=socket_map, count=1, poller=poller_name)


# -- an fd closed behind the map ----------------------------------------------------------------


@pytest.fixture
def fast_sweep(poller_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """epoll/kqueue find fds closed behind their back by a periodic sweep: make it quick."""
    sweep_every(0.02, poller_name, monkeypatch)


def test_fd_closed_behind_the_map_gets_handle_close(
    poller_name: str, fast_sweep: None, socket_map: Map, sockets: Sockets
) -> None:
    a, b = sockets.pair()
    healthy_a, healthy_b = sockets.pair()
    doomed = Collector(a.dup(), socket_map)
    healthy = Collector(healthy_a.dup(), socket_map)
    run(socket_map, poller_name, count=1, timeout=0)
    os.close(doomed.socket.detach())  # behind the loop's back
    run_until(socket_map, lambda: "close" in doomed.events, poller=poller_name, seconds=10)
    assert doomed.events[-1:] == ["close"]
    healthy_b.send(b"still here")
    run(socket_map, poller_name, count=1)
    assert healthy.data == b"still here"
