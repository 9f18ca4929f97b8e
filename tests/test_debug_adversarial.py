"""Attacks on debug mode's promises (docs/debugging.rst): a ResourceWarning
means a leak, and only then; the socket is never closed for you; debug mode
serves timers whoever drives the map.
"""

from __future__ import annotations

import gc
import logging
import socket
import time
import warnings
from typing import Any, Callable, Iterator, List

import pytest

from asyncio_compat import asyncore, call_later, set_debug, socketserver

pytestmark = pytest.mark.timeout(60)

SLOW = 0.02  # the slow_handler threshold here
SLEEP = 0.05  # what the slow callback takes: a controlled duration above SLOW


@pytest.fixture
def debug_on() -> Iterator[None]:
    set_debug(True, slow_handler=SLOW)
    try:
        yield
    finally:
        set_debug(False)


def unclosed_warnings(make: Callable[[], None]) -> List[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()
        gc.collect()
    return [w for w in caught if "unclosed dispatcher" in str(w.message)]


class Nothing(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        pass


@pytest.mark.parametrize("leave", ["detach(server)", "close_all()"])
def test_a_detached_server_is_not_reported_as_unclosed(
    leave: str, socket_map: Any, debug_on: None
) -> None:
    server = socketserver.TCPServer(("127.0.0.1", 0), Nothing)
    mine, peer = socket.socketpair()
    bystander = asyncore.dispatcher(mine, map=socket_map)  # keeps the loop going
    try:

        def attach_and_leave() -> None:
            socketserver.attach(server, socket_map)
            asyncore.loop(timeout=0, map=socket_map, count=1)
            if leave == "detach(server)":
                socketserver.detach(server)
            else:
                asyncore.close_all(map=socket_map)
            asyncore.loop(timeout=0, map=socket_map, count=1)  # the loop lets go of it

        assert unclosed_warnings(attach_and_leave) == []
        assert server.socket.fileno() >= 0  # the server still owns it, open
        assert not socketserver.is_attached(server)
    finally:
        server.server_close()
        bystander.close()
        peer.close()


def test_a_socket_handed_to_another_channel_is_not_reported(socket_map: Any, debug_on: None) -> None:
    mine, peer = socket.socketpair()
    kept: List[asyncore.dispatcher] = []

    def hand_over() -> None:
        first = asyncore.dispatcher(mine, map=socket_map)
        first.del_channel()
        kept.append(asyncore.dispatcher(first.socket, map=socket_map))  # the new owner

    try:
        assert unclosed_warnings(hand_over) == []
        # ... and once the new owner leaks it too, that is reported
        found = unclosed_warnings(lambda: (kept[0].del_channel(), kept.clear()))
        assert len(found) == 1 and found[0].category is ResourceWarning
    finally:
        mine.close()
        peer.close()


def test_a_reported_socket_is_not_closed_for_you(debug_on: None) -> None:
    mine, peer = socket.socketpair()
    try:

        def leak() -> None:
            channel = asyncore.dispatcher(mine, map={})
            channel.del_channel()

        assert len(unclosed_warnings(leak)) == 1
        mine.send(b"still open")
        assert peer.recv(100) == b"still open"
    finally:
        mine.close()
        peer.close()


@pytest.mark.parametrize("driver", ["poll", "poll2"])
def test_debug_mode_times_timers_run_by_poll(
    driver: str, socket_map: Any, debug_on: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio_compat")
    ran: List[None] = []

    def slow_tick() -> None:
        time.sleep(SLEEP)
        ran.append(None)

    mine, peer = socket.socketpair()
    channel = asyncore.dispatcher(mine, map=socket_map)
    try:
        call_later(0, slow_tick, map=socket_map)
        getattr(asyncore, driver)(5.0, socket_map)
        assert ran == [None]
        logged = [r.getMessage() for r in caplog.records if r.name == "asyncio_compat"]
        assert any(f"timer {slow_tick!r} took" in line for line in logged), logged
    finally:
        channel.close()
        peer.close()
