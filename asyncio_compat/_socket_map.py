"""``SocketMap``: a socket map that records which fds changed."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Set, Tuple


class SocketMap(Dict[int, Any]):
    """A socket map (fd -> channel) that records which fds changed.

    It behaves as a dict.  The loop reads the record to touch only what
    changed, so a pass over a ``SocketMap`` costs O(active channels); a plain
    dict works too but is compared in full on every pass.
    """

    # no instance __dict__: keeps method lookups on the hot path cheap
    __slots__ = ("_changed",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Any: dict()'s own signature
        super().__init__()
        self._changed: Set[int] = set()  # fds to look at on the next pass
        self.update(*args, **kwargs)

    def mark_changed(self, fd: int) -> None:
        """Record that the channel under ``fd`` may want other events."""
        self._changed.add(fd)

    def replace_change_record(self, record: Set[int]) -> None:
        """Record changes in ``record`` from now on (see :meth:`MapLoop.replace_change_record`)."""
        self._changed = record

    def __setitem__(self, fd: int, channel: object) -> None:
        dict.__setitem__(self, fd, channel)
        self._changed.add(fd)

    def __delitem__(self, fd: int) -> None:
        dict.__delitem__(self, fd)
        self._changed.add(fd)

    def pop(self, fd: int, *default: object) -> object:
        value = dict.pop(self, fd, *default)
        self._changed.add(fd)
        return value

    def popitem(self) -> Tuple[int, object]:
        item = dict.popitem(self)
        self._changed.add(item[0])
        return item

    def clear(self) -> None:
        self._changed.update(self)
        dict.clear(self)

    def update(self, *args: Any, **kwargs: Any) -> None:  # Any: dict.update's signature
        for fd, channel in dict(*args, **kwargs).items():
            self[fd] = channel

    def setdefault(self, fd: int, default: object = None) -> object:
        if fd not in self:
            self[fd] = default
        return dict.__getitem__(self, fd)

    def __ior__(self, other: Mapping[int, object]) -> SocketMap:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __reduce__(self) -> Tuple[type, Tuple[Dict[int, object]]]:
        return (type(self), (dict(self),))
