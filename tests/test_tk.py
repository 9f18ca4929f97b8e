"""GUI integration: the idle-hook pattern, ``asyncio_compat.tk`` and the Tk example.

The idle-hook tests need no display.  The Tk tests start their own Xvfb on a
free display number (``-displayfd``) and skip, saying why, where Xvfb or
tkinter is missing.  One Tk root serves the whole module: Tcl opens its
notifier's fds once per process, before the per-test leak check looks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from drivers import DRIVERS, MAX_PASSES, Driver
from drivers import Reader as SwitchReader
from helpers import EchoServer, SendingClient, load_example

import asyncio_compat
import pollers
from asyncio_compat import _loop, asyncore
from asyncio_compat.timers import TimerHandle, call_every, call_later

pytestmark = pytest.mark.timeout(30)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tk_idle_client.py"
LONG = 30.0
FILE_HANDLER_BACKENDS = ("epoll", "kqueue", "devpoll")  # pollers with an fd of their own


class Reader(asyncore.dispatcher_with_send):
    """Collects what arrives; calls ``on_data`` after each read."""

    def __init__(
        self, sock: socket.socket, socket_map: Any, on_data: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(sock, map=socket_map)
        self.data = bytearray()
        self.on_data = on_data

    def handle_read(self) -> None:
        self.data += self.recv(65536)
        self.on_data()

    def handle_close(self) -> None:
        self.close()


# == the idle hook: loop(timeout=0, count=1) from a GUI timer =========================


def _hook_returns(socket_map: Any) -> float:
    """Seconds one idle-hook call took; it must never wait for anything."""
    start = time.monotonic()
    asyncore.loop(timeout=0, map=socket_map, count=1)
    return time.monotonic() - start


@pytest.mark.timeout(10)
def test_idle_hook_on_an_idle_map_does_not_block(default_poller: str, socket_map: asyncore.SocketMap) -> None:
    mine, peer = socket.socketpair()
    reader = Reader(mine, socket_map)
    try:
        # a blocking call would sit out the 30 s default timeout (or the far timer)
        call_later(LONG, print, map=socket_map)
        assert max(_hook_returns(socket_map) for _ in range(20)) < LONG / 2
        peer.sendall(b"now")
        asyncore.loop(timeout=0, map=socket_map, count=1)
        assert bytes(reader.data) == b"now"  # and it does serve what is ready
    finally:
        reader.close()
        peer.close()


@pytest.mark.timeout(10)
def test_idle_hook_with_no_channels_at_all_does_not_block(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    assert _hook_returns(socket_map) < LONG / 2
    assert _loop.existing_loop(socket_map) is None  # and leaves nothing behind
    handle = call_later(LONG, print, map=socket_map)  # only a far timer
    assert _hook_returns(socket_map) < LONG / 2
    handle.cancel()


# == Tk ==============================================================================


def _start_xvfb(log: Path) -> Tuple[subprocess.Popen[bytes], str]:
    """Xvfb on a display number it picks itself; skips when that cannot be had."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb)")
    read_end, write_end = os.pipe()
    try:
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [xvfb, "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                pass_fds=(write_end,),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        os.close(write_end)
        write_end = -1
        number = _read_line(read_end, 15.0)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if not number.isdigit():
        proc.kill()
        proc.wait()
        pytest.skip("Xvfb did not report a display number")
    return proc, f":{number}"


def _read_line(fd: int, limit: float) -> str:
    """One line from ``fd``, or what came before EOF or ``limit`` seconds.

    Xvfb writes the number and the newline in two writes and dies when the
    second one fails, so the pipe stays open until the newline is in.
    """
    deadline = time.monotonic() + limit
    text = b""
    while not text.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 64) if ready else b""
        if not chunk:
            break
        text += chunk
    return text.decode(errors="replace").strip()


