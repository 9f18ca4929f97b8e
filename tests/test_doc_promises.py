"""The promises of docs/pollers.rst, asyncore.rst, architecture.rst and README.md,
attacked.

Each test quotes the sentence it backs (file:line and its gist) and tries to
break it: a descriptor closed or duplicated behind the poller's back, a
refusing kernel, a close from another thread, a handler that changes a
channel without saying so.  Loop-level tests run on every backend
(``poller_name``); poller-level ones also on the kqueue and /dev/poll fakes
of tests/fakes.  A promise that the tests of its own feature already attack
is not attacked again here.
"""

from __future__ import annotations

import ast
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryFile
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

import cpython_runner
import pytest
from fakes import install_devpoll, install_kqueue, install_spy
from fakes.spy import kqueue_kind
from fakes.support import events_of, quick, tcp_pair, wait_for
from helpers import Collector, Sockets

import asyncio_compat
import pollers
from asyncio_compat import SocketMap, asyncore, loop_stats
from pollers import NVAL, PRI, READ, WRITE, Poller
from pollers._devpoll import DevpollPoller
from pollers._kqueue import KqueuePoller

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parent.parent
Pair = Tuple[socket.socket, socket.socket]
Map = Dict[int, Any]
FAKES = ["kqueue-fake", "devpoll-fake"]


@pytest.fixture(params=FAKES)
def fake_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Type[Poller]:
    """kqueue or /dev/poll over the fakes of tests/fakes (absent kernels on Linux)."""
    if sys.platform == "win32":
        pytest.skip("the fakes are built on poll(2) and fstat()")
    if request.param == "kqueue-fake":
        install_kqueue(monkeypatch)
        return quick(KqueuePoller)
    install_devpoll(monkeypatch)
    return quick(DevpollPoller)


# -- docs/pollers.rst: the poller contract ---------------------------------------------


@pytest.mark.parametrize("name", ["poll", "select"])
@pytest.mark.parametrize("duplicated", [False, True], ids=["alone", "dup-open"])
def test_poll_and_select_report_a_closed_fd_at_once(name: str, duplicated: bool, pair: Pair) -> None:
    """pollers.rst:49 -- poll: "a closed descriptor is reported at once
    (``NVAL``) without the sweep" (select finds it the same way, by fstat()).

    Attacked with a zero timeout right after the close, and with a duplicate
    of the socket still open (the kernel object lives on; the number is gone).
    """
    if name not in pollers.available():
        pytest.skip(f"{name} poller not available on this platform")
    reader, writer = pair
    with pollers.get(name)() as p:
        p.register(reader, READ)
        fd = reader.fileno()
        spare = os.dup(fd) if duplicated else -1
        try:
            reader.close()
            if duplicated:
                writer.send(b"data for the old file")
            assert events_of(p, 0) == {fd: NVAL}
        finally:
            if spare >= 0:
                os.close(spare)
        p.unregister(fd)


def _closed_fd_is_reported_until_unregistered(cls: Type[Poller], pair: Pair, duplicated: bool) -> None:
    reader, writer = pair
    with cls() as p:
        p.register(reader, READ)
        p.register(writer, 0)  # a neighbour, parked: it must stay quiet throughout
        fd = reader.fileno()
        spare = os.dup(fd) if duplicated else -1
        try:
            reader.close()
            if duplicated:
                writer.send(b"late data for the old file")
            for _ in range(3):
                if cls.name in ("epoll", "kqueue"):  # found again at each sweep
                    assert wait_for(p, fd, NVAL | READ) == NVAL
                else:  # poll(2), /dev/poll and select's fstat(): on every call
                    assert events_of(p, 0) == {fd: NVAL}
            p.unregister(fd)
            # one wait past the sweep interval: nothing may come back for fd
            assert fd not in dict(p.poll(2 * getattr(cls, "sweep_interval", 0.02)))
        finally:
            if spare >= 0:
                os.close(spare)


