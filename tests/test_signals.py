"""Signals during a wait, and add_signal_handler/remove_signal_handler.

Each test arms a one-shot SIGALRM with ``signal.setitimer`` before calling
``loop()``: the signal lands while the loop waits.  No sleep is used to
synchronise; times are measured with ``time.monotonic()``.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import socket
import threading
import time
from typing import Any, Iterator, List

import pytest

import asyncio_compat
from asyncio_compat import asyncio_bridge, asyncore
from asyncio_compat.timers import call_later

pytestmark = [
    # pytest-timeout's default method uses SIGALRM itself: these tests own that signal
    pytest.mark.timeout(30, method="thread"),
    pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer"),
]

LONG_WAIT = 10.0  # the loop's timeout: a test that slept it out would fail its bound
BOUND = 1.0  # a woken loop returns well within this


class Reader(asyncore.dispatcher):
    """Records what it reads; closes quietly on EOF."""

    def __init__(self, sock: socket.socket, socket_map: Any) -> None:
        super().__init__(sock, map=socket_map)
        self.received: List[bytes] = []

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        data = self.recv(4096)
        if data:
            self.received.append(data)
            self.close()

    def handle_close(self) -> None:
        self.close()


@pytest.fixture
def alarm() -> Iterator[None]:
    """Restores SIGALRM's handler and disarms the timer after the test."""
    previous = signal.getsignal(signal.SIGALRM)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def _pair() -> List[socket.socket]:
    return list(socket.socketpair())


def _arm(delay: float = 0.05) -> None:
    signal.setitimer(signal.ITIMER_REAL, delay)


def test_close_all_in_a_signal_handler_during_the_wait(
    default_poller: str, socket_map: asyncore.SocketMap, alarm: None
) -> None:
    pairs = [_pair() for _ in range(3)]
    for ours, _ in pairs:
        Reader(ours, socket_map)
    signal.signal(signal.SIGALRM, lambda *_: asyncore.close_all(socket_map))
    _arm()
    started = time.monotonic()
    asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map)
    assert time.monotonic() - started < BOUND * 3
    assert not socket_map
    for _, theirs in pairs:
        theirs.close()


def test_close_all_in_a_signal_handler_select_semantics(
    default_poller: str, socket_map: asyncore.SocketMap, alarm: None
) -> None:
    ours, theirs = _pair()
    Reader(ours, socket_map)
    signal.signal(signal.SIGALRM, lambda *_: asyncore.close_all(socket_map))
    _arm()
    asyncore.loop(timeout=LONG_WAIT, use_poll=False, map=socket_map)
    assert not socket_map
    theirs.close()


class RaisesOnAsk(Reader):
    """Raises SIGALRM from ``readable()``: its handler runs inside the pass,
    before the wait (where a signal may always land), not inside it."""

    def readable(self) -> bool:
        signal.raise_signal(signal.SIGALRM)
        return True


def test_close_all_in_a_signal_handler_before_the_wait(
    default_poller: str, socket_map: asyncore.SocketMap, alarm: None
) -> None:
    # Seen in CI as a prefork child that SIGTERM reached before its wait: the
    # emptied map closed the poller under the pass, and the wait raised
    # "ValueError: ... is closed".
    ours, theirs = _pair()
    RaisesOnAsk(ours, socket_map)
    calls: List[str] = []

    def on_alarm(*_: object) -> None:
        calls.append("alarm")
        asyncore.close_all(socket_map)

    signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map)
    assert calls == ["alarm"]
    assert not socket_map
    assert time.monotonic() - started < BOUND * 3  # the closed fd ended the wait
    theirs.close()


def test_a_channel_opened_by_a_signal_handler_before_the_wait_is_served(
    default_poller: str, socket_map: asyncore.SocketMap, alarm: None
) -> None:
    # The wait must not start on the set registered before the handler ran:
    # the new channel's data would then wait out LONG_WAIT.
    first, first_peer = _pair()
    asker = RaisesOnAsk(first, socket_map)
    opened: List[Reader] = []
    peers = [first_peer]

    def open_one(*_: object) -> None:
        if opened:
            return  # readable() is asked again on later passes
        ours, theirs = _pair()
        theirs.sendall(b"early")
        peers.append(theirs)
        opened.append(Reader(ours, socket_map))

    signal.signal(signal.SIGALRM, open_one)
    started = time.monotonic()
    while not (opened and opened[0].received) and time.monotonic() - started < LONG_WAIT:
        asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map, count=1)
    assert time.monotonic() - started < BOUND
    assert [reader.received for reader in opened] == [[b"early"]]
    asker.close()
    for peer in peers:
        peer.close()


def test_handler_closes_one_channel_and_opens_another(
    default_poller: str, socket_map: asyncore.SocketMap, alarm: None
) -> None:
    first, first_peer = _pair()
    old = Reader(first, socket_map)
    opened: List[Reader] = []
    peers = [first_peer]

    def swap(*_: object) -> None:
        old.close()  # its fd is free: the new pair may reuse the number
        ours, theirs = _pair()
        theirs.sendall(b"news")
        peers.append(theirs)
        opened.append(Reader(ours, socket_map))

    signal.signal(signal.SIGALRM, swap)
    _arm()
    started = time.monotonic()
    asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map)
    assert time.monotonic() - started < BOUND * 3
    assert old.received == []
    assert [reader.received for reader in opened] == [[b"news"]]
    for peer in peers:
        peer.close()


