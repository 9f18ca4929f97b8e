"""kqueue: the backend's translation and error paths, and the fake's fidelity.

kqueue does not exist on Linux: these tests run the backend over the fake in
tests/fakes/kqueue.py, installed where pollers/_kqueue.py looks up
``select.kqueue``, ``select.kevent`` and the KQ_* constants.  The first half
checks that the fake behaves as the BSD kernels do (so that passing against it
means something); the second half checks the backend against it.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from tempfile import TemporaryFile
from types import FrameType
from typing import Iterator, List, Optional, Tuple

import fakes.kqueue
import pytest
from fakes import FakeKevent, FakeKqueue, install_kqueue, install_spy
from fakes.kqueue import (
    KQ_EV_ADD,
    KQ_EV_DELETE,
    KQ_EV_EOF,
    KQ_EV_ERROR,
    KQ_FILTER_READ,
    KQ_FILTER_WRITE,
)
from fakes.spy import SyscallSpy, kqueue_kind
from fakes.support import events_of, quick, wait_for

from pollers import ERR, HUP, NVAL, PRI, READ, WRITE
from pollers._kqueue import KqueuePoller

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.posix_only("kqueue emulated by a fake kernel built on poll(2) and fstat()"),
]

Pair = Tuple[socket.socket, socket.socket]
R, W = KQ_FILTER_READ, KQ_FILTER_WRITE


@pytest.fixture(params=["macos", "freebsd"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def kq(mode: str) -> Iterator[FakeKqueue]:
    fake = FakeKqueue(mode)
    yield fake
    fake.close()


def change(fd: int, kfilter: int, flags: int) -> FakeKevent:
    return FakeKevent(fd, filter=kfilter, flags=flags)


# -- the fake behaves like the kernels ----------------------------------------


def test_fake_takes_one_change_per_call_on_macos_only(kq: FakeKqueue, mode: str, pair: Pair) -> None:
    fd = pair[0].fileno()
    both = [change(fd, R, KQ_EV_ADD), change(fd, W, KQ_EV_ADD)]
    if mode == "macos":
        with pytest.raises(OSError) as caught:
            kq.control(both, 0, 0)
        assert caught.value.errno == errno.EINVAL and kq.pairs() == set()
    else:
        kq.control(both, 0, 0)
        assert kq.pairs() == {(fd, R), (fd, W)}


def test_fake_applies_its_changes_before_any_signal_handler_runs(
    kq: FakeKqueue, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kevent() is one system call: a signal arriving while it applies the
    # changes is handled after them.  The fake is Python code; unless it
    # holds signals back, a handler that calls it again changes the tables
    # it is walking (RuntimeError: dictionary changed size during iteration).
    order: List[str] = []
    raised = []

    def identity_and_a_signal(fd: int) -> Tuple[int, int]:
        if not raised:
            raised.append(True)
            signal.raise_signal(signal.SIGUSR1)
        order.append(f"applied {fd}")
        return real_identity(fd)

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        order.append("handler")
        kq.control([change(pair[1].fileno(), R, KQ_EV_ADD)], 0)

    real_identity = fakes.kqueue.identity
    monkeypatch.setattr(fakes.kqueue, "identity", identity_and_a_signal)
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        kq.control([change(pair[0].fileno(), R, KQ_EV_ADD)], 0)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert order == [f"applied {pair[0].fileno()}", "handler", f"applied {pair[1].fileno()}"]
    assert kq.pairs() == {(pair[0].fileno(), R), (pair[1].fileno(), R)}


def test_fake_delete_of_an_unknown_pair_is_enoent(kq: FakeKqueue, pair: Pair) -> None:
    with pytest.raises(OSError) as caught:
        kq.control([change(pair[0].fileno(), R, KQ_EV_DELETE)], 0, 0)
    assert caught.value.errno == errno.ENOENT


def test_fake_delete_after_close_answers_like_each_kernel(kq: FakeKqueue, mode: str) -> None:
    a, b = socket.socketpair()
    fd = a.fileno()
    kq.control([change(fd, R, KQ_EV_ADD)], 0, 0)
    a.close()
    b.close()
    assert kq.pairs() == set(), "close(2) drops the fd's filters"
    with pytest.raises(OSError) as caught:
        kq.control([change(fd, R, KQ_EV_DELETE)], 0, 0)
    assert caught.value.errno == (errno.ENOENT if mode == "macos" else errno.EBADF)


def test_fake_add_of_a_closed_fd_is_ebadf_or_an_ev_error_event(kq: FakeKqueue) -> None:
    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    b.close()
    with pytest.raises(OSError) as caught:
        kq.control([change(fd, R, KQ_EV_ADD)], 0, 0)
    assert caught.value.errno == errno.EBADF
    # with room in the event list the kernel reports the failure as an event
    (event,) = kq.control([change(fd, R, KQ_EV_ADD)], 1, 0)
    assert event.flags & KQ_EV_ERROR and event.data == errno.EBADF and event.ident == fd


def test_fake_tells_a_reused_fd_number_from_the_old_file(kq: FakeKqueue) -> None:
    old = socket.socket()
    fd = old.fileno()
    kq.control([change(fd, R, KQ_EV_ADD)], 0, 0)
    old.close()
    with socket.socket() as new:
        if new.fileno() != fd:
            pytest.skip("the kernel did not hand out the same fd number again")
        assert kq.pairs() == set()


def test_fake_reports_eof_on_the_write_filter(kq: FakeKqueue, pair: Pair) -> None:
    reader, writer = pair
    kq.control([change(reader.fileno(), W, KQ_EV_ADD)], 0, 0)
    writer.close()
    (event,) = kq.control(None, 4, 5.0)
    assert event.filter == W and event.flags & KQ_EV_EOF


def test_fake_vnode_read_filter_fires_only_before_the_end(kq: FakeKqueue) -> None:
    with TemporaryFile() as f:
        f.write(b"abc")
        f.flush()
        fd = f.fileno()
        kq.control([change(fd, R, KQ_EV_ADD)], 0, 0)
        kq.control([change(fd, W, KQ_EV_ADD)], 0, 0)
        f.seek(0)
        found = {(kev.filter, kev.data) for kev in kq.control(None, 4, 0)}
        assert found == {(R, 3), (W, 0)}
        f.seek(0, os.SEEK_END)
        assert [kev.filter for kev in kq.control(None, 4, 0)] == [W]


def test_fake_waits_in_seconds_and_checks_its_arguments(kq: FakeKqueue, pair: Pair) -> None:
    kq.control([change(pair[0].fileno(), R, KQ_EV_ADD)], 0, 0)
    assert kq.control(None, 1, 0.001) == []
    assert kq.timeouts == [0.001]
    with pytest.raises(ValueError, match="timeout"):
        kq.control(None, 1, -1.0)
    with pytest.raises(ValueError, match="eventlist"):
        kq.control(None, -1, 0)
    with pytest.raises(TypeError, match="kevent"):
        kq.control([("not", "a kevent")], 0, 0)
    kq.close()
    with pytest.raises(ValueError, match="closed kqueue"):
        kq.control(None, 1, 0)


# -- the backend over the fake ---------------------------------------------------


@pytest.fixture
def fakes_made(monkeypatch: pytest.MonkeyPatch, mode: str) -> List[FakeKqueue]:
    return install_kqueue(monkeypatch, mode)


@pytest.fixture
def poller(fakes_made: List[FakeKqueue]) -> Iterator[KqueuePoller]:
    with quick(KqueuePoller)() as p:
        yield p


def test_each_filter_change_goes_in_a_call_of_its_own(
    poller: KqueuePoller, fakes_made: List[FakeKqueue], pair: Pair
) -> None:
    fd = pair[0].fileno()
    poller.register(fd, READ | WRITE)  # the macos fake raises EINVAL for two per call
    kq = fakes_made[-1]
    assert [(c.ident, c.filter, c.flags) for c in kq.changes] == [(fd, R, KQ_EV_ADD), (fd, W, KQ_EV_ADD)]
    assert kq.pairs() == {(fd, R), (fd, W)}


def test_modify_adds_and_deletes_filters(
    poller: KqueuePoller, fakes_made: List[FakeKqueue], pair: Pair
) -> None:
    fd = pair[0].fileno()
    kq = fakes_made[-1]
    poller.register(fd, READ)
    poller.modify(fd, WRITE)
    assert kq.pairs() == {(fd, W)}
    poller.modify(fd, 0)
    assert kq.pairs() == set() and poller.get_mask(fd) == 0
    poller.modify(fd, READ | WRITE)
    poller.unregister(fd)
    assert kq.pairs() == set() and fd not in poller


def test_pri_folds_into_the_read_filter(
    poller: KqueuePoller, fakes_made: List[FakeKqueue], pair: Pair
) -> None:
    reader, writer = pair
    kq = fakes_made[-1]
    poller.register(reader, PRI)
    assert kq.pairs() == {(reader.fileno(), R)}
    calls = len(kq.changes)
    poller.modify(reader, READ | PRI)  # same filters: no kevent() call at all
    assert len(kq.changes) == calls and poller.get_mask(reader) == READ | PRI
    writer.send(b"x")
    assert wait_for(poller, reader.fileno(), READ) == READ


def test_write_filter_eof_is_reported_as_hup(poller: KqueuePoller, pair: Pair) -> None:
    reader, writer = pair
    poller.register(reader, WRITE)
    writer.close()
    assert wait_for(poller, reader.fileno(), HUP) == WRITE | HUP


def test_read_filter_eof_is_reported_as_read(poller: KqueuePoller, pair: Pair) -> None:
    reader, writer = pair
    poller.register(reader, READ)
    writer.close()
    assert wait_for(poller, reader.fileno(), READ) == READ


def test_ev_error_is_reported_as_err(poller: KqueuePoller, fakes_made: List[FakeKqueue], pair: Pair) -> None:
    fd = pair[0].fileno()
    poller.register(fd, READ)
    fakes_made[-1].queue_event(FakeKevent(fd, R, KQ_EV_ADD | KQ_EV_ERROR, data=errno.EBADF))
    assert events_of(poller, 5.0) == {fd: READ | ERR}


def test_eof_with_a_socket_error_is_reported_as_err(
    poller: KqueuePoller, fakes_made: List[FakeKqueue], pair: Pair
) -> None:
    # a refused connect: EV_EOF on the write filter, the socket error in fflags
    fd = pair[0].fileno()
    poller.register(fd, WRITE)
    kev = FakeKevent(fd, W, KQ_EV_ADD | KQ_EV_EOF, fflags=errno.ECONNREFUSED)
    fakes_made[-1].queue_event(kev)
    assert events_of(poller, 5.0)[fd] == WRITE | HUP | ERR


def test_every_ready_filter_fits_in_one_wait(poller: KqueuePoller) -> None:
    pairs = [socket.socketpair() for _ in range(5)]
    try:
        for reader, writer in pairs:
            writer.send(b"x")
            poller.register(reader, READ | WRITE)
        found = events_of(poller, 5.0)
        assert found == {reader.fileno(): READ | WRITE for reader, _ in pairs}
    finally:
        for reader, writer in pairs:
            reader.close()
            writer.close()


def test_timeouts_reach_kevent_in_seconds(
    poller: KqueuePoller, fakes_made: List[FakeKqueue], pair: Pair
) -> None:
    poller.register(pair[0], READ)
    assert poller.poll(0.0005) == []
    assert poller.poll(0) == []
    waits = fakes_made[-1].timeouts
    # seconds as a float: not milliseconds (0.5), not rounded down to 0
    assert waits[0] == pytest.approx(0.0005, abs=1e-6) and waits[-1] == 0.0


def test_closed_fd_is_swept_and_its_delete_tolerated(
    poller: KqueuePoller, fakes_made: List[FakeKqueue]
) -> None:
    a, b = socket.socketpair()
    fd = a.fileno()
    poller.register(a, READ | WRITE)
    a.close()
    b.close()
    assert wait_for(poller, fd, NVAL) == NVAL
    poller.unregister(fd)  # both deletes fail with ENOENT (macos) or EBADF (freebsd)
    kq = fakes_made[-1]
    assert fd not in poller and kq.pairs() == set()
    assert [c.flags for c in kq.changes[-2:]] == [KQ_EV_DELETE, KQ_EV_DELETE]


def test_a_regular_file_at_its_end_is_still_readable(
    poller: KqueuePoller, fakes_made: List[FakeKqueue]
) -> None:
    # poll(2) semantics: a file_dispatcher must get READ to read b"" and close
    with TemporaryFile() as f:
        poller.register(f, READ | WRITE)
        assert fakes_made[-1].pairs() == set(), "regular files stay out of the kqueue"
        assert events_of(poller, None) == {f.fileno(): READ | WRITE}
        poller.modify(f, READ)
        assert events_of(poller, None) == {f.fileno(): READ}
        poller.unregister(f)
        assert len(poller) == 0


def test_a_closed_regular_file_is_nval(poller: KqueuePoller) -> None:
    with TemporaryFile() as f:
        fd = f.fileno()
        poller.register(f, READ)
    assert events_of(poller, None) == {fd: NVAL}
    poller.unregister(fd)


@pytest.fixture
def spy(
    fakes_made: List[FakeKqueue], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Tuple[KqueuePoller, SyscallSpy]]:
    spies = install_spy(monkeypatch, "kqueue", kqueue_kind)
    with quick(KqueuePoller)() as p:
        yield p, spies[-1]


def test_a_failed_second_add_undoes_the_first(spy: Tuple[KqueuePoller, SyscallSpy], pair: Pair) -> None:
    poller, kqspy = spy
    kqspy.fail_next("add", errno.ENOMEM, skip=1)
    with pytest.raises(OSError, match="memory"):
        poller.register(pair[0], READ | WRITE)
    assert pair[0] not in poller and kqspy.target.pairs() == set()


def test_a_failed_delete_in_modify_undoes_the_add(spy: Tuple[KqueuePoller, SyscallSpy], pair: Pair) -> None:
    poller, kqspy = spy
    fd = pair[0].fileno()
    poller.register(fd, READ)
    kqspy.fail_next("delete", errno.EPERM)
    with pytest.raises(PermissionError):
        poller.modify(fd, WRITE)
    assert poller.get_mask(fd) == READ and kqspy.target.pairs() == {(fd, R)}
