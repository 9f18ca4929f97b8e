"""The Windows rules, each checked directly on Linux (tests/windows_rules.py imposes them).

These run in every test run.  ``pytest --windows-rules`` additionally runs
the whole suite under the rules (tests that need a POSIX-only feature skip).
"""

from __future__ import annotations

import errno
import os
import pkgutil
import select
import socket
import time
from typing import Any, Callable, Iterator, List, Tuple

import pytest
from helpers import release_map
from windows_rules import MISSING_FROM_SELECT, import_as_on_windows

import asyncio_compat
import pollers
from asyncio_compat import asyncore
from asyncio_compat.timers import call_later
from pollers import ERR, NVAL, PRI, READ, WRITE
from pollers._base import CLOSED_FD_ERRNOS, fd_is_open
from pollers._select import WINDOWS_FD_SETSIZE, SelectPoller

pytestmark = [pytest.mark.timeout(30), pytest.mark.windows_rules]

Pair = Tuple[socket.socket, socket.socket]  # the ``pair`` fixture of conftest.py


@pytest.fixture
def select_calls(windows_rules: None, monkeypatch: pytest.MonkeyPatch) -> List[Tuple[Any, ...]]:
    """Every select.select() call made under the rules, with its arguments."""
    calls: List[Tuple[Any, ...]] = []
    ruled = select.select

    def counting(*args: Any) -> Any:
        calls.append(args)
        return ruled(*args)

    monkeypatch.setattr(select, "select", counting)
    return calls


@pytest.fixture
def socket_map() -> Iterator[asyncore.SocketMap]:
    target = asyncore.SocketMap()
    yield target
    release_map(target)


# -- the fixture imposes what it says --------------------------------------------------


def test_the_fixture_imposes_the_rules(windows_rules: None, pair: Pair, tmp_path: Any) -> None:
    assert not [name for name in MISSING_FROM_SELECT if hasattr(select, name)]
    with pytest.raises(OSError) as empty:
        select.select([], [], [], 0)
    assert empty.value.errno == errno.EINVAL
    with pytest.raises(OSError) as on_socket:
        os.fstat(pair[0].fileno())
    assert on_socket.value.errno == errno.EBADF
    with open(tmp_path / "f", "wb") as regular:
        assert os.fstat(regular.fileno()).st_size == 0  # files still work
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(OSError) as on_pipe:
            select.select([read_end], [], [], 0)
        assert on_pipe.value.errno == errno.ENOTSOCK
    finally:
        os.close(read_end)
        os.close(write_end)


# -- only select() --------------------------------------------------------------------


def test_only_select_is_available(windows_rules: None) -> None:
    assert pollers.available() == ["select"]
    assert pollers.best() is SelectPoller
    with pytest.raises(pollers.UnknownPollerError, match="'poll' is not available on this platform"):
        pollers.get("poll")


def test_availability_is_asked_when_called(monkeypatch: pytest.MonkeyPatch) -> None:
    others = [name for name in pollers.available() if name != "select"]
    if not others:
        pytest.skip("this platform has select() alone already")
    monkeypatch.delattr(select, others[0])
    assert others[0] not in pollers.available()
    assert pollers.best().name == pollers.available()[0]
    with pytest.raises(pollers.UnknownPollerError, match="not available"):
        pollers.get(others[0])


# -- an empty wait sleeps -------------------------------------------------------------


@pytest.mark.parametrize("parked", [False, True], ids=["nothing_registered", "all_parked"])
def test_an_empty_wait_sleeps_instead_of_selecting(
    select_calls: List[Tuple[Any, ...]], pair: Pair, parked: bool
) -> None:
    with SelectPoller() as poller:
        if parked:
            poller.register(pair[0], 0)
        started = time.monotonic()
        assert poller.poll(0.05) == []
        assert time.monotonic() - started >= 0.05
        assert poller.poll(0) == []
    assert select_calls == []


