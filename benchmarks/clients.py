"""The load generators: one selectors-based client process drives every test.

Every byte a server sends back is compared with what it should be; a
mismatch, an early close or a silent server raises :class:`BenchError`.
Each loop is bounded by a duration and a count, and every wait by a timeout.
"""

from __future__ import annotations

import errno
import multiprocessing
import selectors
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .processes import BenchError
from .protocol import echo_messages, pattern

Address = Tuple[str, int]
CpuProbe = Callable[[], Optional[float]]

#: longest a server may stay silent before a measurement is abandoned
STALL_TIMEOUT = 20.0
#: connections opened at once when building up idle connections
CONNECT_BATCH = 500


@dataclass
class Window:
    """What happened in one timed window."""

    count: int  #: messages, round trips, lines or bytes
    seconds: float  #: wall-clock time
    cpu: Optional[float]  #: server CPU seconds, when measurable

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_cpu(self) -> Optional[float]:
        return self.count / self.cpu if self.cpu else None


def _timeouts(sock: socket.socket, seconds: float) -> None:
    """Bound blocking send/recv in the kernel (SO_SNDTIMEO/SO_RCVTIMEO).

    Cheaper than ``settimeout()``, which adds a poll() to every call.
    """
    whole = int(seconds)
    packed = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, packed)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, packed)


def connect(address: Address, timeout: float = STALL_TIMEOUT) -> socket.socket:
    """A blocking TCP connection with Nagle off and kernel-side timeouts."""
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        raise BenchError(f"cannot connect: {exc}") from None
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _timeouts(sock, timeout)
    return sock


def _recv(sock: socket.socket, size: int) -> bytes:
    try:
        data = sock.recv(size)
    except BlockingIOError:
        raise BenchError(f"server silent for {STALL_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise BenchError(f"connection failed: {exc}") from None
    if not data:
        raise BenchError("server closed the connection")
    return data


def send_now(sock: socket.socket, message: bytes) -> None:
    """Send a short message on a non-blocking socket; it must go through at once."""
    try:
        sent = sock.send(message)
    except OSError as exc:
        raise BenchError(f"sending failed: {exc}") from None
    if sent != len(message):
        raise BenchError(f"a {len(message)}-byte send did not go through at once")


def read_exactly(sock: socket.socket, expected: bytes, first: bytes = b"") -> None:
    """Read until ``len(expected)`` bytes came; raises BenchError unless they equal it."""
    got = first
    while len(got) < len(expected):
        if got != expected[: len(got)]:
            break
        got += _recv(sock, len(expected) - len(got))
    if got != expected:
        raise BenchError(f"wrong reply: expected {expected[:40]!r}..., got {got[:40]!r}...")


def read_line(sock: socket.socket, limit: int = 4096) -> bytes:
    """Read one ``\\n``-terminated reply (the server sends nothing after it)."""
    got = b""
    while not got.endswith(b"\n"):
        got += _recv(sock, limit)
        if len(got) > limit:
            raise BenchError(f"reply line too long: {got[:40]!r}...")
    return got


# -- ping-pong on one connection ------------------------------------------------------


def ping_pong(sock: socket.socket, duration: float, max_count: int, cpu: CpuProbe) -> Window:
    """Round trips of one 64-byte message at a time, for ``duration`` or ``max_count``."""
    messages = echo_messages()
    recv = sock.recv
    count = 0
    cpu_before = cpu()
    start = time.perf_counter()
    end = start + duration
    try:
        while count < max_count:
            message = messages[count & 63]
            sock.sendall(message)
            reply = recv(4096)
            if reply != message:
                read_exactly(sock, message, reply)
            count += 1
            if time.perf_counter() >= end:
                break
    except OSError as exc:
        raise BenchError(f"ping-pong failed: {exc}") from None
    return _window(count, start, cpu_before, cpu)


def _window(count: int, start: float, cpu_before: Optional[float], cpu: CpuProbe) -> Window:
    seconds = time.perf_counter() - start
    cpu_after = cpu()
    used = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Window(count, seconds, used)


# -- many connections: idle ones, and echo load ---------------------------------------


def _nonblocking_connect(address: Address) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    err = sock.connect_ex(address)
    if err not in (0, errno.EINPROGRESS):
        sock.close()
        raise BenchError(f"cannot connect: {errno.errorcode.get(err, err)}")
    return sock


def _wait_connected(socks: Sequence[socket.socket]) -> None:
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_WRITE)
        left = len(socks)
        while left:
            events = selector.select(STALL_TIMEOUT)
            if not events:
                raise BenchError(f"{left} connections still pending after {STALL_TIMEOUT:.0f} s")
            for key, _ in events:
                err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
                if err:
                    raise BenchError(f"connect failed: {errno.errorcode.get(err, err)}")
                selector.unregister(key.fileobj)
                left -= 1


