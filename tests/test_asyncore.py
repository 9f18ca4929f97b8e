"""The dispatcher as its users see it: events reach the right handlers, on
every backend and with both of 3.11's event semantics (``use_poll``).

What a handler gets when the peer resets, half-closes or closes; what happens
when a handler or a predicate raises (``handle_error`` for that channel only;
ExitNow, KeyboardInterrupt and SystemExit leave ``loop()``); overridden
``readable()`` and output queued from another channel; a channel closed by
another during a pass; a listener that runs out of descriptors
(``handle_accept_error``, ``pause_accepting``); a signal while the loop waits.

Most tests keep a bystander connection in the same map and check that it is
still served after the fault.  The engine underneath (registration, fd reuse,
backends) is tested in tests/test_loop.py and tests/test_loop_model.py.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from helpers import Collector, Sockets, in_map, run_until

from asyncio_compat import _loop, asyncore, timers

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
Map = Dict[int, Any]


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


def bystander(socket_map: Map, sockets: Sockets) -> Tuple[Recorder, socket.socket]:
    ours, theirs = sockets.pair()
    return Recorder(ours.dup(), socket_map), theirs


def check_bystander(
    socket_map: Map, poller_name: str, use_poll: bool, chan: Recorder, peer: socket.socket
) -> None:
    peer.send(b"still served")
    def served() -> bool:
        return chan.received.endswith(b"still served")

    run_until(socket_map, served, poller=poller_name, use_poll=use_poll)
    assert chan.errors == [] and in_map(chan, socket_map)


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


# -- a signal while the loop waits -----------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_signal_during_poll_does_not_disturb_the_loop(
    poller_name: str, socket_map: Map, sockets: Sockets
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


# -- readiness interest -------------------------------------------------------------------------


class Toggle(Collector):
    """A legacy subclass with its own readable(): asked every pass."""

    def __init__(self, sock: Any, socket_map: Map) -> None:
        super().__init__(sock, socket_map)
        self.want = False
        self.asked = 0

    def readable(self) -> bool:
        self.asked += 1
        return self.want


def test_overridden_readable_is_honoured_on_next_pass(
    poller_name: str, socket_map: Map, pair: Tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    chan = Toggle(a.dup(), socket_map)
    b.send(b"hello")
    asyncore.loop(timeout=0.01, map=socket_map, count=3, poller=poller_name)
    assert chan.data == b""
    assert chan.asked >= 3, "an overridden predicate must be asked every pass"
    chan.want = True  # no notification: 3.11 code just flips state
    asyncore.loop(timeout=0.5, map=socket_map, count=1, poller=poller_name)
    assert chan.data == b"hello"


def test_send_from_another_channel_is_noticed(poller_name: str, socket_map: Map, sockets: Sockets) -> None:
    a1, b1 = sockets.pair()
    a2, b2 = sockets.pair()
    sender = asyncore.dispatcher_with_send(a2.dup(), map=socket_map)

    class Relay(Collector):
        def handle_read(self) -> None:
            super().handle_read()
            # dispatcher_with_send tells the loop; a full socket buffer is
            # drained on later passes
            sender.send(self.data * 20000)

    Relay(a1.dup(), socket_map)
    b1.send(b"ab")
    b2.setblocking(False)
    got = bytearray()

    def all_arrived() -> bool:
        try:
            got.extend(b2.recv(1 << 20))
        except BlockingIOError:
            pass
        return len(got) >= 40000

    run_until(socket_map, all_arrived, poller=poller_name)
    assert got == b"ab" * 20000


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


# -- a listener out of descriptors, and pause_accepting() ------------------------------------------

EXHAUST_SCRIPT = textwrap.dedent(
    """
    import errno, json, os, resource, socket, sys, time
    sys.path.insert(0, sys.argv[2])
    from asyncio_compat import SocketMap, asyncore

    socket_map = SocketMap()
    report = {"accept_calls": 0, "accept_errors": [], "logged": []}

    class Echo(asyncore.dispatcher_with_send):
        def handle_read(self):
            self.send(self.recv(100))

    class Listener(asyncore.dispatcher):
        accept_pause = 0.05

        def handle_accept(self):
            report["accept_calls"] += 1
            super().handle_accept()

        def handle_accept_error(self, exc):
            report["accept_errors"].append(exc.errno)
            super().handle_accept_error(exc)

        def log_info(self, message, type="info"):
            report["logged"].append([type, message])

        def handle_accepted(self, sock, addr):
            Echo(sock, map=socket_map)

    def run_for(seconds, until=lambda: False):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            asyncore.loop(timeout=0.05, map=socket_map, count=1, poller=sys.argv[1])

    listener = Listener(map=socket_map)
    listener.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    run_for(0.01)  # the poller's own fd exists before the limit bites
    client = socket.socket()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    hogs = []
    try:
        while True:
            hogs.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE, exc
    client.connect(listener.socket.getsockname())  # waits in the backlog
    run_for(0.5)
    report["calls_while_exhausted"] = report["accept_calls"]
    report["listener_alive"] = listener.accepting and listener in socket_map.values()
    for fd in hogs:
        os.close(fd)
    client.sendall(b"served after all")
    client.setblocking(False)
    echoed = []

    def got_echo():
        try:
            echoed.append(client.recv(100))
        except BlockingIOError:
            return False
        return True

    run_for(20, got_echo)
    report["echo"] = echoed[0].decode() if echoed else None
    client.close()
    asyncore.close_all(map=socket_map)
    print(json.dumps(report))
    """
)


def test_listener_survives_running_out_of_descriptors(poller_name: str) -> None:
    pytest.importorskip("resource")
    proc = subprocess.run(
        [sys.executable, "-c", EXHAUST_SCRIPT, poller_name, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["accept_errors"]) == {24}  # EMFILE, through handle_accept_error
    assert report["listener_alive"] is True
    # paused 0.05 s after each failure for 0.5 s: about ten tries, not a spin
    assert 1 <= report["calls_while_exhausted"] <= 40
    assert [entry[0] for entry in report["logged"]] == ["error"]  # logged once, not per try
    assert "Too many open files" in report["logged"][0][1]
    assert report["echo"] == "served after all"


class Listener(asyncore.dispatcher):
    def __init__(self, socket_map: Map) -> None:
        super().__init__(map=socket_map)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(1)


def test_pause_accepting_rejects_bad_durations(socket_map: Map) -> None:
    listener = Listener(socket_map)
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="seconds must"):
            listener.pause_accepting(bad)


def test_closing_a_paused_listener_ends_the_pause(poller_name: str, socket_map: Map) -> None:
    listener = Listener(socket_map)
    listener.pause_accepting(3600)
    state = _loop.loop_for(socket_map)
    assert len(state.timers) == 1
    listener.close()
    assert len(state.timers) == 0  # nothing left to keep loop() running
    started = time.monotonic()
    asyncore.loop(timeout=5, map=socket_map, poller=poller_name)
    assert time.monotonic() - started < 4  # returned at once: no pause left to wait out


def test_a_paused_listener_is_not_watched(poller_name: str, socket_map: Map, sockets: Sockets) -> None:
    listener = Listener(socket_map)
    sockets.append(socket.create_connection(listener.socket.getsockname()))
    accepted: List[Any] = []
    listener.handle_accepted = lambda sock, addr: sockets.append(sock) or accepted.append(sock)  # type: ignore[method-assign]
    listener.pause_accepting(0.2)
    asyncore.loop(timeout=0.05, map=socket_map, count=2, poller=poller_name)
    assert accepted == []  # the connection waits in the backlog
    run_until(socket_map, lambda: bool(accepted), poller=poller_name, seconds=10)
    assert len(accepted) == 1  # resumed by the timer


def test_close_closes_the_socket_even_when_del_channel_raises(
    socket_map: Dict[int, Any], pair: Tuple[socket.socket, socket.socket]
) -> None:
    class Failing(asyncore.dispatcher):
        def del_channel(self, map: Any = None) -> None:
            super().del_channel(map)
            raise RuntimeError("del_channel failed")

    channel = Failing(pair[0], socket_map)
    with pytest.raises(RuntimeError, match="del_channel failed"):
        channel.close()
    assert pair[0].fileno() == -1 and not socket_map
