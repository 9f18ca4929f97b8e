"""Overload: a listener out of descriptors, and idle connections.

The descriptor test runs in a subprocess with a lowered RLIMIT_NOFILE, so
that exhausting descriptors cannot disturb pytest; the idle-timeout tests run
in this process.  Both run on every backend.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from asyncio_compat import SocketMap, _loop, asyncore, timers
from asyncio_compat.idle import IdleTimeoutMixin

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
Map = Dict[int, Any]

# -- EMFILE on accept ------------------------------------------------------------------

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
    report["listener_alive"] = listener.accepting and listener._fileno in socket_map
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


def test_pause_accepting_rejects_bad_durations() -> None:
    socket_map: Map = SocketMap()
    listener = Listener(socket_map)
    try:
        for bad in (-1.0, float("inf"), float("nan")):
            with pytest.raises(ValueError, match="finite number of seconds"):
                listener.pause_accepting(bad)
    finally:
        asyncore.close_all(map=socket_map)


def test_closing_a_paused_listener_ends_the_pause(poller_name: str) -> None:
    socket_map: Map = SocketMap()
    listener = Listener(socket_map)
    listener.pause_accepting(3600)
    state = _loop.loop_for(socket_map)
    assert len(state.timers) == 1
    listener.close()
    assert len(state.timers) == 0  # nothing left to keep loop() running
    asyncore.loop(timeout=5, map=socket_map, poller=poller_name)  # returns at once
    assert listener.accept_paused is False


def test_a_paused_listener_is_not_watched(poller_name: str) -> None:
    socket_map: Map = SocketMap()
    listener = Listener(socket_map)
    client = socket.create_connection(listener.socket.getsockname())
    try:
        accepted: List[Any] = []
        listener.handle_accepted = lambda sock, addr: accepted.append(sock)  # type: ignore[method-assign]
        listener.pause_accepting(0.2)
        asyncore.loop(timeout=0.05, map=socket_map, count=2, poller=poller_name)
        assert accepted == []  # the connection waits in the backlog
        deadline = time.monotonic() + 10
        while not accepted and time.monotonic() < deadline:
            asyncore.loop(timeout=0.05, map=socket_map, count=1, poller=poller_name)
        assert len(accepted) == 1  # resumed by the timer
        accepted[0].close()
    finally:
        client.close()
        asyncore.close_all(map=socket_map)


# -- idle timeouts ------------------------------------------------------------------------------


@pytest.fixture
def pairs() -> Iterator[List[socket.socket]]:
    made: List[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def make_pair(pairs: List[socket.socket]) -> Tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    pairs += [a, b]
    return a, b


class Quiet(IdleTimeoutMixin, asyncore.dispatcher):
    """Reads what comes; records idle timeouts and closes."""

    def __init__(self, sock: socket.socket, socket_map: Map, timeout: float) -> None:
        self.idle_timeout = timeout
        self.timeouts: List[float] = []
        self.received = b""
        super().__init__(sock, map=socket_map)

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.received += self.recv(100)

    def handle_idle_timeout(self) -> None:
        self.timeouts.append(time.monotonic())
        super().handle_idle_timeout()

    def handle_close(self) -> None:
        self.close()


def run_until(socket_map: Map, poller_name: str, until: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "the condition was not reached in time"
        asyncore.loop(timeout=0.05, map=socket_map, count=1, poller=poller_name)


def test_silent_connection_is_closed(poller_name: str, pairs: List[socket.socket]) -> None:
    socket_map: Map = SocketMap()
    a, _ = make_pair(pairs)
    started = time.monotonic()
    chan = Quiet(a.dup(), socket_map, 0.2)
    run_until(socket_map, poller_name, lambda: chan._fileno is None)
    assert len(chan.timeouts) == 1
    assert chan.timeouts[0] - started >= 0.2  # never early
    assert not socket_map


def test_activity_postpones_the_timeout(poller_name: str, pairs: List[socket.socket]) -> None:
    socket_map: Map = SocketMap()
    a, b = make_pair(pairs)
    chan = Quiet(a.dup(), socket_map, 0.5)
    sent: List[float] = []

    def chatter() -> None:
        b.send(b".")
        sent.append(time.monotonic())
        if len(sent) == 20:
            ticker.cancel()

    ticker = timers.call_every(0.05, chatter, map=socket_map)
    run_until(socket_map, poller_name, lambda: len(sent) == 20 or chan._fileno is None)
    assert chan._fileno is not None, "closed while the peer kept talking"
    state = _loop.existing_loop(socket_map)
    assert state is not None and len(state.timers) == 1  # one check pending, not one per read
    run_until(socket_map, poller_name, lambda: chan._fileno is None)
    assert chan.received == b"." * 20
    assert chan.timeouts[0] - sent[-1] >= 0.5


def test_failing_idle_hook_goes_to_handle_error(
    poller_name: str, pairs: List[socket.socket], capsys: pytest.CaptureFixture[str]
) -> None:
    socket_map: Map = SocketMap()
    a, _ = make_pair(pairs)
    c, d = make_pair(pairs)

    class Broken(Quiet):
        def handle_idle_timeout(self) -> None:
            raise RuntimeError("idle hook exploded")

    broken = Broken(a.dup(), socket_map, 0.1)
    bystander = Quiet(c.dup(), socket_map, 60.0)
    run_until(socket_map, poller_name, lambda: broken._fileno is None)
    assert "idle hook exploded" in capsys.readouterr().out  # the default handle_error's report
    d.send(b"still served")
    run_until(socket_map, poller_name, lambda: bystander.received == b"still served")
    asyncore.close_all(map=socket_map)


def test_set_idle_timeout_checks_and_switches_off(poller_name: str, pairs: List[socket.socket]) -> None:
    socket_map: Map = SocketMap()
    a, _ = make_pair(pairs)
    chan = Quiet(a.dup(), socket_map, 0.1)
    with pytest.raises(ValueError, match="positive finite"):
        chan.set_idle_timeout(0)
    with pytest.raises(TypeError, match="number of seconds or None"):
        chan.set_idle_timeout("5")  # type: ignore[arg-type]
    chan.set_idle_timeout(None)
    state = _loop.loop_for(socket_map)
    assert len(state.timers) == 0
    asyncore.loop(timeout=0.3, map=socket_map, count=2, poller=poller_name)
    assert chan._fileno is not None and chan.timeouts == []
    chan.close()
    asyncore.loop(timeout=0, map=socket_map, count=1, poller=poller_name)  # releases the poller
    assert _loop.existing_loop(socket_map) is None


def test_closing_cancels_the_check(poller_name: str, pairs: List[socket.socket]) -> None:
    socket_map: Map = SocketMap()
    a, _ = make_pair(pairs)
    chan = Quiet(a.dup(), socket_map, 3600.0)
    chan.close()
    asyncore.loop(timeout=5, map=socket_map, poller=poller_name)  # returns at once: no timer left
    assert chan.timeouts == []
