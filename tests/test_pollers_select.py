"""select(): the FD_SETSIZE limit, and closed fds (EBADF for the whole call)."""

from __future__ import annotations

import errno
import os
import select
import socket
from typing import Any, Iterator, Tuple

import pytest
from fakes.support import events_of, wait_for

import pollers
from pollers import NVAL, READ, WRITE
from pollers._select import FD_SETSIZE

try:
    import resource
except ImportError:  # Windows: no fd limit to read, and no fd numbers above FD_SETSIZE to test
    resource = None  # type: ignore[assignment]

pytestmark = pytest.mark.timeout(30)

Pair = Tuple[socket.socket, socket.socket]


@pytest.fixture
def high_fd(pair: Pair) -> Iterator[int]:
    """The writer of ``pair`` dup2-ed onto a free fd above FD_SETSIZE."""
    if resource is None:
        pytest.skip("no resource module (Windows): socket handles are not small fd numbers there")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = next((fd for fd in range(FD_SETSIZE + 10, soft) if not _is_open(fd)), None)
    if target is None:
        pytest.skip(f"RLIMIT_NOFILE is {soft}: no fd above FD_SETSIZE ({FD_SETSIZE}) can be opened")
    os.dup2(pair[1].fileno(), target)
    try:
        yield target
    finally:
        os.close(target)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.posix_only("an fd number above FD_SETSIZE: Windows counts sockets, not fd numbers")
def test_select_refuses_an_fd_above_fd_setsize_at_register(high_fd: int) -> None:
    with pollers.get("select")() as p:
        with pytest.raises(ValueError, match=f"fd {high_fd} is out of range for select.*FD_SETSIZE"):
            p.register(high_fd, READ)
        assert high_fd not in p
        p.register(high_fd, 0)  # parked costs nothing, so it is allowed...
        with pytest.raises(ValueError, match="FD_SETSIZE"):
            p.modify(high_fd, WRITE)  # ...but asking for events is not
        assert p.get_mask(high_fd) == 0
        assert p.poll(0) == []


def test_other_backends_take_an_fd_above_fd_setsize(poller_name: str, high_fd: int) -> None:
    if poller_name == "select":
        pytest.skip("select's refusal is tested above")
    with pollers.get(poller_name)() as p:
        p.register(high_fd, WRITE)
        assert wait_for(p, high_fd, WRITE) & WRITE


def test_closed_fd_is_nval_with_the_others_events_in_the_same_call(pair: Pair) -> None:
    reader, writer = pair
    doomed, doomed_peer = socket.socketpair()
    with doomed_peer, pollers.get("select")() as p:
        p.register(doomed, READ)
        p.register(reader, READ)
        fd = doomed.fileno()
        doomed.close()
        writer.send(b"x")
        assert events_of(p, 5.0) == {fd: NVAL, reader.fileno(): READ}


def _select_failing_with(code: int) -> Any:
    def fake_select(*args: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return fake_select


@pytest.mark.posix_only("fstat() tells open fds from a failing select(); on Windows select() itself is asked")
def test_ebadf_with_every_fd_open_is_raised(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    # a kernel answer that cannot be provoked on demand: driven by a fake select()
    with pollers.get("select")() as p:
        p.register(pair[0], READ)
        monkeypatch.setattr(select, "select", _select_failing_with(errno.EBADF))
        with pytest.raises(OSError, match="every fd is open"):
            p.poll(0)


def test_other_select_errors_are_raised(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    with pollers.get("select")() as p:
        p.register(pair[0], READ)
        monkeypatch.setattr(select, "select", _select_failing_with(errno.EINVAL))
        with pytest.raises(OSError) as caught:
            p.poll(0)
        assert caught.value.errno == errno.EINVAL
