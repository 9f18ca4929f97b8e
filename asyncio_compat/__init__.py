"""asyncio-compat: asyncore and asynchat for Python 3.9-3.13+, on pluggable pollers."""

from __future__ import annotations

from . import _fork  # noqa: F401  (registers the fork hook: children get pollers of their own)
from ._config import ENV_VAR, get_default_poller, set_default_poller
from ._install import install
from ._loop import SocketMap
from ._shutdown import shutdown
from .signals import add_signal_handler, remove_signal_handler
from .timers import TimerHandle, call_at, call_every, call_later

__version__ = "1.0.0"

__all__ = [
    "ENV_VAR", "SocketMap", "get_default_poller", "set_default_poller", "__version__",
    "install",
    "TimerHandle", "call_at", "call_every", "call_later",
    "add_signal_handler", "remove_signal_handler", "shutdown",
]
