"""Attacks on the accept pause (docs/reliability.rst, "Running out of descriptors").

The pause must end whatever drives the map (``loop()``, the one-pass
``poll()``/``poll2()`` of 3.11 programs, the asyncio bridge), a paused
listener must not be watched (no spin) under any of them, a new pause
replaces the one in progress, and pausing over and over costs no memory.
Loop-level tests run on every backend.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any, List

import pytest
from helpers import ONE_PASS_DRIVERS as DRIVERS
from helpers import Sockets
from helpers import drive_one_pass as drive

from asyncio_compat import asyncore, call_later, loop_stats
from asyncio_compat.asyncio_bridge import run_map

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


class Listener(asyncore.dispatcher):
    def __init__(self, socket_map: Any, sockets: Sockets) -> None:
        super().__init__(map=socket_map)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(8)
        self.accepted: List[socket.socket] = []
        self.sockets = sockets

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        self.sockets.append(sock)
        self.accepted.append(sock)


def connect(listener: Listener, sockets: Sockets) -> socket.socket:
    client = socket.create_connection(listener.socket.getsockname())
    sockets.append(client)
    return client


@pytest.mark.parametrize("socket_map", ["SocketMap", "dict"], indirect=True)
@pytest.mark.parametrize("driver", DRIVERS)
def test_a_pause_ends_whoever_drives_the_map(
    driver: str, default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    listener = Listener(socket_map, sockets)
    listener.pause_accepting(0.1)
    connect(listener, sockets)
    deadline = time.monotonic() + 20
    while not listener.accepted and time.monotonic() < deadline:
        drive(driver, socket_map, 0.5, default_poller)
    assert len(listener.accepted) == 1, f"{driver}() never ended the pause"
    assert not listener.accept_paused


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_paused_listener_with_a_waiting_connection_does_not_spin(
    driver: str, default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    listener = Listener(socket_map, sockets)
    connect(listener, sockets)
    started = time.monotonic()  # before the pause's deadline is taken, so that it bounds it
    listener.pause_accepting(0.3)
    calls = 0
    while not listener.accepted and time.monotonic() - started < 20:
        drive(driver, socket_map, 5.0, default_poller)
        calls += 1
    assert listener.accepted
    # each call waits for the end of the pause; one watching the ready fd returns at once
    assert calls <= 4, f"{calls} passes during a 0.3 s pause"
    assert time.monotonic() - started >= 0.3 - 0.01


def test_a_pause_ends_under_the_asyncio_bridge(
    default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    listener = Listener(socket_map, sockets)
    listener.pause_accepting(0.1)
    connect(listener, sockets)
    # the first accept ends the service: the map empties, nothing is pending
    def accept_once(sock: socket.socket, addr: Any) -> None:
        sockets.append(sock)
        listener.accepted.append(sock)
        listener.close()

    listener.handle_accepted = accept_once  # type: ignore[method-assign]

    async def serve() -> None:
        await asyncio.wait_for(run_map(socket_map), 20)

    asyncio.run(serve())
    assert len(listener.accepted) == 1  # the pause ended under asyncio


def test_a_new_pause_replaces_the_one_in_progress(
    default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    listener = Listener(socket_map, sockets)
    listener.pause_accepting(3600)
    listener.pause_accepting(0.05)
    connect(listener, sockets)
    deadline = time.monotonic() + 20
    while not listener.accepted and time.monotonic() < deadline:
        drive("loop", socket_map, 0.5, default_poller)
    assert listener.accepted
    assert loop_stats(socket_map).timers == 0  # the hour-long pause left nothing behind


def test_a_pause_from_a_timer_and_a_close_from_the_next_one(
    default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    listener = Listener(socket_map, sockets)
    call_later(0, listener.pause_accepting, 3600, map=socket_map)
    call_later(0.05, listener.close, map=socket_map)
    started = time.monotonic()
    asyncore.loop(timeout=30, map=socket_map, poller=default_poller)  # returns: nothing left
    assert time.monotonic() - started < 15
    assert not listener.accept_paused


def test_pausing_over_and_over_keeps_memory_flat(
    default_poller: str, socket_map: Any, sockets: Sockets
) -> None:
    listener = Listener(socket_map, sockets)
    ahead = call_later(100, lambda: None, map=socket_map)  # a timer due sooner than the pauses
    for _ in range(1_000):
        listener.pause_accepting(3600)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(50_000):
            listener.pause_accepting(3600)
            if n % 5_000 == 0:
                asyncore.loop(timeout=0, map=socket_map, count=1, poller=default_poller)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 256 * 1024, f"{grown} bytes kept after 50,000 pauses"
    ahead.cancel()


@pytest.mark.parametrize("value, error", [(True, TypeError), ("1", TypeError), (-1, ValueError)])
def test_pause_accepting_takes_only_a_number_of_seconds(
    value: Any, error: type, socket_map: Any, sockets: Sockets
) -> None:
    listener = Listener(socket_map, sockets)
    with pytest.raises(error, match="seconds"):  # type: ignore[call-overload]
        listener.pause_accepting(value)
    assert not listener.accept_paused


EXHAUSTED = textwrap.dedent(
    """
    import errno, json, os, resource, socket, sys, time
    sys.path.insert(0, sys.argv[3])
    import asyncio_compat
    from asyncio_compat import asyncore

    asyncio_compat.set_default_poller(sys.argv[2])
    driver = sys.argv[1]
    socket_map = {}
    report = {"errors": [], "echo": None}

    class Echo(asyncore.dispatcher_with_send):
        def handle_read(self):
            self.send(self.recv(100))

    class Listener(asyncore.dispatcher):
        accept_pause = 0.05

        def handle_accept_error(self, exc):
            report["errors"].append(exc.errno)
            super().handle_accept_error(exc)

        def log_info(self, message, type="info"):
            pass

        def handle_accepted(self, sock, addr):
            Echo(sock, map=socket_map)

    def one_pass():
        if driver == "poll":
            asyncore.poll(0.05, socket_map)
        else:
            asyncore.poll2(0.05, socket_map)

    def run_for(seconds, until=lambda: False):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            one_pass()

    listener = Listener(map=socket_map)
    listener.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.pause_accepting(0)  # the map's loop (its poller fd) exists before the limit bites
    run_for(0.05)
    client = socket.socket()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    hogs = []
    try:
        while True:
            hogs.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE, exc
    client.connect(listener.socket.getsockname())
    run_for(0.3, lambda: bool(report["errors"]))
    for fd in hogs:
        os.close(fd)
    client.sendall(b"served after all")
    client.setblocking(False)

    def echoed():
        try:
            report["echo"] = client.recv(100).decode()
        except BlockingIOError:
            return False
        return True

    run_for(20, echoed)
    client.close()
    asyncore.close_all(map=socket_map)
    print(json.dumps(report))
    """
)


@pytest.mark.parametrize("driver", ["poll", "poll2"])
def test_a_listener_out_of_descriptors_resumes_under_poll(driver: str, poller_name: str) -> None:
    """The 3.11 way of driving a map, from the program's own ``while`` loop."""
    pytest.importorskip("resource")
    proc = subprocess.run(
        [sys.executable, "-c", EXHAUSTED, driver, poller_name, str(ROOT)],
        capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["errors"] and set(report["errors"]) == {24}  # EMFILE
    assert report["echo"] == "served after all", "the pause never ended"
