"""The sans-IO terminator search, tested on bytes alone (no sockets, no loop)."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asyncio_compat._framing import Framer, find_prefix_at_end

Call = Tuple[Any, ...]


# -- a sink that records what the framer asks of it --------------------------------------


class Recorder:
    """Plays the channel: logs every call, and moves along a terminator
    schedule at each found (as a protocol's found_terminator would)."""

    def __init__(self, schedule: Sequence[Any] = (), framer: Optional[Framer] = None) -> None:
        self.schedule = list(schedule)
        self.wanted = self.schedule.pop(0) if self.schedule else None  # the terminator the protocol wants now
        self.framer = framer if framer is not None else Framer()
        self.calls: List[Call] = []
        self.messages: List[bytes] = []
        self.current: List[bytes] = []
        self.held_while_cutting: List[int] = []

    @property
    def terminator(self) -> Any:
        self.held_while_cutting.append(self.framer.held)
        return self.wanted

    @terminator.setter
    def terminator(self, value: Any) -> None:
        # only an int terminator counting down is written by the framer
        self.calls.append(("terminator", value))
        self.wanted = value

    def collect_incoming_data(self, data: bytes) -> None:
        assert type(data) is bytes and data, "only non-empty bytes are handed out"
        self.calls.append(("collect", data))
        self.current.append(data)

    def found_terminator(self) -> None:
        self.calls.append(("found",))
        self.messages.append(b"".join(self.current))
        self.current = []
        self.wanted = self.schedule.pop(0) if self.schedule else None

    def receive(self, data: bytes) -> List[Call]:
        """Feed one read; the calls it caused."""
        before = len(self.calls)
        self.framer.receive(data, self)
        return self.calls[before:]

    def tail(self) -> bytes:
        """Data collected since the last found plus what the framer holds back."""
        return b"".join(self.current) + self.framer.pending


def whole_stream(stream: bytes, schedule: Sequence[Any]) -> Tuple[List[bytes], bytes]:
    """The messages a terminator schedule cuts from a stream seen all at once."""
    messages: List[bytes] = []
    position = 0
    for terminator in schedule:
        if not terminator:
            break
        if isinstance(terminator, int):
            end = position + terminator
            if end > len(stream):
                break
            messages.append(stream[position:end])
            position = end
            continue
        index = stream.find(terminator, position)
        if index < 0:
            break
        messages.append(stream[position:index])
        position = index + len(terminator)
    return messages, stream[position:]


def chunked(stream: bytes, sizes: Sequence[int], limit: int) -> List[bytes]:
    """Cut ``stream`` in pieces of the given sizes (cycled), none above ``limit``."""
    pieces: List[bytes] = []
    position = 0
    while position < len(stream):
        size = min(sizes[len(pieces) % len(sizes)], limit)
        pieces.append(stream[position:position + size])
        position += size
    return pieces


def run(schedule: Sequence[Any], pieces: Sequence[bytes]) -> Recorder:
    recorder = Recorder(schedule)
    for piece in pieces:
        recorder.receive(piece)
    return recorder


TERMINATORS = st.sampled_from(
    [b"\n", b"\r\n", b"aba", b"abab", b"aaa", b"a\r\na", 1, 2, 5, 13, None, b"", 0]
)
STREAMS = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"a", b"b", b"\r", b"\n", b"\r\n", b"ab", b"xyz"]), max_size=120
).map(b"".join)


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    stream=STREAMS,
    schedule=st.lists(TERMINATORS, min_size=1, max_size=40),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=10),
    buffer_size=st.integers(1, 65536),
)
@example(stream=b"ab\r\ncd\r\n", schedule=[b"\r\n", b"\r\n"], sizes=[3], buffer_size=1)
@example(stream=b"abababab", schedule=[b"abab", b"abab"], sizes=[1, 2, 3], buffer_size=3)
def test_any_chunking_cuts_the_messages_of_the_whole_stream(
    stream: bytes, schedule: List[Any], sizes: List[int], buffer_size: int
) -> None:
    expected_messages, expected_tail = whole_stream(stream, schedule)
    recorder = run(schedule, chunked(stream, sizes, buffer_size))
    assert recorder.messages == expected_messages
    assert recorder.tail() == expected_tail


