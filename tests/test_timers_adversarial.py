"""Attacks on the promises of timers (docs/timers.rst) and of ``loop()``'s timeout.

Other drivers of the map (``poll()``/``poll2()``), callbacks that cancel,
re-arm, close channels or run ``loop()`` themselves, timers made from another
thread, long runs with the memory measured, and every kind of bad timeout.
Loop-level tests run on every backend.
"""

from __future__ import annotations

import math
import socket
import threading
import time
import tracemalloc
from typing import Any, Callable, Iterator, List, Tuple

import pytest
from helpers import ONE_PASS_DRIVERS as DRIVERS
from helpers import drive_one_pass as drive

from asyncio_compat import asyncore, call_at, call_every, call_later, loop_stats
from asyncio_compat.timers import TimerHandle

pytestmark = pytest.mark.timeout(60)


class Quiet(asyncore.dispatcher):
    """One end of a socketpair: reads whatever comes, never writes."""

    def __init__(self, sock: socket.socket, socket_map: Any) -> None:
        super().__init__(sock, map=socket_map)
        self.received = b""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.received += self.recv(4096)

    def handle_close(self) -> None:
        self.close()


@pytest.fixture
def quiet(socket_map: Any) -> Iterator[Tuple[Quiet, socket.socket]]:
    mine, peer = socket.socketpair()
    channel = Quiet(mine, socket_map)
    yield channel, peer
    channel.close()
    peer.close()


# -- whoever drives the map runs its timers -------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_timer_runs_and_wakes_the_wait_whoever_drives_the_map(
    driver: str, default_poller: str, socket_map: Any, quiet: Tuple[Quiet, socket.socket]
) -> None:
    fired: List[float] = []
    started = time.monotonic()
    call_later(0.05, lambda: fired.append(time.monotonic()), map=socket_map)
    deadline = started + 20
    while not fired and time.monotonic() < deadline:
        drive(driver, socket_map, 30.0, default_poller)
        # a pass that slept its whole timeout instead of waking for the timer
        assert time.monotonic() - started < 15, "the wait did not end at the timer's deadline"
    assert fired, f"{driver}() never ran the map's timer"
    assert fired[0] - started >= 0.05 - 0.01  # not early


@pytest.mark.parametrize("driver", ["poll", "poll2"])
def test_poll_runs_a_periodic_timer_and_its_cancel(
    driver: str, default_poller: str, socket_map: Any, quiet: Tuple[Quiet, socket.socket]
) -> None:
    ticks: List[None] = []

    def tick() -> None:
        ticks.append(None)
        if len(ticks) == 3:
            periodic.cancel()

    periodic = call_every(0.01, tick, map=socket_map)
    deadline = time.monotonic() + 20
    while not periodic.cancelled and time.monotonic() < deadline:
        drive(driver, socket_map, 5.0, default_poller)
    assert len(ticks) == 3
    for _ in range(3):
        drive(driver, socket_map, 0.02, default_poller)
    assert len(ticks) == 3  # cancelled from inside its callback: never again


@pytest.mark.parametrize("driver", ["poll", "poll2"])
def test_poll_with_timers_only_still_serves_the_channels_in_that_pass(
    driver: str, default_poller: str, socket_map: Any, quiet: Tuple[Quiet, socket.socket]
) -> None:
    channel, peer = quiet
    order: List[str] = []
    call_later(0, lambda: order.append(f"timer after {channel.received!r}"), map=socket_map)
    peer.send(b"data")
    drive(driver, socket_map, 5.0, default_poller)
    assert channel.received == b"data"
    assert order == ["timer after b'data'"]  # I/O first, then the due timers, as loop() does


@pytest.mark.parametrize("driver", ["poll", "poll2"])
def test_exitnow_from_a_timer_leaves_poll_and_keeps_the_rest(
    driver: str, default_poller: str, socket_map: Any, quiet: Tuple[Quiet, socket.socket]
) -> None:
    ran: List[str] = []

    def leave() -> None:
        ran.append("leave")
        raise asyncore.ExitNow("stop")

    now = time.monotonic()
    call_at(now - 1, leave, map=socket_map)
    call_at(now - 0.5, ran.append, "after", map=socket_map)
    with pytest.raises(asyncore.ExitNow):
        drive(driver, socket_map, 5.0, default_poller)
    assert ran == ["leave"]
    assert loop_stats(socket_map).timers == 1  # still pending, for the next pass
    drive(driver, socket_map, 5.0, default_poller)
    assert ran == ["leave", "after"]


# -- re-entrancy from callbacks ------------------------------------------------------------------