@pytest.mark.parametrize("duplicated", [False, True], ids=["alone", "dup-open"])
def test_a_closed_fd_is_reported_nval_until_unregistered(
    poller_name: str, duplicated: bool, pair: Pair, request: pytest.FixtureRequest
) -> None:
    """pollers.rst:155-160 -- "A descriptor closed behind the poller's back ...
    is reported by poll() as NVAL on every backend, never raised; it is
    reported again on later calls until it is unregistered (by epoll and
    kqueue at each sweep)."

    Attacked by keeping a duplicate of the closed socket open (``os.dup``,
    as a forked child or a subprocess does) and sending data to it.
    """
    _closed_fd_is_reported_until_unregistered(quick(pollers.get(poller_name)), pair, duplicated)


@pytest.mark.parametrize("duplicated", [False, True], ids=["alone", "dup-open"])
def test_a_closed_fd_is_reported_nval_until_unregistered_on_fakes(
    fake_backend: Type[Poller], duplicated: bool, pair: Pair
) -> None:
    """pollers.rst:155-160 (see above), and pollers.rst:230 -- kqueue: "Closed
    descriptors are never reported: swept", on the kqueue and /dev/poll fakes."""
    _closed_fd_is_reported_until_unregistered(fake_backend, pair, duplicated)


def _kernel_of(cls: Type[Poller]) -> Tuple[str, str, Any]:
    """(select attribute, the kind of call a READ -> WRITE modify makes first, classifier)."""
    name = cls.name
    if name == "kqueue":
        return "kqueue", "add", kqueue_kind
    return name, "modify", None


def _refused_modify_keeps_the_old_mask(
    cls: Type[Poller], monkeypatch: pytest.MonkeyPatch, pair: Pair
) -> None:
    attribute, kind, classify = _kernel_of(cls)
    spies = install_spy(monkeypatch, attribute, classify) if classify else install_spy(monkeypatch, attribute)
    reader, writer = pair
    with cls() as p:
        p.register(reader, READ)
        spies[-1].fail_next(kind, errno.ENOMEM)
        with pytest.raises(OSError) as caught:
            p.modify(reader, WRITE)
        assert caught.value.errno == errno.ENOMEM
        assert p.get_mask(reader) == READ
        # the kernel agrees: a fresh socket is writable, yet only READ may come
        assert events_of(p, 0.05) == {}
        writer.send(b"x")
        assert wait_for(p, reader.fileno(), READ | WRITE) == READ


def test_a_refused_modify_keeps_the_old_mask_in_table_and_kernel(
    poller_name: str, monkeypatch: pytest.MonkeyPatch, pair: Pair
) -> None:
    """pollers.rst:149-152 -- "The table and the kernel never disagree ... a
    failed ``modify`` keeps the old mask."  The kernel refuses a READ -> WRITE
    change (a SyscallSpy, since no kernel does so on demand); the table and
    the events reported afterwards must both still say READ."""
    if poller_name == "select":
        pytest.skip("select keeps its sets in user space: no call the kernel could refuse")
    _refused_modify_keeps_the_old_mask(pollers.get(poller_name), monkeypatch, pair)


def test_a_refused_modify_keeps_the_old_mask_on_fakes(
    fake_backend: Type[Poller], monkeypatch: pytest.MonkeyPatch, pair: Pair
) -> None:
    """pollers.rst:149-152 (see above) on the kqueue and /dev/poll fakes."""
    _refused_modify_keeps_the_old_mask(fake_backend, monkeypatch, pair)


def _file_wanting_pri_is_never_reported(cls: Type[Poller], pair: Pair) -> None:
    with TemporaryFile() as f, cls() as p:
        f.write(b"unread bytes")
        f.seek(0)  # before the end: kqueue's vnode filter would fire here
        p.register(f, PRI)
        p.register(pair[0], READ)
        start = time.monotonic()
        assert p.poll(0.05) == []
        assert time.monotonic() - start >= 0.05, "the file cut the wait short"
        pair[1].send(b"x")
        assert events_of(p, 5.0) == {pair[0].fileno(): READ}