def open_idle(address: Address, count: int, into: List[socket.socket]) -> None:
    """Open ``count`` more connections into ``into``, each proven served by one echo.

    Connections are opened in batches; each batch exchanges one message per
    connection before the next batch starts, so the server has accepted and
    registered every one of them.  Raises BenchError when the server fails.
    """
    messages = echo_messages()
    while count > 0:
        batch: List[socket.socket] = []
        try:
            for _ in range(min(count, CONNECT_BATCH)):
                batch.append(_nonblocking_connect(address))
            _wait_connected(batch)
            exchange_all(batch, [messages[i & 63] for i in range(len(batch))])
        except OSError as exc:  # e.g. EMFILE: out of descriptors
            raise BenchError(f"opening connection {len(into) + len(batch) + 1}: {exc}") from None
        finally:
            into.extend(batch)
        count -= len(batch)


class _Conn:
    """Client side of one echo connection: what it waits for, and what came."""

    __slots__ = ("sock", "expected", "got", "sent", "ident")

    def __init__(self, sock: socket.socket, ident: int = 0) -> None:
        self.sock = sock
        self.ident = ident  # varies the messages between connections
        self.expected = b""
        self.got = b""
        self.sent = 0  # messages sent so far


def exchange_all(socks: Sequence[socket.socket], messages: Sequence[bytes]) -> None:
    """Send ``messages[i]`` on ``socks[i]`` and check every echo (non-blocking sockets)."""
    conns = [_Conn(sock) for sock in socks]
    with selectors.DefaultSelector() as selector:
        for conn, message in zip(conns, messages):
            conn.expected = message
            send_now(conn.sock, message)
            selector.register(conn.sock, selectors.EVENT_READ, conn)
        left = len(conns)
        while left:
            for conn in _ready(selector):
                if _take(conn):
                    selector.unregister(conn.sock)
                    left -= 1


def _ready(selector: selectors.BaseSelector) -> List[_Conn]:
    events = selector.select(STALL_TIMEOUT)
    if not events:
        raise BenchError(f"server silent for {STALL_TIMEOUT:.0f} s")
    return [key.data for key, _ in events]


def _take(conn: _Conn) -> bool:
    """Receive on ``conn``; True once its expected echo is complete and correct."""
    try:
        data = conn.sock.recv(4096)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise BenchError(f"connection failed: {exc}") from None
    if not data:
        raise BenchError("server closed a connection")
    got = conn.got + data if conn.got else data
    expected = conn.expected
    if len(got) >= len(expected):
        if got != expected:
            raise BenchError(f"wrong echo: expected {expected[:40]!r}, got {got[:40]!r}")
        conn.got = b""
        return True
    if got != expected[: len(got)]:
        raise BenchError(f"wrong echo: expected {expected[:40]!r}, got {got[:40]!r}")
    conn.got = got
    return False


class EchoLoad:
    """``connections`` clients, each with one 64-byte message in flight at a time."""

    def __init__(self, address: Address, connections: int) -> None:
        self.messages = echo_messages()
        self.conns: List[_Conn] = []
        self.selector = selectors.DefaultSelector()
        try:
            for ident in range(connections):
                sock = connect(address)
                sock.setblocking(False)
                self.conns.append(_Conn(sock, ident))
        except BaseException:
            self.close()
            raise

    def run(self, duration: float, max_count: int, cpu: CpuProbe, warmup: int = 20) -> Window:
        """Warm up, then count completed echoes for ``duration`` or ``max_count``."""
        for conn in self.conns:
            self._send_next(conn)
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        self._pump(time.perf_counter() + 60.0, warmup * len(self.conns))
        cpu_before = cpu()
        start = time.perf_counter()
        count = self._pump(start + duration, max_count)
        window = _window(count, start, cpu_before, cpu)
        self._drain()
        return window

    def _send_next(self, conn: _Conn) -> None:
        message = self.messages[(conn.ident + conn.sent) & 63]
        conn.expected = message
        conn.sent += 1
        send_now(conn.sock, message)

    def _pump(self, end: float, max_count: int) -> int:
        done = 0
        while done < max_count and time.perf_counter() < end:
            for conn in _ready(self.selector):
                if _take(conn):
                    done += 1
                    self._send_next(conn)
        return done

    def _drain(self) -> None:
        """Collect (and check) the echoes still in flight, sending nothing new."""
        left = len(self.conns)
        while left:
            for conn in _ready(self.selector):
                if _take(conn):
                    self.selector.unregister(conn.sock)
                    left -= 1

    def close(self) -> None:
        self.selector.close()
        for conn in self.conns:
            conn.sock.close()


# -- bulk transfers -------------------------------------------------------------------


def send_and_summarise(address: Address, payload: bytes, expected: bytes, cpu: CpuProbe) -> Window:
    """Send ``payload`` then ``END``; the server's summary must equal ``expected``.

    The window counts the bytes of ``payload``.
    """
    sock = connect(address)
    try:
        cpu_before = cpu()
        start = time.perf_counter()
        try:
            sock.sendall(payload)
            sock.sendall(b"END\n")
        except OSError as exc:
            raise BenchError(f"sending failed: {exc}") from None
        reply = read_line(sock)
        window = _window(len(payload), start, cpu_before, cpu)
    finally:
        sock.close()
    if reply != expected:
        raise BenchError(f"wrong summary: expected {expected!r}, got {reply!r}")
    return window


