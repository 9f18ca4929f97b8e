"""LoopStats: what ``asyncio_compat.loop_stats()`` reports.

A module of its own so that ``dataclasses`` (which imports ``inspect``) is
loaded only when statistics are asked for, not by ``import asyncio_compat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class LoopStats:
    """What :func:`~asyncio_compat.loop_stats` reports about the loop serving a map.

    ``poller`` is the backend's name (None while the map has no loop);
    ``channels`` the entries of the map; ``polled`` the channels asked
    ``readable()``/``writable()`` on every pass (they override them, or the
    map is a plain dict); ``timers`` the pending timers; ``passes`` and
    ``events`` (fd reports from the poller) count since the loop was created.
    ``handler_seconds`` (time in handlers and timer callbacks) and
    ``wait_seconds`` (time waiting in the poller) are accumulated while debug
    mode is on, and None while it is off.
    """

    poller: Optional[str]
    channels: int
    polled: int
    timers: int
    passes: int
    events: int
    handler_seconds: Optional[float]
    wait_seconds: Optional[float]
