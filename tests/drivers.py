"""Every way a socket map can be driven, behind one interface, for the switch tests.

``driver.serve(map, done)`` drives the map until ``done()`` and returns
``(passes, allowed)``: the passes it took, and how many a driver that does
not spin may take (a few, plus up to three per tick of the asyncio-based
drivers' ``done()`` check).  It fails the test when ``done()`` does not
come true within its bound (a driver that spins hits the bound of passes,
one that starves hits the time limit).  Used by tests/test_driver_switches.py and,
for Tk (which needs the module's X display), tests/test_tk.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Dict, List, Tuple

from asyncio_compat import asyncore, loop_stats
from asyncio_compat.asyncio_bridge import attach, hosted_event_loop, run_coroutine, run_map

Done = Callable[[], bool]
LIMIT = 15.0  # seconds any exchange may take on a loaded machine
WAIT = 5.0  # a loop()/poll() timeout: a pass that returns early had work (or spins)
MAX_PASSES = 50  # waiting passes an exchange may take; a spinning driver makes thousands
TICK = 0.005  # how often the asyncio-based drivers look at done()


class Reader(asyncore.dispatcher_with_send):
    """Collects what arrives; its predicates push their changes (never polled)."""

    def __init__(self, sock: Any, socket_map: Dict[int, Any]) -> None:
        super().__init__(sock, map=socket_map)
        self.data = bytearray()

    def handle_read(self) -> None:
        self.data += self.recv(4096)

    def handle_close(self) -> None:
        self.close()


def _passes(socket_map: Dict[int, Any]) -> int:
    return loop_stats(socket_map).passes


class Driver:
    name = ""

    def serve(self, socket_map: Dict[int, Any], done: Done) -> Tuple[int, int]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class LoopDriver(Driver):
    """``asyncore.loop(count=1)`` in a loop, as legacy code pumps."""

    name = "loop"

    def one_pass(self, socket_map: Dict[int, Any]) -> None:
        asyncore.loop(timeout=WAIT, map=socket_map, count=1)

    def serve(self, socket_map: Dict[int, Any], done: Done) -> Tuple[int, int]:
        for passes in range(MAX_PASSES):
            if done():
                return passes, MAX_PASSES
            self.one_pass(socket_map)
        assert done(), f"{self.name}: not done after {MAX_PASSES} passes of up to {WAIT}s"
        return MAX_PASSES, MAX_PASSES


class PollDriver(LoopDriver):
    name = "poll"

    def one_pass(self, socket_map: Dict[int, Any]) -> None:
        asyncore.poll(WAIT, socket_map)


class Poll2Driver(LoopDriver):
    name = "poll2"

    def one_pass(self, socket_map: Dict[int, Any]) -> None:
        asyncore.poll2(WAIT, socket_map)


async def until(done: Done) -> int:
    """Wait (in asyncio) until ``done()``; the passes a driver may make meanwhile."""
    deadline = time.monotonic() + LIMIT
    ticks = 0
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(TICK)
        ticks += 1
    assert done(), "the asyncio side did not get the work done"
    return MAX_PASSES + 3 * ticks


class ForeignDriver(Driver):
    """Another event loop (a plain asyncio loop, not a bridge) calling the
    idle hook ``loop(timeout=0, count=1)`` from its timer, as a GUI does."""

    name = "foreign"

    def serve(self, socket_map: Dict[int, Any], done: Done) -> Tuple[int, int]:
        calls: List[int] = []

        async def pump() -> None:
            deadline = time.monotonic() + LIMIT
            while not done() and time.monotonic() < deadline:
                asyncore.loop(timeout=0, map=socket_map, count=1)
                calls.append(1)
                await asyncio.sleep(TICK)

        asyncio.run(pump())
        assert done(), "the idle hook did not get the work done"
        return len(calls), len(calls)  # one pass per tick of the foreign loop: its own pace


class AttachDriver(Driver):
    """``attach(map)`` inside ``asyncio.run()``, detached when done."""

    name = "attach"

    def serve(self, socket_map: Dict[int, Any], done: Done) -> Tuple[int, int]:
        async def main() -> Tuple[int, int]:
            bridge = attach(socket_map)
            before = _passes(socket_map)
            try:
                allowed = await until(done)
                return _passes(socket_map) - before, allowed
            finally:
                bridge.detach()

        return asyncio.run(main())


class RunMapDriver(Driver):
    """A ``run_map(map)`` task, cancelled when done (which hands the map back)."""

    name = "run_map"

    def serve(self, socket_map: Dict[int, Any], done: Done) -> Tuple[int, int]:
        async def main() -> Tuple[int, int]:
            task = asyncio.ensure_future(run_map(socket_map))
            await asyncio.sleep(0)
            before = _passes(socket_map)
            try:
                allowed = await until(done)
                return _passes(socket_map) - before, allowed
            finally:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

        return asyncio.run(main())


class HostedDriver(Driver):
    """A hosted asyncio loop: ``run_coroutine()`` runs the map's passes, then the loop leaves."""

    name = "hosted"

    def serve(self, socket_map: Dict[int, Any], done: Done) -> Tuple[int, int]:
        host = hosted_event_loop(socket_map)
        before = _passes(socket_map)
        try:
            allowed = run_coroutine(until(done), socket_map)
            return _passes(socket_map) - before, allowed
        finally:
            host.close()


DRIVERS: List[Driver] = [
    LoopDriver(), PollDriver(), Poll2Driver(), ForeignDriver(),
    AttachDriver(), RunMapDriver(), HostedDriver(),
]
