"""A model-based test of ``asyncore.loop()``: random programs checked against a model.

Hypothesis drives a state machine that opens channels (socket pairs and
loopback TCP pairs), writes from the peer, half-closes and resets the peer,
closes channels from outside and from inside handlers and timers, reuses fd
numbers (in the same pass and between passes), adds and cancels timers,
changes interest by hand and runs the loop one pass at a time.  A plain
model says what must have happened:

* each channel received exactly the bytes its peer sent, in order (a prefix
  of them once it closed, or after a reset);
* a channel whose peer ended the stream (EOF or reset) got ``handle_close``;
  one whose peer is still connected never did;
* no event reaches a channel after it closed, nor a channel in the pass that
  created it (such an event was collected for the fd's previous owner), nor
  a read event a channel whose ``readable()`` said no;
* what a channel queued by hand (``out_buffer`` plus ``interest_changed()``)
  reached its peer;
* a timer runs once, not before its deadline, never after ``cancel()``;
* at the end the map is empty and every socket is closed (the autouse
  fixture of conftest.py also fails the test on a leaked fd).

It runs on every available backend and on the kqueue and /dev/poll fakes.
The runs are derandomised so that CI sees the same programs every time.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import pytest
from fakes import install_devpoll, install_kqueue
from fakes.support import quick
from helpers import release_map
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import pollers
from asyncio_compat import SocketMap, asyncore
from asyncio_compat.timers import TimerHandle, call_later
from pollers._devpoll import DevpollPoller
from pollers._kqueue import KqueuePoller

pytestmark = pytest.mark.timeout(300)

# Bounded so that one backend takes a few seconds; derandomised and without
# an example database so that every run (and CI) tries the same programs.
MODEL_SETTINGS = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

MAX_CHANNELS = 6
CHUNK = 7  # small reads: a write from the peer often takes several passes
PICK = st.integers(min_value=0, max_value=7)
PAYLOAD = st.binary(min_size=1, max_size=40)
TRANSPORT = st.sampled_from(["unix", "tcp"])
SETTLE_SECONDS = 5.0
# Timers may run up to one clock tick early (a deadline within the monotonic
# clock's resolution counts as reached; asyncio_compat/_timers.py): no more.
TIMER_SLACK = max(time.get_clock_info("monotonic").resolution, 1e-6) + 1e-9


@dataclass
class Record:
    """What the model knows about one channel and its peer."""

    serial: int
    kind: str  # "plain", "buffered" or "gated"
    transport: str  # "unix" or "tcp"
    fd: int
    peer: socket.socket
    chan: Any = None  # the Probe
    born_pass: Optional[int] = None  # set when created inside a pass
    sent: bytearray = field(default_factory=bytearray)  # by the peer
    received: bytearray = field(default_factory=bytearray)  # by the channel
    queued: bytearray = field(default_factory=bytearray)  # by the channel, to the peer
    peer_got: bytearray = field(default_factory=bytearray)
    eof_sent: bool = False
    reset: bool = False
    closed: bool = False
    closed_by: Optional[str] = None
    close_seen: bool = False  # handle_close ran
    on_read: Optional[Tuple[str, Record]] = None  # what the next read does

    def peer_can_write(self) -> bool:
        return not (self.closed or self.eof_sent or self.reset)

    def reads_now(self) -> bool:
        return not self.closed and getattr(self.chan, "gate", True)


class Probe(asyncore.dispatcher):
    """Built-in predicates (READ and WRITE, interest pushed); reports to the model."""

    def __init__(
        self, sock: socket.socket, socket_map: Dict[int, Any], record: Record, machine: LoopModel
    ) -> None:
        self.record, self.machine = record, machine
        super().__init__(sock, map=socket_map)

    def handle_read(self) -> None:
        self.machine.saw(self.record, "read")
        data = self.recv(CHUNK)
        self.record.received += data
        if data and self.record.on_read is not None:
            action, other = self.record.on_read
            self.record.on_read = None
            self.machine.act_inside(self.record, action, other)

    def handle_write(self) -> None:
        self.machine.saw(self.record, "write")

    def handle_expt(self) -> None:
        self.machine.saw(self.record, "expt")

    def handle_close(self) -> None:
        self.machine.saw(self.record, "close")
        self.record.close_seen = True
        self.record.closed_by = self.record.closed_by or "handle_close"
        self.close()

    def handle_error(self) -> None:
        self.machine.violation(f"#{self.record.serial}: handle_error for {sys.exc_info()[1]!r}")
        self.close()

    def close(self) -> None:
        self.record.closed = True
        super().close()


class BufferedProbe(Probe, asyncore.dispatcher_with_send):
    """dispatcher_with_send's pushed predicates: WRITE only while output waits."""

    def handle_write(self) -> None:
        self.machine.saw(self.record, "write")
        asyncore.dispatcher_with_send.handle_write(self)


