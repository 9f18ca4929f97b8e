"""The asyncio bridge, both directions, with real loopback exchanges.

* Legacy dispatchers inside asyncio (``run_map``/``attach``): run on the
  default asyncio loop, on asyncio with the poll and select selectors, and on
  uvloop when it is installed (an optional test dependency; skipped with the
  reason otherwise).  Hand-overs back to ``asyncore.loop()`` run on every
  backend.
* asyncio inside legacy code (``HostedEventLoop``/``run_coroutine``): the
  map's loop runs on every backend (``default_poller``).
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
from typing import Any, Awaitable, Callable, Iterator, List, Optional, TypeVar

import pytest
from helpers import EchoHandler, EchoServer, SendingClient, Sockets, in_map

from asyncio_compat import _loop, asyncore, loop_stats
from asyncio_compat.asyncio_bridge import (
    AsyncioPoller,
    HostedEventLoop,
    MapBridge,
    attach,
    hosted_event_loop,
    run_coroutine,
    run_map,
)
from asyncio_compat.timers import TimerHandle, call_every, call_later

pytestmark = pytest.mark.timeout(20)

# A hosted event loop waits on its selector's own fd (epoll, kqueue, devpoll), which
# Windows lacks: there HostedEventLoop() raises ValueError, as its docstring says.
hosts_asyncio = pytest.mark.posix_only("hosts asyncio through a selector's own fd, which Windows lacks")

T = TypeVar("T")
LONG = 30.0  # a loop() timeout no test may sit out
PAYLOAD = bytes(range(256)) * 1024  # 256 KiB: more than one send() takes


# -- the asyncio loops under test ----------------------------------------------------------

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _selector_loop(selector_cls: Any) -> LoopFactory:
    return lambda: asyncio.SelectorEventLoop(selector_cls())


@pytest.fixture(scope="module", autouse=True)
def warm_uvloop() -> None:
    """libuv opens a pipe pair once per process, with uvloop's first loop:
    open it before the per-test leak check takes its snapshot."""
    try:
        import uvloop
    except ImportError:
        return
    run(uvloop.new_event_loop, asyncio.sleep(0))


@pytest.fixture(params=["asyncio", "asyncio+poll", "asyncio+select", "uvloop"])
def new_loop(request: pytest.FixtureRequest) -> LoopFactory:
    """A factory of the asyncio event loop kind under test."""
    kind = str(request.param)
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (optional test dependency)")
        return uvloop.new_event_loop  # type: ignore[no-any-return]
    if kind == "asyncio+poll":
        return _selector_loop(selectors.PollSelector)
    if kind == "asyncio+select":
        return _selector_loop(selectors.SelectSelector)
    return asyncio.new_event_loop


def run(new_loop: LoopFactory, main: Awaitable[T]) -> T:
    """``main`` to completion on a fresh loop, cleaned up as asyncio.run() does."""
    event_loop = new_loop()
    try:
        return event_loop.run_until_complete(main)
    finally:
        leftovers = asyncio.all_tasks(event_loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            event_loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        event_loop.run_until_complete(event_loop.shutdown_asyncgens())
        event_loop.close()


@pytest.fixture
def hosted(socket_map: asyncore.SocketMap) -> Iterator[Callable[..., HostedEventLoop]]:
    """``hosted()``: the :class:`HostedEventLoop` of the test's map
    (``hosted_event_loop()``: the one it hosts, else a new one);
    ``hosted(new=True)``: a new one (``HostedEventLoop()``, which refuses a map
    that hosts one).  Each is closed after the test, before conftest's
    ``socket_map`` fixture releases the map."""
    made: List[HostedEventLoop] = []

    def host(new: bool = False) -> HostedEventLoop:
        made.append(HostedEventLoop(socket_map) if new else hosted_event_loop(socket_map))
        return made[-1]

    yield host
    for event_loop in made:
        event_loop.close()  # idempotent


async def passes_beyond(socket_map: asyncore.SocketMap, count: int = 0) -> int:
    """Yield to the running event loop until the loop serving ``socket_map`` has
    made more than ``count`` passes (``loop_stats()``); return how many it made.

    ``attach()`` queues a first pass with the event loop, and so does a channel
    joining or leaving the map: ``await passes_beyond(socket_map)`` returns
    once the bridge has run it.  The bridge queues a pass with ``call_soon()``,
    so it runs within a few turns of the event loop; fails if none came in 100.
    """
    for _ in range(100):
        passes = loop_stats(socket_map).passes
        if passes > count:
            return passes
        await asyncio.sleep(0)  # one turn of the event loop, not a wait
    raise AssertionError(f"the bridge made no pass beyond {count}")


# -- dispatchers used by the exchanges ---------------------------------------------------


class Reader(asyncore.dispatcher_with_send):
    """Reads whatever arrives; optionally raises from handle_read.

    Its predicates are the built-in ones, which push their changes.
    """

    def __init__(
        self, sock: socket.socket, socket_map: Any, fail_with: Optional[BaseException] = None
    ) -> None:
        super().__init__(sock, map=socket_map)
        self.data = bytearray()
        self.fail_with = fail_with
        self._waiter: Optional[asyncio.Future[None]] = None

    def handle_read(self) -> None:
        self.data += self.recv(65536)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self.fail_with is not None:
            raise self.fail_with

    async def wait_for(self, size: int) -> bytes:
        """The data once ``size`` bytes have arrived (a coroutine of the running loop)."""
        while len(self.data) < size:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return bytes(self.data)

    def handle_close(self) -> None:
        self.close()


class UpperServer:
    """An asyncio server answering in upper case; counts the connections it finished."""

    def __init__(self) -> None:
        self.finished = 0
        self.server: Optional[asyncio.AbstractServer] = None

    async def start(self) -> int:
        self.progress = asyncio.Event()
        # a bound socket rather than a host name: uvloop resolves a host in
        # libuv's thread pool, whose threads outlive the test and make every
        # later fork() in this process multi-threaded
        listener = socket.create_server(("127.0.0.1", 0))
        self.server = await asyncio.start_server(self.serve, sock=listener)
        return int(self.server.sockets[0].getsockname()[1])

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        self.finished += 1
        self.progress.set()

    async def stop(self, connections: int) -> None:
        """Close, once ``connections`` connections are finished."""
        while self.finished < connections:
            self.progress.clear()
            await self.progress.wait()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def _asyncio_echo_client(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    reply = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    return reply


# == legacy dispatchers inside asyncio ==========================================================


def test_run_map_serves_an_asyncore_echo_server_to_asyncio_clients(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap
) -> None:
    server = EchoServer(socket_map, connections=2)

    async def main() -> List[bytes]:
        serving = asyncio.ensure_future(run_map(socket_map))
        replies = await asyncio.gather(
            _asyncio_echo_client(server.port, PAYLOAD), _asyncio_echo_client(server.port, b"short")
        )
        await serving  # returns once every handler saw its client hang up
        return list(replies)

    assert run(new_loop, main()) == [PAYLOAD, b"short"]
    assert len(socket_map) == 0
    assert _loop.existing_loop(socket_map) is None


def test_run_map_serves_a_dispatcher_client_of_an_asyncio_server(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap
) -> None:
    async def main() -> SendingClient:
        server = UpperServer()
        client = SendingClient(socket_map, await server.start(), PAYLOAD, len(PAYLOAD))
        await run_map(socket_map)  # until the client has its reply and closes
        await server.stop(connections=1)
        return client

    client = run(new_loop, main())
    assert bytes(client.received) == PAYLOAD.upper()
    assert not client.closed_by_peer


def test_timers_of_the_map_run_on_the_asyncio_loop(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap
) -> None:
    seen: List[str] = []
    deadlines = {
        "second": call_later(0.02, seen.append, "second", map=socket_map).when,
        "first": call_later(0.01, seen.append, "first", map=socket_map).when,
    }

    async def main() -> None:
        serving = asyncio.ensure_future(run_map(socket_map))
        await asyncio.sleep(0)
        # scheduled from a coroutine, outside any pass: wakes the bridge itself
        handle = call_later(0, seen.append, "from a coroutine", map=socket_map)
        deadlines["from a coroutine"] = handle.when
        ticks: List[int] = []
        handles: List[TimerHandle] = []

        def tick() -> None:
            ticks.append(1)
            if len(ticks) == 3:
                handles[0].cancel()
                seen.append("periodic done")

        handles.append(call_every(0.005, tick, map=socket_map))
        await serving  # a map with only timers runs until they are all done

    run(new_loop, main())
    assert "periodic done" in seen
    # the one-shot timers ran in deadline order, however late the coroutine
    # got to schedule its own on a loaded machine
    one_shots = [label for label in seen if label != "periodic done"]
    assert one_shots == sorted(deadlines, key=deadlines.__getitem__)


def test_run_map_of_an_empty_map_returns_at_once(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap
) -> None:
    run(new_loop, run_map(socket_map))
    assert _loop.existing_loop(socket_map) is None


if hasattr(asyncore, "file_dispatcher"):  # POSIX only, as in 3.11

    class FileReader(asyncore.file_dispatcher):
        """Reads a file to its end (a regular file is always ready)."""

        def __init__(self, fd: int, socket_map: Any) -> None:
            super().__init__(fd, map=socket_map)
            self.data = bytearray()

        def writable(self) -> bool:
            return False

        def handle_read(self) -> None:
            self.data += self.recv(4096)

        def handle_close(self) -> None:
            self.close()


@pytest.mark.skipif(
    not hasattr(asyncore, "file_dispatcher"), reason="file_dispatcher exists on POSIX only, as in 3.11"
)
def test_run_map_reads_a_regular_file(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap, tmp_path: Any
) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(PAYLOAD[:50000])
    with path.open("rb") as source:
        reader = FileReader(source.fileno(), socket_map)  # epoll refuses regular files (EPERM)
        run(new_loop, run_map(socket_map))
    assert bytes(reader.data) == PAYLOAD[:50000]


def test_an_attached_map_is_served_until_detach_even_while_empty(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    # asyncio-migration.rst: attach() "serves the map until its detach(), even
    # while the map is empty": empty at first, emptied again, then refilled
    pairs = [sockets.pair() for _ in range(2)]

    async def main() -> List[bytes]:
        event_loop = asyncio.get_running_loop()
        bridge = attach(socket_map)
        got: List[bytes] = []
        passes = 0
        try:
            for mine, peer in pairs:
                # a pass on the empty map (attach()'s first, then the one a
                # channel leaving asks for): the bridge stays
                passes = await passes_beyond(socket_map, passes)
                assert not socket_map and bridge.attached
                channel = Reader(mine, socket_map)
                peer.setblocking(False)
                await event_loop.sock_sendall(peer, b"served while attached")
                got.append(await channel.wait_for(21))
                channel.close()  # the map is empty again
        finally:
            bridge.detach()
        return got

    assert run(new_loop, main()) == [b"served while attached"] * 2


def test_interest_changes_from_coroutines_need_no_polling(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    late_mine, late_peer = sockets.pair()
    peer.setblocking(False)
    late_peer.setblocking(False)
    sender = EchoHandler(mine, map=socket_map)
    poll_interval = 0.01

    async def main() -> bytes:
        bridge = attach(socket_map, poll_interval=poll_interval)
        try:
            event_loop = asyncio.get_running_loop()
            await passes_beyond(socket_map)  # the channels are registered
            sender.send(PAYLOAD)  # more than the socket takes: the rest waits for WRITE
            late = Reader(late_mine, socket_map)  # a channel added while attached
            received = bytearray()
            while len(received) < len(PAYLOAD):
                received += await event_loop.sock_recv(peer, 65536)
            await event_loop.sock_sendall(late_peer, b"to the late channel")
            assert await late.wait_for(19) == b"to the late channel"
            # every channel pushes its interest: no pass while nothing happens
            # (at most one for a WRITE still reported after the buffer drained)
            passes = loop_stats(socket_map).passes
            await asyncio.sleep(10 * poll_interval)
            assert loop_stats(socket_map).passes - passes <= 1, "the bridge polls"
        finally:
            bridge.detach()
        return bytes(received)

    assert run(new_loop, main()) == PAYLOAD


class FlagWriter(asyncore.dispatcher):
    """A legacy channel that overrides writable(): only a pass can see its flag."""

    def __init__(self, sock: socket.socket, socket_map: Any) -> None:
        super().__init__(sock, map=socket_map)
        self.pending = b""

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return bool(self.pending)

    def handle_write(self) -> None:
        sent = self.send(self.pending)
        self.pending = self.pending[sent:]


def test_channels_overriding_predicates_are_asked_every_poll_interval(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    peer.setblocking(False)
    writer = FlagWriter(mine, socket_map)

    async def main() -> bytes:
        bridge = attach(socket_map, poll_interval=0.01)
        await passes_beyond(socket_map)  # the writer was asked, and wanted nothing
        writer.pending = b"no interest_changed() call"  # no signal at all
        data = await asyncio.get_running_loop().sock_recv(peer, 100)
        bridge.detach()
        return data

    assert run(new_loop, main()) == b"no interest_changed() call"


def test_cancelling_run_map_hands_the_channels_back_to_asyncore_loop(
    new_loop: LoopFactory, poller_name: str, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    reader = Reader(mine, socket_map)
    pending: List[str] = []
    # due well after the hand-over even on a loaded machine (at 0.05 s it
    # could fire inside run_map, leaving no timer to hand over)
    call_later(0.5, pending.append, "timer kept across the hand-over", map=socket_map)

    async def main() -> None:
        task = asyncio.ensure_future(run_map(socket_map))
        await passes_beyond(socket_map)  # run_map() is serving
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(new_loop, main())
    state = _loop.existing_loop(socket_map)
    assert state is not None and not isinstance(state.poller, AsyncioPoller) and not state.pinned
    assert in_map(reader, socket_map)
    assert reader.socket.fileno() >= 0
    peer.sendall(b"after the hand-over")
    peer.close()
    asyncore.loop(timeout=LONG, map=socket_map, poller=poller_name)
    assert bytes(reader.data) == b"after the hand-over"
    assert pending == ["timer kept across the hand-over"]


def test_exitnow_from_a_handler_is_raised_by_run_map(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    reader = Reader(mine, socket_map, fail_with=asyncore.ExitNow("leave the bridge"))

    async def main() -> None:
        serving = asyncio.ensure_future(run_map(socket_map))
        await passes_beyond(socket_map)  # run_map() is serving
        peer.sendall(b"x")
        await serving

    with pytest.raises(asyncore.ExitNow, match="leave the bridge"):
        run(new_loop, main())
    assert in_map(reader, socket_map)  # detached, not closed
    assert _loop.existing_loop(socket_map) is None


def test_exitnow_from_a_timer_is_raised_by_run_map(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap
) -> None:
    def leave() -> None:
        raise asyncore.ExitNow("timer leaves the bridge")

    call_later(0.01, leave, map=socket_map)
    later = call_later(LONG, print, map=socket_map)
    with pytest.raises(asyncore.ExitNow, match="timer leaves the bridge"):
        run(new_loop, run_map(socket_map))
    state = _loop.existing_loop(socket_map)
    assert state is not None and not state.pinned and not isinstance(state.poller, AsyncioPoller)
    assert state.timers.next_deadline() == later.when  # the rest is kept for the next loop


def test_a_failing_handler_closes_only_its_channel(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap, sockets: Sockets,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad_mine, bad_peer = sockets.pair()
    bad = Reader(bad_mine, socket_map, fail_with=ValueError("one channel's bug"))
    server = EchoServer(socket_map)

    async def main() -> bytes:
        serving = asyncio.ensure_future(run_map(socket_map))
        bad_peer.sendall(b"boom")
        reply = await _asyncio_echo_client(server.port, b"still served")
        await serving
        return reply

    assert run(new_loop, main()) == b"still served"
    assert not in_map(bad, socket_map)  # handle_error closed it
    assert "ValueError'>:one channel's bug" in capsys.readouterr().out


def test_attach_and_detach(
    new_loop: LoopFactory, poller_name: str, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    reader = Reader(mine, socket_map)

    async def main() -> None:
        bridge = attach(socket_map)
        assert isinstance(bridge, MapBridge) and bridge.attached
        with pytest.raises(RuntimeError, match="already served by another event loop"):
            attach(socket_map)
        with pytest.raises(RuntimeError, match="served by another event loop"):
            asyncore.loop(timeout=0, map=socket_map, count=1, poller=poller_name)
        peer.sendall(b"while attached")
        await reader.wait_for(len(b"while attached"))
        bridge.detach()
        bridge.detach()  # idempotent
        assert not bridge.attached

    run(new_loop, main())
    peer.sendall(b"; then by loop()")
    asyncore.loop(timeout=LONG, map=socket_map, poller=poller_name, count=1)
    assert bytes(reader.data) == b"while attached; then by loop()"


def test_attach_refuses_bad_arguments(socket_map: asyncore.SocketMap) -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        attach(socket_map)
    event_loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="poll_interval must be a positive"):
            attach(socket_map, loop=event_loop, poll_interval=0)
        with pytest.raises(TypeError, match="poll_interval must be a number"):
            attach(socket_map, loop=event_loop, poll_interval="1")  # type: ignore[arg-type]
    finally:
        event_loop.close()
    assert _loop.existing_loop(socket_map) is None


# == asyncio inside legacy code ==========================================================


@hosts_asyncio
def test_asyncore_loop_runs_an_asyncio_server_for_a_dispatcher_client(
    default_poller: str, socket_map: asyncore.SocketMap, hosted: Callable[..., HostedEventLoop]
) -> None:
    host = hosted()
    server = UpperServer()
    port = run_coroutine(server.start(), socket_map)
    client = SendingClient(socket_map, port, PAYLOAD, len(PAYLOAD))
    while in_map(client, socket_map):  # asyncore.loop() is the main loop
        asyncore.loop(timeout=LONG, map=socket_map, count=1)
    run_coroutine(server.stop(connections=1), socket_map)
    host.close()
    assert bytes(client.received) == PAYLOAD.upper()
    assert len(socket_map) == 0 and _loop.existing_loop(socket_map) is None


@hosts_asyncio
def test_run_coroutine_runs_an_asyncio_client_of_an_asyncore_server(
    default_poller: str, socket_map: asyncore.SocketMap
) -> None:
    server = EchoServer(socket_map, connections=2)

    ran_on: List[asyncio.AbstractEventLoop] = []

    async def clients() -> List[bytes]:
        ran_on.append(asyncio.get_running_loop())
        return list(
            await asyncio.gather(
                _asyncio_echo_client(server.port, PAYLOAD), _asyncio_echo_client(server.port, b"hi")
            )
        )

    assert run_coroutine(clients(), socket_map) == [PAYLOAD, b"hi"]
    assert ran_on[0].is_closed()  # the loop made for the call was closed
    asyncore.loop(timeout=LONG, map=socket_map)  # the handlers see the hang-ups and close
    assert len(socket_map) == 0


@hosts_asyncio
def test_run_coroutine_raises_the_coroutine_error_and_keeps_serving(
    default_poller: str, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    reader = Reader(mine, socket_map)

    async def fails() -> None:
        await asyncio.sleep(0.01)
        peer.sendall(b"served meanwhile")
        await reader.wait_for(len(b"served meanwhile"))  # the dispatcher is served meanwhile
        raise KeyError("from the coroutine")

    with pytest.raises(KeyError, match="from the coroutine"):
        run_coroutine(fails(), socket_map)
    assert bytes(reader.data) == b"served meanwhile"


@hosts_asyncio
def test_run_coroutine_propagates_cancellation(default_poller: str, socket_map: asyncore.SocketMap) -> None:
    async def cancelled() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_later(0.01, task.cancel)
        await asyncio.sleep(LONG)

    with pytest.raises(asyncio.CancelledError):
        run_coroutine(cancelled(), socket_map)


@hosts_asyncio
def test_waiting_for_asyncio_timers_is_not_a_busy_loop(
    default_poller: str, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    passes: List[int] = []

    class Counting(Reader):
        def readable(self) -> bool:  # asked once per pass (at most twice in the first)
            passes.append(1)
            return True

    mine, _ = sockets.pair()
    Counting(mine, socket_map)
    assert run_coroutine(asyncio.sleep(0.2, result="slept"), socket_map) == "slept"
    # a loop spinning for 0.2 s would make thousands of passes
    assert len(passes) < 25


@hosts_asyncio
def test_gui_hook_never_blocks_on_a_hosted_loop(
    default_poller: str, socket_map: asyncore.SocketMap, hosted: Callable[..., HostedEventLoop]
) -> None:
    host = hosted()
    fired: List[str] = []
    host.call_later(LONG, fired.append, "too late")  # dropped when the loop closes
    for _ in range(5):  # a GUI timer calling the idle hook
        asyncore.loop(timeout=0, map=socket_map, count=1)
    assert fired == []
    task = host.create_task(asyncio.sleep(0, result="stepped"))
    while not task.done():
        asyncore.loop(timeout=0, map=socket_map, count=1)
    assert task.result() == "stepped"


@hosts_asyncio
def test_another_thread_can_submit_work(
    default_poller: str, socket_map: asyncore.SocketMap, hosted: Callable[..., HostedEventLoop]
) -> None:
    host = hosted()
    results: List[Any] = []

    def submit() -> None:
        future = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, result="from a thread"), host)
        results.append(future.result(timeout=10))

    worker = threading.Thread(target=submit)
    worker.start()
    while worker.is_alive():  # the self-pipe wakes the map's poller
        asyncore.loop(timeout=0.5, map=socket_map, count=1)
    worker.join()
    assert results == ["from a thread"]


def test_hosting_rules(socket_map: asyncore.SocketMap, hosted: Callable[..., HostedEventLoop]) -> None:
    host = hosted()
    assert hosted_event_loop(socket_map) is host
    with pytest.raises(RuntimeError, match="already hosts"):
        HostedEventLoop(socket_map)
    assert host.hosted and len(socket_map) == 1
    host.close()
    assert not host.hosted and len(socket_map) == 0 and host.is_closed()
    assert _loop.existing_loop(socket_map) is None
    selector = selectors.SelectSelector()
    try:
        with pytest.raises(ValueError, match="SelectSelector has no fd to wait on"):
            HostedEventLoop(socket_map, selector)
    finally:
        selector.close()


def test_run_coroutine_refuses_a_running_loop(socket_map: asyncore.SocketMap) -> None:
    async def nested() -> None:
        with pytest.raises(RuntimeError, match="cannot be called from a running asyncio loop"):
            run_coroutine(asyncio.sleep(0), socket_map)  # closed, not left unawaited

    asyncio.run(nested())


def test_a_map_is_either_bridged_or_hosting(
    socket_map: asyncore.SocketMap, hosted: Callable[..., HostedEventLoop]
) -> None:
    async def bridged() -> None:
        bridge = attach(socket_map)
        try:
            with pytest.raises(RuntimeError, match="served by an asyncio bridge"):
                HostedEventLoop(socket_map)
            coro = asyncio.sleep(0)
            with pytest.raises(RuntimeError):
                run_coroutine(coro, socket_map)
        finally:
            bridge.detach()

    asyncio.run(bridged())
    hosted(new=True)

    async def hosting() -> None:
        with pytest.raises(RuntimeError, match="hosts an asyncio event loop"):
            attach(socket_map)

    asyncio.run(hosting())


# == what else may drive a bridged or hosting map ==========================================


def test_asyncore_loop_on_a_bridged_map_raises_instead_of_spinning(
    new_loop: LoopFactory, default_poller: str, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    reader = Reader(mine, socket_map)

    async def main() -> None:
        bridge = attach(socket_map)
        try:
            # the map's own loop state (no poller=): it must not wait on the
            # bridge's poller, which never waits
            for refused in (
                lambda: asyncore.loop(timeout=0.5, map=socket_map, count=200),
                lambda: asyncore.loop(map=socket_map, count=1),  # a legacy pump
                lambda: asyncore.loop(timeout=0, map=socket_map, count=1),
                lambda: asyncore.loop(timeout=0.5, map=socket_map),
                lambda: asyncore.poll(0.5, socket_map),
                lambda: asyncore.poll2(0.5, socket_map),
            ):
                with pytest.raises(RuntimeError, match="asyncio bridge.*call detach"):
                    refused()
            peer.sendall(b"still served by the bridge")
            assert await reader.wait_for(26) == b"still served by the bridge"
        finally:
            bridge.detach()

    run(new_loop, main())


def test_a_handler_pumping_loop_under_the_bridge_gets_the_error(
    new_loop: LoopFactory, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    errors: List[BaseException] = []

    class Pumping(Reader):
        def handle_read(self) -> None:
            super().handle_read()
            try:
                asyncore.loop(map=socket_map, count=1)
            except RuntimeError as exc:
                errors.append(exc)

    reader = Pumping(mine, socket_map)

    async def main() -> None:
        bridge = attach(socket_map)
        try:
            peer.sendall(b"x")
            await reader.wait_for(1)
        finally:
            bridge.detach()

    run(new_loop, main())
    assert len(errors) == 1 and "asyncio bridge" in str(errors[0])


def test_a_map_left_attached_to_a_closed_loop_is_handed_back(
    new_loop: LoopFactory, poller_name: str, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    reader = Reader(mine, socket_map)
    fired: List[str] = []

    async def main() -> None:
        attach(socket_map)  # and never detached
        peer.sendall(b"one")
        await reader.wait_for(3)

    run(new_loop, main())
    call_later(0.01, fired.append, "timer", map=socket_map)
    peer.sendall(b" two")
    # one pass that waits for what is pending: on an ordinary poller again
    asyncore.loop(timeout=LONG, map=socket_map, count=1, poller=poller_name)
    assert bytes(reader.data) == b"one two"
    state = _loop.existing_loop(socket_map)
    assert state is not None and not isinstance(state.poller, AsyncioPoller) and not state.pinned
    while not fired:
        asyncore.loop(timeout=LONG, map=socket_map, count=1)
    assert fired == ["timer"]


def test_a_map_left_attached_to_a_closed_loop_is_handed_back_without_poller(
    default_poller: str, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    reader = Reader(mine, socket_map)

    async def main() -> None:
        attach(socket_map)

    asyncio.run(main())
    peer.sendall(b"after asyncio.run()")
    asyncore.loop(timeout=LONG, map=socket_map, count=1)
    assert bytes(reader.data) == b"after asyncio.run()"


def test_a_new_bridge_or_host_takes_a_map_left_attached_to_a_closed_loop(
    socket_map: asyncore.SocketMap, hosted: Callable[..., HostedEventLoop]
) -> None:
    async def leave_attached() -> None:
        attach(socket_map)

    async def attach_again() -> None:
        bridge = attach(socket_map)  # not "already served"
        bridge.detach()

    asyncio.run(leave_attached())
    asyncio.run(attach_again())
    asyncio.run(leave_attached())
    hosted(new=True)  # not "served by an asyncio bridge"
    assert run_coroutine(asyncio.sleep(0, result="hosted"), socket_map) == "hosted"


@hosts_asyncio
def test_close_all_ends_hosting(
    default_poller: str, socket_map: asyncore.SocketMap, hosted: Callable[..., HostedEventLoop]
) -> None:
    host = hosted()
    asyncore.close_all(socket_map)
    assert not host.hosted and not host.is_closed()
    replacement = hosted()  # a new one, not the cut-off loop
    assert replacement is not host and replacement.hosted
    assert run_coroutine(asyncio.sleep(0, result="new"), socket_map) == "new"
    replacement.close()
    hosted(new=True).close()  # not "already hosts"


@hosts_asyncio
def test_close_all_during_run_coroutine_raises_instead_of_blocking(
    default_poller: str, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()

    class Resetting(Reader):
        def handle_read(self) -> None:
            super().handle_read()
            asyncore.close_all(socket_map)  # a legacy reset path

    Resetting(mine, socket_map)

    async def waits_for_io() -> bytes:
        reader, writer = await asyncio.open_connection(sock=peer_side)
        try:
            return await reader.read(10)
        finally:
            writer.close()

    _, peer_side = sockets.pair()
    peer.sendall(b"reset")
    with pytest.raises(RuntimeError, match="left the socket map"):
        run_coroutine(waits_for_io(), socket_map)  # which closes the loop it made


@pytest.mark.parametrize("taker", ["poll", "poll2", "a channel joining"])
def test_anything_looking_at_a_map_left_attached_hands_it_back(
    taker: str, default_poller: str, socket_map: asyncore.SocketMap, sockets: Sockets
) -> None:
    mine, peer = sockets.pair()
    reader = Reader(mine, socket_map)

    async def main() -> None:
        attach(socket_map)

    asyncio.run(main())
    if taker == "a channel joining":
        other_mine, _ = sockets.pair()
        joined = Reader(other_mine, socket_map)  # asks the dead bridge for a pass
        state = _loop.existing_loop(socket_map)
        assert state is None or not state.pinned
        joined.close()
    peer.sendall(b"handed back")
    one_pass = asyncore.poll2 if taker == "poll2" else asyncore.poll
    one_pass(LONG, socket_map)
    assert bytes(reader.data) == b"handed back"
