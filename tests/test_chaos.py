"""A short, seeded chaos run on every backend.

For about two seconds per backend, an echo server serves well-behaved
clients (each sends random bytes in random pieces at random moments, and
must get every byte back) while everything around them misbehaves:

* a thread sends SIGHUP, SIGUSR1 and SIGTERM at random moments, with
  ``os.kill`` or ``signal.pthread_kill``.  SIGHUP runs a callback installed
  with ``asyncio_compat.add_signal_handler`` (it cancels and re-arms timers);
  SIGUSR1 and SIGTERM run handlers installed with ``signal.signal`` that
  close hostile connections wherever the main thread is (one, or all of
  them: the 3.11 ``close_all()`` pattern);
* another thread closes hostile connections from outside the loop's thread,
  and opens a regular file at once, which takes the closed fd's number;
* hostile peers connect and reset (RST), trickle bytes, or half-close;
* timers are cancelled and re-armed all the time (the idle-timeout pattern,
  with a live timer ahead of the cancelled ones).

At the end: nothing raised out of ``loop()`` nor out of a ``close()`` made
from the other thread, no well-behaved connection saw an error or lost a
byte, memory stayed bounded, and (the autouse fixture) no fd or thread
leaked.

The seed is printed and named in every failure; replay a run with
``ASYNCIO_COMPAT_CHAOS_SEED=<seed> python -m pytest tests/test_chaos.py``.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
import traceback
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import pytest

import asyncio_compat
import pollers
from asyncio_compat import SocketMap, asynchat, asyncore
from asyncio_compat.timers import TimerHandle, call_every, call_later

SEED_VARIABLE = "ASYNCIO_COMPAT_CHAOS_SEED"
CHAOS_SECONDS = 2.5  # per backend, with every source of chaos running
DRAIN_SECONDS = 8.0  # then the good clients must finish within this
GOOD_CLIENTS = 4
MEMORY_BOUND = 3 << 20  # bytes the run may hold at its end beyond its start
RESTARTS_PER_TICK = 150  # timer cancel/re-arm pairs every 5 ms
LINGER_ZERO = b"\x01\x00\x00\x00\x00\x00\x00\x00"

pytestmark = [
    # the default timeout method uses SIGALRM; this test owns the process's signals
    pytest.mark.timeout(60, method="thread"),
    pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals"),
]


def chaos_seed() -> int:
    """The seed from ``ASYNCIO_COMPAT_CHAOS_SEED``, else a new one."""
    text = os.environ.get(SEED_VARIABLE, "").strip()
    return int(text) if text else random.SystemRandom().randrange(1 << 32)


@pytest.fixture(scope="module")
def seed() -> int:
    value = chaos_seed()
    print(f"\nchaos seed: {value} (replay with {SEED_VARIABLE}={value})")
    return value


@dataclass
class Findings:
    """Everything that went wrong, as text, by kind."""

    loop_raised: List[str] = field(default_factory=list)
    close_raised: List[str] = field(default_factory=list)
    good_errors: List[str] = field(default_factory=list)
    signals: Dict[str, int] = field(default_factory=dict)

    def count(self, name: str) -> None:
        self.signals[name] = self.signals.get(name, 0) + 1


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])


# -- the server --------------------------------------------------------------------------------


class EchoSide(asynchat.async_chat):
    """The server's side of a connection: echoes every byte back."""

    def __init__(self, sock: socket.socket, socket_map: Any, world: World) -> None:
        super().__init__(sock, socket_map)
        self.set_terminator(None)
        self.world = world

    def collect_incoming_data(self, data: bytes) -> None:
        self.push(data)

    def handle_error(self) -> None:
        self.world.note_error(self)
        self.close()


class Listener(asyncore.dispatcher):
    def __init__(self, socket_map: Any, world: World) -> None:
        super().__init__(map=socket_map)
        self.world = world
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(64)
        self.address = self.socket.getsockname()

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        self.world.accepted(EchoSide(sock, self._map, self.world), addr)

    def handle_error(self) -> None:
        self.world.findings.good_errors.append("listener: " + describe(_current_exception()))
        self.close()


def _current_exception() -> BaseException:
    import sys

    exc = sys.exc_info()[1]
    assert exc is not None
    return exc


# -- the clients ---------------------------------------------------------------------------------


