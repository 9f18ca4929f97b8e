"""Idle timeouts (``asyncio_compat.idle.IdleTimeoutMixin``) on every backend:
a silent connection is closed after its timeout, activity postpones it, a
failing hook goes to ``handle_error``, and closing cancels the check."""

from __future__ import annotations

import time
from typing import Any, Dict, List

import pytest
from helpers import QuietIdle as Quiet
from helpers import Sockets, in_map, run_until

from asyncio_compat import _loop, asyncore, timers

pytestmark = pytest.mark.timeout(60)

Map = Dict[int, Any]


def test_silent_connection_is_closed(poller_name: str, socket_map: Map, sockets: Sockets) -> None:
    a, _ = sockets.pair()
    started = time.monotonic()
    chan = Quiet(a.dup(), socket_map, 0.2)
    run_until(socket_map, lambda: not in_map(chan, socket_map), poller=poller_name)
    assert len(chan.timeouts) == 1
    assert chan.timeouts[0] - started >= 0.2  # never early
    assert not socket_map


def test_activity_postpones_the_timeout(poller_name: str, socket_map: Map, sockets: Sockets) -> None:
    a, b = sockets.pair()
    chan = Quiet(a.dup(), socket_map, 0.5)
    sent: List[float] = []

    def chatter() -> None:
        b.send(b".")
        sent.append(time.monotonic())
        if len(sent) == 20:
            ticker.cancel()

    ticker = timers.call_every(0.05, chatter, map=socket_map)
    run_until(socket_map, lambda: len(sent) == 20 or not in_map(chan, socket_map), poller=poller_name)
    assert in_map(chan, socket_map), "closed while the peer kept talking"
    state = _loop.existing_loop(socket_map)
    assert state is not None and len(state.timers) == 1  # one check pending, not one per read
    run_until(socket_map, lambda: not in_map(chan, socket_map), poller=poller_name)
    assert chan.received == b"." * 20
    assert chan.timeouts[0] - sent[-1] >= 0.5


def test_failing_idle_hook_goes_to_handle_error(
    poller_name: str, socket_map: Map, sockets: Sockets, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = sockets.pair()
    c, d = sockets.pair()

    class Broken(Quiet):
        def handle_idle_timeout(self) -> None:
            raise RuntimeError("idle hook exploded")

    broken = Broken(a.dup(), socket_map, 0.1)
    bystander = Quiet(c.dup(), socket_map, 60.0)
    run_until(socket_map, lambda: not in_map(broken, socket_map), poller=poller_name)
    assert "idle hook exploded" in capsys.readouterr().out  # the default handle_error's report
    d.send(b"still served")
    run_until(socket_map, lambda: bystander.received == b"still served", poller=poller_name)


def test_set_idle_timeout_checks_and_switches_off(
    poller_name: str, socket_map: Map, sockets: Sockets
) -> None:
    a, _ = sockets.pair()
    chan = Quiet(a.dup(), socket_map, 0.1)
    with pytest.raises(ValueError, match="positive finite"):
        chan.set_idle_timeout(0)
    with pytest.raises(TypeError, match="number of seconds or None"):
        chan.set_idle_timeout("5")  # type: ignore[arg-type]
    chan.set_idle_timeout(None)
    state = _loop.loop_for(socket_map)
    assert len(state.timers) == 0
    asyncore.loop(timeout=0.3, map=socket_map, count=2, poller=poller_name)
    assert in_map(chan, socket_map) and chan.timeouts == []
    chan.close()
    asyncore.loop(timeout=0, map=socket_map, count=1, poller=poller_name)  # releases the poller
    assert _loop.existing_loop(socket_map) is None


def test_closing_cancels_the_check(poller_name: str, socket_map: Map, sockets: Sockets) -> None:
    a, _ = sockets.pair()
    chan = Quiet(a.dup(), socket_map, 3600.0)
    chan.close()
    asyncore.loop(timeout=5, map=socket_map, poller=poller_name)  # returns at once: no timer left
    assert chan.timeouts == []
