"""Legacy programs run unchanged under CPython 3.11's own asyncore and under
ours (through ``asyncio_compat.install()``, on each backend) must make the
same handler calls in the same order.

Each program prints its log, one handler call a line.  The 3.11 run uses the
pyenv 3.11 interpreter and a plain ``import asyncore``; it is skipped, with
the reason, where that interpreter or its stdlib asyncore is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict

import pytest

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
PYTHON_311 = Path("/root/.pyenv/versions/3.11.7/bin/python3.11")
TIMEOUT = 60

# Run as "python -c": {ours} is replaced by the lines that install our modules.
PROGRAMS: Dict[str, str] = {
    "reconnect in a handler": """
        import socket, threading
        {ours}
        import asyncore

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)

        def serve():
            first, _ = listener.accept()
            first.close()                # hang up the first connection
            second, _ = listener.accept()
            second.sendall(b"hello")
            second.recv(10)              # until the client closes
            second.close()

        server = threading.Thread(target=serve)
        server.start()

        class Client(asyncore.dispatcher):
            closes = 0
            def start(self):
                self.create_socket()
                self.connect(listener.getsockname())
            def handle_connect(self):
                print("connect")
            def handle_read(self):
                data = self.recv(100)
                if data:
                    print("read", data.decode())
                    self.close()
            def writable(self):
                return not self.connected
            def handle_close(self):
                print("close")
                self.close()
                self.closes += 1
                if self.closes == 1:
                    self.start()         # the retry pattern: same dispatcher

        client = Client()
        client.start()
        asyncore.loop(timeout=0.1, use_poll=USE_POLL, count=200)
        server.join()
        listener.close()
    """,
    "predicate counter": """
        import socket
        {ours}
        import asyncore

        mine, peer = socket.socketpair()

        class Counting(asyncore.dispatcher):
            def readable(self):
                print("readable")
                return True
            def writable(self):
                print("writable")
                return False
            def handle_read(self):
                print("read", self.recv(10).decode())

        chan = Counting(mine)
        for number in range(3):
            if number == 1:
                peer.send(b"x")
            asyncore.loop(timeout=0.5 if number == 1 else 0, use_poll=USE_POLL, count=1)
            print("end of pass")
        chan.close()
        peer.close()
    """,
    "nested loop from a handler": """
        import socket
        {ours}
        import asyncore

        mine, peer = socket.socketpair()

        class Nesting(asyncore.dispatcher):
            depth = 0
            def writable(self):
                return False
            def handle_read(self):
                print("read", self.recv(10).decode(), "at depth", self.depth)
                if self.depth == 0:
                    peer.send(b"2")
                    self.depth += 1
                    asyncore.loop(timeout=1.0, use_poll=USE_POLL, count=1)
                    self.depth -= 1
                    print("nested loop returned")

        chan = Nesting(mine)
        peer.send(b"1")
        asyncore.loop(timeout=1.0, use_poll=USE_POLL, count=1)
        print("outer loop returned")
        chan.close()
        peer.close()
    """,
    "close_all and start again from a handler": """
        import socket
        {ours}
        import asyncore

        class Server(asyncore.dispatcher):
            def __init__(self):
                super().__init__()
                self.create_socket()
                self.bind(("127.0.0.1", 0))
                self.listen(5)
            def handle_accepted(self, sock, addr):
                sock.close()             # hang up at once

        class Client(asyncore.dispatcher):
            def __init__(self, round):
                super().__init__()
                self.round = round
                self.create_socket()
                self.connect(Server().socket.getsockname())
            def writable(self):
                return not self.connected
            def handle_connect(self):
                print("connect", self.round)
            def handle_read(self):
                self.recv(10)
            def handle_close(self):
                print("close", self.round)
                asyncore.close_all()     # the map empties inside the pass...
                if self.round < 3:
                    Client(self.round + 1)  # ... and fills again

        Client(1)
        asyncore.loop(timeout=1.0, use_poll=USE_POLL)
        print("loop returned with", len(asyncore.socket_map), "channels")
    """,
    "a map keyed by the socket object": """
        import socket
        {ours}
        import asyncore

        mine, peer = socket.socketpair()

        class Bot(asyncore.dispatcher):
            def writable(self):
                return False
            def handle_read(self):
                print("read", self.recv(100).decode())

        bot = Bot(mine, map={})
        # 3.11's select() took the socket objects: the irc-bot pattern
        peer.send(b"PING")
        asyncore.poll(timeout=1.0, map={bot.socket: bot})
        print("end of poll")
        peer.send(b"again")
        asyncore.loop(timeout=1.0, map={bot.socket: bot}, count=1)
        print("end of loop")
        bot.close()
        peer.close()
    """,
    "a regular file takes a closed channel's fd": """
        import os, socket, tempfile
        {ours}
        import asyncore

        socket_map = {}

        class Conn(asyncore.dispatcher):
            def writable(self):
                return False
            def handle_read(self):
                print("read", self.recv(100).decode())

        def file_at(fd):
            with tempfile.TemporaryFile() as made:
                source = os.dup(made.fileno())
            if source != fd:
                os.dup2(source, fd)
                os.close(source)

        first, first_peer = socket.socketpair()
        second, second_peer = socket.socketpair()
        doomed, keeper = Conn(first, socket_map), Conn(second, socket_map)
        asyncore.loop(timeout=0, use_poll=USE_POLL, map=socket_map, count=1)
        fd = first.fileno()
        doomed.close()
        file_at(fd)                      # a log reopened under the same number
        second_peer.send(b"hello")
        asyncore.loop(timeout=1.0, use_poll=USE_POLL, map=socket_map, count=1)
        print("pass done")
        os.close(fd)
        keeper.close()
        first_peer.close()
        second_peer.close()
    """,
    "a closed socket kept open by a dup": """
        import os, socket
        {ours}
        import asyncore

        class Conn(asyncore.dispatcher):
            def __init__(self, sock, name):
                super().__init__(sock)
                self.name = name
            def writable(self):
                return False
            def handle_read(self):
                print("read", self.name, self.recv(100).decode())
            def handle_error(self):
                print("error", self.name)
                self.close()

        old, old_peer = socket.socketpair()
        doomed = Conn(old, "old")
        asyncore.loop(timeout=0, use_poll=USE_POLL, count=1)
        fd = old.fileno()
        kept = os.dup(fd)                # a forked child's copy, say
        doomed.close()
        new, new_peer = socket.socketpair()
        if new.fileno() != fd:
            os.dup2(new.fileno(), fd)
            new.close()
            new = socket.socket(fileno=fd)
        Conn(new, "new")
        asyncore.loop(timeout=0, use_poll=USE_POLL, count=1)
        old_peer.send(b"for the old connection")
        for _ in range(3):
            asyncore.loop(timeout=0.1, use_poll=USE_POLL, count=1)
        new_peer.send(b"hello")
        asyncore.loop(timeout=1.0, use_poll=USE_POLL, count=1)
        print("channels", len(asyncore.socket_map))
        asyncore.close_all()
        os.close(kept)
        old_peer.close()
        new_peer.close()
    """,
}

OURS = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import asyncio_compat; asyncio_compat.install()"


def _run(python: str, program: str, use_poll: bool, env: Dict[str, str]) -> str:
    source = f"USE_POLL = {use_poll}\n" + textwrap.dedent(program)
    proc = subprocess.run(
        [python, "-W", "ignore::DeprecationWarning", "-c", source],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=str(ROOT),
    )
    assert proc.returncode == 0, f"{python} failed\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc.stdout


def _reference_python() -> str:
    if not PYTHON_311.exists():
        pytest.skip(f"no CPython 3.11 interpreter at {PYTHON_311}")
    probe = subprocess.run(
        [str(PYTHON_311), "-W", "ignore", "-c", "import asyncore; print(asyncore.__file__)"],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    if probe.returncode != 0 or "asyncio_compat" in probe.stdout:
        pytest.skip("CPython 3.11's stdlib asyncore cannot be imported here")
    return str(PYTHON_311)


@pytest.mark.parametrize("use_poll", [True, False])
@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_a_legacy_program_makes_the_same_calls_as_under_3_11(
    program: str, use_poll: bool, poller_name: str
) -> None:
    reference = _reference_python()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    expected = _run(reference, PROGRAMS[program].replace("{ours}", ""), use_poll, env)
    env["ASYNCIO_COMPAT_POLLER"] = poller_name
    got = _run(sys.executable, PROGRAMS[program].replace("{ours}", OURS), use_poll, env)
    assert got == expected
    assert expected.strip(), "the program logged nothing: nothing was compared"
