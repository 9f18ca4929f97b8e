"""The engine behind asyncore.loop(): registration, fd reuse, backends, map state.

Every test runs once per available backend (the ``poller_name`` fixture).
What the handlers of a dispatcher see is in tests/test_asyncore.py; random
programs checked against a model are in tests/test_loop_model.py.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Dict, List

import pytest
from helpers import Collector, Sockets, run_until, sweep_every

import pollers
from asyncio_compat import SocketMap, _interest, _loop, asynchat, asyncore

pytestmark = pytest.mark.timeout(60)

Map = Dict[int, Any]
SOCKET_MAP_KINDS = pytest.mark.parametrize("socket_map", ["SocketMap", "dict"], indirect=True)


@pytest.fixture
def fast_sweep(poller_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """epoll/kqueue find fds closed behind their back by a periodic sweep: make it quick."""
    sweep_every(0.02, poller_name, monkeypatch)


def run(socket_map: Map, poller_name: str, count: int = 1, timeout: float = 0.5) -> None:
    asyncore.loop(timeout=timeout, map=socket_map, count=count, poller=poller_name)


@SOCKET_MAP_KINDS
def test_event_is_not_delivered_to_new_owner_of_reused_fd(
    poller_name: str, socket_map: Map, sockets: Sockets
) -> None:
    channels: List[Collector] = []
    newcomers: List[Collector] = []

    class Closer(Collector):
        """The first of the two to run closes the other and takes its fd."""

        def handle_read(self) -> None:
            super().handle_read()
            if newcomers:
                return
            victim = next(c for c in channels if c is not self)
            old_fd = victim.socket.fileno()
            victim.close()
            a, _ = sockets.pair()
            if a.fileno() != old_fd:
                os.dup2(a.fileno(), old_fd)  # force the reuse the test is about
                sockets.append(socket.socket(fileno=old_fd))
                a = sockets[-1]
            newcomers.append(Collector(a, socket_map))
            assert newcomers[0].socket.fileno() == old_fd

    for _ in range(2):
        a, b = sockets.pair()
        channels.append(Closer(a.dup(), socket_map))
        b.send(b"x")  # both readable in the same pass
    run(socket_map, poller_name)
    assert len(newcomers) == 1
    assert newcomers[0].events == [], "the closed channel's event reached the new owner"


def test_builtin_predicates_are_not_asked_when_idle(
    poller_name: str, socket_map: Map, sockets: Sockets
) -> None:
    looks: List[int] = []

    class Watched(asyncore.dispatcher_with_send):
        """Built-in predicates; counts each time its interest is worked out (which
        reads out_buffer, whether by writable() or by the loop's one-call form)."""

        @property  # type: ignore[override]
        def out_buffer(self) -> bytes:
            looks.append(1)
            return self.pending

        @out_buffer.setter
        def out_buffer(self, value: bytes) -> None:
            self.pending = value

    for _ in range(50):
        a, _b = sockets.pair()
        assert Watched(a.dup(), map=socket_map).connected
    run(socket_map, poller_name, count=1, timeout=0)
    assert looks, "precondition: a new channel's interest is worked out"
    looks.clear()
    run(socket_map, poller_name, count=5, timeout=0)
    assert looks == [], "idle channels with built-in predicates were asked"


@pytest.mark.parametrize("socket_map", ["dict"], indirect=True)
def test_plain_dict_map_is_compared_every_pass(poller_name: str, socket_map: Map, sockets: Sockets) -> None:
    a, b = sockets.pair()
    chan = Collector(a.dup(), socket_map)
    fd = chan.socket.fileno()
    del socket_map[fd]  # legacy code touching the map directly
    b.send(b"late")
    run(socket_map, poller_name, count=1, timeout=0) if socket_map else None
    socket_map[fd] = chan  # and putting it back
    run(socket_map, poller_name, count=1)
    assert chan.data == b"late"


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


def test_switching_backend_between_calls(socket_map: Map, sockets: Sockets) -> None:
    a, b = sockets.pair()
    chan = Collector(a.dup(), socket_map)
    for name in pollers.available():
        b.send(name.encode())
        run(socket_map, name)
    assert chan.data == "".join(pollers.available()).encode()


def test_unknown_poller_name_is_a_clear_error() -> None:
    socket_map: Map = SocketMap()
    socket_map[99999] = object()  # never served: the name is refused first
    with pytest.raises(pollers.UnknownPollerError, match="available: "):
        asyncore.loop(map=socket_map, count=1, poller="no-such-poller")


def test_idle_hook_call_does_not_block_with_nothing_registered(poller_name: str, socket_map: Map) -> None:
    start = time.monotonic()
    for _ in range(100):
        asyncore.loop(timeout=0, map=socket_map, count=1, poller=poller_name)
    assert time.monotonic() - start < 5.0  # bound only: an accidental block would be 100 x timeout


def test_map_state_released_when_map_empties(poller_name: str, socket_map: Map, sockets: Sockets) -> None:
    a, b = sockets.pair()
    chan = Collector(a.dup(), socket_map)
    run(socket_map, poller_name)
    assert _loop.existing_loop(socket_map) is not None
    chan.close()
    run(socket_map, poller_name)
    assert _loop.existing_loop(socket_map) is None


@pytest.mark.parametrize("connected", [True, False])
@pytest.mark.parametrize("accepting", [True, False])
@pytest.mark.parametrize("queued", [False, True])
@pytest.mark.parametrize("paused", [False, True])
def test_fast_interest_functions_agree_with_the_predicates(
    connected: bool, accepting: bool, queued: bool, paused: bool, socket_map: Map, sockets: Sockets
) -> None:
    """The built-in channel classes are not asked every pass: the loop computes
    their masks in one call (``register_fast_interest``).  The mask it registers
    is the one asking the predicates gives, in every state (``accept_paused``
    included: a paused listener asks for nothing)."""
    for cls in (asyncore.dispatcher, asyncore.dispatcher_with_send, asynchat.async_chat):
        mine, _ = sockets.pair()
        chan = cls(mine, map=socket_map)
        chan.connected = False  # nothing is sent while the output queues
        if queued and isinstance(chan, asyncore.dispatcher_with_send):
            chan.out_buffer = b"pending"
        if queued and isinstance(chan, asynchat.async_chat):
            # above the high-water mark: reading pauses
            chan.output_high_water = 1
            chan.push(b"pending")
            assert not chan.readable()
        chan.connected = connected
        chan.accepting = accepting
        chan.accept_paused = paused  # as pause_accepting() sets it, without its timer
        map_loop = _loop.loop_for(socket_map)
        map_loop.sync()  # the new channel's registration, as a pass begins with
        assert not map_loop.asks_every_pass(), cls
        registered = map_loop.poller.get_mask(mine.fileno())
        where = (cls, connected, accepting, queued, paused)
        assert registered == _interest.wanted_events(chan), where
        if accepting and paused:
            assert registered == 0, where
        chan.close()
