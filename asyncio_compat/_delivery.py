"""Event delivery: how a poller's report reaches a channel's handlers.

This module owns the handler-error contract, the same for every event source
(the loop, ``asyncore.readwrite``/``read``/``write``, timers that call a
channel's handler, the TLS and socketserver channels):

* ExitNow, KeyboardInterrupt and SystemExit (:data:`RERAISED`) propagate to
  the caller of ``loop()``;
* with poll2() semantics, an OSError whose errno means the peer is gone
  (:data:`DISCONNECTED`) calls ``handle_close()``;
* any other exception calls ``handle_error()``.

Two delivery styles exist because CPython 3.11 had two: :func:`deliver_poll`
(``poll2()``/``readwrite``: a hang-up calls ``handle_close``) and
:func:`deliver_select` (``poll()``: select() has no hang-up flag, so a hang-up
shows as the read/write event the channel asked for).  The batch over a
pass's events is the loop's (``MapLoop``); it delivers the READ-only case,
the one that dominates every workload, without a call, and
``tests/test_delivery.py`` checks that it and these functions agree on
every outcome.
"""

from __future__ import annotations

import sys
from errno import EBADF, ECONNABORTED, ECONNRESET, ENOTCONN, EPIPE, ESHUTDOWN
from typing import Callable, FrozenSet, Mapping, Optional, Tuple, Type

from pollers import ERR, HUP, NVAL, PRI, READ, WRITE, Poller

from ._channel import Channel, HandlesErrors
from ._errors import ExitNow

#: errnos that mean "the connection is gone": the channel is closed, not blamed
DISCONNECTED: FrozenSet[int] = frozenset({ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE, EBADF})

#: exceptions a handler may raise through the loop to its caller
RERAISED: Tuple[Type[BaseException], ...] = (ExitNow, KeyboardInterrupt, SystemExit)

_CLOSE_FLAGS = HUP | ERR | NVAL

def call_guarded(obj: HandlesErrors, handler_name: str) -> None:
    """Call ``obj``'s method ``handler_name``; any exception but :data:`RERAISED`
    (a missing method included, as in 3.11) goes to ``obj.handle_error()``."""
    try:
        getattr(obj, handler_name)()
    except RERAISED:
        raise
    except BaseException:
        obj.handle_error()


def _owns(obj: Channel, fd: int, socket_map: Optional[Mapping[int, object]]) -> bool:
    # without a map (asyncore.readwrite) every flag is delivered, as in 3.11
    return socket_map is None or socket_map.get(fd) is obj


def deliver_poll(
    obj: Channel, flags: int, fd: int = -1, socket_map: Optional[Mapping[int, object]] = None
) -> None:
    """Deliver one fd's events with poll2() semantics (3.11's ``readwrite``).

    Read first (so data that came with a hang-up is not lost), then write,
    urgent data, and ``handle_close`` for HUP, ERR or NVAL.  Given a
    ``socket_map``, a channel that leaves it (under ``fd``) while handling
    one event gets none of the rest.  Errors follow the module's contract.
    """
    try:
        if flags & READ:
            obj.handle_read_event()
        if flags & WRITE and _owns(obj, fd, socket_map):
            obj.handle_write_event()
        if flags & PRI and _owns(obj, fd, socket_map):
            obj.handle_expt_event()
        if flags & _CLOSE_FLAGS and _owns(obj, fd, socket_map):
            obj.handle_close()
    except OSError as exc:
        if exc.errno in DISCONNECTED:
            obj.handle_close()
        else:
            obj.handle_error()
    except RERAISED:
        raise
    except BaseException:
        obj.handle_error()


def deliver_select(
    obj: Channel, flags: int, fd: int, socket_map: Mapping[int, object], poller: Poller
) -> None:
    """Deliver one fd's events with 3.11 ``poll()`` (select) semantics.

    select() has no hang-up flag: a socket with an error or a hang-up is
    simply readable and writable, so HUP and ERR are delivered as the READ
    and WRITE events the channel asked for, and its own ``recv()`` finds the
    end.  Every exception but :data:`RERAISED` goes to ``handle_error``,
    each handler guarded on its own.  An fd closed behind our back (NVAL;
    select() raised EBADF in 3.11) closes the channel.
    """
    if flags & (HUP | ERR):
        flags |= poller.get_mask(fd) & (READ | WRITE) if fd in poller else 0
    if flags & READ:
        call_guarded(obj, "handle_read_event")
    if flags & WRITE and socket_map.get(fd) is obj:
        call_guarded(obj, "handle_write_event")
    if flags & PRI and socket_map.get(fd) is obj:
        call_guarded(obj, "handle_expt_event")
    if flags & NVAL and socket_map.get(fd) is obj:
        deliver_poll(obj, NVAL, fd, socket_map)


def report_error(obj: HandlesErrors) -> None:
    """Call ``obj.handle_error()`` for the exception being handled.

    A ``handle_error`` that itself fails is printed to stderr (it must not
    take the loop down); :data:`RERAISED` propagates.
    """
    try:
        obj.handle_error()
    except RERAISED:
        raise
    except BaseException:
        # imported here, on the first error: traceback pulls in linecache,
        # tokenize and textwrap, memory that 3.11's asyncore does not spend
        # at import
        import traceback

        traceback.print_exc()


def call_reported(callback: Callable[..., object], args: Tuple[object, ...], source: str) -> None:
    """Call ``callback(*args)`` for a service that is not a channel.

    For signal callbacks and the steps of a graceful stop, which have no
    ``handle_error()``: :data:`RERAISED` propagates; any other exception is
    written to stderr as ``error: uncaptured python exception in <source>
    <callback>`` with its traceback, and the caller goes on.
    """
    try:
        callback(*args)
    except RERAISED:
        raise
    except BaseException:
        import traceback  # on the first error only, as in report_error

        sys.stderr.write(f"error: uncaptured python exception in {source} {callback!r}\n")
        traceback.print_exc()