@pytest.mark.posix_only("polls a regular file: Windows' select() takes sockets only")
def test_a_regular_file_asking_only_pri_is_never_reported(poller_name: str, pair: Pair) -> None:
    """pollers.rst:384 -- "a regular file that asks only for ``PRI`` is never
    reported, as with poll(2), and does not cut the wait short" (with a
    socket beside it, on every backend)."""
    _file_wanting_pri_is_never_reported(quick(pollers.get(poller_name)), pair)


def test_a_regular_file_asking_only_pri_is_never_reported_on_fakes(
    fake_backend: Type[Poller], pair: Pair
) -> None:
    """pollers.rst:384 (see above) on the kqueue and /dev/poll fakes."""
    _file_wanting_pri_is_never_reported(fake_backend, pair)


def test_kqueue_never_reports_urgent_data_as_pri(monkeypatch: pytest.MonkeyPatch) -> None:
    """pollers.rst:218-220 -- kqueue: "urgent data shows as ``READ`` or not at
    all, never as ``PRI``", even with real out-of-band data sent and PRI asked."""
    if sys.platform == "win32":
        pytest.skip("the fake kqueue is built on poll(2)")
    install_kqueue(monkeypatch)
    client, server = tcp_pair()
    try:
        with quick(KqueuePoller)() as p:
            p.register(server, READ | PRI)
            client.send(b"!", socket.MSG_OOB)
            client.send(b"in band")
            assert wait_for(p, server.fileno(), READ | PRI) == READ
    finally:
        client.close()
        server.close()


@pytest.mark.skipif(not hasattr(__import__("select"), "epoll"), reason="the kernel fact is epoll's")
@pytest.mark.parametrize("duplicated", [False, True], ids=["alone", "dup-open"])
def test_epoll_forgets_a_closed_fd_unless_a_duplicate_is_open(duplicated: bool, pair: Pair) -> None:
    """pollers.rst:207-211 -- epoll: "A closed descriptor is removed from the
    set silently and never reported, unless a duplicate of it ... is still
    open, in which case events keep coming for the old file."  The kernel
    fact the sweep exists for, checked on the raw ``select.epoll``."""
    import select

    reader, _ = pair
    with select.epoll() as ep:
        # a socket is always writable: a kept registration cannot stay quiet
        ep.register(reader.fileno(), select.EPOLLOUT)
        fd = reader.fileno()
        spare = os.dup(fd) if duplicated else -1
        try:
            reader.close()
            reported = dict(ep.poll(0.05))
        finally:
            if spare >= 0:
                os.close(spare)
    assert reported == ({fd: select.EPOLLOUT} if duplicated else {})


# -- docs/pollers.rst and examples.rst: regular files in the loop -----------------------


@pytest.mark.posix_only("file_dispatcher exists on POSIX only")
def test_the_loop_reads_a_regular_file_to_its_end_without_sleeping(
    poller_name: str, socket_map: Map, sockets: Sockets
) -> None:
    """pollers.rst:381-383 -- "while such a descriptor wants ``READ`` or
    ``WRITE``, ``poll()`` returns at once ...: the loop runs without sleeping
    until the file is read to the end and its channel stops asking";
    examples.rst:242 -- "A regular file is always ready to read".

    A 30 s timeout per pass and an idle socket in the same map: one pass that
    slept would take the test past its bound.
    """
    chunks: List[bytes] = []

    class Reader(asyncore.file_dispatcher):
        def writable(self) -> bool:
            return False

        def handle_read(self) -> None:
            data = self.recv(64)
            chunks.append(data)
            if not data:
                self.close()
                idle.close()

    a, _b = sockets.pair()
    idle = Collector(a.dup(), socket_map)
    body = bytes(range(256)) * 8
    with TemporaryFile() as f:
        f.write(body)
        f.seek(0)
        Reader(f, socket_map)
        start = time.monotonic()
        asyncore.loop(timeout=30.0, map=socket_map, poller=poller_name)
    assert b"".join(chunks) == body and chunks[-1] == b""
    assert time.monotonic() - start < 10.0, "a pass waited instead of reading the file"


