"""asyncio_compat.workers: N forked loops on one listening port."""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, List, Set, Tuple

import pytest

from asyncio_compat import asyncore

if not hasattr(os, "fork"):
    # the module itself is absent there (ImportError), as ForkingMixIn is in the stdlib
    pytest.skip("asyncio_compat.workers needs os.fork()", allow_module_level=True)

from asyncio_compat.workers import WorkerError, WorkerPool, reuse_port_available, serve_workers

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need os.fork()"),
    pytest.mark.posix_only("worker processes need os.fork()"),
]

REPO = str(Path(__file__).resolve().parent.parent)

SHARING_MODES = [
    pytest.param(True, id="reuse_port"),
    pytest.param(False, id="shared_socket"),
]


class PidEcho(asyncore.dispatcher_with_send):
    """Echoes every read, prefixed with the pid of the worker serving it."""

    def handle_read(self) -> None:
        data = self.recv(4096)
        if data:
            self.send(b"%d:%s" % (os.getpid(), data))


class PidEchoServer(asyncore.dispatcher):
    def __init__(self, listener: socket.socket) -> None:
        super().__init__()
        self.set_socket(listener)
        self.listen(128)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        PidEcho(sock)


def ask_pid(address: Any, payload: bytes = b"ping") -> int:
    """One connection: send ``payload``, check the echo, return the server's pid."""
    return ask_pids_at_once(address, 1, payload)[0]


def pids_serving(address: Any, expected: int, attempts: int = 50) -> Set[int]:
    """Connect in bursts until ``expected`` distinct worker pids answered (or attempts run out).

    Bursts of connections opened at once: with a shared listening socket, one
    connection at a time may always go to the same, already awake, worker.
    """
    seen: Set[int] = set()
    for n in range(attempts):
        seen.update(ask_pids_at_once(address, 8, b"burst %d" % n))
        if len(seen) == expected:
            break
    return seen


