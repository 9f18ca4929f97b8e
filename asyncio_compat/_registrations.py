"""What a map's loop holds for each registered fd: one record per fd.

A :class:`Registration` says which channel the fd was registered for, the
socket the channel had then (a channel that reconnects gets a new socket,
often under the same fd number), how its interest is learnt (a mask
function, or None when it is asked every pass) and the map key it sits
under when that key is not the fd itself (3.11's ``select()`` took sockets
as keys).  :class:`Registrations` keeps the records and the two indexes
derived from them, so that adding, dropping and forgetting all are one
operation each.
"""

from __future__ import annotations

from typing import Dict, Iterator, Mapping, Optional

from ._channel import Channel, ChannelMap, InterestFunction


class Registration:
    """One registered fd: its channel, that channel's socket, how to learn its interest."""

    __slots__ = ("channel", "socket", "interest", "key")

    def __init__(self, channel: Channel, interest: Optional[InterestFunction]) -> None:
        self.channel = channel
        self.socket: object = getattr(channel, "socket", None)
        # None: the channel is asked every pass (it overrides a predicate)
        self.interest = interest
        # the map key when it is not the fd itself (a socket object)
        self.key: object = None


class Registrations:
    """The records of one loop, by fd, with their indexes.

    ``by_fd`` is read directly on the per-event path; every change goes
    through :meth:`add`, :meth:`drop`, :meth:`set_key` and :meth:`clear`,
    which keep ``asked_every_pass`` (fd -> channel, iterated every pass) and
    ``fd_for_key`` (map key -> fd, for keys that are not fds) in step.
    """

    __slots__ = ("by_fd", "asked_every_pass", "fd_for_key")

    def __init__(self) -> None:
        self.by_fd: Dict[int, Registration] = {}
        self.asked_every_pass: Dict[int, Channel] = {}
        self.fd_for_key: Dict[object, int] = {}

    def __contains__(self, fd: object) -> bool:
        return fd in self.by_fd

    def __len__(self) -> int:
        return len(self.by_fd)

    def add(self, fd: int, channel: Channel, interest: Optional[InterestFunction]) -> None:
        """Record ``fd`` for ``channel`` (replacing any record it had)."""
        self.drop(fd)
        self.by_fd[fd] = Registration(channel, interest)
        if interest is None:
            self.asked_every_pass[fd] = channel

    def drop(self, fd: int) -> Optional[Registration]:
        """Forget ``fd``; returns its record, or None if it had none."""
        record = self.by_fd.pop(fd, None)
        if record is not None:
            self.asked_every_pass.pop(fd, None)
            if record.key is not None and self.fd_for_key.get(record.key) == fd:
                del self.fd_for_key[record.key]
        return record

    def set_key(self, fd: int, key: object) -> None:
        """Note that ``fd``'s channel sits under ``key`` in the map (not under ``fd``)."""
        record = self.by_fd[fd]
        if record.key is not None and self.fd_for_key.get(record.key) == fd:
            del self.fd_for_key[record.key]
        record.key = key
        self.fd_for_key[key] = fd

    def has_keys(self) -> bool:
        """True while some record sits under a map key that is not its fd."""
        return bool(self.fd_for_key)

    def key_of(self, fd: int) -> object:
        """The map key ``fd``'s channel sits under: its own key, or ``fd``."""
        record = self.by_fd.get(fd)
        return fd if record is None or record.key is None else record.key

    def clear(self) -> None:
        self.by_fd.clear()
        self.asked_every_pass.clear()
        self.fd_for_key.clear()


class ByFd(Mapping[int, object]):
    """A map with some keys that are not fds, seen by fd (what delivery reads)."""

    __slots__ = ("_map", "_registrations")

    def __init__(self, socket_map: ChannelMap, registrations: Registrations) -> None:
        self._map = socket_map
        self._registrations = registrations

    def __iter__(self) -> Iterator[int]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __getitem__(self, fd: int) -> object:
        return self._map[self._registrations.key_of(fd)]  # type: ignore[index]
