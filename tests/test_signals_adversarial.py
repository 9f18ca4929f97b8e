"""add_signal_handler attacked: other owners of the wakeup fd, other signals,
other threads, re-entrant callbacks, forks, other drivers of the map.

Each test names the promise it tries to break (docs/stopping.rst and the
docstrings of asyncio_compat.signals).  Signals that must land during a wait
come from a one-shot ``signal.setitimer``; those that may land anywhere come
from ``signal.raise_signal``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, Iterator, List, Tuple

import pytest

import asyncio_compat
from asyncio_compat import asyncio_bridge, asyncore

pytestmark = [
    # pytest-timeout's default method uses SIGALRM itself: these tests own that signal
    pytest.mark.timeout(30, method="thread"),
    pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer"),
    pytest.mark.posix_only("POSIX signals (SIGALRM, SIGUSR1, SIGHUP)"),
]

LONG_WAIT = 10.0  # the loop's timeout: a test that slept it out would fail its bound
BOUND = 2.0  # a woken loop returns well within this


class Reader(asyncore.dispatcher):
    """A quiet channel that keeps the loop waiting; closes on EOF."""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.recv(4096)

    def handle_close(self) -> None:
        self.close()


@pytest.fixture
def signals_restored() -> Iterator[None]:
    """Puts back the handlers of the signals these tests use and the wakeup fd."""
    used = (signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)
    previous = {signum: signal.getsignal(signum) for signum in used}
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    signal.set_wakeup_fd(wakeup)


Pair = Tuple[Reader, socket.socket]


@pytest.fixture
def pair(socket_map: asyncore.SocketMap) -> Iterator[Pair]:
    ours, theirs = socket.socketpair()
    reader = Reader(ours, map=socket_map)
    yield reader, theirs
    reader.close()
    theirs.close()


def _arm(delay: float = 0.05) -> None:
    signal.setitimer(signal.ITIMER_REAL, delay)


def _wait_one_pass(socket_map: asyncore.SocketMap) -> float:
    """One pass of loop() with a long timeout; the seconds it took."""
    started = time.monotonic()
    asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map, count=1)
    return time.monotonic() - started


class _RawOwner:
    """Another library holding the wakeup fd through a raw ``signal.set_wakeup_fd``."""

    def __init__(self) -> None:
        self.read, self.write = socket.socketpair()
        self.write.setblocking(False)
        signal.set_wakeup_fd(self.write.fileno())

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self.read.close()
        self.write.close()


class _AsyncioOwner:
    """An asyncio event loop that took the wakeup fd with its add_signal_handler()."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.add_signal_handler(signal.SIGUSR2, lambda: None)

    def close(self) -> None:
        self.loop.remove_signal_handler(signal.SIGUSR2)
        self.loop.close()


OWNERS: List[Any] = [
    pytest.param(_RawOwner, id="raw-set_wakeup_fd"),
    pytest.param(_AsyncioOwner, id="asyncio-add_signal_handler"),
]


# -- another owner of the wakeup fd -------------------------------------------------


@pytest.mark.parametrize("owner_cls", OWNERS)
def test_callbacks_run_when_the_wakeup_fd_is_taken_after_us(
    default_poller: str,
    socket_map: asyncore.SocketMap,
    pair: Pair,
    signals_restored: None,
    owner_cls: Callable[[], Any],
) -> None:
    # promise: whoever holds the wakeup fd, the signal wakes a waiting loop() at once
    reader, _ = pair
    asyncio_compat.add_signal_handler(signal.SIGALRM, reader.close, map=socket_map)
    owner = owner_cls()  # takes the slot we held
    try:
        _arm()
        elapsed = _wait_one_pass(socket_map)
    finally:
        owner.close()
        asyncio_compat.remove_signal_handler(signal.SIGALRM, map=socket_map)
    assert not socket_map, "the callback did not run"
    assert elapsed < BOUND


def test_remove_leaves_a_slot_taken_after_us_alone(
    socket_map: asyncore.SocketMap, signals_restored: None
) -> None:
    # promise: the slot is released only while it is still ours
    asyncio_compat.add_signal_handler(signal.SIGUSR1, print, map=socket_map)
    owner = _RawOwner()
    try:
        assert asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
        assert signal.set_wakeup_fd(owner.write.fileno()) == owner.write.fileno()
    finally:
        owner.close()


