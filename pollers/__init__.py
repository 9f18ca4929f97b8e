"""Pluggable pollers: one interface over select, poll, epoll, kqueue and /dev/poll.

>>> import pollers
>>> with pollers.best()() as p:
...     p.register(fd, pollers.READ)
...     events = p.poll(1.0)

Flags ``READ``, ``PRI`` and ``WRITE`` can be requested; ``ERR``, ``HUP`` and
``NVAL`` are only reported.  Their values equal ``select.POLL*``.

This package never imports ``asyncio_compat``.
"""

from __future__ import annotations

import select
from typing import Dict, List, Optional, Tuple, Type

from ._base import (
    ERR,
    HUP,
    MAX_TIMEOUT,
    NVAL,
    PRI,
    READ,
    REPORTED,
    REQUESTABLE,
    WRITE,
    FileDescriptorLike,
    Poller,
    fd_of,
)
from ._select import SelectPoller

# Preference order for best(): cheapest per call first.
PREFERENCE = ("epoll", "kqueue", "devpoll", "poll", "select")


def _backends() -> Dict[str, Type[Poller]]:
    found: Dict[str, Type[Poller]] = {}
    if hasattr(select, "epoll"):
        from ._epoll import EpollPoller

        found["epoll"] = EpollPoller
    if hasattr(select, "kqueue"):
        from ._kqueue import KqueuePoller

        found["kqueue"] = KqueuePoller
    if hasattr(select, "devpoll"):
        from ._devpoll import DevpollPoller

        found["devpoll"] = DevpollPoller
    if hasattr(select, "poll"):
        from ._poll import PollPoller

        found["poll"] = PollPoller
    found["select"] = SelectPoller
    return found


_BACKENDS = _backends()


class UnknownPollerError(ValueError):
    """A poller name that is unknown or not available on this platform."""


def _offered(name: str) -> bool:
    # Asked at call time, not at import: a test that removes poll/epoll from
    # the select module to impose Windows' rules must see them gone.
    return name in _BACKENDS and (name == "select" or hasattr(select, name))


def available() -> List[str]:
    """Names of the backends this platform has, best first.

    On Windows that is only ``select``: the select module there has no
    poll, epoll, kqueue or devpoll.
    """
    return [name for name in PREFERENCE if _offered(name)]


def get(name: str) -> Type[Poller]:
    """The backend class called ``name``.

    Raises UnknownPollerError (a ValueError) naming the available backends
    when ``name`` is unknown or not available here.
    """
    try:
        if _offered(name):
            return _BACKENDS[name]
    except TypeError:  # an unhashable name
        pass
    known = "unknown" if name not in PREFERENCE else "not available on this platform"
    raise UnknownPollerError(
        f"poller {name!r} is {known}; available: {', '.join(available())}"
    )


def _works(cls: Type[Poller]) -> bool:
    try:
        cls().close()
    except OSError:
        return False
    return True


# (the available() names it was probed among, the best of them that works)
_best: Optional[Tuple[Tuple[str, ...], Type[Poller]]] = None


def best() -> Type[Poller]:
    """The cheapest backend that this kernel lets us create.

    Probed once (again only if the available backends change): a backend
    whose constructor fails (a kernel built without epoll, a sandbox
    refusing kqueue) is skipped for the next in
    epoll > kqueue > devpoll > poll > select.
    """
    global _best
    names = tuple(available())
    if _best is None or _best[0] != names:
        _best = (names, next((_BACKENDS[n] for n in names if _works(_BACKENDS[n])), SelectPoller))
    return _best[1]


__all__ = [
    "READ", "PRI", "WRITE", "ERR", "HUP", "NVAL", "REQUESTABLE", "REPORTED",
    "Poller", "FileDescriptorLike", "UnknownPollerError", "available", "get",
    "best", "fd_of", "PREFERENCE", "MAX_TIMEOUT",
]