def test_a_map_with_only_timers_sleeps_between_them(
    select_calls: List[Tuple[Any, ...]], socket_map: asyncore.SocketMap
) -> None:
    fired: List[Tuple[str, float]] = []

    def record(name: str) -> None:
        fired.append((name, time.monotonic()))

    late = call_later(0.06, record, "late", map=socket_map)
    early = call_later(0.03, record, "early", map=socket_map)
    asyncore.loop(timeout=30.0, map=socket_map)
    assert [name for name, _ in fired] == ["early", "late"]
    assert fired[0][1] >= early.when and fired[1][1] >= late.when
    assert select_calls == []


class Uninterested(asyncore.dispatcher):
    """Wants nothing (3.11's poll() slept instead of calling select for it)."""

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False


def test_channels_that_want_nothing_and_a_timer(
    select_calls: List[Tuple[Any, ...]], socket_map: asyncore.SocketMap, pair: Pair
) -> None:
    Uninterested(pair[0].dup(), map=socket_map)
    ran: List[bool] = []
    call_later(0.02, ran.append, True, map=socket_map)
    while not ran:  # each pass waits for the timer, not the 30 s timeout
        asyncore.loop(timeout=30.0, map=socket_map, count=1)
    assert select_calls == []


# -- closed sockets without fstat ------------------------------------------------------


def test_closed_socket_is_found_without_fstat(windows_rules: None, pair: Pair) -> None:
    other, peer = socket.socketpair()
    with other, peer, SelectPoller() as poller:
        doomed = pair[0].dup()
        doomed_fd = doomed.fileno()
        poller.register(doomed_fd, READ)
        poller.register(other, READ)
        peer.send(b"x")
        assert fd_is_open(doomed_fd) and fd_is_open(other.fileno())
        os.close(doomed.detach())  # behind the poller's back
        assert not fd_is_open(doomed_fd)
        assert sorted(poller.poll(5.0)) == sorted([(doomed_fd, NVAL), (other.fileno(), READ)])


def test_wsa_numbers_for_a_closed_socket_count_as_closed() -> None:
    assert {errno.EBADF, errno.ENOTSOCK} <= CLOSED_FD_ERRNOS
    for name in ("WSAEBADF", "WSAENOTSOCK"):  # present on Windows only
        if hasattr(errno, name):
            assert getattr(errno, name) in CLOSED_FD_ERRNOS


def test_other_select_errors_are_raised(windows_rules: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: Any) -> Any:
        raise OSError(errno.ENOMEM, "out of memory")

    with SelectPoller() as poller:
        poller.register(5, READ)
        monkeypatch.setattr(select, "select", failing)
        with pytest.raises(OSError, match="out of memory"):
            poller.poll(0)


class Recorder(asyncore.dispatcher):
    def __init__(self, sock: socket.socket, socket_map: Any) -> None:
        super().__init__(sock, map=socket_map)
        self.closed_by_loop = False

    def writable(self) -> bool:
        return False

    def handle_close(self) -> None:
        self.closed_by_loop = True
        self.del_channel()


@pytest.mark.parametrize("use_poll", [False, True])
def test_loop_closes_a_channel_whose_socket_was_closed_behind_its_back(
    windows_rules: None, socket_map: asyncore.SocketMap, pair: Pair, use_poll: bool
) -> None:
    channel = Recorder(pair[0].dup(), socket_map)
    asyncore.loop(timeout=0, map=socket_map, count=1, use_poll=use_poll)
    os.close(channel.socket.detach())
    asyncore.loop(timeout=5.0, map=socket_map, count=1, use_poll=use_poll)
    assert channel.closed_by_loop


# -- Winsock's select(): exceptional set and size ----------------------------------------


Lists = Tuple[List[int], List[int], List[int]]


def fake_select(exceptional: List[int], seen: List[Tuple[Any, ...]]) -> Callable[..., Lists]:
    """A select() that reports ``exceptional`` (a failed connect cannot be made on demand)."""

    def select_reporting(r: Any, w: Any, x: Any, timeout: Any = None) -> Lists:
        seen.append((set(r), set(w), set(x)))
        return [], [], [fd for fd in exceptional if fd in x]

    return select_reporting


