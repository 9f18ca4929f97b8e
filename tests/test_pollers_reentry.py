"""A signal handler that unregisters an fd while the poller is unregistering it.

The handler lands at the kernel call of the outer unregister (the last
instruction before it): the fd is gone from the kernel's set and from the
table when the outer call resumes.  Neither call may raise, and the fd ends
unregistered.  The kernel objects of poll and epoll are wrapped here so the
handler runs at exactly that point.
"""

from __future__ import annotations

import select
import socket
from typing import Any, Callable, Iterator, List, Optional

import pytest

import pollers

KERNELS = {"poll": "poll", "epoll": "epoll"}


class _Reentrant:
    """A kernel object whose next unregister() first runs ``on_unregister``."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.on_unregister: Optional[Callable[[int], None]] = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def unregister(self, fd: int) -> None:
        handler, self.on_unregister = self.on_unregister, None
        if handler is not None:
            handler(fd)  # what a signal handler landing here does
        self._real.unregister(fd)


@pytest.fixture
def pair() -> Iterator[List[socket.socket]]:
    sockets = list(socket.socketpair())
    yield sockets
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_an_unregister_reentered_at_the_kernel_call(
    name: str, pair: List[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    if name not in pollers.available():
        pytest.skip(f"{name} poller not available on this platform")
    made: List[_Reentrant] = []
    real_factory = getattr(select, KERNELS[name])

    def factory(*args: Any) -> _Reentrant:
        made.append(_Reentrant(real_factory(*args)))
        return made[-1]

    monkeypatch.setattr(select, KERNELS[name], factory)
    poller = pollers.get(name)()
    try:
        fd = pair[0].fileno()
        poller.register(fd, pollers.READ)
        made[0].on_unregister = lambda fd: poller.unregister(fd)
        poller.unregister(fd)
        assert fd not in poller
        pair[1].send(b"x")
        assert fd not in dict(poller.poll(0.05))
    finally:
        poller.close()
