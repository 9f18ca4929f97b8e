"""Debug mode (slow handlers, spinning channels, unclosed dispatchers) and loop_stats().

Each behaviour runs on every backend, and again with debug mode off, where
the same scenarios must log nothing.  Slow handlers sleep for a set time a
little longer than the threshold: that sleep is the duration under test, not
a wait for something to happen.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from helpers import load_example, run_example

import asyncio_compat
import pollers
from asyncio_compat import LoopStats, asyncore, call_later, get_debug, loop_stats, set_debug
from asyncio_compat._debug_monitor import SPIN_THRESHOLD
from asyncio_compat.asyncio_bridge import run_map

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
SLOW = 0.02  # the slow_handler threshold of these tests
SLEEP = 0.05  # what a slow handler takes: a controlled duration, above SLOW
DURATION = re.compile(r"took (\d+\.\d{3}) s$")


@pytest.fixture
def debug_on() -> Iterator[None]:
    set_debug(True, slow_handler=SLOW)
    try:
        yield
    finally:
        set_debug(False)


@pytest.fixture
def debug_off() -> Iterator[None]:
    set_debug(False, slow_handler=SLOW)  # the threshold is set: only the mode is off
    try:
        yield
    finally:
        set_debug(False)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Captures what debug mode logs on the ``asyncio_compat`` logger, WARNING and up."""
    caplog.set_level(logging.WARNING, logger="asyncio_compat")
    return caplog


def messages(records: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in records.records if r.name == "asyncio_compat"]