def test_a_failed_connect_is_reported_from_the_exceptional_set(
    windows_rules: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    connecting, urgent = 7, 8  # fd numbers only: the fake select() never looks
    seen: List[Tuple[Any, ...]] = []
    with SelectPoller() as poller:
        poller.register(connecting, WRITE)
        poller.register(urgent, READ | PRI)
        monkeypatch.setattr(select, "select", fake_select([connecting, urgent], seen))
        assert sorted(poller.poll(0)) == [(connecting, ERR), (urgent, PRI)]
    assert seen == [({urgent}, {connecting}, {connecting, urgent})]


def test_at_most_512_sockets_ask_for_events(windows_rules: None) -> None:
    with SelectPoller() as poller:
        for fd in range(WINDOWS_FD_SETSIZE):  # numbers only: registering makes no syscall
            poller.register(fd, READ)
        with pytest.raises(ValueError, match="at most 512 sockets"):
            poller.register(WINDOWS_FD_SETSIZE, WRITE)
        poller.register(WINDOWS_FD_SETSIZE, 0)  # parked: not in any set
        poller.unregister(0)
        poller.modify(WINDOWS_FD_SETSIZE, WRITE)


# -- what Windows does not have ----------------------------------------------------------


def test_file_dispatcher_and_file_wrapper_are_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    on_windows = import_as_on_windows("asyncio_compat.asyncore", monkeypatch)
    for name in ("file_dispatcher", "file_wrapper"):
        assert hasattr(asyncore, name) == (os.name == "posix")
        assert not hasattr(on_windows, name)
        assert name not in on_windows.__all__
    assert hasattr(on_windows, "dispatcher")


FORK_AND_UNIX_NAMES = {
    "ForkingMixIn", "ForkingTCPServer", "ForkingUDPServer",
    "ForkingUnixStreamServer", "ForkingUnixDatagramServer",
    "UnixStreamServer", "UnixDatagramServer",
    "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer",
}


def test_socketserver_has_the_names_the_stdlib_has_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    ours = import_as_on_windows("asyncio_compat.socketserver", monkeypatch)
    stdlib = import_as_on_windows("socketserver", monkeypatch)
    for module in (ours, stdlib):
        assert not [name for name in FORK_AND_UNIX_NAMES if hasattr(module, name)], module
    assert set(stdlib.__all__) <= set(ours.__all__)
    assert all(hasattr(ours, name) for name in ours.__all__)
    assert ours.ThreadingTCPServer.__mro__[1] is ours.ThreadingMixIn


def test_every_other_module_imports_as_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [info.name for info in pkgutil.iter_modules(asyncio_compat.__path__)]
    assert "workers" in names and "asyncore" in names
    for name in names:
        if name == "workers":
            continue
        try:
            import_as_on_windows(f"asyncio_compat.{name}", monkeypatch)
        except ModuleNotFoundError as exc:
            if exc.name != "tkinter":  # an optional part of Python, absent on some systems
                raise


def test_workers_module_is_absent_without_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImportError, match=r"needs os\.fork\(\)"):
        import_as_on_windows("asyncio_compat.workers", monkeypatch)


class WriteOnlyConnector(asyncore.dispatcher):
    """Connects with ``readable()`` False: only WRITE (so only the exceptional set) tells."""

    def __init__(self, port: int, socket_map: Any) -> None:
        super().__init__(map=socket_map)
        self.told: List[str] = []
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(("127.0.0.1", port))

    def readable(self) -> bool:
        return False

    def handle_error(self) -> None:
        self.told.append("error")
        self.close()

    def handle_close(self) -> None:
        self.told.append("close")
        self.close()


@pytest.mark.parametrize("use_poll, told", [(False, "error"), (True, "close")])
def test_a_failed_connect_reaches_a_write_only_channel(
    windows_rules: None, monkeypatch: pytest.MonkeyPatch, socket_map: asyncore.SocketMap,
    use_poll: bool, told: str,
) -> None:
    with socket.socket() as unused:  # bound, never listening: connecting is refused
        unused.bind(("127.0.0.1", 0))
        channel = WriteOnlyConnector(unused.getsockname()[1], socket_map)
        fd = channel.socket.fileno()
        select.select([], [fd], [], 5.0)  # the refusal has arrived
        monkeypatch.setattr(select, "select", fake_select([fd], []))  # as Winsock reports it
        asyncore.loop(timeout=0, map=socket_map, count=1, use_poll=use_poll)
    assert channel.told == [told]
