"""epoll: regular files (EPERM), kernel refusals, and the closed-fd sweep."""

from __future__ import annotations

import errno
import os
import select
import socket
import tempfile
import time
from typing import Tuple

import pytest
from fakes.support import events_of, quick

import pollers
from pollers import NVAL, PRI, READ, WRITE

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(not hasattr(select, "epoll"), reason="no epoll on this platform"),
    pytest.mark.posix_only("epoll, which Windows lacks"),
]

Pair = Tuple[socket.socket, socket.socket]


def slow_sweeping() -> pollers.Poller:
    """An epoll poller whose sweep, once done, does not come back during a test."""
    return quick(pollers.get("epoll"), interval=3600.0)()


def test_the_kernel_refuses_regular_files() -> None:
    # the fact the always-ready set works around
    with tempfile.TemporaryFile() as f, select.epoll() as ep, pytest.raises(PermissionError):
        ep.register(f.fileno(), select.EPOLLIN)


def test_regular_file_is_ready_without_waiting() -> None:
    with tempfile.TemporaryFile() as f, pollers.get("epoll")() as p:
        p.register(f, READ | WRITE)
        assert events_of(p, None) == {f.fileno(): READ | WRITE}
        p.modify(f, WRITE)
        assert events_of(p, None) == {f.fileno(): WRITE}
        p.unregister(f)
        assert len(p) == 0 and p.poll(0) == []


def test_regular_file_wanting_only_pri_does_not_spin() -> None:
    # poll(2) never reports PRI for a regular file; neither do we, and we wait
    with tempfile.TemporaryFile() as f, pollers.get("epoll")() as p:
        p.register(f, PRI)
        start = time.monotonic()
        assert p.poll(0.05) == []
        assert time.monotonic() - start >= 0.05


def test_closed_regular_file_is_nval_not_ready() -> None:
    with slow_sweeping() as p, tempfile.TemporaryFile() as f:
        p.register(f, READ)
        assert p.poll(0) == [(f.fileno(), READ)]  # the first sweep is done here
        fd = f.fileno()
        f.close()
        assert p.poll(0) == [(fd, NVAL)]
        p.unregister(fd)


def test_register_of_a_closed_fd_fails_and_leaves_no_trace() -> None:
    with pollers.get("epoll")() as p:
        a, b = socket.socketpair()
        fd = a.fileno()
        a.close()
        b.close()
        with pytest.raises(OSError) as caught:
            p.register(fd, READ)
        assert caught.value.errno == errno.EBADF and fd not in p


def test_between_sweeps_a_closed_socket_goes_unreported(pair: Pair) -> None:
    # the cost of the sweep is bounded by its interval, and so is its delay
    doomed, peer = socket.socketpair()
    with peer, slow_sweeping() as p:
        p.register(doomed, READ)
        assert p.poll(0) == []
        fd = doomed.fileno()
        doomed.close()
        assert p.poll(0.01) == []
        p.unregister(fd)


def test_a_blocking_wait_is_cut_short_by_the_sweep(pair: Pair) -> None:
    doomed, peer = socket.socketpair()
    with peer, quick(pollers.get("epoll"))() as p:
        p.register(doomed, READ)
        assert p.poll(0) == []
        fd = doomed.fileno()
        doomed.close()
        assert events_of(p, None) == {fd: NVAL}
        p.unregister(fd)
        assert fd not in p


def _placed_at(fd: int) -> Tuple[socket.socket, socket.socket]:
    """A socketpair whose first end has fd number ``fd``."""
    mine, peer = socket.socketpair()
    if peer.fileno() == fd:
        mine, peer = peer, mine
    if mine.fileno() != fd:
        os.dup2(mine.fileno(), fd)
        mine.close()
        mine = socket.socket(fileno=fd)
    return mine, peer


def test_unregister_after_a_regular_file_took_the_number(pair: Pair) -> None:
    with slow_sweeping() as p, tempfile.TemporaryFile() as f:
        fd = pair[0].fileno()
        p.register(fd, READ)
        os.dup2(f.fileno(), fd)  # the socket's number is a regular file's now
        p.unregister(fd)  # epoll_ctl says EPERM: nothing of ours is there
        assert fd not in p


def test_a_registration_kept_alive_by_a_dup_never_reports_under_its_number(pair: Pair) -> None:
    old, old_peer = pair
    with slow_sweeping() as p:
        epoll_fd = p.fileno()
        fd = old.fileno()
        p.register(fd, READ)
        kept = os.dup(fd)
        try:
            old.close()  # closed before it was unregistered: the kernel keeps it (dup)
            new, new_peer = _placed_at(fd)
            with new, new_peer:
                p.unregister(fd)  # ENOENT: the number names the new socket
                p.register(fd, READ)
                old_peer.send(b"for the old socket")
                assert events_of(p, 0.05) == {}
                new_peer.send(b"for the new one")
                assert events_of(p, 5.0) == {fd: READ}
                assert p.fileno() == epoll_fd  # rebuilt under the same number
        finally:
            os.close(kept)


def test_a_registration_made_while_the_set_is_rebuilt_is_kept(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rebuild (dup2 of a fresh epoll, then every fd of the table again)
    # can be joined by another thread's register() or a signal handler's
    # between the two steps: that fd is then in the new set and in the
    # table, and registering it again (EEXIST) must not fail the wait.
    gone, gone_peer = socket.socketpair()
    late, late_peer = socket.socketpair()
    real_dup2 = os.dup2
    with slow_sweeping() as p, gone_peer, late, late_peer:
        p.register(gone.fileno(), READ)
        number = gone.fileno()
        gone.close()  # closed before it was unregistered
        p.unregister(number)  # EBADF: the set is rebuilt before the next wait

        def dup2_then_register(source: int, target: int, inheritable: bool = True) -> int:
            done = real_dup2(source, target, inheritable)
            monkeypatch.setattr(os, "dup2", real_dup2)
            p.register(late.fileno(), READ)  # in the new set, and in the table
            return done

        monkeypatch.setattr(os, "dup2", dup2_then_register)
        late_peer.send(b"x")
        assert events_of(p, 5.0) == {late.fileno(): READ}
        p.register(pair[0].fileno(), READ)
        pair[1].send(b"y")
        assert events_of(p, 5.0) == {late.fileno(): READ, pair[0].fileno(): READ}
