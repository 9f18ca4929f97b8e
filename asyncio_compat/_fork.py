"""Fork safety: a forked child gets pollers of its own.

A child inherits its parent's epoll and /dev/poll descriptors, which name the
*same* kernel objects: a child that registered its own sockets there would get
the parent's events and steal them, leaving connections unanswered.  kqueue
descriptors are not inherited at all on the BSDs.  So, right after
``os.fork()`` in the child, every MapLoop swaps its poller for a new one and
registers every channel again; the old descriptor is closed without touching
the kernel object, which the parent still uses.  Only forks made through
``os.fork`` (multiprocessing, the socketserver mix-ins and the workers
included) run the hook; a C extension calling fork() itself does not.  A pid
check where ``loop()`` resumes would catch that case too, but would add a
getpid() to every ``loop()`` call, which programs driving their own loop make
once per pass.
"""

from __future__ import annotations

import os
from typing import Callable, List

from . import _loop

_CHILD_HOOKS: List[Callable[[], None]] = []


def after_fork_in_child(hook: Callable[[], None]) -> None:
    """Run ``hook()`` in every forked child, after the loops got new pollers."""
    _CHILD_HOOKS.append(hook)


def renew_in_child() -> None:
    """What a new child runs: new pollers for every loop, then the hooks."""
    for map_loop in _loop.all_loops():
        map_loop.renew_after_fork()
    for hook in _CHILD_HOOKS:
        hook()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=renew_in_child)
