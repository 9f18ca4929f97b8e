"""Sans-IO terminator search for ``asynchat.async_chat``: bytes in, calls out.

A :class:`Framer` receives the bytes each ``recv()`` returned and cuts them
into messages for a *sink*, the object that plays the channel's part (an
``async_chat`` is its own sink).  It makes the calls CPython 3.11's
``async_chat.handle_read`` made, in the same order and with the same
arguments:

``sink.terminator`` (read)
    before every step, because the code that handles a message may change
    the terminator; a new one applies to the rest of the same buffer (an
    ``async_chat`` whose ``get_terminator()`` is its own code is given to
    the framer behind a sink whose ``terminator`` calls it);
``sink.collect_incoming_data(chunk)``
    with each non-empty piece of the message being received;
``sink.found_terminator()``
    at the end of each message;
``sink.terminator = n``
    for an int terminator, the count still to come (0 just before
    ``found_terminator``), so that the terminator counts down across reads.

Terminators:

* ``None``, ``b""`` or ``0``: everything is data, nothing is ever found;
* a positive int: that many bytes of data, then ``found_terminator()``;
* bytes (or bytearray/memoryview) of any length, matched across reads: a
  proper prefix of the terminator at the end of the buffer is held back
  until the next read shows whether the terminator follows.

Cost is linear in the bytes received: the buffer is walked with an offset,
never re-sliced at each terminator (CPython 3.11 copied the whole remainder
every time, which is quadratic in the size of one read).  Between reads the
framer holds at most ``len(terminator) - 1`` bytes; while it cuts one read
it holds that read plus those.

Calling the sink's methods directly, rather than yielding events for the
channel to dispatch, keeps the per-read cost close to 3.11's for the small
reads of interactive protocols.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Optional, Protocol, TypeVar, Union

__all__ = ["FrameSink", "Framer", "Terminator", "find_prefix_at_end", "find_terminator"]

Terminator = Union[bytes, bytearray, memoryview, int, None]


class FrameSink(Protocol):
    """What a :class:`Framer` calls: the input half of ``async_chat``."""

    terminator: Any

    def collect_incoming_data(self, data: bytes) -> None: ...

    def found_terminator(self) -> None: ...


_Text = TypeVar("_Text", str, bytes)


def _partial_match_at_end(buffer: _Text, terminator: _Text, start: int) -> int:
    """Length of the longest proper prefix of ``terminator`` that ends ``buffer``.

    Only ``buffer[start:]`` is considered.  Candidate positions are found by
    searching for the terminator's first item in the last
    ``len(terminator) - 1`` items, so a one-byte terminator costs one failed
    ``find``; the worst case (a run of one repeated byte) is quadratic in the
    terminator's length, never in the buffer's.  Returns 0 when there is none,
    including for an empty terminator.
    """
    end = len(buffer)
    first = terminator[:1]
    if not first:
        return 0
    position = buffer.find(first, max(start, end - len(terminator) + 1))
    while position >= 0:
        if buffer.endswith(terminator[: end - position]):
            return end - position
        position = buffer.find(first, position + 1)
    return 0


def _partial_length(buffer: bytes, terminator: bytes, start: int) -> int:
    """:func:`_partial_match_at_end`, settled at once for two-byte terminators."""
    if len(terminator) == 2:
        return 1 if buffer[-1] == terminator[0] else 0
    return _partial_match_at_end(buffer, terminator, start)


#: a terminator search scans this many bytes the usual way before it changes
#: method: the messages of interactive protocols end within it
_NEAR = 512
#: candidate positions (the terminator's last byte) checked one by one
#: before the rest is left to a regular expression
_HOPS = 4
#: compiled searches kept, one per terminator (some protocols make a new
#: terminator per message, e.g. MIME boundaries)
_SEARCHES_KEPT = 32
_searches: Dict[bytes, Callable[[bytes, int], Optional[re.Match[bytes]]]] = {}


def _search(terminator: bytes) -> Callable[[bytes, int], Optional[re.Match[bytes]]]:
    """A compiled literal search for ``terminator``, made once and kept."""
    search = _searches.get(terminator)
    if search is None:
        if len(_searches) >= _SEARCHES_KEPT:
            _searches.clear()
        search = _searches[terminator] = re.compile(re.escape(terminator)).search
    return search


def find_terminator(buffer: bytes, terminator: bytes, start: int) -> int:
    """``buffer.find(terminator, start)``, fast on large buffers.

    ``bytes.find`` tries a multi-byte needle at every position, while a
    single byte is found by ``memchr``, many times faster.  Past the first
    :data:`_NEAR` bytes, the terminator's last byte is looked for alone,
    and each place it occurs is checked; after :data:`_HOPS` false
    candidates the rest is left to a compiled regular expression, whose
    literal search also scans faster than ``bytes.find``.  A large read
    without the terminator, or with it far from ``start``, then costs a few
    ``memchr`` calls, or one regular expression scan where the last byte is
    frequent.
    """
    near = start + _NEAR
    if not 2 <= len(terminator) <= _NEAR or len(buffer) <= near:
        return buffer.find(terminator, start)
    index = buffer.find(terminator, start, near)
    if index >= 0:
        return index
    width = len(terminator) - 1
    last = terminator[width:]
    # no terminator lies wholly before near: one that ends at or after it is next
    end = buffer.find(last, near)
    for _ in range(_HOPS):
        if end < 0:
            return -1
        if buffer.startswith(terminator, end - width):
            return end - width
        end = buffer.find(last, end + 1)
    if end < 0:
        return -1
    found = _search(terminator)(buffer, end - width)
    return -1 if found is None else found.start()


_bytes_find = bytes.find


def find_prefix_at_end(haystack: _Text, needle: _Text) -> int:
    """How many items at the end of ``haystack`` start ``needle`` (0 if none).

    Only proper prefixes count (3.11 left a ``haystack`` that ends with the
    whole ``needle`` undefined).  Works on str and bytes alike.  An empty
    ``needle`` gives 0 (3.11 returned -1 there).

    >>> find_prefix_at_end(b"qwerty\\r", b"\\r\\n")
    1
    """
    return _partial_match_at_end(haystack, needle, 0)


def _byte_terminator(terminator: object) -> bytes:
    """A non-empty terminator that is not an int, as bytes; raises TypeError
    for one that cannot delimit a byte stream."""
    if isinstance(terminator, (bytearray, memoryview)):
        return bytes(terminator)
    if isinstance(terminator, str):
        raise TypeError(
            "a str terminator cannot match received bytes: pass bytes, or set "
            "use_encoding and call set_terminator() so that it is encoded"
        )
    raise TypeError(
        f"terminator must be bytes, a non-negative int or None, not {type(terminator).__name__}"
    )


class Framer:
    """Finds terminators in a byte stream received piecewise; see the module doc.

    :meth:`receive` appends a read and makes the sink calls it completes.
    ``b""`` adds nothing (it is not end of stream) but still hands out what
    is pending, under the terminator the sink has now.  The sink may change
    its terminator or the pending bytes (``pending = ...``) from its
    methods; the next step sees the change.  Bytes are consumed before the
    sink sees them, so an exception from the sink (which propagates) loses
    nothing and repeats nothing: what was not handed out stays pending.
    ``receive`` raises TypeError for data that is not bytes-like (before
    taking any of it) and for a terminator that is neither bytes-like, an
    int nor None, and ValueError for a negative int terminator (the bytes
    that terminator would have cut stay pending).
    """

    __slots__ = ("_buffer", "_offset", "_far", "bytes_copied")

    def __init__(self) -> None:
        self._buffer = b""  # the latest read plus what was held back before it
        self._offset = 0  # bytes of _buffer already handed to the sink
        # the last read ended inside a message longer than _NEAR: the next
        # one is searched with find_terminator (a hint, never a result)
        self._far = False
        #: bytes the framer copied into its own buffer (a held-back tail
        #: joined to the next read, or kept after a read); pieces handed to
        #: the sink are not counted.  Linear in the input, where 3.11's
        #: remainder slicing was quadratic.
        self.bytes_copied = 0

    @property
    def pending(self) -> bytes:
        """The bytes received but not yet handed out (``ac_in_buffer``)."""
        if self._offset:
            return self._buffer[self._offset:]
        return self._buffer

    @pending.setter
    def pending(self, data: bytes) -> None:
        self._buffer = bytes(data)
        self._offset = 0

    @property
    def pending_size(self) -> int:
        """``len(self.pending)``, without materialising it."""
        return len(self._buffer) - self._offset

    @property
    def held(self) -> int:
        """Size of the buffer object the framer keeps alive, consumed part included."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget every pending byte."""
        self._buffer = b""
        self._offset = 0

    def receive(self, data: bytes, sink: FrameSink) -> None:
        """Append ``data`` and hand out every message part it completes.

        See the class doc for what the sink may do and what is raised.
        """
        # _join() copes with a consumed buffer too: the test spares the usual read its call
        if self._buffer or type(data) is not bytes:
            data = self._join(data)
        self._buffer = data
        self._offset = 0
        find: Callable[[bytes, bytes, int], int] = _bytes_find
        if self._far:
            self._far = False
            find = find_terminator
        # one find and one slice per message; state is read again after
        # every call into the sink, which may change it
        while True:
            buffer = self._buffer
            start = self._offset
            if start >= len(buffer):
                self._buffer = b""  # let the read go
                self._offset = 0
                return
            terminator = sink.terminator
            if not terminator or type(terminator) is not bytes:
                if isinstance(terminator, int) or not terminator:
                    self._count(buffer, start, terminator if terminator else 0, sink)
                    continue
                terminator = _byte_terminator(terminator)
            index = find(buffer, terminator, start)
            if index >= 0:
                self._offset = index + len(terminator)
                if index > start:
                    sink.collect_incoming_data(buffer[start:index])
                sink.found_terminator()
                continue
            size = len(buffer)
            if size - start > _NEAR:
                self._far = True  # inside a long message: the next read searches with find_terminator
            if buffer[-1] not in terminator:  # no partial terminator can end it
                self._offset = size
                sink.collect_incoming_data(buffer[start:] if start else buffer)
                if self._buffer is buffer and self._offset == size:
                    # all handed out: done, without another turn of the loop
                    # (which every read of a bulk transfer would pay)
                    self._buffer = b""
                    self._offset = 0
                    return
                continue
            end = size - _partial_length(buffer, terminator, start)
            self._offset = end
            if end > start:
                sink.collect_incoming_data(buffer[start:end])
            if end < size:
                self._hold_tail(buffer, end)
                return

    def _join(self, data: bytes) -> bytes:
        """``data`` as bytes after the held-back tail; TypeError if not bytes-like."""
        if type(data) is not bytes:
            data = _received_bytes(data)
        tail = self.pending
        if not tail or not data:
            return tail or data
        joined = tail + data
        self.bytes_copied += len(joined)
        return joined

    def _count(self, buffer: bytes, start: int, wanted: int, sink: FrameSink) -> None:
        """Hand out ``wanted`` bytes (0: all of them); ValueError if negative."""
        if wanted < 0:
            raise ValueError(f"an int terminator counts bytes and cannot be negative: {wanted}")
        available = len(buffer) - start
        if wanted == 0 or available < wanted:
            self._offset = len(buffer)
            sink.collect_incoming_data(buffer[start:])
            if wanted:
                sink.terminator = wanted - available
            return
        self._offset = start + wanted
        sink.collect_incoming_data(buffer[start:start + wanted])
        sink.terminator = 0
        sink.found_terminator()

    def _hold_tail(self, buffer: bytes, end: int) -> None:
        """Keep only the partial terminator after ``end``, not the whole read
        (unless the sink replaced the pending bytes meanwhile)."""
        if self._buffer is buffer and self._offset == end:
            self._buffer = buffer[end:]
            self._offset = 0
            self.bytes_copied += len(self._buffer)


def _received_bytes(data: object) -> bytes:
    """Received data as bytes; raises TypeError for anything not bytes-like."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"received data must be bytes, not {type(data).__name__}")
