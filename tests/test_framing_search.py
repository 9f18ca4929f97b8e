"""The framer's search for a multi-byte terminator in large buffers.

``find_terminator`` must give exactly what ``bytes.find`` gives, wherever
the terminator sits relative to the bounded first search and to the
candidate bytes it checks one by one; the framer must cut long messages
the same whichever search it used.
"""

from __future__ import annotations

from typing import List

from hypothesis import example, given, settings
from hypothesis import strategies as st

from asyncio_compat._framing import Framer, find_terminator

# few distinct bytes: the terminator's bytes recur often, as decoys
_ALPHABET = st.sampled_from([b"a", b"\r", b"\n", b"x"])
_TERMINATORS = st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\r\n\r\n", b"a\r", b"xa\nx"])


def _buffers(max_parts: int = 40) -> st.SearchStrategy[bytes]:
    """Buffers past the bounded first search: runs of one byte, some long."""
    run = st.tuples(_ALPHABET, st.integers(1, 400)).map(lambda pair: pair[0] * pair[1])
    return st.lists(run, max_size=max_parts).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(buffer=_buffers(), terminator=_TERMINATORS, start=st.integers(0, 3000))
@example(buffer=b"a" * 511 + b"\r\n" + b"a" * 600, terminator=b"\r\n", start=0)  # across the bound
@example(buffer=b"a" * 700 + b"\n" * 9 + b"\r\n", terminator=b"\r\n", start=0)  # decoys, then fallback
@example(buffer=b"a" * 700 + b"\n" * 3 + b"\r\n", terminator=b"\r\n", start=0)  # decoys, then a hit
@example(buffer=b"a" * 2000, terminator=b"\r\n", start=0)  # absent
@example(buffer=b"a" * 2000 + b"\r", terminator=b"\r\n", start=5)  # only a partial one at the end
def test_the_search_finds_what_bytes_find_finds(buffer: bytes, terminator: bytes, start: int) -> None:
    assert find_terminator(buffer, terminator, start) == buffer.find(terminator, start)


def test_a_terminator_longer_than_the_bounded_search_is_found_too() -> None:
    terminator = b"-" * 600 + b"END"
    buffer = b"-" * 5000 + terminator + b"tail"
    assert find_terminator(buffer, terminator, 0) == buffer.find(terminator)


class _Messages:
    """A sink that joins the pieces of each message."""

    terminator = b"\r\n"

    def __init__(self) -> None:
        self.messages: List[bytes] = []
        self.pieces: List[bytes] = []

    def collect_incoming_data(self, data: bytes) -> None:
        self.pieces.append(data)

    def found_terminator(self) -> None:
        self.messages.append(b"".join(self.pieces))
        self.pieces = []


def _without_crlf(data: bytes) -> bytes:
    while b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    return data


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(_buffers(12).map(_without_crlf), min_size=1, max_size=8),
       sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=12))
def test_long_and_short_messages_are_cut_the_same_in_any_reads(
    messages: List[bytes], sizes: List[int],
) -> None:
    stream = b"".join(message + b"\r\n" for message in messages)
    sink = _Messages()
    framer = Framer()
    position = 0
    turn = 0
    while position < len(stream):
        size = sizes[turn % len(sizes)]
        framer.receive(stream[position:position + size], sink)
        position += size
        turn += 1
    assert sink.messages == messages
    assert framer.pending_size == 0


def test_a_message_of_many_reads_then_short_ones_in_one_read() -> None:
    sink = _Messages()
    framer = Framer()
    body = (b"\n" * 3 + b"a" * 997) * 300  # 300 kB, decoy line feeds all along
    for offset in range(0, len(body), 65536):
        framer.receive(body[offset:offset + 65536], sink)
    framer.receive(b"\r\nshort\r\nalso short\r\npart", sink)
    assert sink.messages == [body, b"short", b"also short"]
    assert sink.pieces == [b"part"]  # handed out: no partial terminator ends the read