# -- docs/pollers.rst: choosing a backend -----------------------------------------------


def test_a_map_keeps_its_backend_until_it_empties_or_a_call_asks_for_another(
    socket_map: Map, sockets: Sockets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pollers.rst:66-68 -- "The map keeps that backend until it empties or a
    ``loop()`` call asks for another."  Attacked by changing the process
    default and the environment variable between calls."""
    names = pollers.available()
    if len(names) < 2:
        pytest.skip("needs two backends")
    first, other = names[-1], names[0]  # select, and the best one
    a, b = sockets.pair()
    chan = Collector(a.dup(), socket_map)
    asyncore.loop(timeout=0, map=socket_map, count=1, poller=first)
    try:
        asyncio_compat.set_default_poller(other)
        monkeypatch.setenv(asyncio_compat.ENV_VAR, other)
        for use_poll in (False, True):
            asyncore.loop(timeout=0, map=socket_map, count=1, use_poll=use_poll)
            assert loop_stats(socket_map).poller == first
        b.send(b"served")
        asyncore.loop(timeout=5.0, map=socket_map, count=1, poller=other)
        assert loop_stats(socket_map).poller == other and chan.data == b"served"
        chan.close()
        asyncore.loop(timeout=0, map=socket_map, count=1)
        assert loop_stats(socket_map).poller is None  # emptied: the backend is let go
        c, _d = sockets.pair()
        Collector(c.dup(), socket_map)
        asyncio_compat.set_default_poller(first)
        asyncore.loop(timeout=0, map=socket_map, count=1)
        assert loop_stats(socket_map).poller == first  # chosen afresh
    finally:
        asyncio_compat.set_default_poller(None)


@pytest.mark.parametrize("kind", ["SocketMap", "dict"])
def test_the_patient_sample_returns_at_once_on_an_empty_map(kind: str) -> None:
    """pollers.rst:286 -- ``asyncore.loop(poller=Patient)  # returns at once
    here: the map is empty``, with ``sweep_interval = 10.0`` and loop()'s
    default 30 s timeout."""

    class Patient(pollers.best()):  # type: ignore[misc,valid-type]
        sweep_interval = 10.0

    target: Map = SocketMap() if kind == "SocketMap" else {}
    start = time.monotonic()
    asyncore.loop(poller=Patient, map=target)
    assert time.monotonic() - start < 5.0


# -- docs/asyncore.rst ------------------------------------------------------------------


def test_loop_serves_until_the_map_is_empty_even_when_emptied_from_another_thread(
    poller_name: str, socket_map: Map, sockets: Sockets
) -> None:
    """asyncore.rst:10 -- loop() "serves every dispatcher of a *socket map*
    until the map is empty"; asyncore.rst:65 -- ``count=None`` "runs until
    nothing is left to serve: the map is empty and no timer is pending".

    Attacked from both sides: the loop must still be running after a timer
    has run (the map is not empty), and must return once another thread has
    closed the last channel.  The timeout bounds one wait (asyncore.rst:49):
    on poll and select a close from another thread does not cut the wait in
    progress short, so it is short here."""
    a, _b = sockets.pair()
    chan = Collector(a.dup(), socket_map)
    timer_ran = threading.Event()
    asyncio_compat.call_later(0.0, timer_ran.set, map=socket_map)
    errors: List[BaseException] = []

    def serve() -> None:
        try:
            asyncore.loop(timeout=0.2, map=socket_map, poller=poller_name)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    server = threading.Thread(target=serve)
    server.start()
    try:
        assert timer_ran.wait(10.0)
        server.join(0.1)
        assert server.is_alive(), "loop() returned while a channel was still in the map"
    finally:
        chan.close()
        server.join(10.0)
    assert not server.is_alive(), "loop() kept waiting after the map emptied"
    assert errors == []


@pytest.mark.parametrize("duplicated", [False, True], ids=["alone", "dup-open"])
@pytest.mark.parametrize("socket_map", ["SocketMap", "dict"], indirect=True)
def test_a_closed_channel_receives_nothing_more_and_its_successor_nothing_of_its(
    poller_name: str, socket_map: Map, sockets: Sockets, duplicated: bool, request: pytest.FixtureRequest
) -> None:
    """asyncore.rst:205-208 -- "the new channel never receives an event meant
    for the closed one, and the closed one receives nothing more."

    Both channels are readable and hung up in the same pass; whichever runs
    first closes the other and puts a new channel on its fd number.  The
    closed one must see no handler after close(), the newcomer none at all
    (its socket has nothing to read).  ``dup-open``: each channel's socket
    is a duplicate whose original stays open, as after a fork."""
    channels: List[Collector] = []
    newcomers: List[Collector] = []
    after_close: List[str] = []

    class Closer(Collector):
        closed = False

        def handle_read(self) -> None:
            if self.closed:
                after_close.append("read")
            super().handle_read()
            if newcomers:
                return
            victim = next(c for c in channels if c is not self)
            old_fd = victim.socket.fileno()
            victim.close()
            victim.closed = True
            fresh, _ = sockets.pair()
            if fresh.fileno() != old_fd:
                os.dup2(fresh.fileno(), old_fd)
                sockets.append(socket.socket(fileno=old_fd))
                fresh = sockets[-1]
            newcomers.append(Collector(fresh, socket_map))

        def handle_close(self) -> None:
            if self.closed:
                after_close.append("close")
            super().handle_close()

        def handle_expt(self) -> None:
            after_close.append("expt") if self.closed else None

    for _ in range(2):
        a, b = sockets.pair()
        channels.append(Closer(a.dup() if duplicated else a, socket_map))
        b.send(b"x")
        b.shutdown(socket.SHUT_WR)  # hung up too: every kind of event pending
    for use_poll in (True, False):
        asyncore.loop(timeout=1.0, map=socket_map, count=1, use_poll=use_poll, poller=poller_name)
    assert len(newcomers) == 1
    assert after_close == [], "a closed channel's handler ran"
    assert newcomers[0].events == [], "the closed channel's event reached the new owner"


# -- docs/architecture.rst --------------------------------------------------------------


def test_a_channel_is_asked_again_at_once_after_its_event(
    poller_name: str, socket_map: Map, sockets: Sockets
) -> None:
    """architecture.rst:61-64 -- "After the event, on a ``SocketMap``, a channel
    with a mask function is asked again at once, so that a channel that has
    just filled or drained its output buffer is watched for the right events
    on the next wait."

    The handler fills ``out_buffer`` by hand, without ``interest_changed()``:
    only that second look can make the next wait include WRITE.  A 10 s
    timeout makes a missed look visible; afterwards the drained channel must
    not be woken for WRITE again."""
    writes: List[int] = []

    class Replier(asyncore.dispatcher_with_send):
        def handle_read(self) -> None:
            self.recv(100)
            self.out_buffer = b"reply"  # no initiate_send(), no interest_changed()

        def handle_write(self) -> None:
            writes.append(1)
            super().handle_write()

    a, b = sockets.pair()
    Replier(a.dup(), map=socket_map)
    asyncore.loop(timeout=0, map=socket_map, count=1, poller=poller_name)
    b.send(b"ask")
    start = time.monotonic()
    asyncore.loop(timeout=10.0, map=socket_map, count=2, poller=poller_name)
    assert time.monotonic() - start < 5.0, "the second wait did not include WRITE"
    b.settimeout(5.0)
    assert b.recv(100) == b"reply"
    asyncore.loop(timeout=0.01, map=socket_map, count=3, poller=poller_name)
    assert len(writes) == 1, "the drained channel was still watched for WRITE"


def test_pollers_never_imports_asyncio_compat() -> None:
    """architecture.rst:117 -- "``pollers`` never imports ``asyncio_compat``."

    Checked twice: no import statement in pollers/ names it (lazy ones inside
    functions included), and a fresh interpreter that imports pollers and
    drives every available backend has no asyncio_compat module loaded."""
    for path in sorted((REPO / "pollers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: List[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "asyncio_compat" for n in names), f"{path.name}:{node.lineno}"
    program = (
        "import socket, sys, pollers\n"
        "a, b = socket.socketpair()\n"
        "for name in pollers.available():\n"
        "    with pollers.get(name)() as p:\n"
        "        p.register(a, pollers.READ | pollers.WRITE)\n"
        "        p.poll(0)\n"
        "pollers.best()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'asyncio_compat'))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- README.md --------------------------------------------------------------------------


def _significant_lines(text: str) -> List[str]:
    # short lines ("else:", "self.fail()") are shared by any two test files
    return [line.strip() for line in text.splitlines() if len(line.strip()) >= 30]


def _runs(lines: List[str], length: int) -> Iterator[Tuple[str, ...]]:
    for start in range(len(lines) - length + 1):
        yield tuple(lines[start : start + length])


@pytest.mark.parametrize("suite", sorted(cpython_runner.SUBSTITUTES))
def test_cpython_suites_are_loaded_never_copied(suite: str) -> None:
    """README.md:81-82 -- CPython's own test_asyncore, test_asynchat (and
    test_socketserver) run "loaded from the installed interpreter at test
    time, never copied".  No file of this repository shares a run of four
    long lines with the installed suite."""
    found: Optional[str] = cpython_runner.find_suite(suite)
    if found is None:
        pytest.skip(f"no installed CPython carries {suite}")
    theirs = set(_runs(_significant_lines(Path(found).read_text(encoding="utf-8")), 4))
    copied: List[str] = []
    for folder in ("asyncio_compat", "pollers", "shims", "tests", "examples", "benchmarks", "docs"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix not in {".py", ".rst", ".txt"} or not path.is_file():
                continue
            ours = _significant_lines(path.read_text(encoding="utf-8", errors="replace"))
            if any(run in theirs for run in _runs(ours, 4)):
                copied.append(str(path.relative_to(REPO)))
    assert copied == []


# -- docs/performance.rst ---------------------------------------------------------------


class _Echo(asyncore.dispatcher_with_send):
    def handle_read(self) -> None:
        data = self.recv(4096)
        if data:
            self.send(data)


class _EchoServer(asyncore.dispatcher):
    def __init__(self, listener: socket.socket) -> None:
        super().__init__()
        self.set_socket(listener)
        self.listen(64)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        _Echo(sock)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.posix_only("workers fork")
@pytest.mark.timeout(60)
def test_serve_workers_serves_until_ctrl_c() -> None:
    """performance.rst:237-239 -- "the program serves with them until it is
    stopped" / "serves port 8007 until SIGTERM or Ctrl-C".  SIGTERM is
    attacked in test_workers.py; here Ctrl-C (SIGINT to the parent) after the
    workers have answered: serve_workers() must return normally, reap every
    worker, free the port and put the SIGINT handler back."""
    from asyncio_compat.workers import serve_workers

    seen: Dict[str, Any] = {}

    def on_ready(pool: Any) -> None:
        seen["pids"], seen["address"] = list(pool.pids), pool.address
        with socket.create_connection(pool.address, timeout=10.0) as client:
            client.sendall(b"still serving")
            assert client.recv(100) == b"still serving"
        os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    serve_workers(_EchoServer, 2, grace=2.0, on_ready=on_ready)
    assert signal.getsignal(signal.SIGINT) is before
    assert len(seen["pids"]) == 2 and all(_gone(pid) for pid in seen["pids"])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(seen["address"], timeout=5.0).close()