class GoodClient(asynchat.async_chat):
    """Sends ``payload`` in random pieces at random moments; must get it all back."""

    def __init__(self, world: World, payload: bytes, rng: random.Random) -> None:
        super().__init__(map=world.map)
        self.world = world
        self.payload = payload
        self.rng = rng
        self.offset = 0  # bytes of payload pushed so far
        self.received = bytearray()
        self.idle: Optional[TimerHandle] = None
        self.set_terminator(None)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(world.address)

    def handle_connect(self) -> None:
        self.world.good_addresses.add(self.socket.getsockname())
        # connected is set once handle_connect returns (as in 3.11)
        call_later(0, self.next_piece, map=self.world.map)

    def next_piece(self) -> None:
        if not self.connected:
            return
        size = self.rng.randint(1, 16384)
        self.push(self.payload[self.offset:self.offset + size])
        self.offset = min(len(self.payload), self.offset + size)
        if self.offset < len(self.payload):
            call_later(self.rng.uniform(0, 0.01), self.next_piece, map=self.world.map)

    def collect_incoming_data(self, data: bytes) -> None:
        self.received += data
        # the idle-timeout pattern: cancel and re-arm a long timer per message
        if self.idle is not None:
            self.idle.cancel()
        self.idle = call_later(300.0, self.never, map=self.world.map)

    def never(self) -> None:
        self.world.findings.good_errors.append(f"{self!r}: a 300 s idle timer fired")

    def done(self) -> bool:
        return len(self.received) >= len(self.payload)

    def handle_close(self) -> None:
        if not self.done():
            self.world.findings.good_errors.append(
                f"good client closed by its peer after {len(self.received)} of {len(self.payload)} bytes"
            )
        self.close()

    def handle_error(self) -> None:
        self.world.findings.good_errors.append(f"good client: {describe(_current_exception())}")
        self.close()

    def close(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        super().close()


class HostilePeer(asyncore.dispatcher):
    """Connects, then resets, trickles or half-closes, at random."""

    def __init__(self, world: World, rng: random.Random) -> None:
        super().__init__(map=world.map)
        self.world = world
        self.rng = rng
        self.kind = rng.choice(["rst", "trickle", "half-close"])
        self.trickler: Optional[TimerHandle] = None
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(world.address)

    def writable(self) -> bool:
        return not self.connected

    def handle_connect(self) -> None:
        self.socket.send(self.rng.randbytes(self.rng.randint(1, 3000)))
        if self.kind == "half-close":
            self.socket.shutdown(socket.SHUT_WR)
        elif self.kind == "trickle":
            self.trickler = call_every(0.003, self.trickle, map=self.world.map)
        call_later(self.rng.uniform(0.01, 0.3), self.end, map=self.world.map)

    def trickle(self) -> None:
        if self.connected:
            self.send(b"t")

    def end(self) -> None:
        if self._fileno is None:
            return
        if self.kind != "half-close":
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
        self.close()

    def handle_read(self) -> None:
        self.recv(65536)

    def handle_close(self) -> None:
        self.close()

    def handle_error(self) -> None:
        self.close()  # a hostile peer may be cut at any moment: not a finding

    def close(self) -> None:
        if self.trickler is not None:
            self.trickler.cancel()
            self.trickler = None
        super().close()


# -- the world -------------------------------------------------------------------------------------


class World:
    """One backend's run: the map, the server, the clients and what went wrong."""

    def __init__(self, socket_map: SocketMap, seed: int, poller: str) -> None:
        self.map = socket_map
        self.rng = random.Random(f"{seed}:{poller}")
        self.findings = Findings()
        self.good_addresses: Set[Any] = set()
        self.victims: List[EchoSide] = []  # server sides of hostile peers
        self.server_sides: List[Tuple[Any, EchoSide]] = []
        self.listener = Listener(socket_map, self)
        self.address = self.listener.address
        self.goods = [
            GoodClient(self, self.rng.randbytes(self.rng.randint(20_000, 150_000)), self.fork_rng())
            for _ in range(GOOD_CLIENTS)
        ]
        self.timers: List[TimerHandle] = []
        self.chaos_on = True

    def fork_rng(self) -> random.Random:
        return random.Random(self.rng.random())

    def accepted(self, side: EchoSide, addr: Any) -> None:
        self.server_sides.append((addr, side))
        if addr not in self.good_addresses:
            # a good client registers its address in handle_connect, which may
            # come after the server's accept: sort the rest out at each close
            self.victims.append(side)

    def note_error(self, side: EchoSide) -> None:
        if self.is_good_side(side):
            failure = describe(_current_exception())
            self.findings.good_errors.append(f"server side of a good client: {failure}")

    def is_good_side(self, side: EchoSide) -> bool:
        return any(addr in self.good_addresses for addr, other in self.server_sides if other is side)

    def victim(self) -> Optional[EchoSide]:
        """A hostile connection's server side, never a good one."""
        candidates = [v for v in list(self.victims) if not self.is_good_side(v)]
        return self.rng.choice(candidates) if candidates else None

    def finished(self) -> bool:
        return all(good.done() for good in self.goods)


# -- chaos sources ---------------------------------------------------------------------------------


def install_signal_handlers(world: World) -> Callable[[], None]:
    """SIGHUP through add_signal_handler, SIGUSR1 and SIGTERM through
    signal.signal; returns the function that puts the old ones back."""

    def on_hup() -> None:  # in the loop: cancel and re-arm the chaos timers
        world.findings.count("SIGHUP")
        for index, handle in enumerate(world.timers):
            handle.cancel()
            world.timers[index] = call_later(world.rng.uniform(0, 0.05), noop, map=world.map)

    def on_usr1(signum: int, frame: Any) -> None:  # anywhere: close one hostile connection
        world.findings.count("SIGUSR1")
        victim = world.victim()
        if victim is not None:
            victim.close()

    def on_term(signum: int, frame: Any) -> None:  # anywhere: close every hostile connection
        world.findings.count("SIGTERM")
        for victim in list(world.victims):
            if not world.is_good_side(victim):
                victim.close()

    previous_usr1 = signal.signal(signal.SIGUSR1, on_usr1)
    previous_term = signal.signal(signal.SIGTERM, on_term)
    asyncio_compat.add_signal_handler(signal.SIGHUP, on_hup, map=world.map)

    def restore() -> None:
        asyncio_compat.remove_signal_handler(signal.SIGHUP, map=world.map)
        signal.signal(signal.SIGUSR1, previous_usr1)
        signal.signal(signal.SIGTERM, previous_term)

    return restore


def noop() -> None:
    pass


def signal_sender(world: World, stop: threading.Event, seed: int) -> None:
    rng = random.Random(f"{seed}:signals")
    main = threading.main_thread().ident
    assert main is not None
    while not stop.wait(rng.uniform(0.001, 0.02)):
        signum = rng.choice([signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR1, signal.SIGTERM])
        if rng.random() < 0.5:
            os.kill(os.getpid(), signum)
        else:
            signal.pthread_kill(main, signum)


def cross_thread_closer(world: World, stop: threading.Event, seed: int) -> None:
    rng = random.Random(f"{seed}:closer")
    while not stop.wait(rng.uniform(0.002, 0.03)):
        candidates = [v for v in list(world.victims) if not world.is_good_side(v)]
        if not candidates:
            continue
        try:
            rng.choice(candidates).close()
        except BaseException as exc:  # noqa: BLE001 (close() must never raise: record what did)
            world.findings.close_raised.append(describe(exc))
            continue
        # a regular file opened now most likely takes the closed socket's fd
        # number (a log reopened, a file served by a worker thread)
        with open(__file__, "rb"):
            stop.wait(rng.uniform(0, 0.01))


def arm_timer_chaos(world: World) -> List[TimerHandle]:
    """Timers that restart all the time behind a live one, and random short ones."""
    sentinel = call_later(250.0, noop, map=world.map)  # live, ahead of the restarted ones
    restarted = [call_later(300.0, noop, map=world.map)]

    def restart() -> None:
        for _ in range(RESTARTS_PER_TICK):
            restarted[0].cancel()
            restarted[0] = call_later(300.0 + world.rng.random(), noop, map=world.map)
        handle = world.rng.choice(world.timers)
        handle.cancel()
        world.timers[world.timers.index(handle)] = call_later(world.rng.uniform(0, 0.02), noop, map=world.map)

    def spawn() -> None:
        if world.chaos_on and len(world.map) < 40:
            HostilePeer(world, world.fork_rng())

    world.timers = [call_later(world.rng.uniform(0, 0.05), noop, map=world.map) for _ in range(20)]
    chaos = [call_every(0.005, restart, map=world.map), call_every(0.01, spawn, map=world.map)]
    return [sentinel, *chaos, *restarted]


# -- the run ----------------------------------------------------------------------------------------


def eager_sweeper(poller: str) -> Any:
    """``poller``'s class; for a backend that sweeps for closed fds (epoll,
    kqueue), a subclass that sweeps every pass, so that the signal handlers
    and the other thread land inside a sweep as often as can be."""
    cls = pollers.get(poller)
    if getattr(cls, "sweep_interval", None) is None:
        return cls
    return type(f"Eager{cls.__name__}", (cls,), {"sweep_interval": 0.0005})


def serve(world: World, poller: Any, until: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline and len(world.findings.loop_raised) < 5:
        try:
            asyncore.loop(timeout=0.02, map=world.map, poller=poller, count=5)
        except BaseException as exc:  # noqa: BLE001 (nothing may leave loop(): record what did)
            world.findings.loop_raised.append(describe(exc))


def run_chaos(socket_map: SocketMap, seed: int, poller: str) -> Tuple[World, int]:
    """The chaos phase, then the drain; returns the world and the memory it held at the end."""
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    world = World(socket_map, seed, poller)
    restore = install_signal_handlers(world)
    stop = threading.Event()
    threads = [
        threading.Thread(target=signal_sender, args=(world, stop, seed), name="chaos-signals"),
        threading.Thread(target=cross_thread_closer, args=(world, stop, seed), name="chaos-closer"),
    ]
    handles = arm_timer_chaos(world)
    backend = eager_sweeper(poller)
    try:
        for thread in threads:
            thread.start()
        started = time.monotonic()
        serve(world, backend, lambda: time.monotonic() - started > CHAOS_SECONDS, CHAOS_SECONDS + 1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        world.chaos_on = False
        time.sleep(0)  # let a signal that landed last run its handler before restore()
        restore()
    held = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    for handle in handles:
        handle.cancel()
    serve(world, backend, world.finished, DRAIN_SECONDS)
    return world, held


# one run per backend, shared by the tests below (the first to need it runs it,
# under the leak check of that test)
_RUNS: Dict[str, Tuple[World, int, float]] = {}


def chaos_run(poller: str, socket_map: SocketMap, seed: int) -> Tuple[World, int, float]:
    if poller not in _RUNS:
        started = time.monotonic()
        world, held = run_chaos(socket_map, seed, poller)
        _RUNS[poller] = (world, held, time.monotonic() - started)
    return _RUNS[poller]


def replay(seed: int, poller: str) -> str:
    return f"(seed {seed}, backend {poller}: replay with {SEED_VARIABLE}={seed})"




def test_chaos_loop_never_raises(
    request: pytest.FixtureRequest, poller_name: str, socket_map: SocketMap, seed: int
) -> None:
    world, _, took = chaos_run(poller_name, socket_map, seed)
    findings = world.findings
    print(f"{poller_name}: signals handled {findings.signals}, {took:.1f} s")
    assert findings.signals, f"no signal reached a handler {replay(seed, poller_name)}"
    assert not findings.loop_raised, f"loop() raised {replay(seed, poller_name)}:\n" + "\n".join(
        findings.loop_raised
    )


def test_chaos_close_from_another_thread_never_raises(
    poller_name: str, socket_map: SocketMap, seed: int
) -> None:
    raised = chaos_run(poller_name, socket_map, seed)[0].findings.close_raised
    again = replay(seed, poller_name)
    assert not raised, f"close() from another thread raised {again}:\n" + "\n".join(raised)


def test_chaos_well_behaved_connections_lose_no_byte(
    poller_name: str, socket_map: SocketMap, seed: int
) -> None:
    world, _, took = chaos_run(poller_name, socket_map, seed)
    again = replay(seed, poller_name)
    assert not world.findings.good_errors, f"a well-behaved connection failed {again}:\n" + "\n".join(
        world.findings.good_errors
    )
    for good in world.goods:
        assert bytes(good.received) == good.payload, (
            f"bytes lost or changed {again}: {len(good.received)} of {len(good.payload)} came back"
        )
    assert took < 12, f"the run took {took:.1f} s {again}"


def test_chaos_memory_stays_bounded(poller_name: str, socket_map: SocketMap, seed: int) -> None:
    _, held, _ = chaos_run(poller_name, socket_map, seed)
    assert held < MEMORY_BOUND, f"the run held {held} bytes at its end {replay(seed, poller_name)}"