def test_callbacks_under_the_bridge_when_asyncio_takes_the_slot(
    socket_map: asyncore.SocketMap, pair: Pair, signals_restored: None
) -> None:
    # promise: a map served by the asyncio bridge gets a pass at once
    reader, _ = pair
    asyncio_compat.add_signal_handler(signal.SIGALRM, reader.close, map=socket_map)

    async def main() -> float:
        event_loop = asyncio.get_running_loop()
        event_loop.add_signal_handler(signal.SIGUSR2, lambda: None)  # the asyncio program's own
        try:
            _arm()
            started = time.monotonic()
            await asyncio.wait_for(asyncio_bridge.run_map(socket_map), LONG_WAIT)
            return time.monotonic() - started
        finally:
            event_loop.remove_signal_handler(signal.SIGUSR2)

    try:
        elapsed = asyncio.run(main())
    finally:
        asyncio_compat.remove_signal_handler(signal.SIGALRM, map=socket_map)
    assert not socket_map
    assert elapsed < BOUND


# -- other signals -------------------------------------------------------------------


def test_each_signal_runs_only_its_own_callback(
    default_poller: str, socket_map: asyncore.SocketMap, pair: Pair, signals_restored: None
) -> None:
    # promise: callback(*args) runs each time *signum* arrives (and only then)
    calls: List[str] = []
    foreign: List[int] = []
    for signum, name in ((signal.SIGHUP, "hup"), (signal.SIGUSR1, "usr1")):
        asyncio_compat.add_signal_handler(signum, calls.append, name, map=socket_map)
    signal.signal(signal.SIGUSR2, lambda signum, frame: foreign.append(signum))  # a plain handler beside ours
    try:
        for signum in (signal.SIGUSR2, signal.SIGHUP, signal.SIGUSR2, signal.SIGUSR1, signal.SIGHUP):
            signal.raise_signal(signum)
            asyncore.loop(timeout=0, use_poll=True, map=socket_map, count=1)
    finally:
        asyncio_compat.remove_signal_handler(signal.SIGHUP, map=socket_map)
        asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
    assert calls == ["hup", "usr1", "hup"]
    assert foreign == [signal.SIGUSR2, signal.SIGUSR2]


def test_signals_piling_up_while_no_loop_runs_are_kept_once(
    socket_map: asyncore.SocketMap, pair: Pair, signals_restored: None
) -> None:
    # promise: several signals of one number before the loop gets to them run the
    # callback once or several times; memory stays bounded however long no loop runs
    calls: List[str] = []
    asyncio_compat.add_signal_handler(signal.SIGHUP, calls.append, "hup", map=socket_map)
    asyncio_compat.add_signal_handler(signal.SIGUSR1, calls.append, "usr1", map=socket_map)
    try:
        for _ in range(17_000):  # more than the pipe holds (64 KiB on Linux)
            signal.raise_signal(signal.SIGHUP)
            signal.raise_signal(signal.SIGUSR1)
        asyncore.loop(timeout=0, use_poll=True, map=socket_map, count=2)
        assert calls == ["hup", "usr1"]
        signal.raise_signal(signal.SIGUSR1)  # the pipe still wakes the loop
        asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map, count=1)
    finally:
        asyncio_compat.remove_signal_handler(signal.SIGHUP, map=socket_map)
        asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
    assert calls == ["hup", "usr1", "usr1"]


# -- other drivers of the map ---------------------------------------------------------


@pytest.mark.parametrize("driver", ["poll", "poll2"])
def test_callbacks_run_and_wake_the_wait_under_poll_and_poll2(
    driver: str, socket_map: asyncore.SocketMap, pair: Pair, signals_restored: None
) -> None:
    # promise: the callback runs in whatever serves its map, and a signal wakes
    # that wait at once; here a 3.11-style ``while ...: asyncore.poll()`` program
    one_pass = getattr(asyncore, driver)
    calls: List[str] = []
    asyncio_compat.add_signal_handler(signal.SIGUSR1, calls.append, "usr1", map=socket_map)
    try:
        signal.raise_signal(signal.SIGUSR1)  # before any pass: queued, run by the first
        one_pass(timeout=0, map=socket_map)
        assert calls == ["usr1"]
        _arm()  # SIGALRM in 50 ms: its handler raises SIGUSR1 inside the wait
        signal.signal(signal.SIGALRM, lambda signum, frame: signal.raise_signal(signal.SIGUSR1))
        started = time.monotonic()
        one_pass(timeout=LONG_WAIT, map=socket_map)
        took = time.monotonic() - started
    finally:
        asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
    assert calls == ["usr1", "usr1"]
    assert took < BOUND, f"{driver}() slept {took:.1f} s through the signal"