def found_and_collected(calls: List[Call]) -> List[Call]:
    """The calls with consecutive collects merged and countdowns left out."""
    merged: List[Call] = []
    for call in calls:
        if call[0] == "collect" and merged and merged[-1][0] == "collect":
            merged[-1] = ("collect", merged[-1][1] + call[1])
        elif call[0] != "terminator":
            merged.append(call)
    return merged


@settings(max_examples=300, deadline=None)
@given(stream=STREAMS, schedule=st.lists(TERMINATORS, min_size=1, max_size=40),
       sizes=st.lists(st.integers(1, 40), min_size=1, max_size=10))
def test_one_read_and_many_reads_make_the_same_calls(
    stream: bytes, schedule: List[Any], sizes: List[int]
) -> None:
    at_once = run(schedule, [stream])
    piecewise = run(schedule, chunked(stream, sizes, 65536))
    # the data collected between two founds is the same; only where it is cut differs
    assert found_and_collected(piecewise.calls) == found_and_collected(at_once.calls)
    assert piecewise.messages == at_once.messages
    assert piecewise.tail() == at_once.tail()


@settings(max_examples=300, deadline=None)
@given(stream=STREAMS, terminator=st.sampled_from([b"\n", b"\r\n", b"abab", b"a\r\na"]),
       sizes=st.lists(st.integers(1, 64), min_size=1, max_size=10))
def test_between_reads_at_most_a_partial_terminator_is_held(
    stream: bytes, terminator: bytes, sizes: List[int]
) -> None:
    recorder = Recorder([terminator] * (len(stream) + 1))
    for piece in chunked(stream, sizes, 65536):
        recorder.receive(piece)
        assert recorder.framer.held == recorder.framer.pending_size <= len(terminator) - 1
        held = recorder.framer.pending
        assert held == terminator[: len(held)], "only a prefix of the terminator is held"


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 50), sizes=st.lists(st.integers(1, 30), min_size=1, max_size=5),
       stream=st.binary(max_size=120))
def test_an_int_terminator_counts_down_across_reads(count: int, sizes: List[int], stream: bytes) -> None:
    recorder = Recorder([count])
    seen = 0
    for piece in chunked(stream, sizes, 65536):
        recorder.receive(piece)
        if not recorder.messages:
            seen += len(piece)
            assert recorder.terminator == count - seen
    if len(stream) >= count:
        assert recorder.messages == [stream[:count]]
        assert recorder.terminator is None  # the schedule moved on after the found
    else:
        assert recorder.messages == []
        assert recorder.tail() == stream


# -- every terminator kind, by example -----------------------------------------------------


@pytest.mark.parametrize("terminator", [None, b"", 0])
def test_no_terminator_hands_everything_out_without_copying(terminator: Any) -> None:
    recorder = Recorder([terminator])
    data = b"x" * 1000 + b"\r\n"
    assert recorder.receive(data) == [("collect", data)]
    assert recorder.calls[0][1] is data, "a whole read is handed out as is"
    assert recorder.framer.pending == b"" and recorder.framer.held == 0


def test_a_terminator_at_the_start_collects_nothing_before_found() -> None:
    recorder = Recorder([b"\n"] * 4)
    assert recorder.receive(b"\n\nab\n") == [("found",), ("found",), ("collect", b"ab"), ("found",)]


def test_a_partial_terminator_is_held_until_the_next_read() -> None:
    recorder = Recorder([b"\r\n", b"\r\n"])
    assert recorder.receive(b"hello\r") == [("collect", b"hello")]
    assert recorder.framer.pending == b"\r"
    assert recorder.receive(b"\nnext") == [("found",), ("collect", b"next")]


def test_a_held_prefix_that_turns_out_not_to_be_the_terminator_is_data() -> None:
    recorder = Recorder([b"abc"])
    assert recorder.receive(b"ab") == []
    assert recorder.framer.pending == b"ab"
    assert recorder.receive(b"x") == [("collect", b"abx")]
    assert recorder.framer.held == 0


