"""Attacks on the promises of ``asyncio_compat.idle`` (its docstrings and
docs/reliability.rst): the timeout comes whoever drives the map, never early,
busy connections never touch the timer heap per event, a hook may re-arm or
close others, and closed connections are not kept alive by their timers.
Loop-level tests run on every backend.
"""

from __future__ import annotations

import gc
import socket
import time
import weakref
from typing import Any, List

import pytest
from helpers import QuietIdle as Quiet
from helpers import Sockets, in_map
from helpers import drive_one_pass as drive

import asyncio_compat.idle
from asyncio_compat import asyncore, call_every, call_later, loop_stats

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("socket_map", ["SocketMap", "dict"], indirect=True)
@pytest.mark.parametrize("driver", ["loop", "poll", "poll2"])
def test_a_silent_connection_times_out_whoever_drives_the_map(
    driver: str, default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    mine, _ = sockets.pair()
    started = time.monotonic()
    channel = Quiet(mine.dup(), socket_map, 0.1)
    while in_map(channel, socket_map) and time.monotonic() - started < 20:
        drive(driver, socket_map, 5.0, default_poller)
    assert not in_map(channel, socket_map), f"{driver}() never ran the idle check"
    assert len(channel.timeouts) == 1 and channel.timeouts[0] - started >= 0.1  # never early


def test_a_busy_connection_never_touches_the_timer_heap_per_event(
    default_poller: str, socket_map: Any, sockets: Sockets, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, peer = sockets.pair()
    channel = Quiet(mine.dup(), socket_map, 30.0)
    armed: List[float] = []
    real_call_later = asyncio_compat.idle.call_later

    def counting(delay: float, *args: Any, **kwargs: Any) -> Any:
        armed.append(delay)
        return real_call_later(delay, *args, **kwargs)

    monkeypatch.setattr(asyncio_compat.idle, "call_later", counting)
    for _ in range(200):
        peer.send(b"x")
        asyncore.loop(timeout=5, map=socket_map, count=1, poller=default_poller)
    assert channel.received == b"x" * 200
    assert armed == []  # 200 read events, no timer made or cancelled
    assert loop_stats(socket_map).timers == 1


def test_a_hook_that_keeps_the_connection_starts_a_new_period(
    default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    mine, _ = sockets.pair()

    class Patient(Quiet):
        def handle_idle_timeout(self) -> None:
            self.timeouts.append(time.monotonic())
            if len(self.timeouts) < 3:
                self.set_idle_timeout(0.05)  # keep it, for another period
            else:
                self.close()

    started = time.monotonic()
    channel = Patient(mine.dup(), socket_map, 0.05)
    asyncore.loop(timeout=5, map=socket_map, poller=default_poller)  # returns once it closed
    assert len(channel.timeouts) == 3
    assert channel.timeouts[2] - started >= 0.15  # three whole periods, none early


def test_a_hook_that_closes_another_idle_connection_due_in_the_same_pass(
    default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    first_sock, _ = sockets.pair()
    second_sock, _ = sockets.pair()
    channels: List[Quiet] = []

    class Closer(Quiet):
        def handle_idle_timeout(self) -> None:
            self.timeouts.append(time.monotonic())
            for other in channels:
                other.close()

    channels.append(Closer(first_sock.dup(), socket_map, 0.05))
    channels.append(Closer(second_sock.dup(), socket_map, 0.05))
    asyncore.loop(timeout=5, map=socket_map, poller=default_poller)
    # the first to time out closed both: the second's check found it closed
    assert sorted(len(c.timeouts) for c in channels) == [0, 1]
    assert not socket_map


def test_closed_connections_are_not_kept_alive_by_their_timers(
    default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    """Connections with a 300 s idle timeout come and go while two timers due
    sooner stay pending: the closed ones must be freed, not held by the heap."""
    ahead = [call_later(200, lambda: None, map=socket_map) for _ in range(2)]
    alive: List[weakref.ref[Quiet]] = []
    for _ in range(1_000):
        mine, peer = socket.socketpair()
        channel = Quiet(mine, socket_map, 300.0)
        alive.append(weakref.ref(channel))
        channel.close()
        peer.close()
        del channel
    gc.collect()
    still = sum(1 for ref in alive if ref() is not None)
    assert still <= 100, f"{still} of 1,000 closed connections are still alive"
    assert loop_stats(socket_map).timers == 2
    for handle in ahead:
        handle.cancel()


def test_a_periodic_timer_beside_many_idle_connections(
    default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    channels = []
    started = time.monotonic()
    for _ in range(20):
        mine, _ = sockets.pair()
        channels.append(Quiet(mine.dup(), socket_map, 0.2))
    ticks: List[None] = []
    ticker = call_every(0.02, ticks.append, None, map=socket_map)
    while socket_map and time.monotonic() - started < 20:
        asyncore.loop(timeout=5, map=socket_map, count=1, poller=default_poller)
    ticker.cancel()
    assert all(len(c.timeouts) == 1 and c.timeouts[0] - started >= 0.2 for c in channels)
    assert len(ticks) >= 5  # the periodic timer kept running beside them
