"""set_default_poller(): which loops take the new default, and which keep their poller.

docs/asyncore.rst ("Choosing the poller") promises: a map that already has a
loop keeps its poller until it is released (a ``loop()`` call that ends with
the map empty and no timer pending, or ``close_all()``); ``poller=`` moves it
at once.
"""

from __future__ import annotations

import socket
from typing import Iterator

import pytest

import asyncio_compat
from asyncio_compat import asyncore
from asyncio_compat.timers import call_later

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def default_reset() -> Iterator[None]:
    yield
    asyncio_compat.set_default_poller(None)


def _backend(socket_map: asyncore.SocketMap) -> object:
    return asyncio_compat.loop_stats(socket_map).poller


def _channel(socket_map: asyncore.SocketMap) -> socket.socket:
    ours, theirs = socket.socketpair()
    asyncore.dispatcher(ours, map=socket_map)
    return theirs


def test_a_map_keeps_its_poller_until_it_is_released(
    socket_map: asyncore.SocketMap, default_reset: None
) -> None:
    asyncio_compat.set_default_poller("select")
    peer = _channel(socket_map)
    asyncore.loop(timeout=0, map=socket_map, count=1)
    assert _backend(socket_map) == "select"

    asyncio_compat.set_default_poller("poll")
    asyncore.loop(timeout=0, map=socket_map, count=1)
    assert _backend(socket_map) == "select"  # not moved by the new default

    asyncore.close_all(socket_map)  # released: the next loop takes the default
    peer.close()
    peer = _channel(socket_map)
    asyncore.loop(timeout=0, map=socket_map, count=1)
    assert _backend(socket_map) == "poll"
    asyncore.close_all(socket_map)
    peer.close()


def test_a_pending_timer_keeps_the_loop_and_its_poller(
    socket_map: asyncore.SocketMap, default_reset: None
) -> None:
    asyncio_compat.set_default_poller("select")
    peer = _channel(socket_map)
    asyncore.loop(timeout=0, map=socket_map, count=1)
    timer = call_later(60, print, map=socket_map)
    for channel in list(socket_map.values()):
        channel.close()
    peer.close()
    asyncio_compat.set_default_poller("poll")
    asyncore.loop(timeout=0, map=socket_map, count=1)  # empty map, but a timer pending
    assert _backend(socket_map) == "select"
    timer.cancel()
    asyncore.loop(timeout=0, map=socket_map)  # nothing left: ends and releases the loop
    assert _backend(socket_map) is None
    peer = _channel(socket_map)
    asyncore.loop(timeout=0, map=socket_map, count=1)
    assert _backend(socket_map) == "poll"
    asyncore.close_all(socket_map)
    peer.close()


def test_poller_argument_moves_a_map_at_once(socket_map: asyncore.SocketMap, default_reset: None) -> None:
    asyncio_compat.set_default_poller("poll")
    peer = _channel(socket_map)
    fired = []
    call_later(0, fired.append, "timer", map=socket_map)
    asyncore.loop(timeout=0, map=socket_map, count=1, poller="select")
    assert _backend(socket_map) == "select"
    assert fired == ["timer"]
    asyncore.loop(timeout=0, map=socket_map, count=1)  # no poller=: kept
    assert _backend(socket_map) == "select"
    asyncore.close_all(socket_map)
    peer.close()