# -- another thread ------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
def test_a_signal_delivered_to_the_loops_thread_runs_its_callback(
    default_poller: str, socket_map: asyncore.SocketMap, pair: Pair, signals_restored: None
) -> None:
    # promise: the signal wakes a waiting loop() at once, from whichever thread it lands in
    reader, theirs = pair
    ran_in: List[str] = []

    def on_usr1() -> None:
        ran_in.append(threading.current_thread().name)
        reader.close()

    asyncio_compat.add_signal_handler(signal.SIGUSR1, on_usr1, map=socket_map)
    thread = threading.Thread(
        target=asyncore.loop, kwargs={"timeout": LONG_WAIT, "map": socket_map}, name="loop-thread"
    )
    try:
        thread.start()
        while asyncio_compat.loop_stats(socket_map).poller is None:  # the loop is built
            thread.join(0.01)
        assert thread.ident is not None
        # Sent from a third thread while the main thread sleeps in C: the
        # loop's thread takes the C-level wake-up and drains the pipe before
        # Python runs the handler, the order that lost the callback.  (The
        # sleeps only make that order likely; the test cannot pass by them.)
        loop_ident = thread.ident

        def send() -> None:
            time.sleep(0.1)
            signal.pthread_kill(loop_ident, signal.SIGUSR1)

        sender = threading.Thread(target=send)
        started = time.monotonic()
        sender.start()
        time.sleep(0.4)
        sender.join()
        # the handler itself runs in the main thread, once it runs bytecode again
        while thread.is_alive() and time.monotonic() - started < LONG_WAIT:
            thread.join(0.05)
        elapsed = time.monotonic() - started
    finally:
        theirs.shutdown(socket.SHUT_WR)  # EOF closes the reader: a loop still running ends
        thread.join(LONG_WAIT * 2)
        asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
    assert ran_in == ["loop-thread"]
    assert elapsed < BOUND + 0.4


# -- re-entrancy -----------------------------------------------------------------------


def _in_signal_context() -> bool:
    return "_on_signal" in [frame.function for frame in inspect.stack()]


def test_a_callback_may_remove_itself_and_add_another(
    default_poller: str, socket_map: asyncore.SocketMap, pair: Pair, signals_restored: None
) -> None:
    # promise: the callback runs in the loop, never inside the signal context
    reader, _ = pair
    log: List[Tuple[str, bool]] = []

    def second() -> None:
        log.append(("second", _in_signal_context()))
        reader.close()

    def first() -> None:
        log.append(("first", _in_signal_context()))
        assert asyncio_compat.remove_signal_handler(signal.SIGALRM, map=socket_map)
        asyncio_compat.add_signal_handler(signal.SIGUSR1, second, map=socket_map)
        signal.raise_signal(signal.SIGUSR1)

    asyncio_compat.add_signal_handler(signal.SIGALRM, first, map=socket_map)
    try:
        _arm()
        started = time.monotonic()
        asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map)
        elapsed = time.monotonic() - started
    finally:
        asyncio_compat.remove_signal_handler(signal.SIGALRM, map=socket_map)
        asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
    assert log == [("first", False), ("second", False)]
    assert elapsed < BOUND
    assert signal.getsignal(signal.SIGALRM) is not None


def test_a_raising_callback_is_reported_and_the_loop_goes_on(
    default_poller: str,
    socket_map: asyncore.SocketMap,
    pair: Pair,
    signals_restored: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # promise: an exception from the callback is reported on stderr and the loop goes on
    reader, _ = pair
    calls: List[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("callback failed")

    asyncio_compat.add_signal_handler(signal.SIGUSR1, broken, map=socket_map)
    asyncio_compat.add_signal_handler(signal.SIGHUP, reader.close, map=socket_map)
    try:
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGHUP)
        asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map, count=3)
    finally:
        asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
        asyncio_compat.remove_signal_handler(signal.SIGHUP, map=socket_map)
    assert calls == ["broken"]
    assert not socket_map
    assert "callback failed" in capsys.readouterr().err