@pytest.fixture(scope="module")
def display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private X display for the module, in DISPLAY."""
    proc, name = _start_xvfb(tmp_path_factory.mktemp("xvfb") / "stderr.txt")
    saved = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = name
    try:
        yield name
    finally:
        if saved is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = saved
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tk_root(display: str) -> Iterator[Any]:
    tkinter = pytest.importorskip("tkinter", reason="tkinter is not available")
    try:
        root = tkinter.Tk()
    except tkinter.TclError as exc:
        pytest.skip(f"Tk cannot open the display: {exc}; {_ls_x11()}")
    root.withdraw()
    # let Tcl open what it opens once (its notifier) before any leak check
    root.after(1, root.quit)
    root.mainloop()
    yield root
    root.destroy()


def _ls_x11() -> str:
    try:
        return f"/tmp/.X11-unix: {sorted(os.listdir('/tmp/.X11-unix'))}"
    except OSError as exc:
        return str(exc)


def serve_until(root: Any, done: Callable[[], bool], limit: float = 15.0) -> None:
    """Run Tk's mainloop until ``done()``; fail after ``limit`` seconds.

    The condition is checked from a Tk timer: only Tk's own loop runs here.
    """
    deadline = time.monotonic() + limit

    def check() -> None:
        if done() or time.monotonic() > deadline:
            root.quit()
        else:
            root.after(5, check)

    while not done() and time.monotonic() < deadline:
        root.after(5, check)
        root.mainloop()
    assert done(), "Tk's loop did not get the work done"


def test_tk_serves_a_socket_map(default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap) -> None:
    from asyncio_compat.tk import attach

    payload = bytes(range(256)) * 1024
    server = EchoServer(socket_map)
    client = SendingClient(socket_map, server.port, payload, len(payload), on_done=tk_root.quit)
    attachment = attach(tk_root, socket_map)
    try:
        assert attachment.uses_file_handler == (default_poller in FILE_HANDLER_BACKENDS)
        serve_until(tk_root, lambda: not socket_map)  # the handler closes on the client's hang-up
    finally:
        attachment.detach()
    assert bytes(client.received) == payload
    assert _loop.existing_loop(socket_map) is None  # detach released the emptied map


def test_tk_passes_log_a_slow_handler_in_debug_mode(
    default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap, caplog: pytest.LogCaptureFixture
) -> None:
    # here rather than in test_debug.py: Tk keeps its X connection after the
    # root is destroyed, so the process must use one Xvfb for all Tk tests
    from asyncio_compat.tk import attach

    caplog.set_level(logging.WARNING, logger="asyncio_compat")

    class SlowReader(asyncore.dispatcher):
        def writable(self) -> bool:
            return False

        def handle_read(self) -> None:
            time.sleep(0.05)  # the duration under test, above the 0.02 s threshold
            self.close()

    mine, peer = socket.socketpair()
    with peer:
        reader = SlowReader(mine, map=socket_map)
        peer.sendall(b"ping")
        asyncio_compat.set_debug(True, slow_handler=0.02)
        attachment = attach(tk_root, socket_map)
        try:
            serve_until(tk_root, lambda: not socket_map)
        finally:
            attachment.detach()
            asyncio_compat.set_debug(False)
    logged = [r.getMessage() for r in caplog.records if r.name == "asyncio_compat"]
    assert len(logged) == 1 and logged[0].startswith(f"slow handler: {reader!r}.handle_read_event took ")


def test_tk_runs_the_timers(default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap) -> None:
    from asyncio_compat.tk import attach

    seen: List[str] = []
    ticks: List[float] = []
    call_later(0.02, seen.append, "second", map=socket_map)
    call_later(0.01, seen.append, "first", map=socket_map)
    handles: List[TimerHandle] = []

    def tick() -> None:
        ticks.append(time.monotonic())
        if len(ticks) == 3:
            handles[0].cancel()
            tk_root.quit()

    attachment = attach(tk_root, socket_map)
    try:
        # scheduled from a Tk callback, outside any pass: wakes the attachment itself
        tk_root.after_idle(lambda: handles.append(call_every(0.01, tick, map=socket_map)))
        serve_until(tk_root, lambda: len(ticks) == 3 and len(seen) == 2)
    finally:
        attachment.detach()
    assert seen == ["first", "second"]


def test_a_channel_added_from_a_tk_callback_is_served(
    default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap
) -> None:
    from asyncio_compat.tk import attach

    mine, peer = socket.socketpair()
    readers: List[Reader] = []
    attachment = attach(tk_root, socket_map)  # an empty map to begin with
    try:
        tk_root.after(10, lambda: readers.append(Reader(mine, socket_map, tk_root.quit)))
        tk_root.after(20, lambda: peer.sendall(b"late channel"))
        serve_until(tk_root, lambda: bool(readers) and bytes(readers[0].data) == b"late channel")
    finally:
        attachment.detach()
        for reader in readers:
            reader.close()
        mine.close()
        peer.close()


def test_detach_hands_the_map_back_to_asyncore_loop(
    default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap
) -> None:
    from asyncio_compat.tk import attach

    mine, peer = socket.socketpair()
    reader = Reader(mine, socket_map)
    attachment = attach(tk_root, socket_map)
    try:
        with pytest.raises(RuntimeError, match="already served by another event loop"):
            attach(tk_root, socket_map)
        # another backend: select, or poll for select; none where select is alone (Windows)
        others = [name for name in pollers.available() if name != default_poller]
        other = others[-1] if others else default_poller
        if others:
            with pytest.raises(RuntimeError, match="served by another event loop"):
                asyncore.loop(timeout=0, map=socket_map, count=1, poller=other)
        attachment.detach()
        attachment.detach()  # idempotent
        assert not attachment.attached
        peer.sendall(b"served by loop() again")
        asyncore.loop(timeout=LONG, map=socket_map, count=1, poller=other)
        assert bytes(reader.data) == b"served by loop() again"
    finally:
        attachment.detach()
        reader.close()
        peer.close()


def test_destroying_the_widget_detaches(
    default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap
) -> None:
    import tkinter

    from asyncio_compat.tk import attach

    window = tkinter.Toplevel(tk_root)
    call_later(LONG, print, map=socket_map)
    attachment = attach(window, socket_map)
    window.destroy()
    assert not attachment.attached
    state = _loop.existing_loop(socket_map)
    assert state is not None and not state.pinned  # kept for its timer, free for loop()


def test_exitnow_under_tk_detaches_and_reaches_tk(
    default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap
) -> None:
    from asyncio_compat.tk import attach

    reported: List[BaseException] = []

    def report(exc_type: Any, exc: BaseException, tb: Any) -> None:
        reported.append(exc)
        tk_root.quit()

    def leave() -> None:
        raise asyncore.ExitNow("out of the Tk pass")

    call_later(0, leave, map=socket_map)
    tk_root.report_callback_exception = report
    attachment = attach(tk_root, socket_map)
    try:
        serve_until(tk_root, lambda: bool(reported))
    finally:
        del tk_root.report_callback_exception
        attachment.detach()
    assert isinstance(reported[0], asyncore.ExitNow) and not attachment.attached
    assert isinstance(attachment.error, asyncore.ExitNow)


def test_attach_refuses_bad_arguments(tk_root: Any, socket_map: asyncore.SocketMap) -> None:
    from asyncio_compat.tk import attach

    with pytest.raises(ValueError, match="tick must be a positive"):
        attach(tk_root, socket_map, tick=0)
    with pytest.raises(TypeError, match="poll_interval must be a number"):
        attach(tk_root, socket_map, poll_interval=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="poller 'nonesuch' is unknown"):
        attach(tk_root, socket_map, poller="nonesuch")
    assert _loop.existing_loop(socket_map) is None


# == the example ==========================================================================


def _need_tkinter() -> None:
    """Skip where this Python has no tkinter (Debian ships it as python3-tk)."""
    pytest.importorskip("tkinter", reason="tkinter is not available (Debian: apt-get install python3-tk)")


def _example_env(display: str, poller_name: str) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["DISPLAY"] = display
    env[asyncio_compat.ENV_VAR] = poller_name
    return env


@pytest.mark.timeout(90)
def test_tk_idle_client_example_downloads_under_xvfb(poller_name: str, display: str, tmp_path: Path) -> None:
    _need_tkinter()
    size = 1_000_000
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--size", str(size), "--close-when-done"],
        cwd=tmp_path,  # not the checkout: the example must find the package itself
        env=_example_env(display, poller_name),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    how = "Tk watches the poller's fd" if poller_name in FILE_HANDLER_BACKENDS else "an after() tick"
    assert re.search(rf"^poller: {poller_name} \({re.escape(how)}", out, re.M)
    assert re.search(rf"^serving {size} bytes on 127\.0\.0\.1:\d+$", out, re.M)
    assert re.findall(r"^progress: (\d+)%", out, re.M) == ["25", "50", "75", "100"]
    assert out.rstrip().endswith(f"received {size} bytes; SHA-256 matches the data served")


def test_tk_idle_client_example_checks_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    _need_tkinter()  # the example imports tkinter at the top
    example = load_example("tk_idle_client")
    data = example.make_data(1000)
    assert len(data) == 1000 and data == example.make_data(1000) and data != example.make_data(1001)[:1000]

    class Stub:
        def __init__(self) -> None:
            self.texts: List[str] = []

        def configure(self, **options: Any) -> None:
            self.texts.append(str(options.get("text", "")))

        def after(self, ms: int, callback: Optional[Callable[[], None]] = None) -> None:
            pass

    window = example.Window.__new__(example.Window)
    window.root, window.label, window.bar = Stub(), Stub(), Stub()
    window.expected, window.close_when_done, window.reported = data, False, []
    window.done(data[:-1] + bytes([data[-1] ^ 1]))
    assert not window.ok and "DIFFERS" in window.label.texts[-1]
    window.done(data)
    assert window.ok and "matches" in window.label.texts[-1]


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_add_signal_handler_under_tk(
    default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap
) -> None:
    """asyncio_compat.add_signal_handler's callback runs in a pass that Tk drives."""
    from asyncio_compat.tk import attach

    ours, theirs = socket.socketpair()
    reader = asyncore.dispatcher(ours, map=socket_map)
    ran_in_loop: List[bool] = []

    def on_signal() -> None:
        names = [frame.function for frame in inspect.stack()]
        ran_in_loop.append("drain" in names and "_on_signal" not in names)
        reader.close()

    asyncio_compat.add_signal_handler(signal.SIGUSR1, on_signal, map=socket_map)
    attachment = attach(tk_root, socket_map)
    try:
        # sent from a Tk callback: the Python-level handler runs there, outside
        # any pass, and the pass that runs the callback must follow at once
        tk_root.after(20, os.kill, os.getpid(), signal.SIGUSR1)
        started = time.monotonic()
        serve_until(tk_root, lambda: not socket_map)
        elapsed = time.monotonic() - started
    finally:
        attachment.detach()
        asyncio_compat.remove_signal_handler(signal.SIGUSR1, map=socket_map)
    assert ran_in_loop == [True]
    assert elapsed < 1.0
    theirs.close()