def _in_loop_not_in_signal_context() -> bool:
    names = [frame.function for frame in inspect.stack()]
    return "drain" in names and "_on_signal" not in names


def test_add_signal_handler_wakes_a_long_wait(
    default_poller: str, socket_map: asyncore.SocketMap, alarm: None
) -> None:
    ours, theirs = _pair()
    reader = Reader(ours, socket_map)
    seen: List[bool] = []

    def on_alarm(tag: str) -> None:
        seen.append(_in_loop_not_in_signal_context() and tag == "tag")
        # only schedules work: the loop must not sleep out its timeout first
        call_later(0, reader.close, map=socket_map)

    asyncio_compat.add_signal_handler(signal.SIGALRM, on_alarm, "tag", map=socket_map)
    try:
        _arm()
        started = time.monotonic()
        asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map)
        elapsed = time.monotonic() - started
    finally:
        assert asyncio_compat.remove_signal_handler(signal.SIGALRM, map=socket_map)
    assert seen == [True]
    assert elapsed < BOUND
    theirs.close()


def test_remove_signal_handler_restores_the_previous_one(socket_map: asyncore.SocketMap, alarm: None) -> None:
    def previous(*_: object) -> None:
        pass

    signal.signal(signal.SIGALRM, previous)
    asyncio_compat.add_signal_handler(signal.SIGALRM, print, map=socket_map)
    assert signal.getsignal(signal.SIGALRM) is not previous
    assert asyncio_compat.remove_signal_handler(signal.SIGALRM, map=socket_map) is True
    assert signal.getsignal(signal.SIGALRM) is previous
    assert asyncio_compat.remove_signal_handler(signal.SIGALRM, map=socket_map) is False
    assert signal.set_wakeup_fd(-1) == -1  # the wakeup fd was handed back


def test_bad_arguments_are_refused(socket_map: asyncore.SocketMap) -> None:
    with pytest.raises(ValueError, match="SIGKILL"):
        asyncio_compat.add_signal_handler(signal.SIGKILL, print, map=socket_map)
    with pytest.raises(ValueError, match="invalid signal"):
        asyncio_compat.add_signal_handler(10_000, print, map=socket_map)
    with pytest.raises(TypeError, match="callable"):
        asyncio_compat.add_signal_handler(signal.SIGALRM, None, map=socket_map)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int"):
        asyncio_compat.remove_signal_handler("SIGALRM", map=socket_map)  # type: ignore[arg-type]


def test_main_thread_only(socket_map: asyncore.SocketMap) -> None:
    errors: List[BaseException] = []

    def attempt() -> None:
        try:
            asyncio_compat.add_signal_handler(signal.SIGALRM, print, map=socket_map)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])


def test_signal_handler_under_the_asyncio_bridge(socket_map: asyncore.SocketMap, alarm: None) -> None:
    ours, theirs = _pair()
    reader = Reader(ours, socket_map)
    asyncio_compat.add_signal_handler(signal.SIGALRM, reader.close, map=socket_map)

    async def main() -> float:
        _arm()
        started = time.monotonic()
        await asyncio_bridge.run_map(socket_map)
        return time.monotonic() - started

    try:
        elapsed = asyncio.run(main())
    finally:
        asyncio_compat.remove_signal_handler(signal.SIGALRM, map=socket_map)
    assert elapsed < BOUND
    assert not socket_map
    theirs.close()


def test_signal_handler_when_asyncio_holds_the_wakeup_fd(
    default_poller: str, socket_map: asyncore.SocketMap, alarm: None
) -> None:
    held_read, held_write = socket.socketpair()
    held_write.setblocking(False)
    before = signal.set_wakeup_fd(held_write.fileno())
    try:
        ours, theirs = _pair()
        reader = Reader(ours, socket_map)
        asyncio_compat.add_signal_handler(signal.SIGALRM, reader.close, map=socket_map)
        assert signal.set_wakeup_fd(held_write.fileno()) == held_write.fileno()  # left alone
        _arm()
        started = time.monotonic()
        asyncore.loop(timeout=LONG_WAIT, map=socket_map)
        assert time.monotonic() - started < BOUND
        asyncio_compat.remove_signal_handler(signal.SIGALRM, map=socket_map)
        assert signal.set_wakeup_fd(held_write.fileno()) == held_write.fileno()
        theirs.close()
    finally:
        signal.set_wakeup_fd(before)
        held_read.close()
        held_write.close()



def test_closing_one_channel_in_a_handler_ends_the_wait(
    default_poller: str, socket_map: asyncore.SocketMap, alarm: None
) -> None:
    first, first_peer = _pair()
    second, second_peer = _pair()
    closed = Reader(first, socket_map)
    Reader(second, socket_map)
    signal.signal(signal.SIGALRM, lambda *_: closed.close())
    _arm()
    started = time.monotonic()
    asyncore.loop(timeout=LONG_WAIT, use_poll=True, map=socket_map, count=1)
    # epoll and kqueue drop a closed fd silently: the loop wakes itself
    assert time.monotonic() - started < BOUND
    assert list(socket_map.values()) != [] and closed not in socket_map.values()
    first_peer.close()
    second_peer.close()
