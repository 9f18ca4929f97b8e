"""Small helpers shared by the poller tests (not fakes themselves)."""

from __future__ import annotations

import socket
import time
from typing import Dict, List, Optional, Tuple, Type, TypeVar, cast

import pytest

from pollers import Poller

# Short enough that a test waiting for the NVAL sweep finishes quickly, long
# enough that the sweep is not what every poll() call does.
QUICK_SWEEP = 0.02

P = TypeVar("P", bound=Poller)


def quick(cls: Type[P], interval: float = QUICK_SWEEP) -> Type[P]:
    """A subclass of a backend whose closed-fd sweep runs every ``interval`` seconds.

    Backends without a sweep simply ignore the attribute.
    """
    attrs = {"sweep_interval": interval, "__module__": __name__}
    return cast(Type[P], type(f"Quick{cls.__name__}", (cls,), attrs))


def events_of(poller: Poller, timeout: Optional[float] = 0.0) -> Dict[int, int]:
    """One poll() as a dict, checking that no fd is reported twice."""
    ready = poller.poll(timeout)
    assert all(isinstance(fd, int) and isinstance(ev, int) for fd, ev in ready), ready
    found = dict(ready)
    assert len(found) == len(ready), f"an fd reported twice: {ready}"
    return found


def wait_for(poller: Poller, fd: int, flags: int, limit: float = 5.0) -> int:
    """Poll until ``fd`` reports any of ``flags``; return all its events then.

    Fails the test if that takes longer than ``limit`` seconds.
    """
    deadline = time.monotonic() + limit
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"fd {fd} did not report {flags:#x} within {limit}s")
        events = events_of(poller, remaining).get(fd, 0)
        if events & flags:
            return events


def tcp_pair() -> Tuple[socket.socket, socket.socket]:
    """A connected TCP pair on 127.0.0.1 (for urgent data, which AF_UNIX lacks)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5.0)
        server, _ = listener.accept()
    client.settimeout(None)
    return client, server


def close_all(socks: List[socket.socket]) -> None:
    for sock in socks:
        sock.close()
