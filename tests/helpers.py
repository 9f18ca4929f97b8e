"""What several test files share: an echo dispatcher, recording channels and a
bystander connection, socket pairs, running the loop a few passes or until a
condition holds, and loading or running the examples."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import pollers
from asyncio_compat import _loop, asyncore, socketserver
from asyncio_compat.idle import IdleTimeoutMixin

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUBPROCESS_TIMEOUT = 60.0


class EchoHandler(asyncore.dispatcher_with_send):
    """Sends back whatever it reads; closes quietly when the peer does."""

    def handle_read(self) -> None:
        data = self.recv(65536)
        if data:
            self.send(data)

    def handle_close(self) -> None:
        self.close()


class LineEcho(socketserver.StreamRequestHandler):
    """A socketserver handler that sends back the first line it reads."""

    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


class EchoServer(asyncore.dispatcher):
    """Listens on 127.0.0.1 (``port``) and echoes every connection with an
    :class:`EchoHandler`; closes itself after ``connections`` of them."""

    def __init__(self, socket_map: Dict[int, Any], connections: int = 1) -> None:
        super().__init__(map=socket_map)
        self.socket_map = socket_map
        self.remaining = connections
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(5)
        self.port: int = self.socket.getsockname()[1]

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        EchoHandler(sock, map=self.socket_map)
        self.remaining -= 1
        if self.remaining == 0:
            self.close()


class SendingClient(asyncore.dispatcher_with_send):
    """Connects to 127.0.0.1:``port``, sends ``payload`` and collects the reply in
    ``received``; once ``expected`` bytes came it closes and calls ``on_done``.
    ``closed_by_peer`` says whether the server hung up first."""

    def __init__(
        self,
        socket_map: Dict[int, Any],
        port: int,
        payload: bytes,
        expected: int,
        on_done: Callable[[], Any] = lambda: None,
    ) -> None:
        super().__init__(map=socket_map)
        self.received = bytearray()
        self.expected = expected
        self.on_done = on_done
        self.closed_by_peer = False
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(("127.0.0.1", port))
        self.send(payload)

    def handle_connect(self) -> None:
        pass

    def handle_read(self) -> None:
        self.received += self.recv(65536)
        if len(self.received) >= self.expected:
            self.close()
            self.on_done()

    def handle_close(self) -> None:
        self.closed_by_peer = True
        self.close()


class Collector(asyncore.dispatcher):
    """Reads what is there into ``data`` and records its handlers in ``events``
    ("read", "close"); never asks to write; closes at the end of the stream."""

    def __init__(self, sock: Any, socket_map: Dict[int, Any]) -> None:
        super().__init__(sock, map=socket_map)
        self.events: List[str] = []
        self.data = b""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.events.append("read")
        self.data += self.recv(4096)

    def handle_close(self) -> None:
        self.events.append("close")
        self.close()


class Recorder(asyncore.dispatcher_with_send):
    """Reads what comes into ``received``; records closes in ``events`` and the
    exceptions handle_error saw in ``errors`` (then closes)."""

    def __init__(self, sock: Optional[socket.socket], socket_map: Dict[int, Any]) -> None:
        super().__init__(sock, map=socket_map)
        self.received = bytearray()
        self.events: List[str] = []
        self.errors: List[BaseException] = []

    def handle_read(self) -> None:
        self.received += self.recv(65536)

    def handle_close(self) -> None:
        self.events.append("close")
        self.close()

    def handle_error(self) -> None:
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]
        self.close()


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name: str, poller_name: str, tmp_path: Path) -> str:
    """Run ``examples/<name>.py`` on ``poller_name`` from a scratch folder, without
    PYTHONPATH (so the example's own bootstrap is used); its stdout when it exits 0."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["ASYNCIO_COMPAT_POLLER"] = poller_name
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, (
        f"{name} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    assert f"poller: {poller_name}" in proc.stdout, "the example did not run on the requested backend"
    return proc.stdout


def release_map(target: asyncore.SocketMap) -> None:
    """Close every channel of ``target`` and drop its loop and pending timers,
    so that nothing outlives the test.  Fails if a foreign event loop (asyncio,
    Tk) still serves the map: a test detaches what it attached."""
    asyncore.close_all(target)
    state = _loop.existing_loop(target)
    if state is not None:
        state.timers.clear()
        assert not state.pinned, "a foreign event loop still serves this map: detach it"
        _loop.forget(target)


def sweep_every(seconds: float, poller_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the backend called ``poller_name`` notice an fd closed behind its back
    within ``seconds``, until ``monkeypatch`` is undone: its ``sweep_interval``
    class attribute (docs/pollers.rst).  Backends without the sweep (select,
    poll: the kernel reports such an fd itself) are left alone."""
    backend = pollers.get(poller_name)
    if hasattr(backend, "sweep_interval"):
        monkeypatch.setattr(backend, "sweep_interval", seconds)


def run_until(
    socket_map: Dict[int, Any],
    until: Callable[[], bool],
    *,
    poller: Any,
    use_poll: bool = False,
    seconds: float = 20.0,
) -> None:
    """Run single ``asyncore.loop()`` passes (0.05 s at most each) on ``socket_map``
    with ``poller`` until ``until()`` holds; fail if ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "the condition was not reached in time"
        asyncore.loop(timeout=0.05, map=socket_map, count=1, use_poll=use_poll, poller=poller)


def run_passes(socket_map: Dict[int, Any], poller_name: str, count: int = 1, timeout: float = 0.5) -> None:
    """``asyncore.loop()`` on ``socket_map`` with ``poller_name``: ``count``
    passes, each waiting ``timeout`` seconds at most."""
    asyncore.loop(timeout=timeout, map=socket_map, count=count, poller=poller_name)


def read_line(sock: socket.socket) -> bytes:
    """Read from a blocking socket up to and including the first newline, or to
    the end of the stream."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def in_map(channel: asyncore.dispatcher, socket_map: Dict[int, Any]) -> bool:
    """Whether ``channel`` is in ``socket_map`` (a closed channel is not)."""
    return any(entry is channel for entry in socket_map.values())


class Sockets(List[socket.socket]):
    """Sockets one test made; :meth:`close_all` closes every one (the conftest
    ``sockets`` fixture calls it after the test)."""

    def pair(self) -> Tuple[socket.socket, socket.socket]:
        """A connected ``socket.socketpair()``."""
        left, right = socket.socketpair()
        self += [left, right]
        return left, right

    def tcp_pair(self) -> Tuple[socket.socket, socket.socket]:
        """A connected TCP pair on 127.0.0.1, as (accepted side, connecting side).

        Unlike ``socketpair()`` it can carry an RST (``SO_LINGER`` 0) and urgent data.
        """
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
        self += [server, client]
        return server, client

    def close_all(self) -> None:
        for sock in self:
            sock.close()


def bystander(socket_map: Dict[int, Any], sockets: Sockets) -> Tuple[Recorder, socket.socket]:
    """A :class:`Recorder` on one end of a new pair in ``socket_map``, and the other end."""
    ours, theirs = sockets.pair()
    return Recorder(ours.dup(), socket_map), theirs


def check_bystander(
    socket_map: Dict[int, Any], poller_name: str, use_poll: bool, chan: Recorder, peer: socket.socket
) -> None:
    """Fail unless ``chan`` (from :func:`bystander`) is still served, without error."""
    peer.send(b"still served")
    def served() -> bool:
        return chan.received.endswith(b"still served")

    run_until(socket_map, served, poller=poller_name, use_poll=use_poll)
    assert chan.errors == [] and in_map(chan, socket_map)


# the ways a program drives a map one pass at a time
ONE_PASS_DRIVERS = ["loop", "poll", "poll2"]


def drive_one_pass(driver: str, socket_map: Any, timeout: Optional[float], poller_name: str) -> None:
    """One pass over ``socket_map``, made by ``loop(count=1)``, ``poll()`` or ``poll2()``."""
    if driver == "loop":
        asyncore.loop(timeout=timeout, map=socket_map, count=1, poller=poller_name)
    elif driver == "poll":
        asyncore.poll(timeout, socket_map)
    else:
        asyncore.poll2(timeout, socket_map)


class QuietIdle(IdleTimeoutMixin, asyncore.dispatcher):
    """Reads what comes; records idle timeouts and closes."""

    def __init__(self, sock: socket.socket, socket_map: Any, timeout: float) -> None:
        self.idle_timeout = timeout
        self.timeouts: List[float] = []
        self.received = b""
        super().__init__(sock, map=socket_map)

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        self.received += self.recv(100)

    def handle_idle_timeout(self) -> None:
        self.timeouts.append(time.monotonic())
        super().handle_idle_timeout()

    def handle_close(self) -> None:
        self.close()
