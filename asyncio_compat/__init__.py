"""asyncio-compat: asyncore and asynchat for Python 3.9-3.13+, on pluggable pollers."""

from __future__ import annotations

from ._config import ENV_VAR, get_default_poller, set_default_poller
from ._debug import LoopStats, get_debug, set_debug
from ._install import install
from ._loop import SocketMap, loop_stats
from .timers import TimerHandle, call_at, call_every, call_later

__version__ = "0.1.0"

__all__ = [
    "ENV_VAR", "SocketMap", "get_default_poller", "set_default_poller", "__version__",
    "install",
    "LoopStats", "get_debug", "loop_stats", "set_debug",
    "TimerHandle", "call_at", "call_every", "call_later",
]