# == switching between Tk and the other drivers (see tests/test_driver_switches.py) ========


class TkDriver(Driver):
    """``asyncio_compat.tk.attach()``, Tk's mainloop until done, then ``detach()``."""

    name = "tk"

    def __init__(self, root: Any) -> None:
        self.root = root

    def serve(self, socket_map: Dict[int, Any], done: Callable[[], bool]) -> Tuple[int, int]:
        from asyncio_compat.tk import attach

        attachment = attach(self.root, socket_map)
        before = asyncio_compat.loop_stats(socket_map).passes
        started = time.monotonic()
        try:
            serve_until(self.root, done)
            passes = asyncio_compat.loop_stats(socket_map).passes - before
        finally:
            attachment.detach()
        # the after() tick (0.02 s) where Tk cannot watch the poller's fd, and some passes per event
        return passes, MAX_PASSES + 3 * int((time.monotonic() - started) / 0.005)


@pytest.fixture
def reader_and_peer(socket_map: asyncore.SocketMap) -> Iterator[Tuple[SwitchReader, socket.socket]]:
    mine, peer = socket.socketpair()
    reader = SwitchReader(mine, socket_map)
    try:
        yield reader, peer
    finally:
        reader.close()
        peer.close()


def _exchange(driver: Driver, socket_map: Dict[int, Any], reader: SwitchReader, peer: socket.socket,
              text: bytes) -> None:
    fired: List[str] = []
    call_later(0.01, fired.append, "timer", map=socket_map)
    expected = bytes(reader.data) + text
    peer.sendall(text)
    passes, allowed = driver.serve(socket_map, lambda: bytes(reader.data) == expected and fired == ["timer"])
    assert passes <= allowed, f"{driver} made {passes} passes for one exchange: it spins"