def test_shutdown_from_a_callback_stops_the_loop(
    default_poller: str, socket_map: asyncore.SocketMap, signals_restored: None
) -> None:
    # promise (stopping.rst): SIGTERM wired to shutdown() stops a loop(timeout=30) at once
    ours, theirs = socket.socketpair()
    asyncore.dispatcher_with_send(ours, map=socket_map)  # closed at once: nothing queued
    asyncio_compat.add_signal_handler(signal.SIGALRM, asyncio_compat.shutdown, socket_map, map=socket_map)
    owner = _AsyncioOwner()  # an asyncio library in the same process took the wakeup fd
    try:
        _arm()
        started = time.monotonic()
        asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map, count=2)
        elapsed = time.monotonic() - started
    finally:
        owner.close()
        asyncio_compat.remove_signal_handler(signal.SIGALRM, map=socket_map)
        theirs.close()
    assert not socket_map
    assert elapsed < BOUND


# -- fork ---------------------------------------------------------------------------------


# no timer thread while forking (these tests use no SIGALRM of their own)
FORKS = pytest.mark.timeout(30, method="signal")


def _in_child(body: Callable[[], bytes]) -> bytes:
    """Fork; run ``body()`` in the child and return what it returned (b"error: ..." if it raised)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_fd)
            try:
                result = body()
            except BaseException as exc:
                result = b"error: " + repr(exc).encode()
            os.write(write_fd, result)
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        chunks = []
        while True:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    return b"".join(chunks)


@FORKS
def test_a_fork_keeps_a_wakeup_fd_someone_else_took(
    socket_map: asyncore.SocketMap, signals_restored: None
) -> None:
    # promise: whoever takes the slot after us keeps it, in a forked child too
    asyncio_compat.add_signal_handler(signal.SIGUSR1, print, map=socket_map)
    owner = _RawOwner()
    owner_fd = owner.write.fileno()
    try:
        held = _in_child(lambda: b"%d" % signal.set_wakeup_fd(-1))
    finally:
        owner.close()
        asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
    # asyncio 3.12+ (imported here) frees the slot in every child from its own fork hook
    assert held == b"%d" % owner_fd or (sys.version_info >= (3, 12) and held == b"-1")


@FORKS
def test_a_forked_child_runs_its_own_callbacks(
    default_poller: str, socket_map: asyncore.SocketMap, pair: Pair, signals_restored: None
) -> None:
    # promise (stopping.rst): signal callbacks get a wake-up pipe of their own in a child
    reader, _ = pair
    asyncore.loop(timeout=0, use_poll=True, map=socket_map, count=1)  # the parent's loop exists
    asyncio_compat.add_signal_handler(signal.SIGUSR1, reader.close, map=socket_map)

    def child() -> bytes:
        os.kill(os.getpid(), signal.SIGUSR1)
        started = time.monotonic()
        asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map, count=1)
        return b"%d %.3f" % (len(socket_map), time.monotonic() - started)

    try:
        left, elapsed = _in_child(child).split()
    finally:
        asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
    assert left == b"0"
    assert float(elapsed) < BOUND
    assert reader in socket_map.values()  # the parent's channel is the parent's


# -- a seeded chaos run ---------------------------------------------------------------------

CHAOS_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGHUP", "SIGUSR1", "SIGUSR2") if hasattr(signal, name)
)  # none on Windows, where the module is skipped
CHAOS_BYTES = 500_000  # per client


class ChaosEcho(asyncore.dispatcher_with_send):
    """Echoes; raises a random signal from inside some of its reads."""

    def __init__(self, sock: socket.socket, socket_map: Any, chaos: Chaos) -> None:
        super().__init__(sock, map=socket_map)
        self.chaos = chaos

    def handle_read(self) -> None:
        data = self.recv(8192)
        if data:
            self.send(data)
            self.chaos.maybe_raise()

    def handle_close(self) -> None:
        self.close()


class ChaosClient(asyncore.dispatcher):
    """Sends CHAOS_BYTES in random chunks and counts what comes back."""

    def __init__(self, sock: socket.socket, socket_map: Any, chaos: Chaos) -> None:
        super().__init__(sock, map=socket_map)
        self.chaos = chaos
        self.to_send = CHAOS_BYTES
        self.echoed = 0

    def writable(self) -> bool:
        return self.to_send > 0

    def handle_write(self) -> None:
        size = min(self.to_send, self.chaos.rng.randrange(1, 16384))
        self.to_send -= self.send(b"e" * size)

    def handle_read(self) -> None:
        self.echoed += len(self.recv(65536))
        self.chaos.maybe_raise()
        if self.echoed == CHAOS_BYTES:
            self.close()


class Chaos:
    """Raises signals at random points and checks that no raise goes unanswered."""

    def __init__(self, seed: int, socket_map: asyncore.SocketMap) -> None:
        self.rng = random.Random(seed)
        self.map = socket_map
        self.raised = dict.fromkeys(CHAOS_SIGNALS, 0)  # the number of the last raise
        self.answered = dict.fromkeys(CHAOS_SIGNALS, 0)  # the last raise a callback saw
        self.count = 0
        self.registered: List[int] = []

    def raise_one(self) -> None:
        signum = self.rng.choice(CHAOS_SIGNALS)
        self.count += 1
        self.raised[signum] = self.count
        signal.raise_signal(signum)

    def maybe_raise(self) -> None:
        if self.rng.random() < 0.2:
            self.raise_one()

    def on_signal(self, signum: int) -> None:
        self.answered[signum] = self.raised[signum]
        if self.rng.random() < 0.1:
            self.raise_one()  # re-entrant: a callback raising a signal
        if self.rng.random() < 0.05:
            self.toggle(self.rng.choice(CHAOS_SIGNALS))

    def toggle(self, signum: int) -> None:
        """Remove a registered callback or add it back (from a callback: re-entrancy)."""
        if signum in self.registered:
            assert asyncio_compat.remove_signal_handler(signum, map=self.map)
            self.registered.remove(signum)
        else:
            asyncio_compat.add_signal_handler(signum, self.on_signal, signum, map=self.map)
            self.registered.append(signum)
        # raises while it was away went to the plain handler: nothing to answer
        self.answered[signum] = self.raised[signum]

    def unanswered(self) -> List[int]:
        return [signum for signum in self.registered if self.answered[signum] != self.raised[signum]]


@pytest.mark.parametrize("seed", [1, 2])
def test_chaos_signals_during_echo_traffic(
    default_poller: str, socket_map: asyncore.SocketMap, signals_restored: None, seed: int
) -> None:
    # promises: every signal with a callback gets it run; loop() never raises for
    # signals, re-entrant callbacks or handlers removed and added back; no byte is lost
    for signum in CHAOS_SIGNALS:
        signal.signal(signum, lambda *_: None)  # what a removed callback falls back to
    chaos = Chaos(seed, socket_map)
    clients = []
    for _ in range(4):
        ours, theirs = socket.socketpair()
        ChaosEcho(ours, socket_map, chaos)
        clients.append(ChaosClient(theirs, socket_map, chaos))
    for signum in CHAOS_SIGNALS:
        chaos.toggle(signum)
    stop = threading.Event()

    def from_another_thread() -> None:
        while not stop.wait(0.01):
            os.kill(os.getpid(), chaos.rng.choice(CHAOS_SIGNALS))

    thread = threading.Thread(target=from_another_thread)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while any(client.echoed < CHAOS_BYTES for client in clients) and time.monotonic() < deadline:
            asyncore.loop(timeout=0.2, use_poll=True, map=socket_map, count=1)
            if chaos.rng.random() < 0.2:
                chaos.raise_one()  # between passes
    finally:
        stop.set()
        thread.join()
    for _ in range(10):  # the last signals' callbacks
        if not chaos.unanswered():
            break
        asyncore.loop(timeout=0.5, use_poll=True, map=socket_map, count=1)
    try:
        assert [client.echoed for client in clients] == [CHAOS_BYTES] * 4
        assert chaos.unanswered() == []
        assert chaos.count > 20
    finally:
        for signum in list(chaos.registered):
            chaos.toggle(signum)
        asyncore.close_all(socket_map)
