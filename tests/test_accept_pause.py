"""The accept pause: a listener that runs out of descriptors
(``handle_accept_error``) pauses instead of spinning, and serves again once
descriptors are free; ``pause_accepting()`` refuses a bad duration, a
paused listener is not watched and resumes by its timer, ``close()`` ends a
pause.  Every backend.

Attacks on the pause (every driver, a new pause replacing one, memory) are in
tests/test_accept_pause_adversarial.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from helpers import Sockets, run_until

from asyncio_compat import asyncore, loop_stats

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
Map = Dict[int, Any]


# -- a listener out of descriptors, and pause_accepting() ------------------------------------------

EXHAUST_SCRIPT = textwrap.dedent(
    """
    import errno, json, os, resource, socket, sys, time
    sys.path.insert(0, sys.argv[2])
    from asyncio_compat import SocketMap, asyncore

    socket_map = SocketMap()
    report = {"accept_calls": 0, "accept_errors": [], "logged": []}

    class Echo(asyncore.dispatcher_with_send):
        def handle_read(self):
            self.send(self.recv(100))

    class Listener(asyncore.dispatcher):
        accept_pause = 0.05

        def handle_accept(self):
            report["accept_calls"] += 1
            super().handle_accept()

        def handle_accept_error(self, exc):
            report["accept_errors"].append(exc.errno)
            super().handle_accept_error(exc)

        def log_info(self, message, type="info"):
            report["logged"].append([type, message])

        def handle_accepted(self, sock, addr):
            Echo(sock, map=socket_map)

    def run_for(seconds, until=lambda: False):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            asyncore.loop(timeout=0.05, map=socket_map, count=1, poller=sys.argv[1])

    listener = Listener(map=socket_map)
    listener.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    run_for(0.01)  # the poller's own fd exists before the limit bites
    client = socket.socket()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    hogs = []
    try:
        while True:
            hogs.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE, exc
    client.connect(listener.socket.getsockname())  # waits in the backlog
    run_for(0.5)
    report["calls_while_exhausted"] = report["accept_calls"]
    report["listener_alive"] = listener.accepting and listener in socket_map.values()
    for fd in hogs:
        os.close(fd)
    client.sendall(b"served after all")
    client.setblocking(False)
    echoed = []

    def got_echo():
        try:
            echoed.append(client.recv(100))
        except BlockingIOError:
            return False
        return True

    run_for(20, got_echo)
    report["echo"] = echoed[0].decode() if echoed else None
    client.close()
    asyncore.close_all(map=socket_map)
    print(json.dumps(report))
    """
)


def test_listener_survives_running_out_of_descriptors(poller_name: str) -> None:
    pytest.importorskip("resource")
    proc = subprocess.run(
        [sys.executable, "-c", EXHAUST_SCRIPT, poller_name, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["accept_errors"]) == {24}  # EMFILE, through handle_accept_error
    assert report["listener_alive"] is True
    # paused 0.05 s after each failure for 0.5 s: about ten tries, not a spin
    assert 1 <= report["calls_while_exhausted"] <= 40
    assert [entry[0] for entry in report["logged"]] == ["error"]  # logged once, not per try
    assert "Too many open files" in report["logged"][0][1]
    assert report["echo"] == "served after all"


class Listener(asyncore.dispatcher):
    def __init__(self, socket_map: Map) -> None:
        super().__init__(map=socket_map)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(1)


def test_pause_accepting_rejects_bad_durations(socket_map: Map) -> None:
    listener = Listener(socket_map)
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="seconds must"):
            listener.pause_accepting(bad)


def test_closing_a_paused_listener_ends_the_pause(poller_name: str, socket_map: Map) -> None:
    listener = Listener(socket_map)
    listener.pause_accepting(3600)
    assert loop_stats(socket_map).timers == 1
    listener.close()
    assert loop_stats(socket_map).timers == 0  # nothing left to keep loop() running
    started = time.monotonic()
    asyncore.loop(timeout=5, map=socket_map, poller=poller_name)
    assert time.monotonic() - started < 4  # returned at once: no pause left to wait out


def test_a_paused_listener_is_not_watched(poller_name: str, socket_map: Map, sockets: Sockets) -> None:
    listener = Listener(socket_map)
    sockets.append(socket.create_connection(listener.socket.getsockname()))
    accepted: List[Any] = []
    listener.handle_accepted = lambda sock, addr: sockets.append(sock) or accepted.append(sock)  # type: ignore[method-assign]
    listener.pause_accepting(0.2)
    asyncore.loop(timeout=0.05, map=socket_map, count=2, poller=poller_name)
    assert accepted == []  # the connection waits in the backlog
    run_until(socket_map, lambda: bool(accepted), poller=poller_name, seconds=10)
    assert len(accepted) == 1  # resumed by the timer
