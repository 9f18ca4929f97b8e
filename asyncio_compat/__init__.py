"""asyncio-compat: asyncore and asynchat for Python 3.9-3.13+, on pluggable pollers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _fork  # noqa: F401  (registers the fork hook: children get pollers of their own)
from ._config import ENV_VAR, get_default_poller, set_default_poller
from ._debug import get_debug, set_debug
from ._install import install
from ._shutdown import shutdown
from ._socket_map import SocketMap
from ._stats import loop_stats
from .signals import add_signal_handler, remove_signal_handler
from .timers import TimerHandle, call_at, call_every, call_later

__version__ = "1.0.0"

if TYPE_CHECKING:
    from ._loop_stats import LoopStats


def __getattr__(name: str) -> Any:  # Any: the attribute asked for
    # LoopStats is a dataclass; its module (and dataclasses, which imports
    # inspect) loads when first asked for, not with the package
    if name == "LoopStats":
        from ._loop_stats import LoopStats

        return LoopStats
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENV_VAR", "SocketMap", "get_default_poller", "set_default_poller", "__version__",
    "install",
    "LoopStats", "get_debug", "loop_stats", "set_debug",
    "TimerHandle", "call_at", "call_every", "call_later",
    "add_signal_handler", "remove_signal_handler", "shutdown",
]
