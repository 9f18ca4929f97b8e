"""A drop-in ``asynchat``: CPython 3.11's ``async_chat`` on the asyncio-compat loop.

An ``async_chat`` channel reads a byte stream, cuts it at a *terminator*
(``set_terminator``) and calls ``collect_incoming_data(data)`` for each piece
of a message and ``found_terminator()`` at its end.  Output is queued with
``push`` and ``push_with_producer`` and sent as the socket takes it.

The terminator search lives in the sans-IO :mod:`asyncio_compat._framing`
module; its cost is linear in the bytes received.  Differences from 3.11 are
listed in the documentation (``docs/asynchat.rst``).
"""

# The lower-case class names are CPython's public API; they keep their
# spelling for compatibility.
# ruff: noqa: N801

from __future__ import annotations

import socket
from collections import deque
from typing import Any, Deque, List, Optional, Union

from pollers import PRI, READ, WRITE

from . import asyncore
from ._framing import Framer, Terminator, find_prefix_at_end
from ._interest import listener_events, pushes_interest, register_fast_interest

_INPUT = READ | PRI

__all__ = ["async_chat", "simple_producer", "find_prefix_at_end"]

_BYTES_LIKE = (bytes, bytearray, memoryview)
# what a send() other than the plain socket's is given as a bytes copy
_COPIED = (bytearray, memoryview)

# At most this many send() calls per initiate_send(), and recv() calls per
# handle_read(), when each one filled its whole piece.  3.11 made one per loop
# pass; a bulk transfer then pays a whole pass (a poll syscall and the loop's
# bookkeeping) per 64 KiB.  Sixteen pieces
# (1 MiB) per event keep a bulk channel from starving the others.
_PIECES_PER_EVENT = 16

_SOCKET = socket.socket
_PLAIN_SEND = asyncore.dispatcher.send


def _byte_view(data: memoryview) -> memoryview:
    """``data`` as a flat view of bytes, so that ``len()`` counts bytes."""
    if data.ndim == 1 and data.itemsize == 1:
        return data
    if data.c_contiguous:
        return data.cast("B")
    return memoryview(data.tobytes())


def _rest(item: Any, sent: int) -> memoryview:
    """What is left of ``item`` after ``sent`` bytes, without copying it when possible.

    A bytearray is copied once (a view would stop its owner from resizing it).
    """
    if isinstance(item, (bytes, memoryview)):
        return memoryview(item)[sent:]
    return memoryview(bytes(item[sent:]))