def test_a_callback_cancelling_and_rearming_hundreds_in_the_same_pass(
    default_poller: str, socket_map: Any, quiet: Tuple[Quiet, socket.socket]
) -> None:
    """A first callback cancels most of the other due timers and re-arms far ones,
    which rebuilds the heap while the pass is running them."""
    now = time.monotonic()
    ran: List[int] = []
    due: List[TimerHandle] = []
    far: List[TimerHandle] = []

    def first() -> None:
        ran.append(-1)
        for index, handle in enumerate(due):
            if index % 4:
                handle.cancel()
        for handle in far:
            handle.cancel()
        for _ in range(300):
            call_later(3600, ran.append, -2, map=socket_map).cancel()

    call_at(now - 1, first, map=socket_map)
    due.extend(call_at(now - 0.5, ran.append, index, map=socket_map) for index in range(200))
    far.extend(call_later(3600, ran.append, -3, map=socket_map) for _ in range(300))
    asyncore.loop(timeout=0.1, map=socket_map, count=1, poller=default_poller)
    assert ran == [-1] + [index for index in range(200) if index % 4 == 0]
    assert loop_stats(socket_map).timers == 0  # nothing left pending


def test_a_callback_that_runs_loop_itself(
    default_poller: str, socket_map: Any, quiet: Tuple[Quiet, socket.socket]
) -> None:
    channel, peer = quiet
    order: List[str] = []

    def nested() -> None:
        order.append("outer timer")
        peer.send(b"x")
        asyncore.loop(timeout=5, map=socket_map, count=1, poller=default_poller)
        order.append(f"nested pass read {channel.received!r}")

    call_later(0, nested, map=socket_map)
    call_later(0.5, order.append, "second timer", map=socket_map)
    deadline = time.monotonic() + 20
    while len(order) < 3 and time.monotonic() < deadline:
        asyncore.loop(timeout=1, map=socket_map, count=1, poller=default_poller)
    assert order == ["outer timer", "nested pass read b'x'", "second timer"]


def test_a_callback_that_closes_every_channel_and_opens_one(default_poller: str, socket_map: Any) -> None:
    mine, peer = socket.socketpair()
    Quiet(mine, socket_map)
    fresh: List[Quiet] = []
    spare_mine, spare_peer = socket.socketpair()

    def swap() -> None:
        asyncore.close_all(map=socket_map)
        fresh.append(Quiet(spare_mine, socket_map))
        spare_peer.send(b"after the swap")

    call_later(0, swap, map=socket_map)
    try:
        deadline = time.monotonic() + 20
        while not (fresh and fresh[0].received) and time.monotonic() < deadline:
            asyncore.loop(timeout=1, map=socket_map, count=1, poller=default_poller)
        assert fresh[0].received == b"after the swap"
    finally:
        asyncore.close_all(map=socket_map)
        peer.close()
        spare_peer.close()


# -- another thread --------------------------------------------------------------------------------


def test_timers_made_from_another_thread_before_the_loop_runs(default_poller: str, socket_map: Any) -> None:
    ran: List[int] = []
    made = threading.Thread(target=lambda: [call_later(0, ran.append, n, map=socket_map) for n in range(50)])
    made.start()
    made.join(10)
    asyncore.loop(timeout=5, map=socket_map, poller=default_poller)  # returns once they ran
    assert ran == list(range(50))


# -- memory over a long run -------------------------------------------------------------------------


def growth_after(restarts: int, step: Callable[[], None]) -> int:
    """Bytes allocated and kept by ``restarts`` calls of ``step`` after a warm-up."""
    for _ in range(1_000):
        step()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(restarts):
            step()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_restarting_a_long_timer_per_message_keeps_memory_flat(default_poller: str, socket_map: Any) -> None:
    """The idle-timeout pattern of docs/timers.rst: cancel and re-arm a 300 s
    timer per message, while two timers due sooner stay pending."""
    ahead = [call_later(200, lambda: None, map=socket_map) for _ in range(2)]
    holder: List[TimerHandle] = [call_later(300, lambda: None, map=socket_map)]
    passes = [0]

    def message() -> None:
        holder[0].cancel()
        holder[0] = call_later(300, lambda: None, map=socket_map)
        passes[0] += 1
        if passes[0] % 5_000 == 0:  # the loop runs between messages
            asyncore.loop(timeout=0, map=socket_map, count=1, poller=default_poller)

    grown = growth_after(100_000, message)
    # kept, each cancelled entry costs about 200 bytes: 20 MB here
    assert grown < 256 * 1024, f"{grown} bytes kept after 100,000 restarts"
    assert loop_stats(socket_map).timers == 3
    for handle in ahead + holder:
        handle.cancel()


def test_many_live_timers_with_churn_keep_memory_proportional(socket_map: Any) -> None:
    live = [call_later(100 + n, lambda: None, map=socket_map) for n in range(1_000)]
    slot = [0]

    def churn() -> None:
        index = slot[0] % len(live)
        slot[0] += 1
        live[index].cancel()
        live[index] = call_later(100 + index, lambda: None, map=socket_map)

    grown = growth_after(50_000, churn)
    assert grown < 512 * 1024, f"{grown} bytes kept after 50,000 restarts beside 1,000 live timers"
    assert loop_stats(socket_map).timers == 1_000


