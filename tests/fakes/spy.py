"""A transparent wrapper around a kernel object: counts calls, injects errors."""

from __future__ import annotations

import select
from typing import Any, Callable, List, Tuple

import pytest

from ._common import os_error

# Names a call by what it does to the kernel: the method name, except for
# kqueue's control(), which is a change ("add"/"delete") or a "wait".
Classifier = Callable[[str, Tuple[Any, ...]], str]


def by_method(name: str, args: Tuple[Any, ...]) -> str:
    return name


def kqueue_kind(name: str, args: Tuple[Any, ...]) -> str:
    """control() with changes is "add" or "delete" (by its first change), else "wait"."""
    if name != "control":
        return name
    changes = list(args[0] or []) if args else []
    if not changes:
        return "wait"
    return "delete" if changes[0].flags & select.KQ_EV_DELETE else "add"  # type: ignore[attr-defined,unused-ignore]


class SyscallSpy:
    """Stands between a backend and its kernel object.

    ``calls`` lists the kind of every call made through it, in order.
    ``fail_next(kind, errno, skip=n)`` lets ``n`` calls of that kind through,
    then makes the next one raise OSError(errno) without reaching the kernel
    object.
    """

    def __init__(self, target: Any, classify: Classifier = by_method) -> None:
        self._target = target
        self._classify = classify
        self.calls: List[str] = []
        # [kind, errno, calls of that kind still to let through]
        self._failures: List[List[Any]] = []

    @property
    def target(self) -> Any:
        return self._target

    def fail_next(self, kind: str, code: int, skip: int = 0) -> None:
        self._failures.append([kind, code, skip])

    def count(self, *kinds: str) -> int:
        return sum(1 for kind in self.calls if kind in kinds)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            kind = self._classify(name, args)
            self.calls.append(kind)
            self._maybe_fail(kind)
            return attr(*args, **kwargs)

        return call

    def _maybe_fail(self, kind: str) -> None:
        for index, failure in enumerate(self._failures):
            if failure[0] != kind:
                continue
            if failure[2]:
                failure[2] -= 1
                return
            del self._failures[index]
            raise os_error(failure[1])


def install_spy(
    monkeypatch: pytest.MonkeyPatch, attribute: str, classify: Classifier = by_method
) -> List[SyscallSpy]:
    """Wrap every object that ``select.<attribute>()`` creates from now on.

    Works over a fake already installed there.  Returns the list the spies
    are appended to.
    """
    factory = getattr(select, attribute)
    spies: List[SyscallSpy] = []

    def make(*args: Any, **kwargs: Any) -> SyscallSpy:
        spy = SyscallSpy(factory(*args, **kwargs), classify)
        spies.append(spy)
        return spy

    monkeypatch.setattr(select, attribute, make)
    return spies
