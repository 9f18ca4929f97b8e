"""The loop engine attacked as a hostile program would, on every backend.

* fd numbers reused behind the loop by regular files, pipes and dup()s;
* a closed channel's socket kept open elsewhere (a dup, a forked child);
* ``close()`` from another thread while ``loop()`` runs;
* signal handlers that close and reopen channels at every instruction of a
  pass (a tracer stands in for the signal: it runs the handler at the k-th
  bytecode of the engine's code, for every k), and at the points a real
  signal cannot be aimed at (inside a syscall's retry, by a fake);
* maps keyed by socket objects, as 3.11's ``select()`` accepted them.

Each test checks that ``loop()`` goes on and that every event reaches the
channel it belongs to, and no other.
"""

from __future__ import annotations

import dis
import functools
import os
import socket
import sys
import tempfile
import time
import traceback
from select import select as real_select
from threading import Event, Thread, current_thread, main_thread
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from fakes import install_devpoll, install_kqueue
from fakes.support import quick
from helpers import Sockets, release_map

import pollers
from asyncio_compat import SocketMap, _delivery, _loop, asyncore
from pollers._devpoll import DevpollPoller
from pollers._kqueue import KqueuePoller

pytestmark = [pytest.mark.timeout(120), pytest.mark.posix_only("fd numbers, dup2() and signals")]

Map = Dict[Any, Any]
SOCKET_MAP_KINDS = pytest.mark.parametrize("socket_map", ["SocketMap", "dict"], indirect=True)


class Peer(asyncore.dispatcher):
    """Records what it reads; an error it is blamed for is recorded, not printed."""

    def __init__(self, sock: socket.socket, socket_map: Map, errors: List[str]) -> None:
        super().__init__(sock, socket_map)
        self.got = bytearray()
        self.errors = errors

    def handle_read(self) -> None:
        self.got += self.recv(4096)

    def handle_write(self) -> None:
        pass

    def handle_close(self) -> None:
        self.close()

    def handle_error(self) -> None:
        self.errors.append(f"{self!r}: {traceback.format_exc()}")
        self.close()


class Closer(Peer):
    """Closes itself once it has read something: a close inside the pass."""

    def handle_read(self) -> None:
        super().handle_read()
        if self.got:
            self.close()


class Polled(Peer):
    """Overrides a predicate: asked every pass, as in 3.11."""

    def writable(self) -> bool:
        return False


def pair_at(sockets: Sockets, fd: int) -> Tuple[socket.socket, socket.socket]:
    """A socketpair placed at fd number ``fd``: (the end at ``fd``, its peer)."""
    mine, peer = sockets.pair()
    if peer.fileno() == fd:  # the pair took the free number: it is symmetric
        mine, peer = peer, mine
    if mine.fileno() != fd:
        os.dup2(mine.fileno(), fd)
        mine.close()
        mine = socket.socket(fileno=fd)
        sockets.append(mine)
    return mine, peer


def file_at(fd: int) -> int:
    """A regular file opened at fd number ``fd`` (closed by the caller)."""
    with tempfile.TemporaryFile() as made:
        source = os.dup(made.fileno())
    if source != fd:
        os.dup2(source, fd)
        os.close(source)
    return fd


def run(socket_map: Map, poller_name: Any, count: int = 1, timeout: float = 0.05) -> None:
    asyncore.loop(timeout=timeout, map=socket_map, count=count, poller=poller_name)