class async_chat(asyncore.dispatcher):
    """A channel for command/response protocols: frames input, queues output.

    Subclasses implement :meth:`collect_incoming_data` (or alias it to
    :meth:`_collect_incoming_data`) and :meth:`found_terminator`, and call
    :meth:`set_terminator` before data arrives.  Reading a channel that never
    set a terminator calls ``handle_error`` (AttributeError), as in 3.11.
    """

    __module__ = "asynchat"

    #: how many bytes one ``recv()`` asks for
    ac_in_buffer_size = 65536
    #: the largest piece one ``send()`` is given; ``push`` splits data by it
    ac_out_buffer_size = 65536

    #: when true, str terminators and str output from producers are encoded
    #: with ``encoding``; off by default because str there is usually a bug
    use_encoding = 0
    #: the codec ``use_encoding`` applies
    encoding = "latin-1"

    #: opt-in cap on the bytes of one incoming message (None: unlimited, as in
    #: 3.11); crossing it calls :meth:`handle_message_too_large`
    max_message_size: Optional[int] = None
    #: opt-in back-pressure: while more than this many bytes of output are
    #: queued, the channel stops reading (None: never, as in 3.11).  Nothing
    #: is dropped: push() still queues.  The check runs as output is queued,
    #: and reading stops after the current read, so the answers to one read
    #: (at most ``ac_in_buffer_size`` bytes of input) can pass the mark.
    output_high_water: Optional[int] = None
    #: reading resumes once queued output falls to this (None: half the high water)
    output_low_water: Optional[int] = None

    terminator: Any  # set by set_terminator(); an int one counts down
    incoming: List[Any]  # pieces kept by _collect_incoming_data
    producer_fifo: Deque[Any]  # bytes-likes, producers, and None (= close)
    _framer: Optional[Framer] = None  # the input side; created on first use
    # defaults for subclasses that skip __init__ (set per instance there)
    _queued = 0
    _reading_paused = False
    _message_size = 0

    def __init__(
        self, sock: Optional[socket.socket] = None, map: Optional[asyncore.SocketMapType] = None
    ) -> None:
        self._framer = Framer()
        self.incoming = []
        self.producer_fifo = deque()
        self._queued = 0  # bytes of output queued by push() and producers, not yet sent
        self._reading_paused = False  # output above output_high_water
        self._message_size = 0  # bytes of the current message, counted under max_message_size
        super().__init__(sock, map)

    # -- input ------------------------------------------------------------------

    @property
    def ac_in_buffer(self) -> bytes:
        """Received bytes not yet handed to the collect/found methods.

        Between reads this is at most a partial terminator.  Assigning to it
        replaces those bytes; during ``handle_read`` the replacement is what
        the rest of the read works on, as in 3.11.
        """
        return self._inbound().pending

    @ac_in_buffer.setter
    def ac_in_buffer(self, data: bytes) -> None:
        self._inbound().pending = data

    def _inbound(self) -> Framer:
        framer = self._framer
        if framer is None:
            # a subclass that skipped async_chat.__init__
            framer = self._framer = Framer()
        return framer

    def collect_incoming_data(self, data: bytes) -> None:
        """Called with each piece of the current message; subclasses must override.

        Raises NotImplementedError.
        """
        raise NotImplementedError("must be implemented in subclass")

    def _collect_incoming_data(self, data: bytes) -> None:
        """A ready-made collector: keeps the pieces in ``incoming``."""
        self.incoming.append(data)

    def _get_data(self) -> bytes:
        """The pieces kept in ``incoming``, joined; ``incoming`` is emptied."""
        joined = b"".join(self.incoming)
        self.incoming.clear()
        return joined

    def found_terminator(self) -> None:
        """Called at the end of each message; subclasses must override.

        Raises NotImplementedError.
        """
        raise NotImplementedError("must be implemented in subclass")

    def set_terminator(self, term: Union[Terminator, str]) -> None:
        """Set what ends a message: bytes, a byte count, or None.

        * bytes (any length): the message ends where they appear; they are
          not passed to ``collect_incoming_data``;
        * an int: the message is that many bytes (``get_terminator()`` counts
          down as they arrive and reads 0 at the end);
        * ``None``, ``b""`` or 0: no end; everything is collected.

        A str is encoded with ``encoding`` when ``use_encoding`` is set;
        otherwise it is kept and the next read fails with TypeError (as in
        3.11).  Raises ValueError for a negative int.
        """
        if isinstance(term, str) and self.use_encoding:
            term = term.encode(self.encoding)
        elif isinstance(term, int) and term < 0:
            raise ValueError(f"the number of bytes to read cannot be negative: {term}")
        self.terminator = term

    def get_terminator(self) -> Any:
        """The current terminator; raises AttributeError if none was ever set."""
        return self.terminator

    def handle_read(self) -> None:
        """Receive up to ``ac_in_buffer_size`` bytes and frame them.

        When a read fills the whole buffer, more is probably waiting: up to
        16 reads are made in one call (3.11 made one), unless a subclass
        overrides ``readable()`` (it is asked before every read, by the
        loop), reading is paused or the channel closed.  A recv() that would
        block is ignored; any other OSError goes to ``handle_error``.
        Exceptions from the collect/found methods or a bad terminator
        propagate to the loop (which calls ``handle_error``); the bytes
        handed out before that are consumed.
        """
        # one loop, no helper per read, and the checks for reading again only
        # after a full read: this path runs on every read event
        reads = 1
        while True:
            size = self.ac_in_buffer_size
            try:
                # bytes, or str from a file-like "socket" under use_encoding
                data: Any = self.recv(size)
            except OSError as exc:
                # a spurious wake-up leaves nothing to read: not an error
                if not isinstance(exc, BlockingIOError):
                    self.handle_error()
                return
            if isinstance(data, str) and self.use_encoding:
                # 3.11 encoded the type ``str`` here instead of the data
                data = data.encode(self.encoding)
            framer = self._framer
            if framer is None:
                framer = self._inbound()
            if self.max_message_size is None and type(self).get_terminator is _OWN_GET_TERMINATOR:
                framer.receive(data, self)  # the channel is its own sink
            elif not self._receive_capped(framer, data):
                return
            if len(data) < size or self._reading_paused or not self.connected:
                return  # the usual case: the socket is drained
            if reads == _PIECES_PER_EVENT or type(self).readable is not _OWN_READABLE:
                return
            reads += 1

    def _receive_capped(self, framer: Framer, data: Any) -> bool:
        """Frame ``data`` through a :class:`_SizeGuard`; False if ``max_message_size`` was passed."""
        try:
            framer.receive(data, _SizeGuard(self))
        except _MessageTooLargeError as exc:
            self.handle_message_too_large(exc.size)
            return False
        return True

    def handle_message_too_large(self, size: int) -> None:
        """Called when one incoming message passes ``max_message_size`` bytes.

        ``size`` is what had arrived of it.  The default logs an error and
        closes this channel only; the bytes past the cap are not collected.
        """
        self.log_info(
            f"incoming message of {size} bytes or more passes max_message_size "
            f"({self.max_message_size}): closing {self!r}",
            "error",
        )
        self.discard_buffers()
        self.handle_close()

    def handle_close(self) -> None:
        """Close the channel (no warning, unlike ``dispatcher``)."""
        self.close()

    @pushes_interest
    def readable(self) -> bool:
        """True, unless output above ``output_high_water`` paused reading."""
        return not self._reading_paused

    @pushes_interest
    def writable(self) -> bool:
        """True while output is queued, or until the socket is connected."""
        return bool(self.producer_fifo) or not self.connected

    # -- output -----------------------------------------------------------------

    def push(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Queue ``data`` for sending and send what the socket takes now.

        Data longer than ``ac_out_buffer_size`` is queued in pieces of that
        size.  Raises TypeError for anything that is not bytes-like (str
        included: encode it first).
        """
        if not isinstance(data, _BYTES_LIKE):
            raise TypeError(f"push() takes bytes-like data, not {type(data).__name__}")
        if isinstance(data, memoryview):
            data = _byte_view(data)
        limit = self.ac_out_buffer_size
        size = len(data)
        if size > limit:
            if type(data) is bytes:
                # views of immutable bytes, not copies: slices would hold a
                # second copy of the whole push (peak RSS and a memcpy of it all)
                data = memoryview(data)
            self.producer_fifo.extend(data[i:i + limit] for i in range(0, size, limit))
        else:
            self.producer_fifo.append(data)
        self._queued += size
        if self.output_high_water is not None:
            self._check_water()
        self.initiate_send()

    @property
    def queued_output(self) -> int:
        """Bytes queued by ``push()`` and producers and not sent yet.

        Items appended to ``producer_fifo`` by hand are not counted.
        """
        return self._queued

    def _check_water(self) -> None:
        """Pause reading above ``output_high_water``; resume at the low mark."""
        high = self.output_high_water
        if high is None:
            if self._reading_paused:
                self._reading_paused = False
                self.interest_changed()
            return
        low = self.output_low_water
        if low is None:
            low = high // 2
        if self._reading_paused and self._queued <= low:
            self._reading_paused = False
            self.interest_changed()
        elif not self._reading_paused and self._queued > high:
            self._reading_paused = True
            self.interest_changed()

    def push_with_producer(self, producer: Any) -> None:
        """Queue a producer (an object whose ``more()`` returns the next bytes,
        and empty bytes when it is exhausted) and start sending."""
        self.producer_fifo.append(producer)
        self.initiate_send()

    def close_when_done(self) -> None:
        """Close the channel once everything queued before this call is sent."""
        self.producer_fifo.append(None)
        self.interest_changed()

    def discard_buffers(self) -> None:
        """Drop all pending input and queued output (for emergencies)."""
        self._inbound().reset()
        self.incoming.clear()
        self.producer_fifo.clear()
        self._queued = 0
        self._message_size = 0
        self._check_water()
        self.interest_changed()

    def handle_write(self) -> None:
        """The socket has room: send more (through ``initiate_send``)."""
        self.initiate_send()

    def initiate_send(self) -> None:
        """Send from the head of ``producer_fifo``, if connected.

        Producers are asked for ``more()``; a ``None`` closes the channel.
        Small byte items go out together, up to ``ac_out_buffer_size`` bytes
        per ``send()``; a partly sent item stays queued as a memoryview, not a
        copy.  While the socket takes whole pieces, up to 16 are sent per call
        (3.11 sent one; the bytes and their order are the same).  OSError from
        ``send()`` goes to ``handle_error``; TypeError for str output without
        ``use_encoding`` propagates."""
        fifo = self.producer_fifo
        try:
            for _ in range(_PIECES_PER_EVENT):
                if not self._send_piece(fifo):
                    return
        finally:
            # output left: the loop must wait for room to write.  An emptied FIFO
            # goes unreported: one needless write event at most, cheaper than a report per push
            if fifo:
                self.interest_changed()

    def _send_piece(self, fifo: Deque[Any]) -> bool:
        """One ``send()`` from the head of ``fifo``; True if it took the whole
        piece and more output is queued (the socket may well take more)."""
        while fifo and self.connected:
            head = fifo[0]
            kind = type(head)
            if (kind is not bytes and kind is not memoryview) or not head:
                ready = self._ready_head(fifo, head)
                if not ready:
                    if ready is None:
                        return False  # closed by close_when_done()
                    continue
            limit = self.ac_out_buffer_size
            alone = len(head) >= limit or len(fifo) == 1
            data, count = (head[:limit], 1) if alone else _gather(fifo, limit)
            if type(data) is not bytes and isinstance(data, _COPIED) and not self._takes_views():
                data = bytes(data)  # send() overrides expect bytes, as 3.11 gave
            try:
                sent = self.send(data)
            except OSError:
                self.handle_error()
                return False
            if not sent:
                return False
            self._sent(fifo, head, data, count, sent)
            return sent == len(data) and bool(fifo)
        return False

    def _takes_views(self) -> bool:
        """Whether ``send()`` is ours on a socket that takes a memoryview as it
        is: no copy of each piece (no memcpy of the whole push).  Any
        other ``send()`` (an override, a stand-in socket) is given bytes."""
        if type(self).send is not _PLAIN_SEND:
            return False
        kind = type(self.socket)
        return kind is _SOCKET or getattr(kind, "zero_copy_send", False) is True

    def _sent(self, fifo: Deque[Any], head: Any, data: Any, count: int, sent: int) -> None:
        """Account for ``sent`` bytes of ``data`` (the ``count`` items at the head of ``fifo``)."""
        left = self._queued - sent
        self._queued = left if left > 0 else 0
        if self._reading_paused:
            self._check_water()
        if count == 1 and sent >= len(head):
            fifo.popleft()
        else:
            _consume(fifo, head, data, count, sent)

    def _ready_head(self, fifo: Deque[Any], head: Any) -> Optional[bool]:
        """True if ``head`` can be sent as it is.  Otherwise changes the FIFO
        and returns False (an empty item dropped, a str encoded, a producer
        asked for more) or None (``None`` met: the channel was closed)."""
        if head is None:
            fifo.popleft()
            self.handle_close()
            return None
        if isinstance(head, _BYTES_LIKE):
            if head:
                return True
            fifo.popleft()
            return False
        if isinstance(head, str):
            if not self.use_encoding:
                raise TypeError("producer_fifo holds a str: encode it, or set use_encoding")
            fifo[0] = head.encode(self.encoding)
            self._queued += len(fifo[0]) - len(head)
            return False
        if not hasattr(head, "more"):
            return True  # sliceable data of another type, sent as is (as 3.11 did)
        data = head.more()
        if data:
            fifo.appendleft(data)
            self._queued += len(data)
        else:
            fifo.popleft()
        return False


class _MessageTooLargeError(Exception):
    """Raised inside the framer to stop it; handled by ``handle_read``."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _SizeGuard:
    """Stands for the channel in front of the framer, counting each message.

    Used only when ``max_message_size`` is set or the channel's class has a
    ``get_terminator()`` of its own, which the framer then asks through
    :attr:`terminator`; other channels are their own sink and pay nothing.
    The count lives on the channel, across reads.
    """

    __slots__ = ("_channel",)

    def __init__(self, channel: async_chat) -> None:
        self._channel = channel

    @property
    def terminator(self) -> Any:
        return self._channel.get_terminator()

    @terminator.setter
    def terminator(self, value: Any) -> None:
        self._channel.terminator = value

    def collect_incoming_data(self, data: bytes) -> None:
        channel = self._channel
        size = channel._message_size + len(data)
        limit = channel.max_message_size
        if limit is not None and size > limit:
            raise _MessageTooLargeError(size)
        channel._message_size = size
        channel.collect_incoming_data(data)

    def found_terminator(self) -> None:
        self._channel._message_size = 0
        self._channel.found_terminator()


def _gather(fifo: Deque[Any], limit: int) -> Any:
    """``(data, count)``: the first ``count`` byte items of ``fifo`` joined,
    at most ``limit`` bytes (the first item alone when the next does not fit)."""
    parts = []
    total = 0
    for item in fifo:
        if not isinstance(item, _BYTES_LIKE) or total + len(item) > limit:
            break
        parts.append(item)
        total += len(item)
    if len(parts) <= 1:
        return fifo[0], 1
    return b"".join(parts), len(parts)


def _consume(fifo: Deque[Any], head: Any, data: Any, count: int, sent: int) -> None:
    """Drop what ``send()`` took of ``data``, made of the ``count`` items at
    the head of ``fifo`` (the first of which is ``head``)."""
    if count == 1:
        fifo[0] = _rest(head, sent)  # a whole item sent is dropped by the caller
        return
    for _ in range(count):
        fifo.popleft()
    if sent < len(data):
        # keep the unsent part as one item so it is not joined again
        fifo.appendleft(memoryview(data)[sent:])


def _chat_interest(obj: async_chat) -> int:
    events = 0 if obj._reading_paused else _INPUT
    if obj.accepting:
        return listener_events(obj, events)
    if obj.producer_fifo or not obj.connected:
        events |= WRITE
    return events


_OWN_READABLE = async_chat.readable
_OWN_GET_TERMINATOR = async_chat.get_terminator

# one call instead of readable() + writable() + accepting, on the hot path
register_fast_interest(async_chat.readable, async_chat.writable, _chat_interest)


class simple_producer:
    """A producer over a bytes object, handing it out ``buffer_size`` at a time."""

    __module__ = "asynchat"

    def __init__(self, data: Any, buffer_size: int = 512) -> None:
        self._data = data
        self._offset = 0  # bytes of _data already handed out
        self.buffer_size = buffer_size

    @property
    def data(self) -> Any:
        """What has not been handed out yet."""
        if self._offset:
            return self._data[self._offset:]
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = value
        self._offset = 0

    def more(self) -> Any:
        """The next piece (at most ``buffer_size``); ``b""`` once exhausted."""
        start = self._offset
        end = start + self.buffer_size
        if len(self._data) > end:
            self._offset = end
            return self._data[start:end]
        rest = self._data[start:] if start else self._data
        self.data = b""
        return rest
