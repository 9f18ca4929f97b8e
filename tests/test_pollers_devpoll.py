"""/dev/poll: the backend's translation and error paths, and the fake's fidelity.

/dev/poll exists only on Solaris and illumos: these tests run the backend
over the fake in tests/fakes/devpoll.py, installed as ``select.devpoll``.
"""

from __future__ import annotations

import select
import socket
from typing import Iterator, List, Tuple

import pytest
from fakes import FakeDevpoll, install_devpoll
from fakes.devpoll import POLLREMOVE
from fakes.support import events_of, quick, wait_for

from pollers import NVAL, READ, WRITE
from pollers._devpoll import DevpollPoller

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.posix_only("/dev/poll emulated by a fake kernel built on poll(2) and fstat()"),
]

Pair = Tuple[socket.socket, socket.socket]


@pytest.fixture
def dp() -> Iterator[FakeDevpoll]:
    fake = FakeDevpoll()
    yield fake
    fake.close()


# -- the fake behaves like /dev/poll -----------------------------------------------


def test_fake_ors_a_second_register_and_modify_replaces(dp: FakeDevpoll, pair: Pair) -> None:
    fd = pair[0].fileno()
    dp.register(fd, select.POLLIN)
    dp.register(fd, select.POLLOUT)
    assert dp.interest() == {fd: select.POLLIN | select.POLLOUT}
    dp.modify(fd, select.POLLOUT)
    assert dp.interest() == {fd: select.POLLOUT}


def test_fake_writes_only_when_polled(dp: FakeDevpoll, pair: Pair) -> None:
    fd = pair[0].fileno()
    dp.register(fd, select.POLLIN)
    dp.unregister(fd)
    assert dp.writes == []
    assert dp.poll(0) == []
    assert dp.writes == [(fd, select.POLLIN), (fd, POLLREMOVE)]


def test_fake_ignores_removal_of_an_unknown_fd(dp: FakeDevpoll, pair: Pair) -> None:
    dp.unregister(pair[0])
    assert dp.poll(0) == [] and dp.interest() == {}


def test_fake_reports_a_closed_fd_as_pollnval(dp: FakeDevpoll) -> None:
    a, b = socket.socketpair()
    fd = a.fileno()
    dp.register(a, select.POLLIN)
    a.close()
    b.close()
    assert dp.poll(1000) == [(fd, select.POLLNVAL)]


def test_fake_takes_milliseconds_and_checks_masks(dp: FakeDevpoll, pair: Pair) -> None:
    dp.register(pair[0], select.POLLIN)
    dp.register(pair[1], select.POLLOUT)
    assert dp.poll(0.2) == [(pair[1].fileno(), select.POLLOUT)]
    assert dp.poll(None) == dp.poll(-5) == [(pair[1].fileno(), select.POLLOUT)]
    assert dp.timeouts == [1, -1, -1]  # a fraction of a millisecond rounds up; None or < 0 blocks
    with pytest.raises(OverflowError):
        dp.register(pair[1], 1 << 16)
    dp.close()
    with pytest.raises(ValueError, match="closed devpoll"):
        dp.poll(0)


# -- the backend over the fake ------------------------------------------------------


@pytest.fixture
def fakes_made(monkeypatch: pytest.MonkeyPatch) -> List[FakeDevpoll]:
    return install_devpoll(monkeypatch)


@pytest.fixture
def poller(fakes_made: List[FakeDevpoll]) -> Iterator[DevpollPoller]:
    with quick(DevpollPoller)() as p:
        yield p


def test_modify_replaces_the_mask(poller: DevpollPoller, fakes_made: List[FakeDevpoll], pair: Pair) -> None:
    reader, writer = pair
    writer.send(b"x")
    poller.register(reader, READ)
    poller.modify(reader, WRITE)
    # were the masks ORed, READ would still be reported for the pending byte
    assert events_of(poller, 5.0) == {reader.fileno(): WRITE}
    assert fakes_made[-1].interest() == {reader.fileno(): WRITE}


def test_parking_removes_the_fd_from_the_device(
    poller: DevpollPoller, fakes_made: List[FakeDevpoll], pair: Pair
) -> None:
    fd = pair[0].fileno()
    poller.register(fd, READ | WRITE)
    poller.modify(fd, 0)
    assert fakes_made[-1].interest() == {} and poller.get_mask(fd) == 0
    poller.modify(fd, WRITE)
    assert fakes_made[-1].interest() == {fd: WRITE}


def test_timeouts_reach_the_device_in_whole_milliseconds_rounded_up(
    poller: DevpollPoller, fakes_made: List[FakeDevpoll], pair: Pair
) -> None:
    poller.register(pair[0], READ)
    for timeout in (0.0005, 0.0021, 0, -3):
        assert poller.poll(timeout) == []
    poller.register(pair[1], WRITE)  # ready, so the blocking waits return
    poller.poll(None)
    poller.poll(1e9)
    assert fakes_made[-1].timeouts == [1, 3, 0, 0, -1, 2_147_483_000]


def test_closed_fd_is_reported_nval_and_unregistered_quietly(poller: DevpollPoller) -> None:
    a, b = socket.socketpair()
    fd = a.fileno()
    poller.register(a, READ)
    a.close()
    b.close()
    assert wait_for(poller, fd, NVAL) == NVAL
    poller.unregister(fd)
    assert fd not in poller and poller.poll(0) == []