def serve_until(socket_map: Map, poller_name: Any, done: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the condition was not reached in time"
        run(socket_map, poller_name)


@pytest.fixture(params=[*pollers.PREFERENCE, "kqueue-fake", "devpoll-fake"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Each available backend by name, and kqueue and /dev/poll over the fakes
    of tests/fakes (their kernels do not exist here), as classes."""
    name = str(request.param)
    if name == "kqueue-fake":
        install_kqueue(monkeypatch)
        return quick(KqueuePoller)
    if name == "devpoll-fake":
        install_devpoll(monkeypatch)
        return quick(DevpollPoller)
    if name not in pollers.available():
        pytest.skip(f"{name} poller not available on this platform")
    return name


@pytest.fixture
def every_pass_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """epoll/kqueue: the closed-fd sweep runs on every wait (its widest window)."""
    for name in pollers.available():
        if hasattr(pollers.get(name), "sweep_interval"):
            monkeypatch.setattr(pollers.get(name), "sweep_interval", 0.0)


# -- fd numbers reused behind the loop ------------------------------------------------


@SOCKET_MAP_KINDS
@pytest.mark.parametrize("how", ["close()", "behind the loop"])
def test_a_regular_file_taking_a_closed_channels_fd(
    backend: Any, socket_map: Map, sockets: Sockets, how: str
) -> None:
    errors: List[str] = []
    keeper = Peer(sockets.pair()[0], socket_map, errors)  # keeps loop() going
    doomed = Peer(sockets.pair()[0], socket_map, errors)
    run(socket_map, backend)  # both registered
    fd = doomed.socket.fileno()
    if how == "close()":
        doomed.close()
    else:  # the socket closed first, the map entry removed after (3.11 allowed both)
        doomed.socket.close()
        del socket_map[fd]
    file_at(fd)  # a log reopened, a file served: same number
    try:
        sockets[1].send(b"later")  # keeper's peer
        serve_until(socket_map, backend, lambda: keeper.got == b"later")
    finally:
        os.close(fd)
    assert errors == []


def test_a_regular_file_taking_the_fd_inside_a_handler(backend: Any, sockets: Sockets) -> None:
    errors: List[str] = []
    files: List[int] = []

    class ReopensLog(Peer):
        def handle_read(self) -> None:
            super().handle_read()
            fd = self.socket.fileno()
            self.close()
            files.append(file_at(fd))

    target = asyncore.socket_map
    assert not target, "the default map must start empty"
    try:
        keeper = Peer(sockets.pair()[0], target, errors)
        ReopensLog(sockets.pair()[0], target, errors)
        run(target, backend)
        sockets[-1].send(b"x")  # the handler runs: closes, a file takes its fd
        serve_until(target, backend, lambda: bool(files))
        sockets[1].send(b"still served")
        serve_until(target, backend, lambda: keeper.got == b"still served")
    finally:
        for fd in files:
            os.close(fd)
        release_map(target)
    assert errors == []


@SOCKET_MAP_KINDS
@pytest.mark.parametrize("holder", ["dup", "fork"])
def test_a_closed_socket_kept_open_elsewhere_reports_nothing_to_its_successor(
    backend: Any, socket_map: Map, sockets: Sockets, holder: str
) -> None:
    errors: List[str] = []
    Peer(sockets.pair()[0], socket_map, errors)  # keeps loop() going
    old, old_peer = sockets.pair()
    doomed = Peer(old, socket_map, errors)
    run(socket_map, backend)
    fd = old.fileno()
    child = 0
    if holder == "dup":
        kept = os.dup(fd)
    else:
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # a CGI-style worker holding the inherited socket
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
        os.close(read_end)
        kept = write_end
    try:
        doomed.close()
        successor = Peer(pair_at(sockets, fd)[0], socket_map, errors)
        run(socket_map, backend)  # the successor registered under the old number
        old_peer.send(b"for the old connection")  # ready on the old socket only
        for _ in range(5):
            run(socket_map, backend, timeout=0.02)
        assert errors == []
        assert successor.got == b"" and successor.socket is not None and socket_map.get(fd) is successor
    finally:
        os.close(kept)
        if child:
            os.waitpid(child, 0)


def test_a_dup_alive_after_a_close_behind_the_loop(backend: Any, sockets: Sockets) -> None:
    # the unregister comes after the close: the poller must still never
    # report the old socket under the successor's number
    errors: List[str] = []
    socket_map: Map = SocketMap()
    try:
        Peer(sockets.pair()[0], socket_map, errors)
        old, old_peer = sockets.pair()
        doomed = Peer(old, socket_map, errors)
        run(socket_map, backend)
        fd = old.fileno()
        kept = os.dup(fd)
        try:
            old.close()  # behind the loop: the map still holds the channel
            socket_map.pop(fd)
            successor = Peer(pair_at(sockets, fd)[0], socket_map, errors)
            old_peer.send(b"for the old connection")
            for _ in range(5):
                run(socket_map, backend, timeout=0.02)
        finally:
            os.close(kept)
        assert errors == [] and successor.got == b"" and socket_map.get(fd) is successor
        assert doomed.socket is old
    finally:
        release_map(socket_map)


# -- close() from another thread ---------------------------------------------------------


class Listener(asyncore.dispatcher):
    def __init__(self, socket_map: Map) -> None:
        super().__init__(map=socket_map)
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(5)


def _loop_in_thread(socket_map: Map, poller_name: str, failures: List[BaseException]) -> Thread:
    def serve() -> None:
        try:
            asyncore.loop(timeout=0.01, map=socket_map, poller=poller_name)
        except BaseException as exc:  # recorded for the test to report
            failures.append(exc)

    thread = Thread(target=serve)
    thread.start()
    return thread


def test_close_from_another_thread_while_the_loop_ends(
    poller_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Aims at the race: the closing thread is inside wake() (making its
    # pipe) while the loop's thread ends its pass and releases the poller.
    socket_map: Map = SocketMap()
    server = Listener(socket_map)
    failures: List[BaseException] = []
    loop_done = Event()
    real_pipe = os.pipe

    def slow_pipe() -> Any:
        if current_thread() is main_thread():
            loop_done.wait(1.0)  # the loop thread ends meanwhile (or waits for us)
        return real_pipe()

    monkeypatch.setattr(os, "pipe", slow_pipe)
    thread = _loop_in_thread(socket_map, poller_name, failures)
    try:
        deadline = time.monotonic() + 10
        while not (_loop.existing_loop(socket_map) or failures):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        watcher = Thread(target=lambda: (thread.join(), loop_done.set()))
        watcher.start()
        server.close()  # never raises, and closes the socket
        assert server.socket.fileno() == -1
        watcher.join(10)
    finally:
        thread.join(10)
    assert not failures, failures
    assert _loop.existing_loop(socket_map) is None


def test_close_from_another_thread_many_times(poller_name: str) -> None:
    for _ in range(60):
        socket_map: Map = SocketMap()
        server = Listener(socket_map)
        peer = Listener(socket_map)  # a second channel: the loop is mid-pass more often
        failures: List[BaseException] = []
        thread = _loop_in_thread(socket_map, poller_name, failures)
        try:
            time.sleep(0.001 * (_ % 5))
            peer.close()
            server.close()
            assert server.socket.fileno() == -1 and peer.socket.fileno() == -1
        finally:
            thread.join(10)
        assert not thread.is_alive()
        assert not failures, failures
        assert not socket_map


# -- signal handlers at every instruction of a pass --------------------------------------

_POLLERS_DIR = os.path.dirname(pollers.__file__)
_ENGINE_FILES = frozenset(
    [str(module.__file__) for module in (_loop, _delivery, asyncore)]
    + [os.path.join(_POLLERS_DIR, name) for name in os.listdir(_POLLERS_DIR) if name.endswith(".py")]
)


# Where CPython runs a pending signal handler: at a function's start (RESUME),
# after a call returns and after a backward jump (its "eval breaker" checks).
_AFTER = ("CALL", "PRECALL", "JUMP_BACKWARD")


def _run_with_handler_at(
    target: int, handler: Callable[[], None], body: Callable[[], None], warm_up: Callable[[], None]
) -> int:
    """Run ``body``; at the ``target``-th point of the engine's code where a
    signal handler could run, run ``handler`` (as the signal's handler
    would).  Returns the number of such points counted.

    ``warm_up`` runs first under the same tracer, counting nothing: CPython
    3.12+ reports a code object's opcodes only from its second run in a
    tracing session on.
    """
    seen = 0
    armed = False
    previous: Dict[FrameType, str] = {}

    def per_opcode(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal seen
        if event == "opcode":
            before = previous.get(frame, "RESUME")
            previous[frame] = dis.opname[frame.f_code.co_code[frame.f_lasti]]
            if armed and (before.startswith(_AFTER) or before == "RESUME"):
                seen += 1
                if seen == target:
                    handler()
        elif event == "return":
            previous.pop(frame, None)
        return per_opcode

    def per_call(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename in _ENGINE_FILES:
            frame.f_trace_opcodes = True
            return per_opcode
        return None

    sys.settrace(per_call)
    try:
        warm_up()
        armed = True
        body()
    finally:
        sys.settrace(None)
    return seen


class Scene:
    """Channels on a map, each with data waiting, and the handlers that attack them."""

    def __init__(self, socket_map: Map, sockets: Sockets) -> None:
        self.map = socket_map
        self.sockets = sockets
        self.errors: List[str] = []
        self.channels: List[Peer] = []
        self.files: List[int] = []

    def open(self, cls: type = Peer, at: Optional[int] = None) -> Peer:
        sock, peer = self.sockets.pair() if at is None else pair_at(self.sockets, at)
        channel: Peer = cls(sock, self.map, self.errors)
        self.channels.append(channel)
        peer.send(b"data for %d" % id(channel))
        return channel

    def live(self) -> List[Peer]:
        return [c for c in self.channels if c.socket.fileno() >= 0]

    # the handlers
    def close_all_and_reopen(self) -> None:
        asyncore.close_all(self.map)
        self.open()

    def swap(self) -> None:
        """Close a channel; a new one takes its fd number at once."""
        live = self.live()
        if live:
            fd = live[0].socket.fileno()
            live[0].close()
            self.open(Polled, at=fd)

    def file_takes_fd(self) -> None:
        """Close a channel; a regular file takes its fd number."""
        live = self.live()
        if live:
            fd = live[0].socket.fileno()
            live[0].close()
            self.files.append(file_at(fd))
            if len(self.files) > 20:
                os.close(self.files.pop(0))

    def check_registrations(self, poller_name: Any) -> None:
        """After a pass, the poller watches the map's channels and nothing else."""
        run(self.map, poller_name, timeout=0.0)
        state = _loop.existing_loop(self.map)
        assert state is not None
        registered = set(state.poller.masks) - set(state.watched)
        assert registered == {c.socket.fileno() for c in self.map.values()}

    def all_served(self) -> bool:
        return all(c.got == b"data for %d" % id(c) for c in self.live())

    def close(self) -> None:
        release_map(self.map)
        for fd in self.files:
            os.close(fd)


HANDLERS = ["close_all_and_reopen", "swap", "file_takes_fd"]


def _scene_ready_for_attack(map_kind: type, poller_name: Any) -> Scene:
    scene = Scene(map_kind(), Sockets())
    scene.open()
    scene.open(Polled)
    run(scene.map, poller_name, timeout=0.0)  # registered, data delivered
    scene.open()  # an event pending for the attacked pass
    scene.open(Closer)  # and one that closes its channel during that pass
    return scene


def _one_pass(scene: Scene, poller_name: Any) -> None:
    run(scene.map, poller_name, timeout=0.0)


def _warm_up(map_kind: type, poller_name: Any) -> None:
    scene = _scene_ready_for_attack(map_kind, poller_name)
    try:
        _one_pass(scene, poller_name)
    finally:
        scene.close()
        scene.sockets.close_all()


def _attack_every_instruction(
    poller_name: Any, handler_name: str, map_kind: type, stride: int, first: int = 1
) -> int:
    """For every k (from ``first``, by ``stride``): a fresh scene, one pass
    with the handler run at the k-th point, then every live channel must get
    its data."""
    warm_up = functools.partial(_warm_up, map_kind, poller_name)
    counted = 0
    target = 0  # a first pass that fires nowhere counts the points
    counting_passes = 0
    while target <= counted:
        scene = _scene_ready_for_attack(map_kind, poller_name)
        try:
            attacked_pass = functools.partial(_one_pass, scene, poller_name)
            seen = _run_with_handler_at(target, getattr(scene, handler_name), attacked_pass, warm_up)
            counted = seen if target == 0 else counted
            serve_until(scene.map, poller_name, scene.all_served)
            assert scene.errors == [], f"handler at point {target}: {scene.errors}"
            scene.check_registrations(poller_name)
        finally:
            scene.close()
            scene.sockets.close_all()
        counting_passes += target == 0
        if target == 0 and counted == 0 and counting_passes < 3:
            continue  # 3.12's tracer now and then reports nothing of a pass: count again
        target = first if target == 0 else target + stride
    return counted


def _points_to_attack() -> Tuple[int, int]:
    """(stride, first point): every point on Python 3.11 or with
    ASYNCIO_COMPAT_EVERY_POINT=1; elsewhere every third point, starting at a
    point that moves with the minor version, to keep the matrix in time."""
    if sys.version_info[:2] == (3, 11) or os.environ.get("ASYNCIO_COMPAT_EVERY_POINT") == "1":
        return 1, 1
    return 3, 1 + sys.version_info[1] % 3


@pytest.mark.parametrize("map_kind", [SocketMap, dict], ids=["SocketMap", "dict"])
@pytest.mark.parametrize("handler_name", HANDLERS)
def test_a_signal_handler_at_any_instruction_of_a_pass(
    backend: Any, handler_name: str, map_kind: type, every_pass_sweeps: None
) -> None:
    stride, first = _points_to_attack()
    counted = _attack_every_instruction(backend, handler_name, map_kind, stride, first)
    assert counted > 100  # the tracer did see the pass


def test_close_all_and_reopen_between_two_passes(backend: Any, sockets: Sockets) -> None:
    # loop() holds the map's MapLoop across its passes; a handler landing
    # between two of them empties the map (forget() closes that MapLoop)
    # and fills it again before loop() runs the next pass on it
    scene = Scene(SocketMap(), sockets)
    try:
        scene.open()
        run(scene.map, backend, timeout=0.0)
        state = _loop.existing_loop(scene.map)
        assert state is not None
        scene.close_all_and_reopen()
        assert _loop.existing_loop(scene.map) is None  # released: the map was empty
        deadline = time.monotonic() + 10
        while not scene.all_served():
            assert time.monotonic() < deadline
            state.run_pass(0.05)  # what loop() does next, on the MapLoop it holds
        assert _loop.existing_loop(scene.map) is state and scene.errors == []
        scene.check_registrations(backend)
    finally:
        scene.close()


def test_a_signal_handler_during_the_closed_fd_sweep(
    backend: Any, sockets: Sockets, every_pass_sweeps: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the sweep's fstat() of each fd, where a handler's close() -> wake()
    # registers the wake pipe in the very table being swept
    scene = Scene(SocketMap(), sockets)
    try:
        for _ in range(4):
            scene.open()
        run(scene.map, backend, timeout=0.0)
        real_fstat = os.fstat
        calls = 0

        def fstat_with_a_signal(fd: int) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                scene.close_all_and_reopen()
            return real_fstat(fd)

        monkeypatch.setattr(os, "fstat", fstat_with_a_signal)
        run(scene.map, backend, timeout=0.05)
        monkeypatch.setattr(os, "fstat", real_fstat)
        serve_until(scene.map, backend, scene.all_served)
        assert scene.errors == []
    finally:
        scene.close()


def test_select_ebadf_twice_in_one_wait(sockets: Sockets, monkeypatch: pytest.MonkeyPatch) -> None:
    # a handler closes a socket behind the loop in the wait (EBADF), and
    # another one between the fstat() sweep and the second select(): a fake
    # select() runs them just before the real one
    scene = Scene(SocketMap(), sockets)
    try:
        for _ in range(3):
            scene.open()
        run(scene.map, "select", timeout=0.0)
        for channel in scene.channels:
            channel.got.clear()
            scene.sockets[scene.sockets.index(channel.socket) + 1].send(b"data for %d" % id(channel))
        handlers = [scene.channels[0].socket.close, scene.channels[1].socket.close]

        def select_with_signals(*args: Any) -> Any:
            if handlers:
                handlers.pop(0)()
            return real_select(*args)

        monkeypatch.setattr("select.select", select_with_signals)
        run(scene.map, "select", timeout=0.05)
        monkeypatch.setattr("select.select", real_select)
        serve_until(scene.map, "select", scene.all_served)
        assert scene.errors == [] and scene.live() == [scene.channels[2]]
    finally:
        scene.close()


@pytest.mark.timeout(60)
def test_signals_at_a_high_rate_closing_and_reopening(
    backend: Any, sockets: Sockets, every_pass_sweeps: None
) -> None:
    from signal import ITIMER_REAL, SIGALRM, setitimer  # POSIX names: not at import
    from signal import signal as set_handler

    scene = Scene(SocketMap(), sockets)
    fired = 0
    actions = [scene.close_all_and_reopen, scene.swap, scene.file_takes_fd]

    busy = False

    def on_alarm(signum: int, frame: Optional[FrameType]) -> None:
        nonlocal fired, busy
        if busy:  # the test's own handler is not what is under test
            return
        busy = True
        try:
            actions[fired % len(actions)]()
            fired += 1
        finally:
            busy = False

    previous = set_handler(SIGALRM, on_alarm)
    try:
        for _ in range(5):
            scene.open()
        setitimer(ITIMER_REAL, 0.0005, 0.0005)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            run(scene.map, backend, count=50, timeout=0.001)
        setitimer(ITIMER_REAL, 0, 0)
        serve_until(scene.map, backend, scene.all_served)
        assert fired > 20 and scene.errors == []
    finally:
        setitimer(ITIMER_REAL, 0, 0)
        set_handler(SIGALRM, previous)
        scene.close()


# -- maps keyed by socket objects --------------------------------------------------------


@pytest.mark.parametrize("driver", ["poll", "poll2", "loop", "loop(use_poll=True)"])
def test_a_map_keyed_by_socket_objects(poller_name: str, sockets: Sockets, driver: str) -> None:
    mine, peer = sockets.pair()
    errors: List[str] = []
    channel = Peer(mine, {}, errors)  # not in the map it is served from, as irc-bot
    keyed: Map = {mine: channel}
    peer.send(b"hello")
    deadline = time.monotonic() + 10
    try:
        while channel.got != b"hello":
            assert time.monotonic() < deadline, f"no event through {driver}"
            if driver == "poll":
                asyncore.poll(timeout=0.05, map=keyed)
            elif driver == "poll2":
                asyncore.poll2(timeout=0.05, map=keyed)
            else:
                asyncore.loop(timeout=0.05, map=keyed, count=1, poller=poller_name,
                              use_poll=driver.endswith("True)"))
        keyed.clear()
        asyncore.loop(timeout=0.0, map=keyed, count=1, poller=poller_name)
    finally:
        release_map(keyed)
    assert errors == []


def test_a_socket_keyed_channel_leaving_and_its_fd_reused(backend: Any, sockets: Sockets) -> None:
    errors: List[str] = []
    first, first_peer = sockets.pair()
    keyed: Map = SocketMap()
    try:
        old = Peer(first, {}, errors)
        keyed[first] = old
        run(keyed, backend, timeout=0.0)
        fd = first.fileno()
        del keyed[first]
        first.close()
        placed, placed_peer = pair_at(sockets, fd)
        successor = Peer(placed, keyed, errors)  # keyed by its fd number
        placed_peer.send(b"new")
        serve_until(keyed, backend, lambda: successor.got == b"new")
        assert old.got == b"" and errors == []
    finally:
        release_map(keyed)


def test_a_key_that_is_not_an_fd_is_refused_by_name(poller_name: str) -> None:
    bad: Map = {"not a socket": object()}
    try:
        with pytest.raises(TypeError, match="not a socket"):
            asyncore.loop(timeout=0.0, map=bad, count=1, poller=poller_name)
    finally:
        bad.clear()
        _loop.forget(bad)



# -- a handler that empties the map ends loop() at once ----------------------------------


def _quiet_channels(sockets: Sockets, socket_map: Map, errors: List[str]) -> None:
    """Two channels with nothing to read nor write: a pass over them waits its whole timeout."""
    for _ in range(2):
        sock, _peer = sockets.pair()
        Polled(sock, socket_map, errors)


@pytest.mark.parametrize("closer", ["handler", "thread"])
def test_a_handler_that_empties_the_map_at_any_point_ends_loop_at_once(
    backend: Any, sockets: Sockets, closer: str
) -> None:
    # promise (docs/stopping.rst, the glossary's "late change"): loop()
    # returns as soon as the map is empty, whatever point the change lands
    # on: between loop()'s test of the map and the pass, after the pass
    # decided to wait but before the system call starts (select and poll:
    # nothing in their arrays ends that wait), or anywhere else before the
    # wait.  The change is made by the handler itself, or by another thread
    # that runs while the loop's thread stands at that point.
    wait = 0.5
    stride, first = _points_to_attack()
    fired: List[Tuple[float, bool]] = []  # (when, inside the poller's poll())
    entered: List[bool] = []
    errors: List[str] = []

    class Marking(pollers.get(backend) if isinstance(backend, str) else backend):  # type: ignore[misc]
        def poll(self, timeout: Optional[float] = None) -> List[Tuple[int, int]]:
            entered.append(True)
            return list(super().poll(timeout))

    def empty_the_map(socket_map: Map) -> None:
        fired.append((time.monotonic(), bool(entered)))
        if closer == "handler":
            asyncore.close_all(socket_map)
            return
        other = Thread(target=asyncore.close_all, args=(socket_map,))
        other.start()
        other.join(10)

    def attacked(target: int) -> Tuple[int, float, float, bool]:
        """(points seen, seconds from the handler to loop()'s return, seconds
        in loop(), whether the handler ran inside the poller's poll())"""
        socket_map: Map = SocketMap()
        _quiet_channels(sockets, socket_map, errors)
        run(socket_map, Marking, timeout=0.0)  # registered: the next pass waits
        del fired[:], entered[:]
        body = functools.partial(run, socket_map, Marking, count=1, timeout=wait)
        warm_up = functools.partial(run, SocketMap(), Marking, timeout=0.0)
        started = time.monotonic()
        seen = _run_with_handler_at(target, functools.partial(empty_the_map, socket_map), body, warm_up)
        ended = time.monotonic()
        release_map(socket_map)
        assert fired or target == 0
        when, in_poll = fired[0] if fired else (ended, True)
        return seen, ended - when, ended - started, in_poll

    counted, _, _, _ = attacked(0)
    assert counted > 20  # the tracer did see loop() and its pass
    slow = []
    before_poll = 0
    for target in range(first, counted + 1, stride):
        _, late, took, in_poll = attacked(target)
        before_poll += not in_poll
        if late >= wait / 2:
            slow.append((target, round(late, 2)))
        elif in_poll and took - late >= wait / 10:
            break  # the handler came after (part of) the wait, as it will at every later point
    assert slow == [] and errors == []
    assert before_poll > 5  # every point of loop() and the pass up to the poller was attacked
