"""The process-wide default poller.

Chosen, in order, by :func:`set_default_poller`, the environment variable
``ASYNCIO_COMPAT_POLLER`` (a backend name), or :func:`pollers.best`.
"""

from __future__ import annotations

import os
from typing import Optional, Type, Union

import pollers
from pollers import Poller

ENV_VAR = "ASYNCIO_COMPAT_POLLER"

PollerSpec = Union[str, Type[Poller], None]

_chosen: Optional[Type[Poller]] = None


def resolve_poller(spec: PollerSpec) -> Type[Poller]:
    """A backend class from a name, a class, or None for the default.

    Raises pollers.UnknownPollerError for an unknown or unavailable name and
    TypeError for anything that is neither a name nor a Poller subclass.
    """
    if spec is None:
        return get_default_poller()
    if isinstance(spec, str):
        return pollers.get(spec)
    if isinstance(spec, type) and issubclass(spec, Poller):
        return spec
    raise TypeError(f"poller must be a backend name or a pollers.Poller subclass, not {spec!r}")


def set_default_poller(spec: PollerSpec) -> None:
    """Make ``spec`` (a name such as ``"poll"``, or a class) the process default.

    ``None`` goes back to the environment variable or the best backend.
    Only loops made afterwards use it: a map that has a loop keeps it, and
    its poller, until that loop is released (a ``loop()`` call that ends
    with the map empty and no timer pending, or ``close_all()``).
    """
    global _chosen
    _chosen = None if spec is None else resolve_poller(spec)


def get_default_poller() -> Type[Poller]:
    """The backend class that ``loop()`` uses when no ``poller`` is given.

    Raises pollers.UnknownPollerError when ``ASYNCIO_COMPAT_POLLER`` names a
    backend this platform does not have.
    """
    if _chosen is not None:
        return _chosen
    name = os.environ.get(ENV_VAR, "").strip()
    if name:
        return pollers.get(name)
    return pollers.best()