class GatedProbe(Probe):
    """Overrides both predicates (so it is asked every pass); the test opens and shuts the gate."""

    gate = True

    def readable(self) -> bool:
        return self.gate

    def writable(self) -> bool:
        return False


PROBES: Dict[str, Type[Probe]] = {"plain": Probe, "buffered": BufferedProbe, "gated": GatedProbe}


@dataclass
class TimerRecord:
    serial: int
    handle: TimerHandle
    target: Optional[Record]  # a channel the callback closes
    fired: int = 0
    cancelled: bool = False


def _on_fd(sock: socket.socket, fd: int) -> socket.socket:
    """``sock`` moved to the free descriptor ``fd`` (dup2), so that ``fd`` is reused."""
    os.dup2(sock.fileno(), fd)
    moved = socket.socket(fileno=fd)
    sock.close()
    return moved


def _is_free(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


class LoopModel(RuleBasedStateMachine):
    backend: Any = None  # a backend name or Poller class, set per test

    def __init__(self) -> None:
        super().__init__()
        self.records: List[Record] = []
        self.timers: List[TimerRecord] = []
        self.problems: List[str] = []
        self.socket_map: Dict[int, Any] = SocketMap()
        self.listener: Optional[socket.socket] = None
        self.pass_no = 0
        self.in_pass = False
        self.reaped: List[socket.socket] = []

    @initialize(
        map_type=st.sampled_from(["SocketMap", "dict"]),
        first=st.lists(st.tuples(st.sampled_from(sorted(PROBES)), TRANSPORT), min_size=2, max_size=4),
    )
    def start(self, map_type: str, first: List[Tuple[str, str]]) -> None:
        """A map of either kind with a few channels: most interesting cases need two."""
        if map_type == "dict":
            self.socket_map = {}
        for kind, transport in first:
            self._open(kind, transport)

    # -- the model's checks, called from the handlers ---------------------------

    def violation(self, text: str) -> None:
        self.problems.append(f"pass {self.pass_no}: {text}")

    def saw(self, record: Record, what: str) -> None:
        name = f"#{record.serial} ({record.kind}, fd {record.fd})"
        if record.closed:
            self.violation(f"{name} got a {what} event after it closed ({record.closed_by})")
        if self.in_pass and record.born_pass == self.pass_no:
            self.violation(
                f"{name} got a {what} event in the pass that created it: "
                "an event of the fd's previous owner"
            )
        if what == "read" and not getattr(record.chan, "gate", True):
            self.violation(f"{name} got a read event while readable() said no")
        if what == "close" and not (record.eof_sent or record.reset):
            self.violation(f"{name} got handle_close while its peer is still connected")

    # -- opening and closing -----------------------------------------------------

    def open_records(self) -> List[Record]:
        return [r for r in self.records if not r.closed]

    def _new_pair(self, transport: str) -> Tuple[socket.socket, socket.socket]:
        if transport == "unix":
            return socket.socketpair()
        if self.listener is None:
            self.listener = socket.create_server(("127.0.0.1", 0), backlog=8)
        peer = socket.create_connection(self.listener.getsockname())
        mine, _ = self.listener.accept()
        return mine, peer

    def _open(self, kind: str, transport: str, reuse: Optional[int] = None) -> Record:
        mine, peer = self._new_pair(transport)
        if reuse is not None and mine.fileno() != reuse:
            if peer.fileno() == reuse:
                mine, peer = peer, mine
            elif _is_free(reuse):
                mine = _on_fd(mine, reuse)
        peer.setblocking(False)
        record = Record(len(self.records), kind, transport, mine.fileno(), peer)
        if self.in_pass:
            record.born_pass = self.pass_no
        self.records.append(record)
        record.chan = PROBES[kind](mine, self.socket_map, record, self)
        return record

    def _close(self, record: Record, how: str) -> None:
        if not record.closed:
            record.closed_by = how
            record.chan.close()

    def _replace(self, record: Record, how: str) -> None:
        """Close ``record``'s channel and open a new one on the same fd number."""
        fd = record.fd
        self._close(record, how)
        self._open(record.kind, record.transport, reuse=fd)

    def act_inside(self, record: Record, action: str, other: Record) -> None:
        if action == "close-self":
            self._close(record, "its own handler")
        elif action == "close-other":
            self._close(other, f"#{record.serial}'s handler")
        elif not other.closed:
            self._replace(other, f"#{record.serial}'s handler (fd reused)")

    def _reap(self) -> None:
        """Close the peers of closed channels, freeing their numbers for reuse."""
        for r in self.records:
            if r.closed and r.peer.fileno() != -1:
                r.peer.close()

    # -- running the loop --------------------------------------------------------

    def _pass(self, timeout: float, use_poll: bool) -> None:
        self._reap()
        self.pass_no += 1
        self.in_pass = True
        try:
            asyncore.loop(
                timeout=timeout, use_poll=use_poll, map=self.socket_map, count=1, poller=self.backend
            )
        finally:
            self.in_pass = False
        self._check_prefixes()
        assert not self.problems, "\n".join(self.problems)

    def _check_prefixes(self) -> None:
        for r in self.records:
            if bytes(r.received) != bytes(r.sent[: len(r.received)]):
                self.violation(f"#{r.serial} received {bytes(r.received)!r}, peer sent {bytes(r.sent)!r}")

    def _drain_peers(self) -> None:
        for r in self.records:
            if r.peer.fileno() == -1 or r.reset:
                continue
            while True:
                try:
                    data = r.peer.recv(4096)
                except (BlockingIOError, ConnectionError):
                    break
                if not data:
                    break
                r.peer_got += data

    def _unsettled(self) -> List[str]:
        """What the model still waits for; [] once every expectation holds."""
        waiting = []
        for r in self.records:
            name = f"#{r.serial} ({r.kind}/{r.transport}, fd {r.fd})"
            if r.reads_now() and (r.eof_sent or r.reset):
                waiting.append(f"{name}: no handle_close after the peer's {'reset' if r.reset else 'EOF'}")
            elif r.reads_now() and r.received != r.sent:
                waiting.append(f"{name}: received {bytes(r.received)!r} of {bytes(r.sent)!r}")
            if r.close_seen and r.eof_sent and not r.reset and r.received != r.sent:
                waiting.append(f"{name}: closed at EOF with {bytes(r.received)!r} of {bytes(r.sent)!r}")
            if not r.closed and r.peer_got != r.queued:
                waiting.append(f"{name}: peer got {bytes(r.peer_got)!r} of {bytes(r.queued)!r}")
        for t in self.timers:
            if not t.cancelled and t.fired != 1:
                waiting.append(f"timer {t.serial} ran {t.fired} times")
        return waiting

    # -- rules ---------------------------------------------------------------------

    @rule(kind=st.sampled_from(sorted(PROBES)), transport=TRANSPORT)
    def open_channel(self, kind: str, transport: str) -> None:
        if len(self.open_records()) >= MAX_CHANNELS:
            return
        self._reap()
        self._open(kind, transport)

    def _pick(self, pick: int, wanted: Callable[[Record], bool]) -> Optional[Record]:
        found = [r for r in self.records if wanted(r)]
        return found[pick % len(found)] if found else None

    @rule(pick=PICK, payload=PAYLOAD)
    def peer_writes(self, pick: int, payload: bytes) -> None:
        r = self._pick(pick, Record.peer_can_write)
        if r is None:
            return
        r.peer.sendall(payload)
        r.sent += payload

    @rule(pick=PICK)
    def peer_half_closes(self, pick: int) -> None:
        r = self._pick(pick, Record.peer_can_write)
        if r is None:
            return
        r.peer.shutdown(socket.SHUT_WR)
        r.eof_sent = True

    @rule(pick=PICK)
    def peer_resets(self, pick: int) -> None:
        r = self._pick(pick, lambda r: r.peer_can_write() and r.transport == "tcp")
        if r is None:
            return
        r.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        r.peer.close()  # SO_LINGER 0: the close sends RST
        r.reset = True

    @rule(pick=PICK, reuse=st.booleans())
    def close_from_outside(self, pick: int, reuse: bool) -> None:
        r = self._pick(pick, lambda r: not r.closed)
        if r is None:
            return
        if reuse:
            self._replace(r, "the test, between passes (fd reused)")
        else:
            self._close(r, "the test, between passes")

    @rule(
        pick=PICK,
        other=PICK,
        action=st.sampled_from(["replace-other", "close-other", "close-self"]),
        payload=PAYLOAD,
    )
    def arm_handler(self, pick: int, other: int, action: str, payload: bytes) -> None:
        """The channel's next read closes it, or closes another (and reuses its fd).

        With two channels both are armed against each other and both get
        data: whichever the pass serves first closes the other while the
        other's event is still pending, whatever order the backend reports.
        """
        r = self._pick(pick, lambda r: r.peer_can_write() and r.reads_now())
        if r is None:
            return
        o = self._pick(other, lambda x: not x.closed and x is not r) or r
        r.on_read = (action, o)
        r.peer.sendall(payload)
        r.sent += payload
        if o is not r and o.peer_can_write():
            if action != "close-self":
                o.on_read = (action, r)
            o.peer.sendall(payload[:1])
            o.sent += payload[:1]

    @rule(pick=PICK)
    def toggle_gate(self, pick: int) -> None:
        r = self._pick(pick, lambda r: r.kind == "gated" and not r.closed)
        if r is None:
            return
        chan: Any = r.chan
        chan.gate = not chan.gate

    @rule(pick=PICK, payload=PAYLOAD)
    def queue_by_hand(self, pick: int, payload: bytes) -> None:
        """Fill out_buffer directly and say so with interest_changed()."""
        r = self._pick(pick, lambda r: r.kind == "buffered" and not r.closed)
        if r is None:
            return
        chan: Any = r.chan
        chan.out_buffer += payload
        r.queued += payload
        chan.interest_changed()

    @rule(delay=st.sampled_from([0.0, 0.001, 0.01]), pick=st.none() | PICK)
    def add_timer(self, delay: float, pick: Optional[int]) -> None:
        target = None if pick is None else self._pick(pick, lambda r: not r.closed)
        serial = len(self.timers)
        holder: List[TimerRecord] = []
        handle = call_later(delay, self._fire, holder, map=self.socket_map)
        holder.append(TimerRecord(serial, handle, target))
        self.timers.append(holder[0])

    def _fire(self, holder: List[TimerRecord]) -> None:
        t = holder[0]
        if t.cancelled:
            self.violation(f"timer {t.serial} ran after cancel()")
        if t.fired:
            self.violation(f"timer {t.serial} ran twice")
        if time.monotonic() + TIMER_SLACK < t.handle.when:
            self.violation(f"timer {t.serial} ran before its deadline")
        t.fired += 1
        if t.target is not None:
            self._close(t.target, f"timer {t.serial}")

    @rule(pick=PICK)
    def cancel_timer(self, pick: int) -> None:
        live = [t for t in self.timers if not t.fired and not t.cancelled]
        if not live:
            return
        t = live[pick % len(live)]
        t.handle.cancel()
        t.cancelled = True

    @rule(timeout=st.sampled_from([0.0, 0.002]), use_poll=st.booleans())
    def run_one_pass(self, timeout: float, use_poll: bool) -> None:
        self._pass(timeout, use_poll)

    @rule(use_poll=st.booleans())
    def settle(self, use_poll: bool) -> None:
        """Run passes until the model's expectations hold (or fail naming what is missing)."""
        # by the clock, not by a count of passes: an always-writable
        # channel makes every pass return at once
        give_up = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < give_up:
            self._drain_peers()
            if not self._unsettled():
                return
            self._pass(0.002, use_poll)
        self._drain_peers()
        assert not self._unsettled(), "\n".join(self._unsettled())

    @invariant()
    def no_violation(self) -> None:
        assert not self.problems, "\n".join(self.problems)

    def teardown(self) -> None:
        try:
            if not self.problems:
                self.settle(True)
        finally:
            self._release()

    def _release(self) -> None:
        for r in self.records:
            self._close(r, "teardown")
        self._reap()
        for t in self.timers:
            t.handle.cancel()
        if self.listener is not None:
            self.listener.close()
        left = dict(self.socket_map)
        release_map(self.socket_map)
        assert not left, f"channels left in the map after every channel closed: {left}"
        assert all(r.chan.socket.fileno() == -1 for r in self.records)


def _run_model(backend: Any) -> None:
    machine = type(f"LoopModel_{getattr(backend, 'name', backend)}", (LoopModel,), {"backend": backend})
    run_state_machine_as_test(machine, settings=MODEL_SETTINGS)


def test_loop_model(poller_name: str) -> None:
    _run_model(poller_name)


@pytest.mark.posix_only("the fake kqueue and /dev/poll kernels, built on poll(2) and fstat()")
@pytest.mark.parametrize("fake", ["kqueue", "devpoll"])
def test_loop_model_on_fake_kernels(fake: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """kqueue and /dev/poll do not exist here: the same model over tests/fakes."""
    backend: Type[pollers.Poller]
    if fake == "kqueue":
        install_kqueue(monkeypatch)
        backend = quick(KqueuePoller)
    else:
        install_devpoll(monkeypatch)
        backend = quick(DevpollPoller)
    _run_model(backend)