def ask_pids_at_once(address: Any, count: int, payload: bytes) -> List[int]:
    """``count`` connections opened before any is asked; the pid that answered each."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    conns = [socket.socket(family, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for conn in conns:
            conn.settimeout(10.0)
            conn.connect(address)
        for conn in conns:
            conn.sendall(payload)
        return [_read_pid(conn, payload) for conn in conns]
    finally:
        for conn in conns:
            conn.close()


def _read_pid(conn: socket.socket, payload: bytes) -> int:
    reply = b""
    while not reply.endswith(b":" + payload):
        chunk = conn.recv(4096)
        assert chunk, f"connection closed after {reply!r}"
        reply += chunk
    pid, _, echoed = reply.partition(b":")
    assert echoed == payload
    return int(pid)


def assert_reaped(pids: List[int]) -> None:
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def assert_refused(address: Tuple[str, int]) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5.0).close()


@pytest.mark.parametrize("reuse_port", SHARING_MODES)
def test_two_workers_serve_one_port(reuse_port: bool, poller_name: str) -> None:
    if reuse_port and not reuse_port_available():
        pytest.skip("SO_REUSEPORT not available on this kernel")
    with WorkerPool(PidEchoServer, 2, reuse_port=reuse_port, poller=poller_name) as pool:
        assert pool.reuse_port is reuse_port
        pids = pool.pids
        assert len(pids) == 2 and os.getpid() not in pids
        assert pids_serving(pool.address, 2) == set(pids)
    assert pool.exit_codes == {pid: 0 for pid in pids}
    assert pool.pids == []
    assert_reaped(pids)
    assert isinstance(pool.address, tuple)
    assert_refused(pool.address)


def test_unix_socket_is_shared_and_removed(tmp_path: Path) -> None:
    path = str(tmp_path / "workers.sock")
    with WorkerPool(PidEchoServer, 2, path) as pool:
        assert pool.reuse_port is False
        assert pool.address == path
        assert pids_serving(path, 2) == set(pool.pids)
    assert set(pool.exit_codes.values()) == {0}
    assert not os.path.exists(path)


def test_sigterm_to_parent_stops_every_worker() -> None:
    pids: List[int] = []
    addresses: List[Any] = []

    def on_ready(pool: WorkerPool) -> None:
        pids.extend(pool.pids)
        addresses.append(pool.address)
        assert pids_serving(pool.address, 2) == set(pool.pids)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    serve_workers(PidEchoServer, 2, on_ready=on_ready)  # returns: no WorkerError
    assert signal.getsignal(signal.SIGTERM) is before
    assert len(pids) == 2
    assert_reaped(pids)
    assert_refused(addresses[0])


def test_a_worker_exiting_stops_the_others() -> None:
    pids: List[int] = []

    def on_ready(pool: WorkerPool) -> None:
        pids.extend(pool.pids)
        os.kill(pool.pids[0], signal.SIGTERM)  # exits with 0: a clean, early end

    serve_workers(PidEchoServer, 2, on_ready=on_ready)
    assert len(pids) == 2
    assert_reaped(pids)


def failing_server(listener: socket.socket) -> None:
    raise RuntimeError("cannot build the server")


def test_failing_workers_raise_worker_error(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(WorkerError) as caught:
        serve_workers(failing_server, 2)
    codes = caught.value.exit_codes
    assert len(codes) == 2 and set(codes.values()) == {1}
    assert "exit status 1" in str(caught.value)
    assert "cannot build the server" in capfd.readouterr().err
    assert_reaped(list(codes))


def test_killed_worker_is_reported_by_signal_name() -> None:
    error = WorkerError({123: -signal.SIGKILL, 124: 3})
    assert "pid 123: killed by SIGKILL" in str(error)
    assert "pid 124: exit status 3" in str(error)


def test_workers_do_not_keep_the_parents_channels_open() -> None:
    """A worker closes its copy of a socket the parent had in its map at fork time."""
    kept, peer = socket.socketpair()
    channel = asyncore.dispatcher(kept)  # in the parent's default map
    try:
        with WorkerPool(PidEchoServer, 2) as pool:
            assert pids_serving(pool.address, 2) == set(pool.pids)  # both past setup
            channel.close()
            peer.settimeout(10.0)
            # EOF only arrives once no process holds the other end any more
            assert peer.recv(10) == b""
    finally:
        channel.close()
        peer.close()


def test_pool_stop_is_idempotent_and_start_only_once() -> None:
    pool = WorkerPool(PidEchoServer, 1)
    pool.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            pool.start()
        assert ask_pid(pool.address) == pool.pids[0]
    finally:
        first = pool.stop()
    assert pool.stop() == first
    assert list(first.values()) == [0]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"workers": 0}, ValueError, "workers must be"),
        ({"workers": 1.5}, ValueError, "workers must be"),
        ({"workers": True}, ValueError, "workers must be"),
        ({"backlog": -1}, ValueError, "backlog"),
        ({"address": 8080}, ValueError, "address must be"),
        ({"address": "/tmp/x.sock", "reuse_port": True}, ValueError, "SO_REUSEPORT"),
    ],
)
def test_bad_arguments_are_named(kwargs: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        WorkerPool(PidEchoServer, **kwargs)


def test_make_server_must_be_callable() -> None:
    with pytest.raises(TypeError, match="make_server must be callable"):
        WorkerPool("not callable")  # type: ignore[arg-type]


def test_bind_failure_leaves_nothing_behind() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        pool = WorkerPool(PidEchoServer, 2, taken.getsockname(), reuse_port=False)
        with pytest.raises(OSError) as caught:
            pool.start()
        assert caught.value.errno == errno.EADDRINUSE
        assert pool.pids == []
        pool.stop()


# -- the parent as a separate process -------------------------------------------------

PARENT_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {repo!r})
    from asyncio_compat import asyncore
    from asyncio_compat.workers import serve_workers

    class PidEcho(asyncore.dispatcher_with_send):
        def handle_read(self):
            data = self.recv(4096)
            if data:
                self.send(b"%d:%s" % (os.getpid(), data))

    class PidEchoServer(asyncore.dispatcher):
        def __init__(self, listener):
            super().__init__()
            self.set_socket(listener)
            self.listen(128)

        def handle_accepted(self, sock, addr):
            PidEcho(sock)

    def on_ready(pool):
        print(pool.address[1], *pool.pids, flush=True)

    serve_workers(PidEchoServer, 2, on_ready=on_ready)
    print("stopped", flush=True)
    """
)


def start_parent(pass_fds: Tuple[int, ...] = ()) -> subprocess.Popen[str]:
    script = PARENT_SCRIPT.format(repo=REPO)
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, pass_fds=pass_fds,
    )


