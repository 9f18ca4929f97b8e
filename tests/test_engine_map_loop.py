"""The map loop's life: created by the first ``loop()`` call on a map,
kept across calls (the backend may change between them), released when the
map empties; an unknown backend name is refused first; a call with nothing
registered does not block; a signal during the wait does not disturb it.

Random programs checked against a model are in tests/test_loop_model.py; the
map loop attacked as a hostile program would in tests/test_loop_adversarial.py.
"""

from __future__ import annotations

import signal
import time
from typing import Any, Dict, List

import pytest
from helpers import Collector, Sockets, bystander
from helpers import run_passes as run

import pollers
from asyncio_compat import SocketMap, asyncore, loop_stats, timers

pytestmark = pytest.mark.timeout(60)

Map = Dict[int, Any]


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
    assert loop_stats(socket_map).poller is not None
    chan.close()
    run(socket_map, poller_name)
    assert loop_stats(socket_map).poller is None  # no loop: the map's poller was released


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
