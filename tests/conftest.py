"""Shared fixtures: one parametrised poller fixture and leak checks for every test."""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from helpers import Sockets, release_map
from windows_rules import posix_only_reason, requested, windows_rules  # noqa: F401 (a fixture)

import pollers
from asyncio_compat import SocketMap

ALL_POLLERS: List[str] = list(pollers.PREFERENCE)


def _open_fds() -> List[int]:
    try:
        return sorted(int(n) for n in os.listdir("/proc/self/fd"))
    except OSError:  # no /proc (macOS, BSD): count by probing
        found = []
        for fd in range(0, 4096):
            try:
                os.fstat(fd)
            except OSError:
                continue
            found.append(fd)
        return found


@pytest.fixture(params=ALL_POLLERS)
def poller_name(request: pytest.FixtureRequest) -> str:
    """Each backend by name; one the platform lacks is a skip that says so."""
    name = str(request.param)
    if name not in pollers.available():
        pytest.skip(f"{name} poller not available on this platform")
    return name


@pytest.fixture
def default_poller(poller_name: str) -> Iterator[str]:
    """Makes ``poller_name`` the process default for the test's duration."""
    import asyncio_compat

    asyncio_compat.set_default_poller(poller_name)
    try:
        yield poller_name
    finally:
        asyncio_compat.set_default_poller(None)


@pytest.fixture(params=[True, False], ids=["poll-semantics", "select-semantics"])
def use_poll(request: pytest.FixtureRequest) -> bool:
    """3.11's two ways of delivering events: poll2() (hang-ups call handle_close) or select()."""
    return bool(request.param)


@pytest.fixture
def socket_map(request: pytest.FixtureRequest) -> Iterator[Dict[int, Any]]:
    """A fresh :class:`SocketMap`, released after the test (``helpers.release_map``:
    every channel closed, the map's loop and timers dropped).

    Parametrise it indirectly with ``"dict"`` for a plain dict map:
    ``@pytest.mark.parametrize("socket_map", ["SocketMap", "dict"], indirect=True)``.
    """
    kind = getattr(request, "param", "SocketMap")
    target: Dict[int, Any] = SocketMap() if kind == "SocketMap" else {}
    yield target
    release_map(target)


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    """Sockets made for one test (``sockets.pair()``, ``sockets.tcp_pair()`` or
    added by hand), all closed after it, whatever a channel did with them."""
    made = Sockets()
    yield made
    made.close_all()


@pytest.fixture
def pair(sockets: Sockets) -> Tuple[socket.socket, socket.socket]:
    """A connected ``socket.socketpair()``; both ends are closed after the test."""
    return sockets.pair()


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves an fd open or a thread running."""
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    threads_before = set(threading.enumerate())
    fds_before = _open_fds()
    yield
    leaked_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    for t in leaked_threads:
        t.join(timeout=5.0)
    leaked_threads = [t for t in leaked_threads if t.is_alive()]
    assert not leaked_threads, f"threads left running: {leaked_threads}"
    fds_after = _open_fds()
    leaked = sorted(set(fds_after) - set(fds_before))
    if leaked:
        import gc

        gc.collect()
        leaked = sorted(set(_open_fds()) - set(fds_before))
    assert not leaked, f"fds left open: {leaked} ({_describe(leaked)})"


def _describe(fds: List[int]) -> str:
    out = []
    for fd in fds:
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(str(fd))
    return ", ".join(out)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_leaks: skip the fd/thread leak check")
    config.addinivalue_line("markers", "soak: long load tests (bounded to about a minute)")
    config.addinivalue_line(
        "markers", "windows_rules: imposes the Windows rules itself (never skipped by --windows-rules)"
    )
    config.addinivalue_line(
        "markers", "posix_only(reason): tests what Windows lacks; skipped on Windows and by --windows-rules"
    )


# -- Windows rules (tests/windows_rules.py) ----------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--windows-rules",
        action="store_true",
        help="run every test under Windows' rules (or ASYNCIO_COMPAT_TEST_WINDOWS_RULES=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    # The Tk tests go last: Tcl starts a notifier thread of its own that lives
    # as long as the process, and a test that forks after it would fork a
    # multi-threaded process (Python 3.12+ warns, rightly).
    items.sort(key=lambda item: item.path.name == "test_tk.py")
    # on Windows itself the same tests skip: what the rules run here is what runs there
    if requested(config) or sys.platform == "win32":
        for item in items:
            reason = posix_only_reason(item)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _windows_rules_when_requested(request: pytest.FixtureRequest) -> None:
    # autouse fixtures are set up first, so poller_name already sees select alone
    if requested(request.config):
        request.getfixturevalue("windows_rules")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Skip reasons grouped, and whether the drop-in ran on Python 3.12+ (tests/skip_summary.py)."""
    from skip_summary import summary_lines

    lines = summary_lines(terminalreporter.stats)
    if lines:
        terminalreporter.section("skipped tests by reason; the drop-in on Python 3.12+")
        for line in lines:
            terminalreporter.write_line(line)
