"""Timers served by ``asyncore.loop()``: call_later, call_at, call_every.

Loop-level tests run on every backend (``default_poller``).  Nothing here
measures speed: a loop that slept its whole ``timeout`` instead of waking for
a timer would run into the test's timeout (``timeout=30`` passes against a
10 s test limit), and one that fired too early fails the deadline checks.
"""

from __future__ import annotations

import math
import socket
import time
from typing import Any, Callable, Iterator, List, Tuple

import pytest
from helpers import in_map

import asyncio_compat
from asyncio_compat import _loop, asyncore
from asyncio_compat.timers import TimerHandle, call_at, call_every, call_later

pytestmark = pytest.mark.timeout(10)

LONG = 30.0  # a loop() timeout that no test may ever sit out


class IdleChannel(asyncore.dispatcher):
    """One end of a socketpair that nobody writes to: never ready to read."""

    def __init__(self, sock: socket.socket, socket_map: Any) -> None:
        super().__init__(sock, map=socket_map)

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.recv(100)

    def handle_close(self) -> None:
        self.close()


@pytest.fixture
def idle_channel(socket_map: asyncore.SocketMap) -> Iterator[IdleChannel]:
    mine, peer = socket.socketpair()
    channel = IdleChannel(mine, socket_map)
    yield channel
    channel.close()
    peer.close()


def recorder() -> Tuple[List[Any], Callable[[Any], None]]:
    seen: List[Any] = []
    return seen, seen.append


# -- firing ---------------------------------------------------------------------------


def test_loop_wakes_for_a_timer_instead_of_sleeping_its_timeout(
    default_poller: str, socket_map: asyncore.SocketMap, idle_channel: IdleChannel
) -> None:
    seen, record = recorder()
    handle = call_later(0.05, record, "fired", map=socket_map)
    asyncore.loop(timeout=LONG, map=socket_map, count=1)
    assert seen == ["fired"]
    assert time.monotonic() >= handle.when  # not early
    assert handle.cancelled  # a one-shot timer is spent once it ran


