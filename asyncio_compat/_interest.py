"""How the loop learns what a channel wants: its interest, as a poller mask.

A channel's mask comes from ``readable()`` and ``writable()`` by the 3.11
rules (:func:`wanted_events`, with the accept pause in
:func:`listener_events` alone).  A class whose predicates are marked with
:func:`pushes_interest` reports its changes itself, so the loop asks it only
when it says so or after it handled an event; a fast interest function
(:func:`register_fast_interest`) computes the same mask in one call.  Any
other class is asked every pass (:func:`interest_function` returns None).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Set, Tuple, TypeVar, cast

from pollers import PRI, READ, WRITE

from ._channel import Channel, InterestFunction

# Any: a decorator must hand back exactly the function it was given
F = TypeVar("F", bound=Callable[..., Any])

# a channel class that a fast interest function is written for
C = TypeVar("C", bound=Channel)


# readable()/writable() implementations whose answers only change when the
# channel says so (or handles an event); see pushes_interest().
_PUSHED_PREDICATES: Set[object] = set()
# (readable, writable) -> a function computing the same mask in one call
_FAST_INTEREST: Dict[Tuple[object, object], InterestFunction] = {}
# class -> how to compute its mask without asking every pass (None: asked every pass)
_interest_cache: Dict[type, Optional[InterestFunction]] = {}


def pushes_interest(func: F) -> F:
    """Mark a ``readable``/``writable`` implementation as one that reports changes.

    A class whose two predicates are both marked is not asked every pass: its
    instances call :meth:`interest_changed` whenever an answer may change
    outside an event handler.  Subclasses that override a predicate with an
    unmarked function are asked every pass, as in CPython 3.11.
    """
    _PUSHED_PREDICATES.add(func)
    return func


def reports_changes(predicate: object) -> bool:
    """True if ``predicate`` was marked with :func:`pushes_interest`."""
    return predicate in _PUSHED_PREDICATES


def register_fast_interest(readable: object, writable: object, interest: Callable[[C], int]) -> None:
    """Declare that ``interest(obj)`` equals :func:`wanted_events` for any
    class whose predicates are exactly ``readable`` and ``writable``.

    The loop then computes such a channel's mask with one call instead of
    three.  ``test_fast_interest_functions_agree_with_the_predicates`` in
    tests/test_engine_registration.py checks each registered pair in every state.
    """
    # the loop calls it only on channels whose class has these predicates,
    # i.e. on the class ``interest`` was written for
    _FAST_INTEREST[(readable, writable)] = cast(InterestFunction, interest)
    _interest_cache.clear()


def interest_function(obj: Channel) -> Optional[InterestFunction]:
    """How the loop learns ``obj``'s mask when it looks, or None if it must ask every pass."""
    cls = type(obj)
    try:
        found = _interest_cache[cls]
    except KeyError:
        readable = getattr(cls, "readable", None)
        writable = getattr(cls, "writable", None)
        found = _FAST_INTEREST.get((readable, writable))
        if found is None and readable in _PUSHED_PREDICATES and writable in _PUSHED_PREDICATES:
            found = wanted_events
        _interest_cache[cls] = found
    if found is not None and not _predicates_are_the_class_ones(obj, cls):
        return None  # predicates patched onto the instance: ask every pass
    return found


def _predicates_are_the_class_ones(obj: Channel, cls: type) -> bool:
    # Compares bound methods instead of looking into obj.__dict__: touching
    # __dict__ materialises it, and CPython then stops specialising attribute
    # access on the instance, which slows every event it handles.
    return (
        getattr(obj.readable, "__func__", None) is getattr(cls, "readable", None)
        and getattr(obj.writable, "__func__", None) is getattr(cls, "writable", None)
    )


# Any: legacy maps hold whatever objects their users put in them


def listener_events(listener: Channel, readable_events: int) -> int:
    """The mask of a channel that is ``accepting``, whose ``readable()`` asks for ``readable_events``.

    The accept pause lives here alone: a listener that paused accepting
    (``accept_paused``, see ``dispatcher.pause_accepting``) asks for
    nothing, whatever its ``readable()`` says, since the waiting connection
    keeps its fd ready and watching it would spin.  The flag means nothing
    on a channel that is not ``accepting``.  Callers pass no WRITE: a
    listener is never put in the write set.
    """
    return 0 if getattr(listener, "accept_paused", False) else readable_events


def wanted_events(obj: Channel) -> int:
    """The mask a channel asks for, by the 3.11 rules.

    ``readable()`` asks for READ and PRI; ``writable()`` asks for WRITE
    unless the channel is ``accepting`` (a listening socket is never put in
    the write set; a paused one asks for nothing, see :func:`listener_events`).
    Both predicates are asked of every channel, as 3.11 did.
    """
    events = READ | PRI if obj.readable() else 0
    writable = obj.writable()
    if getattr(obj, "accepting", False):
        return listener_events(obj, events)
    return (events | WRITE) if writable else events
