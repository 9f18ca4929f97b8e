"""What the engine needs from a channel: the :class:`Channel` protocol.

Any object in a socket map is a channel; ``asyncore.dispatcher`` is the usual
one, but 3.11's loop accepted any object with these methods and so does ours.
The protocol exists for the type checker: the engine (``_loop``,
``_delivery``) is typed against it, not against ``dispatcher``.
"""

from __future__ import annotations

from typing import Callable, Mapping, Protocol


class HandlesErrors(Protocol):
    """Anything the error contract can report to: it has ``handle_error()``."""

    def handle_error(self) -> None: ...


class Channel(HandlesErrors, Protocol):
    """The handlers and predicates the loop calls on an object of a socket map.

    ``accepting`` (a listening channel is never put in the write set) and
    ``accept_paused`` (a listener backing off after accept() ran out of
    descriptors watches nothing) are read with ``getattr`` and a default,
    since 3.11 did not require them; they are not part of the protocol.
    """

    def readable(self) -> bool: ...

    def writable(self) -> bool: ...

    def handle_read_event(self) -> None: ...

    def handle_write_event(self) -> None: ...

    def handle_expt_event(self) -> None: ...

    def handle_close(self) -> None: ...


#: how the loop computes a channel's mask in one call (see ``_interest.register_fast_interest``)
InterestFunction = Callable[[Channel], int]

#: the socket map as the engine reads it: fd -> channel (legacy code passes
#: plain dicts of anything, so the engine only reads it through this)
ChannelMap = Mapping[int, Channel]