def read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), "the parent process did not answer in time"
    return proc.stdout.readline()


def test_sigterm_from_outside_stops_the_pool() -> None:
    with start_parent() as proc:
        port, *pids = (int(word) for word in read_line(proc).split())
        assert pids_serving(("127.0.0.1", port), 2) == set(pids)
        proc.send_signal(signal.SIGTERM)
        assert read_line(proc) == "stopped\n"
        assert proc.wait(timeout=30) == 0
    assert_refused(("127.0.0.1", port))


def test_workers_exit_when_the_parent_is_killed() -> None:
    watch_read, watch_write = os.pipe()
    try:
        with start_parent(pass_fds=(watch_write,)) as proc:
            os.close(watch_write)  # now only the parent and its workers hold it
            watch_write = -1
            port, *pids = (int(word) for word in read_line(proc).split())
            assert pids_serving(("127.0.0.1", port), 2) == set(pids)
            proc.kill()
            proc.wait(timeout=30)
        with selectors.DefaultSelector() as selector:
            selector.register(watch_read, selectors.EVENT_READ)
            assert selector.select(30.0), "workers still running 30 s after their parent died"
        assert os.read(watch_read, 1) == b""  # EOF: every worker has exited
        assert_refused(("127.0.0.1", port))
    finally:
        os.close(watch_read)
        if watch_write >= 0:
            os.close(watch_write)


# -- other signals, another owner of the wakeup fd ---------------------------------------

# per worker process: how many SIGHUP (signal.signal) and SIGUSR1 (add_signal_handler) it saw
SEEN = {"hup": 0, "usr1": 0}


class CountsReply(asyncore.dispatcher_with_send):
    """Answers every read with ``pid:hups:usr1s``."""

    def handle_read(self) -> None:
        if self.recv(4096):
            self.send(b"%d:%d:%d" % (os.getpid(), SEEN["hup"], SEEN["usr1"]))


class CountsServer(PidEchoServer):
    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        CountsReply(sock)


def _bump(name: str) -> None:
    SEEN[name] += 1


def reloading_server(listener: socket.socket) -> CountsServer:
    """A make_server that wires SIGHUP (reload) and SIGUSR1 (stats) both ways."""
    import asyncio_compat

    signal.signal(signal.SIGHUP, lambda *_: _bump("hup"))
    asyncio_compat.add_signal_handler(signal.SIGUSR1, _bump, "usr1")
    return CountsServer(listener)


def wakeup_taking_server(listener: socket.socket) -> CountsServer:
    """A make_server whose library takes the wakeup fd (as asyncio's add_signal_handler does)."""
    theirs, reader = socket.socketpair()  # kept open for the worker's life
    theirs.setblocking(False)
    signal.set_wakeup_fd(theirs.fileno())
    KEPT.extend((theirs, reader))
    return reloading_server(listener)


KEPT: List[socket.socket] = []


def ask_counts(address: Any) -> Tuple[int, int, int]:
    with socket.create_connection(address, timeout=10.0) as conn:
        conn.sendall(b"?")
        reply = conn.recv(100)
    pid, hups, usr1s = (int(word) for word in reply.split(b":"))
    return pid, hups, usr1s


def wait_for_counts(address: Any, expected: Tuple[int, int, int], attempts: int = 200) -> None:
    """Ask until the worker reports ``expected`` (its handlers run asynchronously)."""
    seen = None
    for _ in range(attempts):
        seen = ask_counts(address)
        if seen == expected:
            return
    raise AssertionError(f"the worker answered {seen}, expected {expected}")


@pytest.mark.parametrize("make_server", [reloading_server, wakeup_taking_server])
def test_other_signals_run_their_handlers_and_never_stop_a_worker(
    make_server: Any, poller_name: str
) -> None:
    # promise (workers docstring): only SIGTERM, SIGINT and the parent's death stop a worker
    with WorkerPool(make_server, 1, poller=poller_name, loop_timeout=2.0) as pool:
        assert pool.address is not None
        (pid,) = pool.pids
        wait_for_counts(pool.address, (pid, 0, 0))
        os.kill(pid, signal.SIGHUP)
        wait_for_counts(pool.address, (pid, 1, 0))
        os.kill(pid, signal.SIGUSR1)
        wait_for_counts(pool.address, (pid, 1, 1))
        assert pool.wait_any(0) == []
        os.kill(pid, signal.SIGTERM)  # still stops it, gracefully
        assert pool.wait_any(20) == [pid]
    assert pool.exit_codes == {pid: 0}


