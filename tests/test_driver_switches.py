"""One socket map, driven in turn by every driver: each switch works or raises a clear error.

The drivers (tests/drivers.py): ``asyncore.loop()``, ``poll()``, ``poll2()``,
another event loop calling the idle hook, the asyncio bridge's ``attach()``
and ``run_map()``, and a hosted asyncio loop; Tk's pairs are in
tests/test_tk.py, which owns the X display.  Every pair, in both orders:
the first driver serves an exchange and lets go, a timer is set, the second
serves the next exchange and the timer.  Then, for the drivers that stay in
place (the bridge, a hosted loop), each other driver is tried while they
are: it serves the map or raises RuntimeError saying what to do, and the
first one still serves afterwards.  No driver may spin (its passes are
counted) or starve the map (each exchange has a time limit).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from drivers import DRIVERS, Driver, Reader, until

from asyncio_compat import asyncore
from asyncio_compat.asyncio_bridge import HostedEventLoop, attach, hosted_event_loop, run_map
from asyncio_compat.timers import call_later

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.posix_only("a hosted asyncio loop waits on its selector's own fd, which Windows lacks"),
]


@pytest.fixture
def pair(socket_map: asyncore.SocketMap) -> Iterator[Tuple[Reader, socket.socket]]:
    mine, peer = socket.socketpair()
    reader = Reader(mine, socket_map)
    try:
        yield reader, peer
    finally:
        reader.close()
        peer.close()


def exchange(
    driver: Driver, socket_map: Dict[int, Any], reader: Reader, peer: socket.socket, text: bytes
) -> None:
    """``driver`` serves ``text`` from ``peer`` and a timer set just before: no spin, no starving."""
    fired: List[str] = []
    call_later(0.01, fired.append, "timer", map=socket_map)
    expected = bytes(reader.data) + text
    peer.sendall(text)
    passes, allowed = driver.serve(socket_map, lambda: bytes(reader.data) == expected and fired == ["timer"])
    assert passes <= allowed, f"{driver} made {passes} passes for one exchange: it spins"


@pytest.mark.parametrize(
    "first, second", list(itertools.permutations(DRIVERS, 2)), ids=lambda driver: str(driver)
)
def test_one_driver_after_another(
    first: Driver, second: Driver, default_poller: str, socket_map: asyncore.SocketMap,
    pair: Tuple[Reader, socket.socket],
) -> None:
    reader, peer = pair
    exchange(first, socket_map, reader, peer, b"first; ")
    exchange(second, socket_map, reader, peer, b"second; ")
    exchange(first, socket_map, reader, peer, b"first again")
    assert bytes(reader.data) == b"first; second; first again"


# -- while the bridge serves the map -----------------------------------------------------

REFUSED_BY_THE_BRIDGE: Dict[str, Tuple[Callable[[Dict[int, Any]], Any], str]] = {
    "loop": (lambda m: asyncore.loop(timeout=5, map=m, count=1), "asyncio bridge.*detach"),
    "poll": (lambda m: asyncore.poll(5, m), "asyncio bridge.*detach"),
    "poll2": (lambda m: asyncore.poll2(5, m), "asyncio bridge.*detach"),
    "foreign": (lambda m: asyncore.loop(timeout=0, map=m, count=1), "asyncio bridge.*detach"),
    "attach": (lambda m: attach(m), "already served by another event loop"),
    "hosted": (lambda m: HostedEventLoop(m), "served by an asyncio bridge"),
}


@pytest.mark.parametrize("other", sorted(REFUSED_BY_THE_BRIDGE) + ["run_map"])
def test_other_drivers_while_the_bridge_serves(
    other: str, default_poller: str, socket_map: asyncore.SocketMap, pair: Tuple[Reader, socket.socket]
) -> None:
    reader, peer = pair

    async def main() -> None:
        bridge = attach(socket_map)
        try:
            if other == "run_map":
                with pytest.raises(RuntimeError, match="already served by another event loop"):
                    await run_map(socket_map)
            else:
                start, message = REFUSED_BY_THE_BRIDGE[other]
                with pytest.raises(RuntimeError, match=message):
                    start(socket_map)
            peer.sendall(b"still served")
            await until(lambda: bytes(reader.data) == b"still served")
            assert bridge.attached
        finally:
            bridge.detach()

    asyncio.run(main())


# -- while a hosted asyncio loop is in the map ----------------------------------------------


@pytest.mark.parametrize("other", [d for d in DRIVERS if d.name in ("loop", "poll", "poll2")], ids=str)
def test_drivers_serve_a_map_with_a_hosted_loop(
    other: Driver, default_poller: str, socket_map: asyncore.SocketMap, pair: Tuple[Reader, socket.socket]
) -> None:
    reader, peer = pair
    host = hosted_event_loop(socket_map)
    try:
        task = host.create_task(asyncio.sleep(0.05, result="asyncio ran"))
        peer.sendall(b"and the dispatcher")
        passes, allowed = other.serve(
            socket_map, lambda: task.done() and bytes(reader.data) == b"and the dispatcher"
        )
        assert passes <= allowed
        assert task.result() == "asyncio ran"
    finally:
        host.close()


def test_an_asyncio_loop_pumping_a_map_with_a_hosted_loop_gets_the_error(
    default_poller: str, socket_map: asyncore.SocketMap, pair: Tuple[Reader, socket.socket]
) -> None:
    """The hosted loop cannot step inside another running asyncio loop: the
    pump is refused at once, and the hosted loop serves again outside it."""
    reader, peer = pair
    host = hosted_event_loop(socket_map)
    refused: List[str] = []

    async def pump() -> None:
        for call in (
            lambda: asyncore.loop(timeout=0, map=socket_map, count=1),
            lambda: asyncore.poll(0, socket_map),
            lambda: asyncore.poll2(0, socket_map),
        ):
            with pytest.raises(RuntimeError, match="cannot step while another asyncio loop.*attach") as info:
                call()
            refused.append(str(info.value))

    try:
        asyncio.run(pump())
        assert len(refused) == 3
        task = host.create_task(asyncio.sleep(0, result="hosted again"))
        peer.sendall(b"x")
        passes, allowed = DRIVERS[0].serve(socket_map, lambda: task.done() and reader.data == b"x")
        assert passes <= allowed and task.result() == "hosted again"
    finally:
        host.close()
    asyncio.run(pump_after_close(socket_map))


async def pump_after_close(socket_map: Dict[int, Any]) -> None:
    """Once the hosted loop is closed, an asyncio loop may pump the map."""
    asyncore.loop(timeout=0, map=socket_map, count=1)


@pytest.mark.parametrize("other", ["attach", "run_map", "hosted"])
def test_drivers_refused_while_a_loop_is_hosted(
    other: str, default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    host = hosted_event_loop(socket_map)

    async def bridge() -> None:
        if other == "attach":
            attach(socket_map)
        else:
            await run_map(socket_map)

    try:
        if other == "hosted":
            with pytest.raises(RuntimeError, match="already hosts"):
                HostedEventLoop(socket_map)
        else:
            with pytest.raises(RuntimeError, match="hosts an asyncio event loop"):
                asyncio.run(bridge())
        task = host.create_task(asyncio.sleep(0, result="still hosted"))
        while not task.done():
            asyncore.loop(timeout=5, map=socket_map, count=1)
        assert task.result() == "still hosted"
    finally:
        host.close()


@pytest.mark.parametrize("one_pass", [asyncore.poll, asyncore.poll2], ids=["poll", "poll2"])
def test_poll_waits_for_the_next_timer_and_runs_it(
    one_pass: Callable[..., None], default_poller: str, socket_map: asyncore.SocketMap,
    pair: Tuple[Reader, socket.socket],
) -> None:
    fired: List[float] = []
    started = time.monotonic()
    call_later(0.05, lambda: fired.append(time.monotonic()), map=socket_map)
    one_pass(30.0, socket_map)  # the data-less pass ends at the timer's deadline
    assert fired and fired[0] - started >= 0.05
    assert time.monotonic() - started < 15.0  # not the 30 s timeout
