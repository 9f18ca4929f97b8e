"""The poller contract, run against every backend.

``TestRealBackends`` runs it on each backend of this platform (the
``poller_name`` fixture of conftest.py; the others show as skips).
``TestFakeBackends`` runs it on the kqueue and /dev/poll backends over the
fakes in tests/fakes, installed in the ``select`` module: the real kernels
are absent on Linux, and the fakes really wait, so the same tests apply.

Error branches a kernel will not produce on demand (a refused register, an
unregister failing with EPERM) are driven by a SyscallSpy between the backend
and its kernel object; the tests say so.  select() has no kernel object and
makes no registration syscall: those tests skip for it, and
test_pollers_select.py drives its one refusal (FD_SETSIZE).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from tempfile import TemporaryFile
from typing import Callable, Iterator, List, Optional, Set, Tuple, Type

import pytest
from fakes import install_devpoll, install_kqueue, install_spy
from fakes.spy import Classifier, SyscallSpy, by_method, kqueue_kind
from fakes.support import events_of, quick, tcp_pair, wait_for

import pollers
from pollers import ERR, HUP, NVAL, PRI, READ, WRITE, Poller
from pollers._devpoll import DevpollPoller
from pollers._kqueue import KqueuePoller

pytestmark = pytest.mark.timeout(30)

needs_alarms = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM and setitimer()")

Pair = Tuple[socket.socket, socket.socket]

# Calls on a kernel object that wait or manage the object, not change interest.
_NOT_CHANGES = {"poll", "wait", "fileno", "close", "closed"}


@dataclass
class Backend:
    """One backend under test and where its registration syscalls go."""

    label: str
    cls: Type[Poller]
    # attribute of the select module whose object receives the syscalls
    kernel: Optional[str]
    classify: Classifier = by_method
    register_kind: str = "register"
    unregister_kind: str = "unregister"

    def make(self) -> Poller:
        return self.cls()


def real_backend(name: str) -> Backend:
    cls = quick(pollers.get(name))
    if name == "kqueue":
        return Backend(name, cls, "kqueue", kqueue_kind, "add", "delete")
    return Backend(name, cls, None if name == "select" else name)


@pytest.fixture
def spied(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tuple[Poller, SyscallSpy]]:
    """A poller whose kernel object is wrapped in a SyscallSpy."""
    if backend.kernel is None:
        pytest.skip("select keeps its interest sets in user space: no registration syscall")
    spies = install_spy(monkeypatch, backend.kernel, backend.classify)
    with backend.make() as poller:
        yield poller, spies[-1]


def changes(spy: SyscallSpy) -> List[str]:
    return [kind for kind in spy.calls if kind not in _NOT_CHANGES]


class Contract:
    """What every backend promises; subclasses provide the ``backend`` fixture."""

    # -- events ---------------------------------------------------------------

    def test_read_is_reported_when_data_arrives(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        with backend.make() as p:
            p.register(reader, READ)
            assert reader.fileno() not in events_of(p)
            writer.send(b"x")
            assert wait_for(p, reader.fileno(), READ) & READ

    def test_write_is_reported_on_a_fresh_socket(self, backend: Backend, pair: Pair) -> None:
        with backend.make() as p:
            p.register(pair[1], WRITE)
            events = wait_for(p, pair[1].fileno(), WRITE)
            assert events & WRITE and not events & READ

    def test_each_fd_is_reported_once_with_all_its_events(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        writer.send(b"x")
        with backend.make() as p:
            p.register(reader, READ | WRITE)
            assert events_of(p, 5.0)[reader.fileno()] & (READ | WRITE) == READ | WRITE

    def test_discard_unregisters_and_ignores_an_unknown_fd(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        writer.send(b"x")
        with backend.make() as p:
            p.discard(reader.fileno())  # never registered: nothing happens
            p.register(reader, READ)
            p.discard(reader.fileno())
            p.discard(reader.fileno())
            assert reader not in p and events_of(p) == {}

    def test_modify_changes_what_is_reported(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        with backend.make() as p:
            p.register(reader, WRITE)
            assert wait_for(p, reader.fileno(), WRITE) & WRITE
            p.modify(reader, READ)
            assert p.get_mask(reader) == READ
            assert reader.fileno() not in events_of(p)
            writer.send(b"x")
            assert wait_for(p, reader.fileno(), READ) & (READ | WRITE) == READ

    def test_zero_mask_parks_the_fd(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        writer.send(b"x")
        with backend.make() as p:
            p.register(reader, 0)
            assert reader in p and p.get_mask(reader) == 0 and len(p) == 1
            assert events_of(p) == {}
            p.modify(reader, READ)
            assert wait_for(p, reader.fileno(), READ) & READ
            p.modify(reader, 0)
            assert events_of(p) == {}

    def test_a_parked_hung_up_socket_stays_quiet(self, backend: Backend, pair: Pair) -> None:
        # epoll keeps reporting EPOLLHUP for a hung-up fd left with an empty mask
        reader, writer = pair
        with backend.make() as p:
            p.register(reader, READ)
            writer.close()
            assert wait_for(p, reader.fileno(), READ | HUP)
            p.modify(reader, 0)
            assert events_of(p, 0.01) == {}

    def test_unregister_stops_reports_and_frees_the_fd(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        writer.send(b"x")
        with backend.make() as p:
            p.register(reader, READ)
            p.unregister(reader)
            assert reader not in p and len(p) == 0
            assert events_of(p) == {}
            p.register(reader, READ)
            assert wait_for(p, reader.fileno(), READ)

    def test_update_registers_then_modifies(self, backend: Backend, pair: Pair) -> None:
        reader, _ = pair
        with backend.make() as p:
            p.update(reader, READ)
            assert p.get_mask(reader) == READ
            p.update(reader, READ | WRITE)
            assert p.get_mask(reader.fileno()) == READ | WRITE
            p.update(reader, 0)
            assert p.get_mask(reader) == 0 and reader in p

    def test_peer_close_is_reported_to_a_reader(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        with backend.make() as p:
            p.register(reader, READ)
            writer.close()
            assert wait_for(p, reader.fileno(), READ | HUP)
            assert reader.recv(1) == b""

    def test_peer_close_is_reported_to_a_writer(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        with backend.make() as p:
            p.register(reader, WRITE)
            writer.close()
            assert wait_for(p, reader.fileno(), WRITE | HUP | ERR)

    def test_urgent_data_is_reported_as_pri(self, backend: Backend) -> None:
        if backend.cls.name == "kqueue":
            pytest.skip("kqueue has no urgent-data filter: PRI folds into READ (pollers/_kqueue.py)")
        client, server = tcp_pair()
        try:
            with backend.make() as p:
                p.register(server, PRI)
                client.send(b"!", socket.MSG_OOB)
                assert wait_for(p, server.fileno(), PRI) & PRI
        finally:
            client.close()
            server.close()

    def test_many_fds_report_only_the_ready_ones(self, backend: Backend) -> None:
        pairs = [socket.socketpair() for _ in range(40)]
        try:
            with backend.make() as p:
                for reader, _ in pairs:
                    p.register(reader, READ)
                for _, writer in pairs[::3]:
                    writer.send(b"x")
                expected = {reader.fileno() for reader, _ in pairs[::3]}
                assert _collect(p, expected) == expected
        finally:
            for reader, writer in pairs:
                reader.close()
                writer.close()

    @pytest.mark.posix_only("polls a regular file: Windows' select() takes sockets only")
    def test_regular_files_are_always_ready(self, backend: Backend) -> None:
        with TemporaryFile() as f, backend.make() as p:
            p.register(f, READ | WRITE)
            assert events_of(p, None)[f.fileno()] & (READ | WRITE) == READ | WRITE
            p.modify(f, READ)
            assert events_of(p, None)[f.fileno()] & (READ | WRITE) == READ

    # -- fds closed behind the poller's back ------------------------------------

    def test_closed_fd_is_reported_as_nval(self, backend: Backend, pair: Pair) -> None:
        reader, _ = pair
        with backend.make() as p:
            p.register(reader, READ)
            assert events_of(p) == {}
            fd = reader.fileno()
            reader.close()
            # a long wait: epoll and kqueue find the closed fd by their sweep
            assert wait_for(p, fd, NVAL) & NVAL
            p.unregister(fd)
            assert fd not in p

    def test_closed_fd_does_not_hide_other_events(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        doomed, doomed_peer = socket.socketpair()
        with doomed_peer, backend.make() as p:
            p.register(doomed, READ)
            p.register(reader, READ)
            fd = doomed.fileno()
            doomed.close()
            writer.send(b"x")
            assert wait_for(p, fd, NVAL) and wait_for(p, reader.fileno(), READ)
            p.unregister(fd)

    def test_unregister_of_a_closed_fd_is_tolerated(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        with backend.make() as p:
            p.register(reader, READ | WRITE)
            p.register(writer, 0)
            fds = reader.fileno(), writer.fileno()
            reader.close()
            writer.close()
            for fd in fds:
                p.unregister(fd)
            assert len(p) == 0

    # -- timeouts and signals ---------------------------------------------------

    def test_sub_millisecond_timeout_really_waits(self, backend: Backend, pair: Pair) -> None:
        with backend.make() as p:
            for registered in (False, True):
                if registered:
                    p.register(pair[0], READ)
                start = time.monotonic()
                assert p.poll(0.0005) == []
                assert time.monotonic() - start >= 0.0005

    @pytest.mark.timeout(10)
    def test_zero_and_negative_timeouts_return_at_once(self, backend: Backend, pair: Pair) -> None:
        # with a blocking meaning for -1 (poll(2)) this test would hang
        with backend.make() as p:
            p.register(pair[0], READ)
            assert p.poll(0) == [] and p.poll(-1) == [] and p.poll(-0.5) == []

    def test_huge_timeout_does_not_overflow(self, backend: Backend, pair: Pair) -> None:
        with backend.make() as p:
            p.register(pair[1], WRITE)
            assert events_of(p, 1e12)[pair[1].fileno()] & WRITE

    def test_bad_timeouts_are_refused(self, backend: Backend) -> None:
        with backend.make() as p:
            with pytest.raises(TypeError, match="timeout"):
                p.poll("1")  # type: ignore[arg-type,unused-ignore]
            with pytest.raises(ValueError, match="NaN"):
                p.poll(math.nan)

    def test_none_blocks_until_an_event(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair
        sender = threading.Thread(target=writer.send, args=(b"x",))
        with backend.make() as p:
            p.register(reader, READ)
            sender.start()
            try:
                assert events_of(p, None) == {reader.fileno(): READ}
            finally:
                sender.join()

    @needs_alarms
    def test_signal_during_poll_does_not_escape(self, backend: Backend, pair: Pair) -> None:
        with backend.make() as p, _alarms(lambda: None) as hits:
            p.register(pair[0], READ)
            start = time.monotonic()
            assert p.poll(0.2) == []
            elapsed = time.monotonic() - start
        assert hits and elapsed >= 0.2

    @needs_alarms
    def test_signal_during_blocking_poll_resumes_the_wait(self, backend: Backend, pair: Pair) -> None:
        reader, writer = pair

        def third_alarm_sends() -> None:
            if len(hits) == 3:
                writer.send(b"x")

        with backend.make() as p, _alarms(third_alarm_sends) as hits:
            p.register(reader, READ)
            assert events_of(p, None) == {reader.fileno(): READ}
        assert len(hits) >= 3

    # -- bad input -------------------------------------------------------------------

    @pytest.mark.parametrize("bad", ["3", 2.0, object(), None])
    def test_register_of_a_non_fd_is_a_type_error(self, backend: Backend, bad: object) -> None:
        with backend.make() as p:
            with pytest.raises(TypeError, match="fileno"):
                p.register(bad, READ)  # type: ignore[arg-type,unused-ignore]
            assert len(p) == 0

    def test_negative_fd_is_a_value_error(self, backend: Backend) -> None:
        with backend.make() as p:
            with pytest.raises(ValueError, match="invalid file descriptor -1"):
                p.register(-1, READ)
            closed = socket.socket()
            closed.close()
            with pytest.raises(ValueError, match="invalid file descriptor"):
                p.register(closed, READ)

    @pytest.mark.parametrize("mask", [ERR, HUP, NVAL, READ | ERR, 0x100, -1, "1"])
    def test_invalid_masks_are_refused(self, backend: Backend, pair: Pair, mask: int) -> None:
        with backend.make() as p:
            with pytest.raises(ValueError, match="event mask"):
                p.register(pair[0], mask)
            assert pair[0] not in p
            p.register(pair[0], READ)
            with pytest.raises(ValueError, match="event mask"):
                p.modify(pair[0], mask)
            assert p.get_mask(pair[0]) == READ

    def test_duplicate_register_is_a_key_error(self, backend: Backend, pair: Pair) -> None:
        with backend.make() as p:
            p.register(pair[0], READ)
            with pytest.raises(KeyError, match="already registered"):
                p.register(pair[0].fileno(), WRITE)
            assert p.get_mask(pair[0]) == READ

    def test_unknown_fd_is_a_key_error(self, backend: Backend, pair: Pair) -> None:
        with backend.make() as p:
            with pytest.raises(KeyError, match="not registered"):
                p.modify(pair[0], READ)
            with pytest.raises(KeyError, match="not registered"):
                p.unregister(pair[0])
            with pytest.raises(KeyError):
                p.get_mask(pair[0])
            assert pair[0] not in p and "junk" not in p

    def test_use_after_close_is_a_value_error(self, backend: Backend, pair: Pair) -> None:
        p = backend.make()
        p.register(pair[0], READ)
        p.close()
        p.close()  # a second close is harmless
        assert p.closed and len(p) == 0
        calls: List[Callable[[], object]] = [
            lambda: p.register(pair[1], READ),
            lambda: p.modify(pair[0], WRITE),
            lambda: p.unregister(pair[0]),
            lambda: p.poll(0),
        ]
        for call in calls:
            with pytest.raises(ValueError, match="closed"):
                call()

    def test_context_manager_closes_the_kernel_object(self, backend: Backend) -> None:
        with backend.make() as p:
            handle = p.fileno()
            # epoll, kqueue and /dev/poll hold an fd of their own; select and poll do not
            assert (handle >= 0) == (backend.cls.name in {"epoll", "kqueue", "devpoll"})
            assert "0 fds" in repr(p)
        assert p.closed and "closed" in repr(p)
        if handle >= 0:
            with pytest.raises(OSError):
                os.fstat(handle)

    # -- syscalls: only on change, bookkeeping only after success -------------------

    def test_an_unchanged_mask_costs_no_syscall(
        self, backend: Backend, spied: Tuple[Poller, SyscallSpy], pair: Pair
    ) -> None:
        p, spy = spied
        p.register(pair[0], READ)
        assert changes(spy) == [backend.register_kind]
        p.modify(pair[0], READ)
        p.update(pair[0], READ)
        assert len(changes(spy)) == 1
        p.modify(pair[0], 0)
        p.modify(pair[0], 0)
        p.unregister(pair[0])  # parked: nothing in the kernel to remove
        assert changes(spy) == [backend.register_kind, backend.unregister_kind]

    def test_set_mask_registers_modifies_and_skips_unchanged_masks(
        self, backend: Backend, spied: Tuple[Poller, SyscallSpy], pair: Pair
    ) -> None:
        p, spy = spied
        fd = pair[0].fileno()
        p.set_mask(fd, READ)
        p.set_mask(fd, READ)
        assert p.get_mask(fd) == READ and changes(spy) == [backend.register_kind]
        p.set_mask(fd, 0)
        p.set_mask(fd, 0)
        assert fd in p and changes(spy) == [backend.register_kind, backend.unregister_kind]
        with pytest.raises(ValueError, match="event mask"):
            p.set_mask(fd, HUP)

    def test_a_refused_register_leaves_no_trace(
        self, backend: Backend, spied: Tuple[Poller, SyscallSpy], pair: Pair
    ) -> None:
        p, spy = spied
        spy.fail_next(backend.register_kind, errno.ENOMEM)
        with pytest.raises(OSError) as caught:
            p.register(pair[0], READ)
        assert caught.value.errno == errno.ENOMEM
        assert pair[0] not in p and len(p) == 0
        p.register(pair[0], READ)  # no "already registered": the table stayed clean
        pair[1].send(b"x")
        assert wait_for(p, pair[0].fileno(), READ)

    def test_a_refused_unpark_keeps_the_fd_parked(
        self, backend: Backend, spied: Tuple[Poller, SyscallSpy], pair: Pair
    ) -> None:
        p, spy = spied
        p.register(pair[0], 0)
        spy.fail_next(backend.register_kind, errno.ENOSPC)
        with pytest.raises(OSError):
            p.modify(pair[0], READ)
        assert p.get_mask(pair[0]) == 0
        p.modify(pair[0], READ)
        assert p.get_mask(pair[0]) == READ

    def test_a_timed_wait_is_one_kernel_wait_not_a_spin(
        self, spied: Tuple[Poller, SyscallSpy], pair: Pair
    ) -> None:
        p, spy = spied
        p.register(pair[0], READ)
        assert p.poll(0.01) == []
        # one wait; a second only if the kernel woke a hair early.  A timeout
        # passed in the wrong unit or rounded down would show as many waits.
        assert 1 <= spy.count("poll", "wait") <= 2

    @pytest.mark.parametrize("code", [errno.ENOENT, errno.EBADF])
    def test_unregister_tolerates_a_kernel_that_forgot_the_fd(
        self, backend: Backend, spied: Tuple[Poller, SyscallSpy], pair: Pair, code: int
    ) -> None:
        p, spy = spied
        p.register(pair[0], READ)
        spy.fail_next(backend.unregister_kind, code)
        p.unregister(pair[0])
        assert pair[0] not in p

    @pytest.mark.parametrize("code", [errno.EPERM, errno.ENOMEM, errno.EINVAL])
    def test_unregister_reraises_other_errors(
        self, backend: Backend, spied: Tuple[Poller, SyscallSpy], pair: Pair, code: int
    ) -> None:
        if backend.label == "epoll" and code == errno.EPERM:
            pytest.skip("epoll: EPERM means the number is a regular file now (test_pollers_epoll.py)")
        p, spy = spied
        p.register(pair[0], READ)
        spy.fail_next(backend.unregister_kind, code)
        with pytest.raises(OSError) as caught:
            p.unregister(pair[0])
        assert caught.value.errno == code
        assert p.get_mask(pair[0]) == READ
        p.unregister(pair[0])
        assert pair[0] not in p


class TestRealBackends(Contract):
    """The contract on this platform's own kernels."""

    @pytest.fixture
    def backend(self, poller_name: str) -> Backend:
        return real_backend(poller_name)


