"""asyncio and asyncore in one thread, in both directions.

**Legacy dispatchers inside asyncio.**  ``await run_map(map)`` (or the
long-lived ``attach(map)``) serves a socket map from the running asyncio
loop: each channel's fd is watched with ``add_reader()``/``add_writer()``,
interest changes are pushed as the channels make them, and the map's timers
become asyncio timers.  It works on any asyncio loop with ``add_reader``
(the default loops, uvloop).

**asyncio inside legacy code.**  A :class:`HostedEventLoop` is an asyncio
event loop that lives in a socket map: the fd of its selector is a channel of
the map, and the map's loop wakes for its timers and callbacks.  Each time it
has work, one pass of ``asyncore.loop()`` (or of a GUI hook calling
``loop(0, count=1)``) runs one iteration of it without waiting.
:func:`run_coroutine` waits for a coroutine from synchronous code while the
map's dispatchers keep being served.

Neither direction polls on a timer unless a channel overrides ``readable()``
or ``writable()`` (or the map is a plain dict): those are asked every
``poll_interval`` seconds, since only they know when their answer changes.
"""

from __future__ import annotations

from ._asyncio_hosting import HostedEventLoop, hosted_event_loop, run_coroutine
from ._asyncio_serving import HOSTED as _HOSTED  # noqa: F401  (the tests inspect it)
from ._asyncio_serving import AsyncioPoller, MapBridge, attach, run_map

__all__ = [
    "AsyncioPoller", "HostedEventLoop", "MapBridge", "attach", "hosted_event_loop",
    "run_coroutine", "run_map",
]

# Shown (in reprs, tracebacks' class names, the docs) under the public path.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