# -- loop()'s timeout: never a spin ---------------------------------------------------------------


def test_a_negative_timeout_raises_with_select_semantics(
    default_poller: str, socket_map: Any, quiet: Tuple[Quiet, socket.socket]
) -> None:
    ran: List[None] = []
    call_later(0, ran.append, None, map=socket_map)
    with pytest.raises(ValueError, match="timeout must not be negative"):
        asyncore.loop(timeout=-1, map=socket_map, count=1, poller=default_poller)
    with pytest.raises(ValueError, match="timeout must not be negative"):
        asyncore.poll(-0.5, socket_map)
    assert ran == []  # refused before any pass


@pytest.mark.parametrize("driver", ["loop", "poll2"])
def test_a_negative_timeout_waits_without_limit_with_poll_semantics(
    driver: str, default_poller: str, socket_map: Any, quiet: Tuple[Quiet, socket.socket]
) -> None:
    channel, peer = quiet
    seen: List[int] = []

    def finish() -> None:
        seen.append(loop_stats(socket_map).passes)
        peer.send(b"wake")

    started = time.monotonic()
    call_later(0.2, finish, map=socket_map)
    if driver == "loop":
        call_later(0.3, channel.close, map=socket_map)
        asyncore.loop(timeout=-1, use_poll=True, map=socket_map, poller=default_poller)
        # a spinning loop makes thousands of passes in 0.2 s; a waiting one, one or two
        assert seen and seen[0] <= 3, f"{seen[0] if seen else None} passes before the first timer"
    else:
        asyncore.poll2(-1, socket_map)  # waits until the timer, which runs in this pass
        assert seen
    assert time.monotonic() - started >= 0.2 - 0.01


@pytest.mark.parametrize("driver", DRIVERS)
def test_none_waits_without_limit_until_a_timer(
    driver: str, default_poller: str, socket_map: Any, quiet: Tuple[Quiet, socket.socket]
) -> None:
    ran: List[None] = []
    started = time.monotonic()
    call_later(0.1, ran.append, None, map=socket_map)
    drive(driver, socket_map, None, default_poller)
    assert ran == [None]
    assert time.monotonic() - started >= 0.1 - 0.01


UNUSABLE = [
    (math.inf, ValueError, "timeout must be finite"),
    (-math.inf, ValueError, "timeout must be finite"),
    (math.nan, ValueError, "timeout must be finite"),
    (True, TypeError, "timeout must be a number of seconds or None, not bool"),
    (False, TypeError, "not bool"),
    ("1", TypeError, "not str"),
    (b"", TypeError, "not bytes"),
    (1j, TypeError, "not complex"),
]


@pytest.mark.parametrize("use_poll", [False, True], ids=["select-semantics", "poll-semantics"])
@pytest.mark.parametrize("value, error, message", UNUSABLE, ids=[repr(v[0]) for v in UNUSABLE])
def test_an_unusable_timeout_is_refused_by_loop(
    value: Any, error: type, message: str, use_poll: bool, default_poller: str,
    socket_map: Any, quiet: Tuple[Quiet, socket.socket],
) -> None:
    channel, peer = quiet
    peer.send(b"ready")  # a pass would return at once: only a check can fail the call
    with pytest.raises(error, match=message):  # type: ignore[call-overload]
        asyncore.loop(timeout=value, use_poll=use_poll, map=socket_map, count=1, poller=default_poller)
    assert channel.received == b""  # refused before any pass


@pytest.mark.parametrize("driver", ["poll", "poll2"])
@pytest.mark.parametrize("value, error, message", UNUSABLE, ids=[repr(v[0]) for v in UNUSABLE])
def test_an_unusable_timeout_is_refused_by_poll(
    value: Any, error: type, message: str, driver: str, default_poller: str,
    socket_map: Any, quiet: Tuple[Quiet, socket.socket],
) -> None:
    channel, peer = quiet
    peer.send(b"ready")
    with pytest.raises(error, match=message):  # type: ignore[call-overload]
        drive(driver, socket_map, value, default_poller)
    assert channel.received == b""


def test_a_timeout_past_the_kernel_limit_still_waits_for_events(
    default_poller: str, socket_map: Any, quiet: Tuple[Quiet, socket.socket]
) -> None:
    channel, peer = quiet
    call_later(0.05, peer.send, b"late", map=socket_map)
    deadline = time.monotonic() + 20
    while not channel.received and time.monotonic() < deadline:
        asyncore.loop(timeout=1e10, map=socket_map, count=1, poller=default_poller)
    assert channel.received == b"late"
