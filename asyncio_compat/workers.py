"""Serve one listening port from several processes, each with its own loop.

One ``asyncore.loop()`` runs on one core.  A server that outgrows it can fork
N workers: each builds its dispatchers around a listening socket and runs its
own loop; the kernel spreads the incoming connections among them.

>>> from asyncio_compat import asyncore
>>> from asyncio_compat.workers import serve_workers
>>> class EchoServer(asyncore.dispatcher):
...     def __init__(self, listener):
...         super().__init__()
...         self.set_socket(listener)
...         self.listen(1024)  # already listening: this marks it as accepting
...     def handle_accepted(self, sock, addr):
...         EchoHandler(sock)
>>> serve_workers(EchoServer, workers=2, address=("0.0.0.0", 8007))

How the port is shared:

* where the kernel has ``SO_REUSEPORT`` (Linux 3.9+, the BSDs), every worker
  gets a listening socket of its own bound to the same port, and the kernel
  hands each new connection to one of them (by a hash of its addresses), so
  no worker is woken for a connection it does not get;
* elsewhere (and for AF_UNIX paths) one listening socket is created before
  the fork and shared: every worker polls it and whichever accepts first
  wins; the others see "nothing to accept", which asyncore ignores.

Life cycle: ``SIGTERM`` or ``SIGINT`` to the parent stops every worker
(the parent closes their lifeline, see :meth:`WorkerPool.stop`); a
worker that gets either signal stops gracefully with
:func:`asyncio_compat.shutdown` (``shutdown_grace`` seconds; a second
signal closes everything at once) and exits with status 0; a worker
notices the death of its parent (even by ``SIGKILL``) through a pipe that
the parent alone holds open, and stops the same way.  No other signal
stops a worker: handlers that ``make_server`` installs for SIGHUP, SIGUSR1
and the like (with ``signal.signal`` or ``add_signal_handler``) run, and
the worker goes on serving.
Workers are forked: POSIX only (where ``os.fork`` is missing, as on
Windows, importing this module raises ImportError), and the parent should
not run threads when it starts them.  Channels in the parent's default
socket map when the workers start are not served by them: each worker
closes its copies of those sockets and starts from an empty map.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NoReturn, Optional, Tuple, Union

if TYPE_CHECKING:
    # only read by type checkers: annotations are strings at run time (PEP 563)
    from typing_extensions import TypedDict, Unpack
else:
    from typing import TypedDict

if not hasattr(os, "fork"):
    # Absent where fork() is missing, as the standard library leaves out
    # socketserver.ForkingMixIn there (Windows).
    raise ImportError(
        "asyncio_compat.workers forks its worker processes and needs os.fork(), "
        "which this platform lacks (Windows, for one)",
        name=__name__,
    )

from . import asyncore  # after the guard: file_dispatcher is POSIX-only too
from ._interest import pushes_interest
from ._shutdown import shutdown
from ._socket_map import SocketMap
from .signals import release_wakeup_fd

__all__ = ["PoolOptions", "WorkerError", "WorkerPool", "serve_workers", "reuse_port_available"]

Address = Union[Tuple[Any, ...], str]


class PoolOptions(TypedDict, total=False):
    """The :class:`WorkerPool` keywords that :func:`serve_workers` passes on as given.

    One definition of these options, with their types, for both entry points
    (their defaults are :class:`WorkerPool`'s).
    """

    backlog: int
    reuse_port: Optional[bool]
    poller: Any
    loop_timeout: float
MakeServer = Callable[[socket.socket], object]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WorkerError(RuntimeError):
    """Workers that did not exit cleanly.

    ``exit_codes`` maps each such worker's pid to its exit code; a negative
    code is the number of the signal that killed it.
    """

    def __init__(self, exit_codes: Dict[int, int]) -> None:
        self.exit_codes = dict(exit_codes)
        listed = ", ".join(f"pid {pid}: {_describe_code(code)}" for pid, code in sorted(exit_codes.items()))
        super().__init__(f"worker processes failed ({listed})")


def _describe_code(code: int) -> str:
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def reuse_port_available(family: int = socket.AF_INET) -> bool:
    """Whether this kernel lets several sockets of ``family`` listen on one port.

    Probed with a throwaway socket, because some systems define
    ``SO_REUSEPORT`` but refuse it (ENOPROTOOPT).  Always False for AF_UNIX.
    """
    if family == getattr(socket, "AF_UNIX", None) or not hasattr(socket, "SO_REUSEPORT"):
        return False
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        return False
    return True


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _worker_count(workers: Optional[int]) -> int:
    """``workers``, or one per CPU for None; raises ValueError below 1 or for a non-int."""
    if workers is None:
        return os.cpu_count() or 1
    if not _is_int(workers) or workers < 1:
        raise ValueError(f"workers must be an int of at least 1, not {workers!r}")
    return workers


def _family_of(address: Address) -> int:
    if isinstance(address, (str, bytes)):
        return socket.AF_UNIX
    if not isinstance(address, tuple) or len(address) < 2:
        raise ValueError(f"address must be (host, port) or an AF_UNIX path, not {address!r}")
    return socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET


def _listener(family: int, address: Address, backlog: int, reuse_port: bool) -> socket.socket:
    """A non-blocking socket listening on ``address``; closed again if any step fails."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != getattr(socket, "AF_UNIX", None):
            # a restarted server must be able to bind while old connections linger
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Worker:
    """The parent's record of one child: its pid and the read end of its status pipe."""

    __slots__ = ("pid", "status_fd")

    def __init__(self, pid: int, status_fd: int) -> None:
        self.pid = pid
        self.status_fd = status_fd  # reads EOF once the child has exited


class WorkerPool:
    """N forked worker processes serving one listening address.

    ``make_server(listener)`` is called in each worker with a non-blocking,
    listening socket; it builds the worker's dispatchers on the default
    socket map (typically one server dispatcher that adopts the socket with
    ``set_socket()`` and calls ``listen()``), after which the worker runs
    ``asyncore.loop(loop_timeout, use_poll=True, poller=poller)``.  A worker
    whose ``make_server`` or loop raises prints the traceback and exits with
    status 1.  A worker told to stop runs ``asyncio_compat.shutdown()`` with
    ``shutdown_grace`` seconds (keep it below the grace given to :meth:`stop`).

    Use it as a context manager (``start()`` on entry, ``stop()`` on exit) or
    call :meth:`start` and :meth:`stop` yourself; :func:`serve_workers` adds
    signal handling for a server's main program.

    Raises ValueError for a worker count below 1, a negative backlog or
    ``reuse_port=True`` where the kernel cannot share the port, and
    TypeError when ``make_server`` is not callable.
    """

    def __init__(
        self,
        make_server: MakeServer,
        workers: Optional[int] = None,
        address: Address = ("127.0.0.1", 0),
        *,
        backlog: int = 1024,
        reuse_port: Optional[bool] = None,
        poller: Any = None,
        loop_timeout: float = 30.0,
        shutdown_grace: float = 4.0,
    ) -> None:
        if not callable(make_server):
            raise TypeError(f"make_server must be callable, not {make_server!r}")
        if not _is_int(backlog) or backlog < 0:
            raise ValueError(f"backlog must be a non-negative int, not {backlog!r}")
        self.family = _family_of(address)
        available = reuse_port_available(self.family)
        if reuse_port and not available:
            raise ValueError(f"SO_REUSEPORT is not available for {address!r} here")
        #: True when each worker listens on a socket of its own (SO_REUSEPORT)
        self.reuse_port = available if reuse_port is None else bool(reuse_port)
        self.make_server = make_server
        self.workers = _worker_count(workers)
        self.requested_address = address
        self.backlog = backlog
        self.poller = poller
        self.loop_timeout = loop_timeout
        #: seconds a stopping worker gives its connections (asyncio_compat.shutdown);
        #: keep it below the grace given to stop(), after which workers are killed
        self.shutdown_grace = shutdown_grace
        #: the address actually bound (the real port when 0 was asked for)
        self.address: Optional[Address] = None
        #: exit code of every worker reaped so far, by pid
        self.exit_codes: Dict[int, int] = {}
        self._running: Dict[int, _Worker] = {}
        self._lifeline_write: Optional[int] = None
        self._started = False

    # -- starting ----------------------------------------------------------

    @property
    def pids(self) -> List[int]:
        """Pids of the workers not reaped yet."""
        return list(self._running)

    def start(self) -> None:
        """Bind the address and fork the workers.

        Raises RuntimeError when called twice, and OSError when binding or
        forking fails (workers already forked are stopped and every socket is
        closed first).  (Where ``os.fork`` is missing this module cannot be
        imported at all.)
        """
        if self._started:
            raise RuntimeError("this WorkerPool was already started")
        self._started = True
        listeners = self._bind_listeners()
        try:
            self._fork_all(listeners)
        except BaseException:
            self.stop(grace=1.0)
            raise
        finally:
            for sock in listeners:
                sock.close()  # the workers hold their own copies

    def _bind_listeners(self) -> List[socket.socket]:
        first = _listener(self.family, self.requested_address, self.backlog, self.reuse_port)
        listeners = [first]
        self.address = first.getsockname()
        try:
            while self.reuse_port and len(listeners) < self.workers:
                listeners.append(_listener(self.family, self.address, self.backlog, True))
        except BaseException:
            for sock in listeners:
                sock.close()
            raise
        return listeners

    def _fork_all(self, listeners: List[socket.socket]) -> None:
        lifeline_read, self._lifeline_write = os.pipe()
        _STARTED.add(self)
        try:
            for index in range(self.workers):
                self._fork_one(listeners, index, lifeline_read)
        finally:
            os.close(lifeline_read)

    def _fork_one(self, listeners: List[socket.socket], index: int, lifeline_read: int) -> None:
        status_read, status_write = os.pipe()
        # unflushed output would otherwise be written twice, by parent and child
        sys.stdout.flush()
        sys.stderr.flush()
        # a stop signal must not reach the child while it still runs the
        # parent's handlers: block them until the child has its own
        with _SignalsBlocked():
            try:
                pid = os.fork()
            except BaseException:
                os.close(status_read)
                os.close(status_write)
                raise
            if pid == 0:
                _worker_main(self, listeners, index, (status_read, lifeline_read))
        os.close(status_write)
        self._running[pid] = _Worker(pid, status_read)

    def _close_parent_fds(self, status_read: int) -> None:
        """In a new worker: drop the fds that only the parent may hold."""
        os.close(status_read)
        self._drop_parent_fds()

    def _drop_parent_fds(self) -> None:
        """In any forked child: close the lifeline's write end and the status pipes.

        A child that kept the lifeline open would keep every worker from
        seeing it close (the stop, or the parent's death).
        """
        for worker in self._running.values():
            os.close(worker.status_fd)
        self._running.clear()
        self._close_lifeline()

    def _close_lifeline(self) -> None:
        if self._lifeline_write is not None:
            os.close(self._lifeline_write)
            self._lifeline_write = None

    # -- waiting and stopping ---------------------------------------------

    def terminate(self) -> None:
        """Send SIGTERM to every worker still running (safe in a signal handler)."""
        for pid in list(self._running):
            # one that is already gone is reaped by the next wait
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def wait_any(self, timeout: Optional[float] = None) -> List[int]:
        """Wait up to ``timeout`` seconds (None: forever) for workers to exit.

        Reaps every worker that has exited, records its code in
        :attr:`exit_codes` and returns their pids; returns ``[]`` on timeout
        or when no worker is running.
        """
        if not self._running:
            return []
        with selectors.DefaultSelector() as selector:
            for worker in self._running.values():
                selector.register(worker.status_fd, selectors.EVENT_READ, worker)
            exited = [key.data for key, _ in selector.select(timeout)]
        for worker in exited:
            self._reap(worker)
        return [worker.pid for worker in exited]

    def _reap(self, worker: _Worker) -> None:
        # the status pipe closes as the child exits: this wait is brief
        _, status = os.waitpid(worker.pid, 0)
        self.exit_codes[worker.pid] = os.waitstatus_to_exitcode(status)
        os.close(worker.status_fd)
        del self._running[worker.pid]

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait up to ``timeout`` seconds for all workers; True once none runs."""
        deadline = None if timeout is None else _now() + timeout
        while self._running:
            left = None if deadline is None else max(0.0, deadline - _now())
            if not self.wait_any(left) and left == 0.0:
                return False
        return True

    def stop(self, grace: float = 5.0) -> Dict[int, int]:
        """Stop every worker; returns :attr:`exit_codes` (all workers).

        The pool closes the workers' lifeline, which each takes as it takes
        SIGTERM (a graceful stop), and gives them ``grace`` seconds to exit;
        any still running then is killed with SIGKILL.  Unlike a second
        SIGTERM, this never hurries a worker that is stopping already on a
        signal of its own (Ctrl-C in a terminal reaches the whole process
        group; systemd's stop signals every process of the service).  Every
        fd the pool holds is closed.  Calling it again is harmless.
        """
        self._close_lifeline()
        if not self.wait(grace):
            for pid in list(self._running):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.wait()
        self._release()
        return dict(self.exit_codes)

    def _release(self) -> None:
        self._close_lifeline()
        _STARTED.discard(self)
        path = self.address
        if self.family == getattr(socket, "AF_UNIX", None) and isinstance(path, str) and path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _now() -> float:
    return time.monotonic()


# pools started in this process and not stopped: see _drop_parent_fds
_STARTED: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def _drop_parent_fds_in_child() -> None:
    for pool in list(_STARTED):
        pool._drop_parent_fds()
    _STARTED.clear()


# any fork: another pool's workers, multiprocessing, a user's own os.fork()
os.register_at_fork(after_in_child=_drop_parent_fds_in_child)


class _SignalsBlocked:
    """Blocks SIGTERM and SIGINT for the duration (where pthread_sigmask exists)."""

    def __enter__(self) -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)

    def __exit__(self, *exc_info: object) -> None:
        _unblock_signals()


def _unblock_signals() -> None:
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


# -- inside a worker -----------------------------------------------------------


def _worker_main(
    pool: WorkerPool, listeners: List[socket.socket], index: int, fds: Tuple[int, int]
) -> NoReturn:
    """Run one worker (in the new child) to its end; never returns."""
    code = 1
    try:
        status_read, lifeline_read = fds
        own = listeners[index] if pool.reuse_port else listeners[0]
        for sock in listeners:
            if sock is not own:
                sock.close()
        pool._close_parent_fds(status_read)
        _serve(pool, own, lifeline_read)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            # never run the parent's atexit handlers or unwind into its code
            os._exit(code)


def _serve(pool: WorkerPool, listener: socket.socket, lifeline_read: int) -> None:
    socket_map = _fresh_default_map()
    stop_read, stop_write = os.pipe()
    os.set_blocking(stop_write, False)
    _install_child_signals(stop_write)
    _StopWatch(lifeline_read, socket_map, pool.shutdown_grace, stop_write)
    _StopWatch(stop_read, socket_map, pool.shutdown_grace, stop_write)
    os.close(lifeline_read)  # the watches hold duplicates
    os.close(stop_read)
    _unblock_signals()  # a SIGTERM that came early is delivered now, to our handler
    pool.make_server(listener)
    asyncore.loop(pool.loop_timeout, use_poll=True, map=socket_map, poller=pool.poller)


def _fresh_default_map() -> SocketMap:
    """Give this worker an empty default map, closing inherited channel sockets.

    Only our copies of the fds are closed; the parent's channels go on.  The
    channels' own ``close()`` is not called: it could talk to their peers.
    """
    for channel in list(asyncore.socket_map.values()):
        sock = getattr(channel, "socket", None)
        try:
            if sock is not None:
                sock.close()
        except OSError:
            pass
    fresh = SocketMap()
    asyncore.socket_map = fresh
    return fresh


# the bytes that stop a worker: CPython writes the signal's number, as one
# byte, to the wakeup fd for every signal that has a Python-level handler
_STOP_BYTES = frozenset(int(signum) for signum in _STOP_SIGNALS)


class _StopSignal:
    """The worker's SIGTERM/SIGINT handler: writes the signal's number to the stop pipe.

    The C-level wakeup fd (the same pipe) already got that byte, unless
    ``make_server`` gave the slot to someone else (asyncio does): this
    write stops the worker then too.
    """

    def __init__(self, write_fd: int) -> None:
        self.write_fd = write_fd

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        try:
            os.write(self.write_fd, bytes((signum,)))
        except (BlockingIOError, InterruptedError):
            pass  # a full pipe has a stop byte to read already


def _install_child_signals(stop_write: int) -> None:
    # The wakeup fd closes the race of a signal landing just before the
    # wait: its byte wakes the loop.  Every other signal with a Python
    # handler (make_server's SIGHUP, SIGUSR1) writes its own number there
    # too, which the watch reads and ignores.
    handler = _StopSignal(stop_write)
    for signum in _STOP_SIGNALS:
        signal.signal(signum, handler)
    signal.set_wakeup_fd(stop_write, warn_on_full_buffer=False)


def _ignore_signal(signum: int, frame: Optional[FrameType]) -> None:
    return None


class _StopWatch(asyncore.file_dispatcher):
    """Stops the worker on SIGTERM or SIGINT, or when its parent is gone.

    Watches the stop pipe (see :class:`_StopSignal`; bytes of other
    signals are read and ignored) and the parent's lifeline (EOF once the
    parent is gone).  The stop is graceful: both watches close, then
    :func:`asyncio_compat.shutdown` gives the connections ``grace`` seconds;
    a second stop signal meanwhile closes everything.
    """

    def __init__(self, fd: int, socket_map: SocketMap, grace: float, stop_write: int) -> None:
        super().__init__(fd, map=socket_map)
        self.worker_map = socket_map
        self.grace = grace
        self.stop_write = stop_write  # the wakeup fd, released at the stop if still ours

    @pushes_interest
    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        data = self.recv(512)  # signal numbers, or EOF (recv() then called handle_close)
        if _STOP_BYTES.intersection(data):
            self.handle_close()

    def handle_close(self) -> None:
        worker_map = self.worker_map
        # its pipe's reader is about to close; a slot make_server gave away stays
        release_wakeup_fd(self.stop_write)
        for signum in _STOP_SIGNALS:
            signal.signal(signum, lambda *_: shutdown(worker_map, grace=0))
        for channel in list(worker_map.values()):
            if isinstance(channel, _StopWatch):
                channel.close()
        shutdown(worker_map, grace=self.grace)


# -- the convenience entry point -------------------------------------------------------


class _StopRequestedError(Exception):
    """Raised by the parent's signal handler to leave the wait."""


class _ParentSignals:
    """SIGTERM/SIGINT raise _StopRequestedError once; later ones are ignored."""

    def __enter__(self) -> _ParentSignals:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("serve_workers() must run in the main thread (it handles SIGTERM)")
        self.previous = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        self.disarm()
        raise _StopRequestedError(signum)

    def disarm(self) -> None:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, _ignore_signal)

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def serve_workers(
    make_server: MakeServer,
    workers: Optional[int] = None,
    address: Address = ("127.0.0.1", 0),
    *,
    grace: float = 5.0,
    on_ready: Optional[Callable[[WorkerPool], object]] = None,
    **options: Unpack[PoolOptions],
) -> None:
    """Serve ``address`` with ``workers`` processes (default: one per CPU) until stopped.

    See :class:`WorkerPool` for ``make_server`` and the other arguments;
    ``options`` are its ``backlog``, ``reuse_port``, ``poller`` and
    ``loop_timeout`` keywords (:class:`PoolOptions`), passed on as given.
    ``on_ready(pool)`` is called in the parent once the workers run (the pool
    knows the bound ``address`` and the ``pids``).  Returns after SIGTERM or
    SIGINT to this process (which stops the workers, giving them ``grace``
    seconds before SIGKILL), or once a worker has exited on its own (the
    others are then stopped too).

    Raises WorkerError when a worker exited with a non-zero status or had to
    be killed, RuntimeError outside the main thread, and whatever
    :class:`WorkerPool` raises for bad arguments or a failed bind.
    """
    pool = WorkerPool(
        make_server, workers, address, **options,
        shutdown_grace=grace * 0.8,  # the workers finish before they would be killed
    )
    codes = _run_until_stopped(pool, on_ready, grace)
    failed = {pid: code for pid, code in codes.items() if code != 0}
    if failed:
        raise WorkerError(failed)


def _run_until_stopped(
    pool: WorkerPool, on_ready: Optional[Callable[[WorkerPool], object]], grace: float
) -> Dict[int, int]:
    """Start ``pool``, wait for a stop signal or a worker's exit, stop it; returns the exit codes."""
    with _ParentSignals() as signals:
        try:
            pool.start()
            if on_ready is not None:
                on_ready(pool)
            while not pool.wait_any(None):
                pass
        except _StopRequestedError:
            pass
        finally:
            signals.disarm()
            codes = pool.stop(grace)
    return codes
