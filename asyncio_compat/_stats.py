"""``asyncio_compat.loop_stats()``: the statistics of the loop serving a socket map.

It sits above ``asyncore`` because its default map is ``asyncore.socket_map``,
read at each call (programs rebind it); the loop's own side is
``MapLoop.stats()`` in ``_loop``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from . import _debug, _loop, asyncore
from ._channel import ChannelMap

if TYPE_CHECKING:
    from ._loop_stats import LoopStats


def loop_stats(map: Optional[ChannelMap] = None) -> LoopStats:  # noqa: A002 (asyncore's name)
    """A :class:`~asyncio_compat.LoopStats` describing the loop serving ``map``
    (default: ``asyncore.socket_map``).

    A map with no loop (never run, or emptied and released since) gives
    ``poller=None``, its number of channels, zeros for the rest, and for the
    timings None while debug mode is off, 0.0 while it is on.
    """
    map = asyncore.map_or_default(map)
    map_loop = _loop.existing_loop(map)
    if map_loop is not None:
        return map_loop.stats()
    from ._loop_stats import LoopStats  # `import asyncio_compat` does not load dataclasses

    timing = 0.0 if _debug.enabled else None
    return LoopStats(None, len(map), 0, 0, 0, 0, timing, timing)
