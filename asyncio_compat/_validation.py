"""Argument checks shared by the public entry points: one rule, one message."""

from __future__ import annotations

import math
from typing import Optional


def finite_number(value: object, name: str, accepted: str = "a number of seconds") -> float:
    """``value`` as a finite float.

    Raises TypeError for anything but a real number (a bool included: True
    is not a duration), ValueError for NaN or an infinity; both messages name
    the parameter ``name`` (the TypeError says it must be ``accepted``).
    """
    if type(value) is not float and type(value) is not int:
        # numbers loads only for a value that is neither float nor int (a
        # bool, a Fraction, a numpy scalar...): others never pay its memory
        from numbers import Real

        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"{name} must be {accepted}, not {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {result!r}")
    return result


def seconds(
    value: object, name: str, *, positive: bool = False, accepted: str = "a number of seconds"
) -> float:
    """``value`` as a number of seconds: a finite float, never negative.

    With ``positive``, zero is refused too.  Raises as :func:`finite_number`,
    and ValueError (naming ``name``) for a negative value or a refused zero.
    """
    result = finite_number(value, name, accepted)
    if positive and result <= 0:
        raise ValueError(f"{name} must be a positive finite number of seconds, got {result!r}")
    if result < 0:
        raise ValueError(f"{name} must not be negative, got {result!r}")
    return result


def wait_timeout(
    value: object, name: str = "timeout", *, negative_means_none: bool = False
) -> Optional[float]:
    """``value`` as the longest wait of a loop pass: None (no limit) or seconds >= 0.

    None stays None.  A negative value raises ValueError, or with
    ``negative_means_none`` gives None (3.11's ``poll2()`` waited without
    limit for one).  Otherwise raises as :func:`seconds`: TypeError for a
    non-number or a bool, ValueError for NaN or an infinity.
    """
    if value is None:
        return None
    accepted = "a number of seconds or None"
    if negative_means_none and finite_number(value, name, accepted) < 0:
        return None
    return seconds(value, name, accepted=accepted)