def test_serve_workers_goes_on_after_a_workers_sighup() -> None:
    # promise (serve_workers): it returns on SIGTERM/SIGINT or once a worker exited
    seen: List[Tuple[int, int, int]] = []

    def on_ready(pool: WorkerPool) -> None:
        (pid,) = pool.pids
        wait_for_counts(pool.address, (pid, 0, 0))
        os.kill(pid, signal.SIGHUP)
        wait_for_counts(pool.address, (pid, 1, 0))
        seen.append(ask_counts(pool.address))
        assert pool.wait_any(0) == []
        os.kill(os.getpid(), signal.SIGTERM)

    serve_workers(reloading_server, 1, on_ready=on_ready)
    assert len(seen) == 1 and seen[0][1:] == (1, 0)


class FloodServer(PidEchoServer):
    """Queues far more than the socket buffers hold for every connection."""

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        asyncore.dispatcher_with_send(sock).send(b"x" * FLOOD)


def test_a_second_sigterm_stops_a_draining_worker_at_once() -> None:
    # promise (workers, stopping.rst): a second signal closes everything at once
    with WorkerPool(FloodServer, 1, shutdown_grace=60) as pool:
        assert isinstance(pool.address, tuple)
        (pid,) = pool.pids
        with socket.create_connection(pool.address, timeout=10) as client:
            assert client.recv(10)  # the worker is serving; the client reads no more
            pool.terminate()  # graceful: the flood would drain for up to 60 s
            assert pool.wait_any(0.5) == []
            pool.terminate()  # the second signal
            assert pool.wait_any(10) == [pid]
    assert pool.exit_codes == {pid: 0}


def test_reuse_port_is_never_available_for_unix_paths() -> None:
    # promise: always False for AF_UNIX
    assert reuse_port_available(socket.AF_UNIX) is False


FLOOD = 16_000_000


def _read_to_eof(conn: socket.socket, total: List[int]) -> None:
    conn.settimeout(30.0)
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            return
        total[0] += len(chunk)


def _wait_until_refused(address: Tuple[str, int], attempts: int = 500) -> None:
    for _ in range(attempts):
        try:
            socket.create_connection(address, timeout=5.0).close()
        except ConnectionRefusedError:
            return
    raise AssertionError(f"{address} still accepts connections")


@pytest.mark.parametrize("first_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "systemd"])
def test_stop_does_not_hurry_a_worker_already_stopping(first_signal: int) -> None:
    # promise: a worker that gets SIGTERM or SIGINT stops gracefully.  Ctrl-C in a
    # terminal sends SIGINT to the whole process group, systemd's stop sends SIGTERM
    # to every process of the service: the workers get the signal, then the
    # parent's stop(); that must not count as their second signal.
    import threading

    with WorkerPool(FloodServer, 1, shutdown_grace=25) as pool:
        assert isinstance(pool.address, tuple)
        (pid,) = pool.pids
        with socket.create_connection(pool.address, timeout=10) as client:
            total = [len(client.recv(10))]
            assert total[0]
            os.kill(pid, first_signal)  # the signal the worker got with its parent
            _wait_until_refused(pool.address)  # the worker is stopping: its listener closed
            reader = threading.Thread(target=_read_to_eof, args=(client, total))
            reader.start()
            try:
                codes = pool.stop(grace=30)
            finally:
                reader.join(60)
    assert total[0] == FLOOD
    assert codes == {pid: 0}


def test_a_second_pool_does_not_keep_the_first_ones_workers_running() -> None:
    # promise: stop() gives the workers grace seconds, then kills those still
    # running; here none must need killing although a second pool's workers
    # were forked while the first pool ran (and inherited its fds)
    with WorkerPool(PidEchoServer, 1) as first, WorkerPool(PidEchoServer, 1) as second:
        assert pids_serving(first.address, 1) == set(first.pids)
        assert pids_serving(second.address, 1) == set(second.pids)
        started = time.monotonic()
        codes = first.stop(grace=20)
        assert time.monotonic() - started < 10
        assert list(codes.values()) == [0]
        assert ask_pid(second.address) == second.pids[0]  # the second pool serves on
    assert list(second.exit_codes.values()) == [0]
