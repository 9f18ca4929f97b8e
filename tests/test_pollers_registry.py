"""The flags and the backend registry: available(), get(), best(), fd_of()."""

from __future__ import annotations

import errno
import select
import socket
from typing import List, Type

import pytest

import pollers
from pollers import Poller

pytestmark = pytest.mark.timeout(30)


def test_flags_equal_the_poll_constants() -> None:
    # the poll and epoll backends pass masks through untranslated because of this
    assert (pollers.READ, pollers.PRI, pollers.WRITE) == (select.POLLIN, select.POLLPRI, select.POLLOUT)
    assert (pollers.ERR, pollers.HUP, pollers.NVAL) == (select.POLLERR, select.POLLHUP, select.POLLNVAL)


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="no epoll on this platform")
def test_flags_equal_the_epoll_constants() -> None:
    assert (pollers.READ, pollers.PRI, pollers.WRITE) == (select.EPOLLIN, select.EPOLLPRI, select.EPOLLOUT)
    assert (pollers.ERR, pollers.HUP) == (select.EPOLLERR, select.EPOLLHUP)


def test_requestable_and_reported_masks() -> None:
    assert pollers.REQUESTABLE == pollers.READ | pollers.PRI | pollers.WRITE
    assert pollers.REPORTED == pollers.REQUESTABLE | pollers.ERR | pollers.HUP | pollers.NVAL
    flags = [pollers.READ, pollers.PRI, pollers.WRITE, pollers.ERR, pollers.HUP, pollers.NVAL]
    assert all(bin(flag).count("1") == 1 for flag in flags) and len(set(flags)) == 6


def test_available_is_in_preference_order_and_ends_with_select() -> None:
    names = pollers.available()
    assert names == [name for name in pollers.PREFERENCE if name in names]
    assert names[-1] == "select"
    assert ("poll" in names) == hasattr(select, "poll")
    assert ("epoll" in names) == hasattr(select, "epoll")
    assert ("kqueue" in names) == hasattr(select, "kqueue")


def test_get_returns_each_available_backend() -> None:
    for name in pollers.available():
        cls = pollers.get(name)
        assert issubclass(cls, Poller) and cls.name == name
        with cls() as poller:
            assert poller.poll(0) == []


@pytest.mark.parametrize("bad", ["nope", "", "EPOLL", None, 3, ["epoll"]])
def test_get_of_an_unknown_name_names_the_available_ones(bad: object) -> None:
    with pytest.raises(pollers.UnknownPollerError) as caught:
        pollers.get(bad)  # type: ignore[arg-type,unused-ignore]
    message = str(caught.value)
    assert "unknown" in message and repr(bad) in message
    assert all(name in message for name in pollers.available())
    assert isinstance(caught.value, ValueError)


def test_get_of_a_backend_this_platform_lacks_says_so() -> None:
    missing = [name for name in pollers.PREFERENCE if name not in pollers.available()]
    if not missing:
        pytest.skip("every backend is available on this platform")
    with pytest.raises(pollers.UnknownPollerError, match="not available on this platform; available: "):
        pollers.get(missing[0])


def _refuse(monkeypatch: pytest.MonkeyPatch, classes: List[Type[Poller]]) -> List[str]:
    """Make these backends' constructors fail as a kernel without them would."""
    tried: List[str] = []

    def make_failing(cls: Type[Poller]) -> object:
        def failing_init(self: Poller) -> None:
            tried.append(cls.name)
            raise OSError(errno.ENOSYS, f"{cls.name} refused by this kernel")

        return failing_init

    for cls in classes:
        monkeypatch.setattr(cls, "__init__", make_failing(cls))
    return tried


def test_best_is_the_first_backend_that_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pollers, "_best", None)
    assert pollers.best() is pollers.get(pollers.available()[0])


def test_best_falls_back_when_the_kernel_refuses_a_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    names = pollers.available()
    if len(names) < 2:
        pytest.skip("only one backend on this platform: nothing to fall back to")
    monkeypatch.setattr(pollers, "_best", None)
    tried = _refuse(monkeypatch, [pollers.get(names[0])])
    assert pollers.best() is pollers.get(names[1])
    assert tried == [names[0]]
    pollers.best()
    assert tried == [names[0]], "best() probes once, then remembers"


def test_best_ends_at_select_when_everything_else_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pollers, "_best", None)
    others = [pollers.get(name) for name in pollers.available() if name != "select"]
    tried = _refuse(monkeypatch, others)
    assert pollers.best() is pollers.get("select")
    assert tried == [cls.name for cls in others]


def test_fd_of_accepts_ints_and_fileno_objects() -> None:
    with socket.socket() as sock:
        assert pollers.fd_of(sock) == sock.fileno()
        assert pollers.fd_of(sock.fileno()) == sock.fileno()
    with pytest.raises(ValueError, match="invalid file descriptor -1"):
        pollers.fd_of(sock)  # closed: fileno() is -1
    with pytest.raises(TypeError, match="fileno"):
        pollers.fd_of("0")  # type: ignore[arg-type,unused-ignore]