def send_bulk(address: Address, payload: bytes, expected_crc: int, cpu: CpuProbe) -> Window:
    """One ``sendall()`` of ``payload`` (a message ending in CRLF) to a ``bulk`` server.

    The window ends when the server's reply (the message's length) arrives;
    the CRC-32 of what it received is asked for and checked after that.
    """
    size = len(payload) - 2
    sock = connect(address)
    try:
        cpu_before = cpu()
        start = time.perf_counter()
        try:
            sock.sendall(payload)
        except OSError as exc:
            raise BenchError(f"sending failed: {exc}") from None
        reply = read_line(sock)
        window = _window(len(payload), start, cpu_before, cpu)
        if reply != b"%d\r\n" % size:
            raise BenchError(f"wrong length: expected {size}, got {reply!r}")
        sock.sendall(b"CRC\r\n")
        crc = read_line(sock)
    finally:
        sock.close()
    if crc != b"%d\r\n" % expected_crc:
        raise BenchError(f"the server received other bytes than sent (CRC-32 {crc!r}, not {expected_crc})")
    return window


def receive_push(address: Address, size: int, cpu: CpuProbe) -> Window:
    """Have the server push ``size`` pattern bytes; check them by CRC-32."""
    expected_crc = zlib.crc32(pattern(size))
    sock = connect(address)
    try:
        sock.sendall(b"PREP %d\n" % size)
        if read_line(sock) != b"OK\n":
            raise BenchError("server did not prepare the push")
        cpu_before = cpu()
        start = time.perf_counter()
        sock.sendall(b"PUSH\n")
        crc = _receive_crc(sock, size)
        window = _window(size, start, cpu_before, cpu)
    finally:
        sock.close()
    if crc != expected_crc:
        raise BenchError("pushed bytes differ from the pattern (CRC-32 mismatch)")
    return window


def _receive_crc(sock: socket.socket, size: int) -> int:
    buffer = bytearray(65536)  # reused: no allocation per read
    view = memoryview(buffer)
    crc = 0
    left = size
    while left:
        try:
            got = sock.recv_into(buffer, min(left, len(buffer)))
        except OSError as exc:
            raise BenchError(f"receiving failed: {exc}") from None
        if not got:
            raise BenchError(f"server closed with {left} bytes still to come")
        crc = zlib.crc32(view[:got], crc)
        left -= got
    return crc


# -- echo load from several client processes (the workers scenario) ----------------------------


def _load_child(address: Address, connections: int, duration: float, max_count: int,
                go: Any, report: Any) -> None:
    """One client process: connect, say so, wait for ``go``, run; send ``(count, seconds)`` or an error."""
    try:
        load = EchoLoad(address, connections)
    except BaseException as exc:  # reported, not raised: the parent waits for every child
        report.send(f"cannot connect: {exc}")
        report.close()
        return
    try:
        report.send("ready")
        if not go.wait(STALL_TIMEOUT):
            raise BenchError("no start signal")
        window = load.run(duration, max_count, lambda: None)
        report.send((window.count, window.seconds))
    except BaseException as exc:
        report.send(str(exc) or type(exc).__name__)
    finally:
        load.close()
        report.close()


def echo_load_processes(address: Address, connections: int, processes: int, duration: float,
                        max_count: int, cpu: CpuProbe) -> Window:
    """The echo load of :class:`EchoLoad`, split over ``processes`` client processes.

    The processes connect first and start together.  The window counts every
    process's echoes; its seconds are the longest process's.  Raises
    BenchError when a process fails or stays silent.
    """
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                          else "spawn")
    go = context.Event()
    pipes = [context.Pipe(duplex=False) for _ in range(processes)]
    shares = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    children = [context.Process(target=_load_child, daemon=True,
                                args=(address, share, duration, max_count // processes, go, writer))
                for share, (_, writer) in zip(shares, pipes)]
    try:
        for child in children:
            child.start()
        for _, writer in pipes:
            writer.close()  # the children hold it now
        return _collect([reader for reader, _ in pipes], go, duration, cpu)
    finally:
        go.set()
        for child in children:
            child.join(STALL_TIMEOUT)
            if child.is_alive():
                child.kill()
                child.join()
        for reader, writer in pipes:
            reader.close()
            writer.close()


def _receive(reader: Any, timeout: float) -> Any:
    if not reader.poll(timeout):
        raise BenchError("a client process stayed silent")
    try:
        return reader.recv()
    except EOFError:
        raise BenchError("a client process died") from None


def _collect(readers: Sequence[Any], go: Any, duration: float, cpu: CpuProbe) -> Window:
    greetings = [_receive(reader, 2 * STALL_TIMEOUT) for reader in readers]
    errors = [text for text in greetings if text != "ready"]
    if errors:
        raise BenchError(str(errors[0]))
    cpu_before = cpu()
    go.set()
    outcomes = [_receive(reader, duration + 2 * STALL_TIMEOUT) for reader in readers]
    errors = [text for text in outcomes if isinstance(text, str)]
    if errors:
        raise BenchError(errors[0])
    cpu_after = cpu()
    used = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Window(sum(count for count, _ in outcomes), max(seconds for _, seconds in outcomes), used)
