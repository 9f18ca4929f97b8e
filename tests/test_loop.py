"""The loop behind asyncore.loop(): registration, dispatch and their edge cases.

Every test runs once per available backend (the ``poller_name`` fixture).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import pollers
from asyncio_compat import SocketMap, _loop, asyncore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fast_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """epoll/kqueue find fds closed behind their back by a periodic sweep: make it quick."""
    monkeypatch.setattr(pollers._base.SweepingPoller, "sweep_interval", 0.02)


@pytest.fixture
def pairs() -> Iterator[List[Tuple[socket.socket, socket.socket]]]:
    """Socket pairs that are closed after the test, whatever it did with them."""
    made: List[Tuple[socket.socket, socket.socket]] = []
    yield made
    for a, b in made:
        a.close()
        b.close()


def make_pair(pairs: List[Tuple[socket.socket, socket.socket]]) -> Tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    pairs.append((a, b))
    return a, b


class Recorder(asyncore.dispatcher):
    """Records every event it gets; reads what is there."""

    def __init__(self, sock: Any, socket_map: Dict[int, Any]) -> None:
        super().__init__(sock, map=socket_map)
        self.events: List[str] = []
        self.data = b""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.events.append("read")
        self.data += self.recv(4096)

    def handle_close(self) -> None:
        self.events.append("close")
        self.close()


def run(socket_map: Dict[int, Any], poller_name: str, count: int = 1, timeout: float = 0.5) -> None:
    asyncore.loop(timeout=timeout, map=socket_map, count=count, poller=poller_name)


def finish(socket_map: Dict[int, Any]) -> None:
    asyncore.close_all(map=socket_map)


@pytest.mark.parametrize("map_type", [SocketMap, dict])
def test_event_is_not_delivered_to_new_owner_of_reused_fd(
    poller_name: str, map_type: Any, pairs: List[Tuple[socket.socket, socket.socket]]
) -> None:
    socket_map: Dict[int, Any] = map_type()
    channels: List[Recorder] = []
    newcomers: List[Recorder] = []

    class Closer(Recorder):
        """The first of the two to run closes the other and takes its fd."""

        def handle_read(self) -> None:
            super().handle_read()
            if newcomers:
                return
            victim = next(c for c in channels if c is not self)
            old_fd = victim._fileno
            assert old_fd is not None
            victim.close()
            a, b = socket.socketpair()
            if a.fileno() != old_fd:
                os.dup2(a.fileno(), old_fd)  # force the reuse the test is about
                a.close()
                a = socket.socket(fileno=old_fd)
            pairs.append((a, b))
            newcomers.append(Recorder(a, socket_map))
            assert newcomers[0]._fileno == old_fd

    for _ in range(2):
        a, b = make_pair(pairs)
        channels.append(Closer(a.dup(), socket_map))
        b.send(b"x")  # both readable in the same pass
    run(socket_map, poller_name)
    assert len(newcomers) == 1
    assert newcomers[0].events == [], "the closed channel's event reached the new owner"
    finish(socket_map)


class Toggle(asyncore.dispatcher):
    """A legacy subclass with its own readable(): asked every pass."""

    def __init__(self, sock: Any, socket_map: Dict[int, Any]) -> None:
        super().__init__(sock, map=socket_map)
        self.want = False
        self.data = b""
        self.asked = 0

    def readable(self) -> bool:
        self.asked += 1
        return self.want

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.data += self.recv(100)


def test_overridden_readable_is_honoured_on_next_pass(
    poller_name: str, pairs: List[Tuple[socket.socket, socket.socket]]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()
    a, b = make_pair(pairs)
    chan = Toggle(a.dup(), socket_map)
    b.send(b"hello")
    run(socket_map, poller_name, count=3, timeout=0.01)
    assert chan.data == b""
    assert chan.asked >= 3, "an overridden predicate must be asked every pass"
    chan.want = True  # no notification: 3.11 code just flips state
    run(socket_map, poller_name, count=1)
    assert chan.data == b"hello"
    finish(socket_map)


def test_builtin_predicates_are_not_asked_when_idle(
    poller_name: str, monkeypatch: pytest.MonkeyPatch, pairs: List[Tuple[socket.socket, socket.socket]]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()
    for _ in range(50):
        a, _b = make_pair(pairs)
        chan = asyncore.dispatcher_with_send(a.dup(), map=socket_map)
        assert chan.connected
    run(socket_map, poller_name, count=1, timeout=0)
    asked: List[Any] = []
    real = _loop.wanted_events
    monkeypatch.setattr(_loop, "wanted_events", lambda obj: asked.append(obj) or real(obj))
    run(socket_map, poller_name, count=5, timeout=0)
    assert asked == [], "idle channels with built-in predicates were asked"
    finish(socket_map)


def test_plain_dict_map_is_compared_every_pass(
    poller_name: str, monkeypatch: pytest.MonkeyPatch, pairs: List[Tuple[socket.socket, socket.socket]]
) -> None:
    socket_map: Dict[int, Any] = {}
    a, b = make_pair(pairs)
    chan = Recorder(a.dup(), socket_map)
    del socket_map[chan._fileno]  # legacy code touching the map directly
    b.send(b"late")
    run(socket_map, poller_name, count=1, timeout=0) if socket_map else None
    socket_map[chan._fileno] = chan  # and putting it back
    run(socket_map, poller_name, count=1)
    assert chan.data == b"late"
    finish(socket_map)


def test_send_from_another_channel_is_noticed(
    poller_name: str, pairs: List[Tuple[socket.socket, socket.socket]]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()
    a1, b1 = make_pair(pairs)
    a2, b2 = make_pair(pairs)
    sender = asyncore.dispatcher_with_send(a2.dup(), map=socket_map)

    class Relay(Recorder):
        def handle_read(self) -> None:
            super().handle_read()
            # dispatcher_with_send tells the loop; a full socket buffer is
            # drained on later passes
            sender.send(self.data * 20000)

    Relay(a1.dup(), socket_map)
    b1.send(b"ab")
    b2.setblocking(False)
    got = b""
    for _ in range(200):
        run(socket_map, poller_name, count=1, timeout=0.05)
        try:
            got += b2.recv(1 << 20)
        except BlockingIOError:
            pass
        if len(got) == 40000:
            break
    assert got == b"ab" * 20000
    finish(socket_map)


def test_fd_closed_behind_the_map_gets_handle_close(
    poller_name: str, fast_sweep: None, pairs: List[Tuple[socket.socket, socket.socket]]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()
    a, b = make_pair(pairs)
    healthy_a, healthy_b = make_pair(pairs)
    doomed = Recorder(a.dup(), socket_map)
    healthy = Recorder(healthy_a.dup(), socket_map)
    run(socket_map, poller_name, count=1, timeout=0)
    os.close(doomed.socket.detach())  # behind the loop's back
    for _ in range(50):
        run(socket_map, poller_name, count=1, timeout=0.05)
        if "close" in doomed.events:
            break
    assert doomed.events[-1:] == ["close"]
    healthy_b.send(b"still here")
    run(socket_map, poller_name, count=1)
    assert healthy.data == b"still here"
    finish(socket_map)


def test_handler_exception_harms_only_its_channel(
    poller_name: str, pairs: List[Tuple[socket.socket, socket.socket]], capsys: pytest.CaptureFixture[str]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()

    class Broken(Recorder):
        def handle_read(self) -> None:
            raise RuntimeError("boom in handle_read")

    a1, b1 = make_pair(pairs)
    a2, b2 = make_pair(pairs)
    broken = Broken(a1.dup(), socket_map)
    fine = Recorder(a2.dup(), socket_map)
    b1.send(b"x")
    b2.send(b"y")
    run(socket_map, poller_name)
    assert broken._fileno is None and broken.events == ["close"]
    assert fine.data == b"y"
    assert "boom in handle_read" in capsys.readouterr().out
    finish(socket_map)


def test_predicate_exception_goes_to_handle_error(
    poller_name: str, pairs: List[Tuple[socket.socket, socket.socket]], capsys: pytest.CaptureFixture[str]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()

    class BadPredicate(Recorder):
        def readable(self) -> bool:
            raise ValueError("readable exploded")

    a1, _ = make_pair(pairs)
    a2, b2 = make_pair(pairs)
    bad = BadPredicate(a1.dup(), socket_map)
    fine = Recorder(a2.dup(), socket_map)
    b2.send(b"ok")
    run(socket_map, poller_name)
    assert bad._fileno is None
    assert fine.data == b"ok"
    assert "readable exploded" in capsys.readouterr().out
    finish(socket_map)


@pytest.mark.parametrize("use_poll", [True, False])
def test_peer_close_reaches_handle_close(
    poller_name: str, use_poll: bool, pairs: List[Tuple[socket.socket, socket.socket]]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()
    a, b = make_pair(pairs)
    chan = Recorder(a.dup(), socket_map)
    b.send(b"last words")
    b.close()
    asyncore.loop(timeout=0.5, map=socket_map, use_poll=use_poll, count=5, poller=poller_name)
    assert chan.data == b"last words"
    assert chan.events[-1] == "close"
    assert not socket_map


def test_exit_now_propagates(poller_name: str, pairs: List[Tuple[socket.socket, socket.socket]]) -> None:
    socket_map: Dict[int, Any] = SocketMap()

    class Quitter(Recorder):
        def handle_read(self) -> None:
            raise asyncore.ExitNow("stop")

    a, b = make_pair(pairs)
    Quitter(a.dup(), socket_map)
    b.send(b"x")
    with pytest.raises(asyncore.ExitNow):
        run(socket_map, poller_name)
    finish(socket_map)


def test_switching_backend_between_calls(pairs: List[Tuple[socket.socket, socket.socket]]) -> None:
    socket_map: Dict[int, Any] = SocketMap()
    a, b = make_pair(pairs)
    chan = Recorder(a.dup(), socket_map)
    for name in pollers.available():
        b.send(name.encode())
        run(socket_map, name)
    assert chan.data == "".join(pollers.available()).encode()
    finish(socket_map)


def test_unknown_poller_name_is_a_clear_error() -> None:
    socket_map: Dict[int, Any] = SocketMap()
    socket_map[99999] = object()
    with pytest.raises(pollers.UnknownPollerError, match="available: "):
        asyncore.loop(map=socket_map, count=1, poller="no-such-poller")


def test_idle_hook_call_does_not_block_with_nothing_registered(poller_name: str) -> None:
    import time

    socket_map: Dict[int, Any] = SocketMap()
    start = time.monotonic()
    for _ in range(100):
        asyncore.loop(timeout=0, map=socket_map, count=1, poller=poller_name)
    assert time.monotonic() - start < 5.0  # bound only: an accidental block would be 100 x timeout


def test_map_state_released_when_map_empties(
    poller_name: str, pairs: List[Tuple[socket.socket, socket.socket]]
) -> None:
    socket_map: Dict[int, Any] = SocketMap()
    a, b = make_pair(pairs)
    chan = Recorder(a.dup(), socket_map)
    run(socket_map, poller_name)
    assert _loop.existing_loop(socket_map) is not None
    chan.close()
    run(socket_map, poller_name)
    assert _loop.existing_loop(socket_map) is None