@pytest.mark.timeout(120)
@pytest.mark.posix_only("a hosted asyncio loop waits on its selector's own fd, which Windows lacks")
@pytest.mark.parametrize("other", DRIVERS, ids=str)
def test_tk_and_another_driver_in_turn(
    other: Driver, default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap,
    reader_and_peer: Tuple[SwitchReader, socket.socket],
) -> None:
    reader, peer = reader_and_peer
    tk = TkDriver(tk_root)
    _exchange(tk, socket_map, reader, peer, b"tk; ")
    _exchange(other, socket_map, reader, peer, b"other; ")
    _exchange(tk, socket_map, reader, peer, b"tk again")
    assert bytes(reader.data) == b"tk; other; tk again"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "other", [d for d in DRIVERS if d.name in ("loop", "poll", "poll2", "foreign")], ids=str
)
def test_other_drivers_serve_a_map_while_tk_does(
    other: Driver, default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap,
    reader_and_peer: Tuple[SwitchReader, socket.socket],
) -> None:
    from asyncio_compat.tk import attach

    reader, peer = reader_and_peer
    attachment = attach(tk_root, socket_map)
    try:
        _exchange(other, socket_map, reader, peer, b"served beside Tk")
        peer.sendall(b"; by Tk")
        serve_until(tk_root, lambda: bytes(reader.data) == b"served beside Tk; by Tk")
    finally:
        attachment.detach()