def test_a_long_terminator_with_a_repeated_prefix_is_held_exactly() -> None:
    recorder = Recorder([b"aab"])
    assert recorder.receive(b"xaaa") == [("collect", b"xa")]
    assert recorder.framer.pending == b"aa"
    assert recorder.receive(b"b") == [("found",)]


def test_an_int_terminator_reports_the_count_left_then_zero() -> None:
    recorder = Recorder([5, None])
    assert recorder.receive(b"abc") == [("collect", b"abc"), ("terminator", 2)]
    assert recorder.receive(b"defg") == [
        ("collect", b"de"), ("terminator", 0), ("found",), ("collect", b"fg"),
    ]


def test_a_terminator_changed_at_found_applies_to_the_rest_of_the_read() -> None:
    recorder = Recorder([b"\r\n", 5, b".", None])
    assert recorder.receive(b"LEN 5\r\nhello.tail") == [
        ("collect", b"LEN 5"), ("found",),
        ("collect", b"hello"), ("terminator", 0), ("found",),
        ("found",),
        ("collect", b"tail"),
    ]


def test_replacing_the_pending_bytes_mid_read_changes_what_follows() -> None:
    class Rewriter(Recorder):
        def found_terminator(self) -> None:
            super().found_terminator()
            if len(self.messages) == 1:
                assert self.framer.pending == b"two\nthree\n"
                self.framer.pending = b"new\n"

    recorder = Rewriter([b"\n"] * 5)
    recorder.receive(b"one\ntwo\nthree\n")
    assert recorder.messages == [b"one", b"new"]


def test_bytes_handed_out_stay_consumed_when_the_sink_raises() -> None:
    class Failing(Recorder):
        def found_terminator(self) -> None:
            super().found_terminator()
            raise RuntimeError("handler failed")

    recorder = Failing([b"\n"] * 3)
    with pytest.raises(RuntimeError):
        recorder.receive(b"a\nb\n")
    assert recorder.framer.pending == b"b\n"
    with pytest.raises(RuntimeError):
        recorder.receive(b"")
    assert recorder.messages == [b"a", b"b"]
    assert recorder.framer.pending == b""


@pytest.mark.parametrize("terminator", [bytearray(b"\r\n"), memoryview(b"\r\n")])
def test_bytearray_and_memoryview_terminators_work_as_bytes(terminator: Any) -> None:
    recorder = Recorder([terminator, terminator])
    assert recorder.receive(b"a\r\nb\r") == [("collect", b"a"), ("found",), ("collect", b"b")]
    assert recorder.framer.pending == b"\r"


def test_bytearray_and_memoryview_reads_are_taken_as_bytes() -> None:
    recorder = Recorder([b"\n"] * 3)
    recorder.receive(bytearray(b"a\nb"))  # type: ignore[arg-type]
    recorder.receive(memoryview(b"c\n"))  # type: ignore[arg-type]
    assert recorder.messages == [b"a", b"bc"]


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terminator", "error", "words"),
    [
        ("\r\n", TypeError, "str terminator"),
        (1.5, TypeError, "not float"),
        (-1, ValueError, "negative"),
    ],
)
def test_a_bad_terminator_raises_and_consumes_nothing(terminator: Any, error: type, words: str) -> None:
    recorder = Recorder([terminator])
    with pytest.raises(error, match=words):
        recorder.receive(b"abc\r\n")
    assert recorder.framer.pending == b"abc\r\n"
    assert recorder.calls == []


def test_text_is_refused_before_anything_is_taken() -> None:
    recorder = Recorder([b"\r\n"])
    recorder.receive(b"ab\r")
    with pytest.raises(TypeError, match="received data must be bytes, not str"):
        recorder.receive("abc")  # type: ignore[arg-type]
    assert recorder.framer.pending == b"\r"


def test_an_empty_read_is_not_end_of_stream() -> None:
    recorder = Recorder([b"\r\n", b"\r\n"])
    recorder.receive(b"ab\r")
    assert recorder.receive(b"") == []
    assert recorder.framer.pending == b"\r"


