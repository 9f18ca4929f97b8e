"""The handler-error contract: the loop's inline READ case and the
per-channel delivery functions must give every outcome the same treatment."""

from __future__ import annotations

import errno
import socket
from typing import Callable, Dict, List, Optional, Type

import pytest
from helpers import release_map

import pollers
from asyncio_compat import SocketMap, asyncore
from asyncio_compat._delivery import RERAISED, call_reported, deliver_poll, deliver_select
from pollers import READ


class Recorder:
    """A channel whose read handler raises ``raised`` (or returns), recording every call."""

    def __init__(self, raised: Optional[BaseException]) -> None:
        self.raised = raised
        self.calls: List[str] = []

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read_event(self) -> None:
        self.calls.append("read")
        if self.raised is not None:
            raise self.raised

    def handle_write_event(self) -> None:
        self.calls.append("write")

    def handle_expt_event(self) -> None:
        self.calls.append("expt")

    def handle_close(self) -> None:
        self.calls.append("close")

    def handle_error(self) -> None:
        self.calls.append("error")


OUTCOMES: Dict[str, Callable[[], Optional[BaseException]]] = {
    "normal": lambda: None,
    "disconnect errno": lambda: ConnectionResetError(errno.ECONNRESET, "reset"),
    "other OSError": lambda: OSError(errno.EACCES, "denied"),
    "ordinary exception": lambda: ValueError("bad"),
    "ExitNow": lambda: asyncore.ExitNow(),
    "KeyboardInterrupt": lambda: KeyboardInterrupt(),
    "SystemExit": lambda: SystemExit(3),
}

FD = 1000  # never polled: the poller only serves as deliver_*'s argument


def _run(deliver: Callable[[Recorder], None], raised: Optional[BaseException]) -> List[str]:
    chan = Recorder(raised)
    try:
        deliver(chan)
    except BaseException as exc:
        chan.calls.append(f"raised {type(exc).__name__}")
    return chan.calls


def _in_a_pass(poll_semantics: bool, poller: pollers.Poller) -> Callable[[Recorder], None]:
    """A READ event delivered by a real pass of the loop (its inline case)."""

    def deliver(chan: Recorder) -> None:
        mine, peer = socket.socketpair()
        socket_map = SocketMap({mine.fileno(): chan})
        try:
            peer.send(b"x")
            asyncore.loop(5.0, poll_semantics, socket_map, count=1, poller=poller.name)
        finally:
            socket_map.clear()
            release_map(socket_map)
            mine.close()
            peer.close()

    return deliver


def _general(poll_semantics: bool, poller: pollers.Poller) -> Callable[[Recorder], None]:
    def deliver(chan: Recorder) -> None:
        if poll_semantics:
            deliver_poll(chan, READ, FD, {FD: chan})
        else:
            deliver_select(chan, READ, FD, {FD: chan}, poller)

    return deliver


EXPECTED = {
    # (outcome, poll semantics) -> the calls 3.11 made
    ("normal", True): ["read"],
    ("normal", False): ["read"],
    ("disconnect errno", True): ["read", "close"],
    ("disconnect errno", False): ["read", "error"],
    ("other OSError", True): ["read", "error"],
    ("other OSError", False): ["read", "error"],
    ("ordinary exception", True): ["read", "error"],
    ("ordinary exception", False): ["read", "error"],
}


@pytest.mark.parametrize("poll_semantics", [True, False], ids=["poll2", "select"])
@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_inline_read_and_general_delivery_agree(outcome: str, poll_semantics: bool) -> None:
    with pollers.get("select")() as poller:
        inline = _run(_in_a_pass(poll_semantics, poller), OUTCOMES[outcome]())
        general = _run(_general(poll_semantics, poller), OUTCOMES[outcome]())
    assert inline == general
    expected = EXPECTED.get((outcome, poll_semantics), ["read", f"raised {outcome}"])
    assert inline == expected


@pytest.mark.parametrize("exc_type", [asyncore.ExitNow, KeyboardInterrupt, SystemExit])
def test_readwrite_lets_the_loop_exits_through(exc_type: Type[BaseException]) -> None:
    calls = _run(lambda chan: asyncore.readwrite(chan, READ), exc_type())
    assert calls == ["read", f"raised {exc_type.__name__}"]


def test_call_reported_prints_an_error_and_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    calls: List[int] = []

    def failing(value: int) -> None:
        calls.append(value)
        raise ValueError("boom")

    call_reported(failing, (7,), "signal callback")
    err = capsys.readouterr().err
    assert calls == [7]
    assert "error: uncaptured python exception in signal callback" in err
    assert "ValueError: boom" in err


@pytest.mark.parametrize("exc_type", RERAISED)
def test_call_reported_lets_the_reraised_exceptions_through(exc_type: Type[BaseException]) -> None:
    def leaving() -> None:
        raise exc_type()

    with pytest.raises(exc_type):
        call_reported(leaving, (), "shutdown")