@pytest.mark.posix_only("a hosted asyncio loop waits on its selector's own fd, which Windows lacks")
def test_tk_serves_a_hosted_asyncio_loop(
    default_poller: str, tk_root: Any, socket_map: asyncore.SocketMap
) -> None:
    from asyncio_compat.asyncio_bridge import hosted_event_loop
    from asyncio_compat.tk import attach

    host = hosted_event_loop(socket_map)
    attachment = attach(tk_root, socket_map)
    try:
        task = host.create_task(asyncio.sleep(0.05, result="stepped by Tk"))
        serve_until(tk_root, task.done)
        assert task.result() == "stepped by Tk"
    finally:
        attachment.detach()
        host.close()


def test_bridges_and_tk_refuse_each_other(tk_root: Any, socket_map: asyncore.SocketMap) -> None:
    from asyncio_compat.asyncio_bridge import attach as bridge_attach
    from asyncio_compat.asyncio_bridge import run_map
    from asyncio_compat.tk import attach

    attachment = attach(tk_root, socket_map)

    async def bridge_while_tk() -> None:
        with pytest.raises(RuntimeError, match="already served by another event loop"):
            bridge_attach(socket_map)
        with pytest.raises(RuntimeError, match="already served by another event loop"):
            await run_map(socket_map)

    try:
        asyncio.run(bridge_while_tk())
        with pytest.raises(RuntimeError, match="already served by another event loop"):
            attach(tk_root, socket_map)
    finally:
        attachment.detach()

    async def tk_while_bridge() -> None:
        bridge = bridge_attach(socket_map)
        try:
            with pytest.raises(RuntimeError, match="already served by another event loop"):
                attach(tk_root, socket_map)
        finally:
            bridge.detach()

    asyncio.run(tk_while_bridge())

    async def leave_attached() -> None:
        bridge_attach(socket_map)

    asyncio.run(leave_attached())
    attach(tk_root, socket_map).detach()  # a bridge whose event loop closed lets the map go