def tcp_pair() -> Tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair (the exact write count of debug mode is TCP's)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        mine = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
    return mine, peer


Pair = Tuple[socket.socket, socket.socket]


def start(channel_class: Callable[..., Any], sent: bytes, socket_map: asyncore.SocketMap,
          make_pair: Callable[[], Pair] = tcp_pair) -> Tuple[Any, socket.socket]:
    """A ``channel_class`` on one end of a new pair, ``sent`` already sent from the other (the peer)."""
    mine, peer = make_pair()
    channel = channel_class(mine, map=socket_map)
    peer.sendall(sent)
    return channel, peer


def run(socket_map: asyncore.SocketMap, poller_name: str, passes: int) -> None:
    asyncore.loop(timeout=0.2, map=socket_map, count=passes, poller=poller_name, use_poll=True)


# -- channels -------------------------------------------------------------------------


class SlowReader(asyncore.dispatcher):
    """Reads what comes, taking SLEEP seconds over it."""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        time.sleep(SLEEP)
        self.recv(4096)


class SlowWriter(asyncore.dispatcher):
    """Sends one byte, taking SLEEP seconds over it, then wants nothing more."""

    sent = False

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return not self.sent

    def handle_write(self) -> None:
        time.sleep(SLEEP)
        self.send(b"x")
        self.sent = True


class SpinningWriter(asyncore.dispatcher):
    """Says it wants to write and never does: the classic spin."""

    def readable(self) -> bool:
        return False

    def handle_write(self) -> None:
        pass


class SpinningReader(asyncore.dispatcher):
    """Wants to read and never reads what is waiting."""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        pass


class Trickler(asyncore.dispatcher):
    """Sends one byte on every write event: busy, but not spinning."""

    def readable(self) -> bool:
        return False

    def handle_write(self) -> None:
        self.send(b"x")


def slow_duration(found: List[str], name: str) -> float:
    assert len(found) == 1, found
    assert found[0].startswith(f"slow handler: {name}"), found[0]
    match = DURATION.search(found[0])
    assert match, found[0]
    return float(match.group(1))


# -- slow handlers ------------------------------------------------------------------------


SLOW_CHANNELS = {
    # the channel class, what the peer sends first, the handler the loop calls
    "read": (SlowReader, b"ping", "handle_read_event"),
    "write": (SlowWriter, b"", "handle_write_event"),
}


@pytest.mark.parametrize("kind", sorted(SLOW_CHANNELS))
def test_a_slow_handler_is_logged_with_channel_handler_and_duration(
    poller_name: str, socket_map: asyncore.SocketMap, debug_on: None, records: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    channel_class, sent, handler = SLOW_CHANNELS[kind]
    channel, peer = start(channel_class, sent, socket_map)
    with peer:
        run(socket_map, poller_name, 1)
        assert slow_duration(messages(records), f"{channel!r}.{handler} took") >= SLEEP
    assert [r.levelno for r in records.records] == [logging.WARNING]


class SlowAcceptor(asyncore.dispatcher):
    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        time.sleep(SLEEP)
        sock.close()


def test_slow_accept_is_logged_as_the_read_event_that_ran_it(
    poller_name: str, socket_map: asyncore.SocketMap, debug_on: None, records: pytest.LogCaptureFixture
) -> None:
    listener = SlowAcceptor(map=socket_map)
    listener.create_socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    with socket.create_connection(listener.socket.getsockname()):
        run(socket_map, poller_name, 1)
    assert slow_duration(messages(records), f"{listener!r}.handle_read_event took") >= SLEEP


class SlowConnector(asyncore.dispatcher):
    def handle_connect(self) -> None:
        time.sleep(SLEEP)

    def handle_write(self) -> None:
        self.close()  # connected: done


def test_slow_connect_is_logged_as_the_write_event_that_ran_it(
    poller_name: str, socket_map: asyncore.SocketMap, debug_on: None, records: pytest.LogCaptureFixture
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = SlowConnector(map=socket_map)
        client.create_socket()
        client.connect(listener.getsockname())
        run(socket_map, poller_name, 1)
        assert not socket_map  # connected, and closed by handle_write
    assert slow_duration(messages(records), f"{client!r}.handle_write_event took") >= SLEEP


def test_slow_timer_callback_is_logged(
    poller_name: str, socket_map: asyncore.SocketMap, debug_on: None, records: pytest.LogCaptureFixture
) -> None:
    def slow_tick() -> None:
        time.sleep(SLEEP)

    call_later(0, slow_tick, map=socket_map)
    run(socket_map, poller_name, 1)
    assert slow_duration(messages(records), f"timer {slow_tick!r} took") >= SLEEP


def test_slow_handler_is_logged_under_the_asyncio_bridge(
    socket_map: asyncore.SocketMap, debug_on: None, records: pytest.LogCaptureFixture
) -> None:
    mine, peer = tcp_pair()

    class ClosingReader(SlowReader):
        def handle_read(self) -> None:
            super().handle_read()
            self.close()  # the map empties: run_map returns

    with peer:
        reader = ClosingReader(mine, map=socket_map)
        peer.sendall(b"ping")
        asyncio.run(asyncio.wait_for(run_map(socket_map), 30))
    assert slow_duration(messages(records), f"{reader!r}.handle_read_event took") >= SLEEP


def test_quick_handlers_are_not_logged(
    poller_name: str, socket_map: asyncore.SocketMap, debug_on: None, records: pytest.LogCaptureFixture
) -> None:
    set_debug(True, slow_handler=10.0)
    mine, peer = tcp_pair()
    with peer:
        SlowReader(mine, map=socket_map)
        peer.sendall(b"ping")
        run(socket_map, poller_name, 1)
    assert messages(records) == []


# -- spinning channels -----------------------------------------------------------------


SPINS = {
    # the channel class, what the peer sends first, the message's words
    "writer": (SpinningWriter, b"", "writing", "without sending a byte"),
    "reader": (SpinningReader, b"never read", "reading", "without reading a byte"),
}


@pytest.mark.parametrize("make_pair", [tcp_pair, socket.socketpair], ids=["tcp", "unix"])
@pytest.mark.parametrize("kind", sorted(SPINS))
def test_a_spinning_channel_is_logged_once_with_the_count(
    poller_name: str, socket_map: asyncore.SocketMap, debug_on: None, records: pytest.LogCaptureFixture,
    make_pair: Callable[[], Tuple[socket.socket, socket.socket]], kind: str,
) -> None:
    channel_class, sent, direction, without = SPINS[kind]
    channel, peer = start(channel_class, sent, socket_map, make_pair)
    with peer:
        run(socket_map, poller_name, 2 * SPIN_THRESHOLD + 10)
    assert messages(records) == [
        f"spinning: {channel!r} was reported ready for {direction} {SPIN_THRESHOLD} times in a row {without}"
    ]


NOT_SPINNING = {
    # the channel class, what the peer sends first, the passes run
    "a writer that sends": (Trickler, b"", 2 * SPIN_THRESHOLD),
    "a reader one short of the threshold": (SpinningReader, b"never read", SPIN_THRESHOLD - 1),
}


@pytest.mark.parametrize("case", sorted(NOT_SPINNING))
def test_no_spin_is_reported_for(
    poller_name: str, socket_map: asyncore.SocketMap, debug_on: None, records: pytest.LogCaptureFixture,
    case: str,
) -> None:
    channel_class, sent, passes = NOT_SPINNING[case]
    _, peer = start(channel_class, sent, socket_map)
    with peer:
        run(socket_map, poller_name, passes)
        assert loop_stats(socket_map).events == passes  # reported ready on every pass
    assert messages(records) == []


# -- nothing with debug mode off -------------------------------------------------------------


def test_nothing_is_logged_with_debug_mode_off(
    poller_name: str, socket_map: asyncore.SocketMap, debug_off: None, records: pytest.LogCaptureFixture
) -> None:
    assert not get_debug()
    pairs = [tcp_pair() for _ in range(3)]
    try:
        SlowReader(pairs[0][0], map=socket_map)
        SpinningWriter(pairs[1][0], map=socket_map)
        SpinningReader(pairs[2][0], map=socket_map)
        pairs[0][1].sendall(b"ping")
        pairs[2][1].sendall(b"never read")
        call_later(0, time.sleep, SLEEP, map=socket_map)
        run(socket_map, poller_name, 2 * SPIN_THRESHOLD + 10)
    finally:
        for _, peer in pairs:
            peer.close()
    assert messages(records) == []
    stats = loop_stats(socket_map)
    assert stats.handler_seconds is None and stats.wait_seconds is None


# -- unclosed dispatchers ----------------------------------------------------------------------


def collect_warnings(make: Callable[[], None]) -> List[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()
        gc.collect()
    return [w for w in caught if "unclosed dispatcher" in str(w.message)]


def abandon(close: bool) -> Callable[[], None]:
    """A dispatcher that leaves its map, closed or not, and is dropped."""

    def make() -> None:
        mine, peer = socket.socketpair()
        peer.close()
        channel = asyncore.dispatcher(mine, map={})
        channel.del_channel()
        if close:
            channel.close()

    return make


def test_a_collected_dispatcher_with_an_open_socket_gives_a_resource_warning(debug_on: None) -> None:
    found = collect_warnings(abandon(close=False))
    assert len(found) == 1
    assert found[0].category is ResourceWarning
    assert re.match(r"unclosed dispatcher <asyncore\.dispatcher connected '' at 0x[0-9a-f]+>$",
                    str(found[0].message))
    assert type(found[0].source) is asyncore.dispatcher  # source= the dispatcher itself


def test_a_dispatcher_the_loop_served_and_abandoned_still_warns(
    poller_name: str, socket_map: asyncore.SocketMap, debug_on: None
) -> None:
    def make() -> None:
        channel, peer = start(SpinningReader, b"never read", socket_map)
        peer.close()
        run(socket_map, poller_name, 3)  # debug mode keeps counts for it
        channel.del_channel()  # leaves the map, socket open
        run(socket_map, poller_name, 1)  # the loop goes on, for the other channel

    other, other_peer = start(Polled, b"", socket_map)
    with other_peer:
        found = collect_warnings(make)
        assert [type(w.source) for w in found] == [SpinningReader]
        assert loop_stats(socket_map).channels == 1  # the loop is still there


def test_a_closed_dispatcher_gives_no_warning(debug_on: None) -> None:
    assert collect_warnings(abandon(close=True)) == []


def test_no_dispatcher_warning_with_debug_mode_off(debug_off: None) -> None:
    assert collect_warnings(abandon(close=False)) == []


# -- loop_stats() --------------------------------------------------------------------------------


class Polled(asyncore.dispatcher):
    """Overrides writable(): asked every pass."""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.recv(4096)


def test_loop_stats_count_what_the_test_made(
    poller_name: str, socket_map: asyncore.SocketMap, debug_off: None
) -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        Polled(pairs[0][0], map=socket_map)
        asyncore.dispatcher_with_send(pairs[1][0], map=socket_map)  # pushes its interest
        Polled(pairs[2][0], map=socket_map)
        handles = [call_later(60, print, map=socket_map) for _ in range(2)]
        pairs[0][1].sendall(b"one event")
        run(socket_map, poller_name, 5)
        stats = loop_stats(socket_map)
    finally:
        for _, peer in pairs:
            peer.close()
    for handle in handles:
        handle.cancel()
    # only the first Polled channel has anything to read (the connected
    # dispatcher_with_send has nothing to send): one event in five passes
    assert stats == LoopStats(poller=poller_name, channels=3, polled=2, timers=2, passes=5,
                              events=1, handler_seconds=None, wait_seconds=None)


def test_loop_stats_of_a_plain_dict_count_every_channel_as_polled(poller_name: str, debug_off: None) -> None:
    plain: Dict[int, Any] = {}
    mine, peer = socket.socketpair()
    with peer:
        asyncore.dispatcher_with_send(mine, map=plain)
        run(plain, poller_name, 3)  # type: ignore[arg-type]
        stats = loop_stats(plain)
        asyncore.close_all(plain)
    # no event: the peer sends nothing and the channel has nothing to send
    assert stats == LoopStats(poller=poller_name, channels=1, polled=1, timers=0, passes=3,
                              events=0, handler_seconds=None, wait_seconds=None)


def test_loop_stats_time_handlers_and_waits_in_debug_mode(
    poller_name: str, socket_map: asyncore.SocketMap, debug_on: None
) -> None:
    mine, peer = tcp_pair()
    with peer:
        SlowReader(mine, map=socket_map)
        peer.sendall(b"ping")
        run(socket_map, poller_name, 1)
        asyncore.loop(timeout=0.01, map=socket_map, count=1, poller=poller_name)  # waits, no event
        stats = loop_stats(socket_map)
    assert stats.passes == 2 and stats.events == 1
    assert stats.handler_seconds is not None and stats.handler_seconds >= SLEEP
    assert stats.wait_seconds is not None and stats.wait_seconds > 0


def test_loop_stats_of_a_map_without_a_loop(debug_off: None) -> None:
    fresh = asyncore.SocketMap()
    assert loop_stats(fresh) == LoopStats(None, 0, 0, 0, 0, 0, None, None)
    set_debug(True)
    assert loop_stats(fresh) == LoopStats(None, 0, 0, 0, 0, 0, 0.0, 0.0)


def test_loop_stats_defaults_to_asyncore_socket_map(debug_off: None) -> None:
    assert loop_stats() == loop_stats(asyncore.socket_map)


def test_loop_stats_is_frozen() -> None:
    stats = loop_stats(asyncore.SocketMap())
    with pytest.raises(AttributeError):
        stats.passes = 1  # type: ignore[misc]


# -- switching it on ---------------------------------------------------------------------------------


def test_set_debug_checks_the_threshold(debug_off: None) -> None:
    with pytest.raises(ValueError, match="slow_handler"):
        set_debug(True, slow_handler=-1)
    with pytest.raises(TypeError, match="slow_handler"):
        set_debug(True, slow_handler="1")  # type: ignore[arg-type]
    assert not get_debug()
    set_debug(True)
    assert get_debug() and asyncio_compat.get_debug()


CHILD = """
import socket, sys, time
import asyncio_compat
from asyncio_compat import asyncore
print("debug", asyncio_compat.get_debug())
class Slow(asyncore.dispatcher):
    def handle_write(self):
        time.sleep(0.15)
        self.close()
mine, peer = socket.socketpair()
Slow(mine)
asyncore.loop(count=1)
left = asyncore.dispatcher(peer)  # still in the map at exit
"""


@pytest.mark.parametrize("value", ["1", "0", ""])
def test_the_environment_variable_turns_debug_mode_on(value: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ASYNCIO_COMPAT_DEBUG=value)
    proc = subprocess.run([sys.executable, "-W", "always::ResourceWarning", "-c", CHILD], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    on = value == "1"
    assert proc.stdout.strip() == f"debug {on}"
    slow = re.search(r"slow handler: <__main__\.Slow '' at 0x[0-9a-f]+>\.handle_write_event "
                     r"took (\d+\.\d{3}) s", proc.stderr)
    at_exit = re.search(r"ResourceWarning: unclosed dispatcher <asyncore\.dispatcher connected '' "
                        r"at 0x[0-9a-f]+> still in a socket map at exit", proc.stderr)
    assert bool(slow) is on and bool(at_exit) is on, proc.stderr
    if slow:
        assert float(slow.group(1)) >= 0.15


# -- the worked example of docs/debugging.rst ------------------------------------------------------


def test_the_slow_handler_example_finds_its_blocking_lookup(poller_name: str, tmp_path: Path) -> None:
    example = load_example("debug_slow_handler")
    out = run_example("debug_slow_handler", poller_name, tmp_path)
    slow = re.findall(r"^WARNING asyncio_compat: slow handler: <__main__\.RequestHandler connected "
                      r"127\.0\.0\.1:\d+ at 0x[0-9a-f]+>\.handle_read_event took (\d+\.\d{3}) s$", out, re.M)
    assert len(slow) == 1, out  # the LOOKUP, and neither ECHO
    assert float(slow[0]) >= example.RESOLVE_SECONDS
    assert out.count("slow handler") == 1
    for request in example.REQUESTS:
        assert re.search(rf"^{re.escape(repr(request.decode()))} -> '.+'$", out, re.M), out
    loop_line = re.search(r"^loop: \d+ passes, \d+ events, (\d+\.\d\d) s in handlers, \d+\.\d\d s waiting$",
                          out, re.M)
    assert loop_line and float(loop_line.group(1)) >= example.RESOLVE_SECONDS - 0.005, out


def test_the_slow_handler_example_in_process(default_poller: str) -> None:
    example = load_example("debug_slow_handler")
    assert example.main() == 0
    assert not get_debug()  # it switches debug mode off again


# -- the benchmarks' debug-mode contender ---------------------------------------------------------------


def test_the_benchmarks_can_run_our_server_in_debug_mode() -> None:
    from benchmarks.cli import implementations

    best = pollers.available()[0]
    contenders = implementations(sys.executable, None, [best], [1], debug_mode=True)
    assert [(i.label, i.impl, tuple(i.extra)) for i in contenders if "--debug" in i.extra] == [
        (f"ours {best}, debug mode", "ours", ("--poller", best, "--debug"))
    ]
    assert not any("--debug" in i.extra for i in implementations(sys.executable, None, [best], [1]))
    read_end, write_end = os.pipe()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.server_main", "--impl", "ours", "--kind", "latency",
             "--poller", best, "--debug", "--ready-fd", str(write_end), "--dispatchers", "10",
             "--duration", "0.05"],
            pass_fds=(write_end,), cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True, text=True, timeout=60,
        )
        os.close(write_end)
        write_end = -1
        announced = os.read(read_end, 4096).decode()
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert announced.startswith("RESULT "), announced