def test_deadline_order_and_scheduling_order_for_ties(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    seen, record = recorder()
    start = time.monotonic()
    # gaps of 0.1 s: call_later() reads the clock again, and a loaded machine
    # may stall between these lines
    call_at(start + 0.3, record, "last", map=socket_map)
    call_at(start + 0.1, record, "first", map=socket_map)
    call_at(start + 0.1, record, "second (same deadline)", map=socket_map)
    call_later(0.2, record, "third", map=socket_map)
    asyncore.loop(timeout=LONG, map=socket_map)
    assert seen == ["first", "second (same deadline)", "third", "last"]


def test_a_deadline_in_the_past_runs_on_the_next_pass(
    default_poller: str, socket_map: asyncore.SocketMap, idle_channel: IdleChannel
) -> None:
    seen, record = recorder()
    call_at(time.monotonic() - 60.0, record, "late", map=socket_map)
    asyncore.loop(timeout=LONG, map=socket_map, count=1)
    assert seen == ["late"]


def test_callback_arguments_are_passed(default_poller: str, socket_map: asyncore.SocketMap) -> None:
    seen: List[Tuple[Any, ...]] = []
    call_later(0, lambda *args: seen.append(args), 1, "two", None, map=socket_map)
    asyncore.loop(timeout=LONG, map=socket_map)
    assert seen == [(1, "two", None)]


def test_a_timer_rescheduling_itself_for_now_waits_for_the_next_pass(
    default_poller: str, socket_map: asyncore.SocketMap, idle_channel: IdleChannel
) -> None:
    runs: List[int] = []

    def again() -> None:
        runs.append(len(runs))
        call_later(0, again, map=socket_map)

    call_later(0, again, map=socket_map)
    asyncore.loop(timeout=LONG, map=socket_map, count=1)
    assert runs == [0]  # the I/O of the next pass comes first
    asyncore.loop(timeout=LONG, map=socket_map, count=3)
    assert runs == [0, 1, 2, 3]


# -- loop(count=None) and the map's lifetime ---------------------------------------------


def test_a_map_with_only_timers_runs_until_they_are_done(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    seen, record = recorder()
    call_later(0.01, record, 1, map=socket_map)
    call_later(0.02, record, 2, map=socket_map)
    asyncore.loop(timeout=LONG, map=socket_map)
    assert seen == [1, 2]
    assert _loop.existing_loop(socket_map) is None  # released once nothing is pending


def test_loop_without_channels_or_timers_returns_at_once(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    asyncore.loop(timeout=LONG, map=socket_map)
    assert _loop.existing_loop(socket_map) is None


def test_no_timer_leaves_the_timeout_alone() -> None:
    from asyncio_compat._timers import TimerQueue

    queue = TimerQueue()
    assert queue.clip(LONG) == LONG
    assert queue.clip(None) is None
    queue.schedule(time.monotonic() + 1000.0, print).cancel()
    assert queue.clip(LONG) == LONG  # a cancelled timer counts for nothing


def test_forget_keeps_a_loop_whose_timers_are_pending(
    default_poller: str, socket_map: asyncore.SocketMap, idle_channel: IdleChannel
) -> None:
    handle = call_later(60.0, print, map=socket_map)
    asyncore.loop(timeout=0, map=socket_map, count=1)
    asyncore.close_all(socket_map)  # empties the map and asks to forget its loop
    asyncore.loop(timeout=0, map=socket_map, count=1)  # so does loop() on an empty map
    state = _loop.existing_loop(socket_map)
    assert state is not None and len(state.timers) == 1
    assert state.timers.next_deadline() == handle.when
    handle.cancel()
    _loop.forget(socket_map)
    assert _loop.existing_loop(socket_map) is None


def test_timers_survive_a_change_of_backend(socket_map: asyncore.SocketMap) -> None:
    seen, record = recorder()
    call_later(0.01, record, "kept", map=socket_map)  # on the process default poller
    asyncore.loop(timeout=LONG, map=socket_map, poller="select")
    assert seen == ["kept"]


def test_default_map_is_looked_up_when_the_timer_is_made(
    default_poller: str, monkeypatch: pytest.MonkeyPatch, socket_map: asyncore.SocketMap
) -> None:
    monkeypatch.setattr(asyncore, "socket_map", socket_map)
    seen, record = recorder()
    handle = asyncio_compat.call_later(0, record, "on the rebound map")
    state = _loop.existing_loop(socket_map)
    assert state is not None and len(state.timers) == 1
    asyncore.loop(timeout=LONG)
    assert seen == ["on the rebound map"] and handle.cancelled


# -- errors ---------------------------------------------------------------------------------


def test_a_failing_timer_is_reported_and_stops_nothing(
    default_poller: str,
    socket_map: asyncore.SocketMap,
    idle_channel: IdleChannel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen, record = recorder()

    def broken() -> None:
        raise ZeroDivisionError("timer trouble")

    call_later(0, broken, map=socket_map)
    call_later(0, record, "next timer", map=socket_map)
    asyncore.loop(timeout=LONG, map=socket_map, count=1)
    assert seen == ["next timer"]
    err = capsys.readouterr().err
    assert "error: uncaptured python exception in timer" in err
    assert "broken" in err and "ZeroDivisionError: timer trouble" in err
    assert in_map(idle_channel, socket_map)  # the channels are untouched


def test_exitnow_from_a_timer_leaves_loop_and_keeps_the_rest(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    seen, record = recorder()

    def leave() -> None:
        raise asyncore.ExitNow("stop here")

    start = time.monotonic()
    call_at(start, leave, map=socket_map)
    call_at(start, record, "due in the same pass", map=socket_map)
    call_at(start + 0.01, record, "due later", map=socket_map)
    with pytest.raises(asyncore.ExitNow, match="stop here"):
        asyncore.loop(timeout=LONG, map=socket_map)
    assert seen == []
    state = _loop.existing_loop(socket_map)
    assert state is not None and len(state.timers) == 2
    asyncore.loop(timeout=LONG, map=socket_map)
    assert seen == ["due in the same pass", "due later"]


# -- cancelling ---------------------------------------------------------------------------------


def test_cancel_before_it_fires(default_poller: str, socket_map: asyncore.SocketMap) -> None:
    seen, record = recorder()
    before = time.monotonic()
    handle = call_later(1000.0, record, "never", map=socket_map)
    assert before + 1000.0 <= handle.when <= time.monotonic() + 1000.0
    assert isinstance(handle, TimerHandle) and not handle.cancelled
    handle.cancel()
    handle.cancel()  # twice is harmless
    asyncore.loop(timeout=LONG, map=socket_map)  # nothing pending: returns at once
    assert seen == [] and handle.cancelled


def test_cancel_from_inside_a_callback(default_poller: str, socket_map: asyncore.SocketMap) -> None:
    seen, record = recorder()
    start = time.monotonic()
    handles: List[TimerHandle] = []

    def first() -> None:
        record("first")
        handles[0].cancel()  # due in the same pass, not run yet
        handles[1].cancel()  # itself, already running

    own = call_at(start, first, map=socket_map)
    same_pass = call_at(start, record, "cancelled in the same pass", map=socket_map)
    handles[:] = [same_pass, own]
    call_at(start + 0.01, record, "unrelated", map=socket_map)
    asyncore.loop(timeout=LONG, map=socket_map)
    assert seen == ["first", "unrelated"]


def test_call_every_runs_until_cancelled(default_poller: str, socket_map: asyncore.SocketMap) -> None:
    times: List[float] = []
    handles: List[TimerHandle] = []

    def tick() -> None:
        times.append(time.monotonic())
        if len(times) == 3:
            handles[0].cancel()

    start = time.monotonic()
    handles.append(call_every(0.01, tick, map=socket_map))
    first_when = handles[0].when
    asyncore.loop(timeout=LONG, map=socket_map)  # runs while the periodic timer is live
    assert len(times) == 3 and handles[0].cancelled
    assert handles[0].when > first_when
    for index, moment in enumerate(times):
        assert moment >= start + 0.01 * (index + 1) - 0.001  # never ahead of its plan


def test_call_every_first_delay(default_poller: str, socket_map: asyncore.SocketMap) -> None:
    seen: List[float] = []
    handles: List[TimerHandle] = []

    def tick() -> None:
        seen.append(time.monotonic())
        handles[0].cancel()

    before = time.monotonic()
    handles.append(call_every(1000.0, tick, map=socket_map, first=0))
    assert handles[0].when <= time.monotonic()
    asyncore.loop(timeout=LONG, map=socket_map)
    assert len(seen) == 1 and seen[0] >= before


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: call_later(-0.5, print, map=m), ValueError, "delay must not be negative"),
        (lambda m: call_later(math.nan, print, map=m), ValueError, "delay must be finite"),
        (lambda m: call_later(math.inf, print, map=m), ValueError, "delay must be finite"),
        (lambda m: call_later("1", print, map=m), TypeError, "delay must be a number"),  # type: ignore[arg-type]
        (lambda m: call_later(None, print, map=m), TypeError, "delay must be a number"),  # type: ignore[arg-type]
        (lambda m: call_later(True, print, map=m), TypeError, "delay must be a number"),
        (lambda m: call_later(1, "print", map=m), TypeError, "callback must be callable"),  # type: ignore[arg-type]
        (lambda m: call_at(math.nan, print, map=m), ValueError, "when must be finite"),
        (lambda m: call_at(b"0", print, map=m), TypeError, "when must be a number"),  # type: ignore[arg-type]
        (lambda m: call_at(0.0, None, map=m), TypeError, "callback must be callable"),  # type: ignore[arg-type]
        (lambda m: call_every(0, print, map=m), ValueError, "interval must be a positive"),
        (lambda m: call_every(-1, print, map=m), ValueError, "interval must be a positive"),
        (lambda m: call_every(math.nan, print, map=m), ValueError, "interval must be finite"),
        (lambda m: call_every(1, print, map=m, first=-1), ValueError, "first must not be negative"),
        (lambda m: call_every(1, 42, map=m), TypeError, "callback must be callable"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_refused_and_schedules_nothing(
    socket_map: asyncore.SocketMap, call: Callable[[Any], Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        call(socket_map)
    state = _loop.existing_loop(socket_map)
    assert state is None or not state.timers


def test_timer_handle_repr_names_the_callback(socket_map: asyncore.SocketMap) -> None:
    handle = call_every(5.0, print, map=socket_map)
    text = repr(handle)
    assert "every 5.0s" in text and "print" in text and "cancelled" not in text
    handle.cancel()
    assert repr(handle).endswith("cancelled>")