@pytest.mark.posix_only("the fake kqueue and /dev/poll kernels, built on poll(2) and fstat()")
class TestFakeBackends(Contract):
    """The contract on kqueue and /dev/poll, over the fakes of tests/fakes."""

    @pytest.fixture(params=["kqueue-fake", "kqueue-fake-freebsd", "devpoll-fake"])
    def backend(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Backend:
        label = str(request.param)
        if label.startswith("kqueue"):
            install_kqueue(monkeypatch, "freebsd" if label.endswith("freebsd") else "macos")
            return Backend(label, quick(KqueuePoller), "kqueue", kqueue_kind, "add", "delete")
        install_devpoll(monkeypatch)
        return Backend(label, quick(DevpollPoller), "devpoll")


def _collect(p: Poller, expected: Set[int], limit: float = 5.0) -> Set[int]:
    """Poll until every fd in ``expected`` was seen with READ; return all READ fds seen."""
    seen: Set[int] = set()
    deadline = time.monotonic() + limit
    while not expected <= seen and time.monotonic() < deadline:
        seen |= {fd for fd, ev in p.poll(deadline - time.monotonic()) if ev & READ}
    return seen


@contextlib.contextmanager
def _alarms(action: Callable[[], None], limit: float = 10.0) -> Iterator[List[float]]:
    """SIGALRM every 10 ms while inside; each runs ``action`` and is recorded.

    SIGALRM is also what pytest-timeout uses: its timer is saved and put
    back on the way out, and while inside, a wait still running after
    ``limit`` seconds is failed from the handler (an exception raised by a
    handler does leave poll()).
    """
    hits: List[float] = []
    start = time.monotonic()

    def handler(signum: int, frame: object) -> None:
        hits.append(time.monotonic())
        if hits[-1] - start > limit:
            pytest.fail(f"poll() still waiting after {limit}s of alarms")
        action()

    previous = signal.signal(signal.SIGALRM, handler)
    saved_delay, saved_interval = signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
    try:
        yield hits
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
        if saved_delay:
            spent = time.monotonic() - start
            signal.setitimer(signal.ITIMER_REAL, max(saved_delay - spent, 0.001), saved_interval)