def test_an_empty_read_hands_out_what_a_new_terminator_completes() -> None:
    recorder = Recorder([b"\r\n"])
    recorder.receive(b"ab\r")
    recorder.wanted = None  # the protocol changes its mind without telling the framer
    assert recorder.receive(b"") == [("collect", b"\r")]


# -- linear cost, shown by what the framer copies and keeps ---------------------------------


def test_many_short_lines_in_large_reads_copy_each_byte_a_bounded_number_of_times() -> None:
    line = b"0123456789abcde\r\n"  # 17 bytes: reads of 64 KiB cut lines anywhere
    stream = line * 30_000
    read_size = 65536
    recorder = Recorder([b"\r\n"] * 30_001)
    reads = chunked(stream, [read_size], read_size)
    for piece in reads:
        recorder.receive(piece)
        # one buffer (this read plus a held "\r") serves the whole read: the
        # rest is never re-sliced at a terminator
        assert set(recorder.held_while_cutting) <= {len(piece), len(piece) + 1}
        assert len(set(recorder.held_while_cutting)) == 1
        recorder.held_while_cutting.clear()
    assert len(recorder.messages) == 30_000
    # reads that follow a held "\r" are copied once to join it; nothing else is
    assert recorder.framer.bytes_copied <= len(stream) + len(reads) * 2
    # pieces handed out add each data byte once
    assert sum(len(call[1]) for call in recorder.calls if call[0] == "collect") == 30_000 * 15


def test_one_huge_message_without_terminator_is_never_copied_by_the_framer() -> None:
    read = bytes(range(256)) * 256  # 64 KiB, no "\r\n" in it
    recorder = Recorder([b"\r\n"])
    for _ in range(200):  # 12.5 MiB
        recorder.receive(read)
        assert recorder.framer.held == 0
        assert recorder.calls[-1][1] is read
    assert len(recorder.calls) == 200
    assert recorder.framer.bytes_copied == 0


# -- find_prefix_at_end --------------------------------------------------------------------


def test_find_prefix_at_end_examples() -> None:
    assert find_prefix_at_end("qwerty\r", "\r\n") == 1
    assert find_prefix_at_end("qwertydkjf", "\r\n") == 0
    assert find_prefix_at_end(b"xxab", b"abc") == 2
    assert find_prefix_at_end(b"ab", b"abc") == 2
    assert find_prefix_at_end(b"", b"abc") == 0
    assert find_prefix_at_end(b"abc", b"") == 0


@settings(max_examples=300, deadline=None)
@given(haystack=st.text(alphabet="ab\r\n", max_size=30), needle=st.text(alphabet="ab\r\n", max_size=8))
def test_find_prefix_at_end_is_the_longest_proper_prefix_ending_the_haystack(
    haystack: str, needle: str
) -> None:
    longest = max(
        (size for size in range(1, len(needle)) if haystack.endswith(needle[:size])), default=0
    )
    assert find_prefix_at_end(haystack, needle) == longest
    assert find_prefix_at_end(haystack.encode(), needle.encode()) == longest


def test_pending_bytes_set_while_a_read_without_terminator_is_collected_are_framed() -> None:
    class Refiller(Recorder):
        def collect_incoming_data(self, data: bytes) -> None:
            super().collect_incoming_data(data)
            if len(self.calls) == 1:
                self.framer.pending = refill

    refill = b"later\n"
    recorder = Refiller([b"\n"] * 3)
    recorder.receive(b"no end here")  # the whole read is collected, then the sink refills
    assert recorder.calls == [("collect", b"no end here"), ("collect", b"later"), ("found",)]
    assert recorder.framer.pending == b""


def test_pending_set_to_the_very_read_collected_is_handed_out_again() -> None:
    class Repeater(Recorder):
        def collect_incoming_data(self, data: bytes) -> None:
            super().collect_incoming_data(data)
            if len(self.calls) == 1:
                self.framer.pending = data  # the same object the read was

    recorder = Repeater([b"\n"])
    recorder.receive(b"again")
    assert recorder.calls == [("collect", b"again"), ("collect", b"again")]
